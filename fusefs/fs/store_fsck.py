"""fsck of a store (fusefs.fs.store): many small checks of an unmounted store's tables.

Each check looks at one thing and reports each problem it finds as one line; a problem
that can be fixed carries its repair (SQL run by ``--repair``), which says what it did.
The checks, in the order they run (a repair may make a later check's figures right):

* SQLite's own ``quick_check`` of the database (not repairable here);
* the format version, the capacity, the next inode number;
* the root: present and a directory;
* every inode's type is a known file type;
* orphans: inodes with no name left (unlinked while open when the server stopped),
  removed with their blocks and attributes (the next mount does the same);
* every directory entry: a valid name, in a directory, naming an inode that exists;
* every directory but the root has exactly one name, and its ".." is that directory;
* every inode is reachable from the root (else it goes to /lost+found, as e2fsck);
* link counts: a file's is the number of names it has, a directory's 2 + its
  subdirectories;
* every block belongs to one regular file that exists, at a page index >= 0, and is a
  whole page (4096 bytes) or NULL (allocated, never written: zeros);
* extended attributes belong to inodes that exist;
* the space figures: the blocks stored fit in the capacity, and the recorded count of
  allocated blocks is the number of blocks stored.
"""

from __future__ import annotations

import sqlite3
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fusefs.constants import BLOCK_SIZE
from fusefs.fs.directory import NAME_MAX
from fusefs.fs.inode import ROOT_INO
from fusefs.fs.store import FORMAT_VERSION

Repair = Callable[[sqlite3.Connection], str]
_DROP_ENTRY = "DELETE FROM dirents WHERE parent = ? AND CAST(name AS BLOB) = ?"
_KNOWN_TYPES = (
    stat.S_IFREG,
    stat.S_IFDIR,
    stat.S_IFLNK,
    stat.S_IFIFO,
    stat.S_IFSOCK,
    stat.S_IFCHR,
    stat.S_IFBLK,
)
LOST_FOUND = b"lost+found"


@dataclass(frozen=True)
class Problem:
    message: str
    repair: Repair | None = None


@dataclass
class Tables:
    """What the checks look at, read once (and again after each repair round)."""

    meta: dict[str, int]
    inodes: dict[int, tuple[int, int, int]]  # ino -> (mode, nlink, parent)
    dirents: list[tuple[int, bytes, int, int]]  # (parent, name, ino, cookie)
    blocks: list[tuple[int, int, int | None]]  # (ino, idx, length of data or None)
    xattr_inos: set[int] = field(default_factory=set)

    @classmethod
    def read(cls, conn: sqlite3.Connection) -> Tables:
        meta = {k: v for k, v in conn.execute("SELECT key, value FROM meta")}
        inodes = {
            ino: (mode, nlink, parent)
            for ino, mode, nlink, parent in conn.execute(
                "SELECT ino, mode, nlink, parent FROM inodes"
            )
        }
        dirents = [
            (p, _blob(n), i, c)
            for p, n, i, c in conn.execute(
                "SELECT parent, name, ino, cookie FROM dirents ORDER BY parent, cookie"
            )
        ]
        blocks = list(conn.execute("SELECT ino, idx, length(data) FROM blocks"))
        xattr_inos = {ino for (ino,) in conn.execute("SELECT DISTINCT ino FROM xattrs")}
        return cls(meta, inodes, dirents, blocks, xattr_inos)

    def is_dir(self, ino: int) -> bool:
        return ino in self.inodes and stat.S_ISDIR(self.inodes[ino][0])


def _blob(value: object) -> bytes:
    """A name as bytes, whatever SQLite type damage left it as."""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    return str(value).encode()


def _delete_inode(ino: int, why: str) -> Repair:
    def fix(conn: sqlite3.Connection) -> str:
        n = conn.execute("DELETE FROM blocks WHERE ino = ?", (ino,)).rowcount
        conn.execute("DELETE FROM xattrs WHERE ino = ?", (ino,))
        conn.execute("DELETE FROM dirents WHERE ino = ? OR parent = ?", (ino, ino))
        conn.execute("DELETE FROM inodes WHERE ino = ?", (ino,))
        return f"removed inode {ino} ({why}) and its {n} block(s)"

    return fix


def _sql(statement: str, args: tuple[object, ...], done: str) -> Repair:
    def fix(conn: sqlite3.Connection) -> str:
        conn.execute(statement, args)
        return done

    return fix


# -- the checks ---------------------------------------------------------------------------


def check_sqlite(conn: sqlite3.Connection, t: Tables) -> list[Problem]:
    rows = [r for (r,) in conn.execute("PRAGMA quick_check")]
    return [] if rows == ["ok"] else [Problem(f"SQLite: {r}") for r in rows[:10]]


def check_meta(conn: sqlite3.Connection, t: Tables) -> list[Problem]:
    out = []
    if t.meta.get("format_version") != FORMAT_VERSION:
        out.append(
            Problem(
                f"format version recorded as {t.meta.get('format_version')}, not {FORMAT_VERSION}",
                _sql(
                    "INSERT OR REPLACE INTO meta VALUES('format_version', ?)",
                    (FORMAT_VERSION,),
                    f"format version set to {FORMAT_VERSION}",
                ),
            )
        )
    if not isinstance(t.meta.get("capacity_blocks"), int) or t.meta["capacity_blocks"] <= 0:
        out.append(
            Problem(
                f"capacity {t.meta.get('capacity_blocks')!r} is not a positive number of blocks"
            )
        )
    top = max(t.inodes, default=ROOT_INO)
    if t.meta.get("next_ino", 0) <= top:
        out.append(
            Problem(
                f"next inode number {t.meta.get('next_ino')} is not above the largest ({top})",
                _sql(
                    "INSERT OR REPLACE INTO meta VALUES('next_ino', ?)",
                    (top + 1,),
                    f"next inode number set to {top + 1}",
                ),
            )
        )
    return out


def check_root(conn: sqlite3.Connection, t: Tables) -> list[Problem]:
    if ROOT_INO not in t.inodes:
        now = time.time_ns()

        def make_root(conn: sqlite3.Connection) -> str:
            conn.execute(
                "INSERT INTO inodes VALUES(?,?,0,0,2,0,0,?,?,?,NULL,?,NULL)",
                (ROOT_INO, stat.S_IFDIR | 0o755, now, now, now, ROOT_INO),
            )
            return "made a new, empty root directory"

        return [Problem("the root directory is missing", make_root)]
    if not t.is_dir(ROOT_INO):
        return [Problem("the root inode is not a directory")]
    return []


def check_types(conn: sqlite3.Connection, t: Tables) -> list[Problem]:
    return [
        Problem(
            f"inode {ino} has an unknown file type (mode {mode:o})",
            _delete_inode(ino, "unknown type"),
        )
        for ino, (mode, _, _) in t.inodes.items()
        if stat.S_IFMT(mode) not in _KNOWN_TYPES and ino != ROOT_INO
    ]


def check_orphans(conn: sqlite3.Connection, t: Tables) -> list[Problem]:
    counts: dict[int, int] = {}
    for ino, _, _ in t.blocks:
        counts[ino] = counts.get(ino, 0) + 1
    return [
        Problem(
            f"orphaned inode {ino} (unlinked while open), {counts.get(ino, 0)} block(s)",
            _delete_inode(ino, "orphan"),
        )
        for ino, (_, nlink, _) in t.inodes.items()
        if nlink == 0 and ino != ROOT_INO
    ]


def _bad_name(name: bytes) -> bool:
    return (
        not name or len(name) > NAME_MAX or b"/" in name or b"\0" in name or name in (b".", b"..")
    )


def check_entries(conn: sqlite3.Connection, t: Tables) -> list[Problem]:
    out = []
    for parent, name, ino, _ in t.dirents:
        drop = _sql(_DROP_ENTRY, (parent, name), f"removed the entry {name!r} of {parent}")
        if not t.is_dir(parent):
            out.append(Problem(f"entry {name!r} -> {ino} is in {parent}, not a directory", drop))
        elif ino not in t.inodes:
            out.append(Problem(f"entry {name!r} in {parent} names missing inode {ino}", drop))
        elif _bad_name(name):
            out.append(Problem(f"entry {name!r} in {parent} has an invalid name", drop))
        elif ino == ROOT_INO:
            out.append(Problem(f"entry {name!r} in {parent} names the root", drop))
    return out


def _live_entries(t: Tables) -> list[tuple[int, bytes, int, int]]:
    return [
        e
        for e in t.dirents
        if t.is_dir(e[0]) and e[2] in t.inodes and e[2] != ROOT_INO and not _bad_name(e[1])
    ]


def check_directory_names(conn: sqlite3.Connection, t: Tables) -> list[Problem]:
    out = []
    names: dict[int, list[tuple[int, bytes]]] = {}
    for parent, name, ino, _ in _live_entries(t):
        if t.is_dir(ino):
            names.setdefault(ino, []).append((parent, name))
    for ino, found in names.items():
        for parent, name in found[1:]:
            out.append(
                Problem(
                    f"directory {ino} has a second name {name!r} in {parent}",
                    _sql(
                        _DROP_ENTRY,
                        (parent, name),
                        f"removed the extra name {name!r} of directory {ino}",
                    ),
                )
            )
        parent = found[0][0]
        if t.inodes[ino][2] != parent:
            out.append(
                Problem(
                    f"directory {ino}'s '..' is {t.inodes[ino][2]}, not {parent} which names it",
                    _sql(
                        "UPDATE inodes SET parent = ? WHERE ino = ?",
                        (parent, ino),
                        f"directory {ino}'s '..' set to {parent}",
                    ),
                )
            )
    return out


def check_reachable(conn: sqlite3.Connection, t: Tables) -> list[Problem]:
    children: dict[int, list[int]] = {}
    for parent, _, ino, _ in _live_entries(t):
        children.setdefault(parent, []).append(ino)
    seen = {ROOT_INO}
    todo = [ROOT_INO]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in seen:
                seen.add(child)
                if t.is_dir(child):
                    todo.append(child)
    return [
        Problem(f"inode {ino} cannot be reached from the root", _to_lost_found(ino, t))
        for ino, (_, nlink, _) in sorted(t.inodes.items())
        if ino not in seen and nlink > 0
    ]


def _to_lost_found(ino: int, t: Tables) -> Repair:
    def fix(conn: sqlite3.Connection) -> str:
        row = conn.execute(
            "SELECT ino FROM dirents WHERE parent = ? AND name = ?", (ROOT_INO, LOST_FOUND)
        ).fetchone()
        now = time.time_ns()
        if row is None:
            (top,) = conn.execute("SELECT MAX(ino) FROM inodes").fetchone()
            lf = top + 1
            conn.execute(
                "INSERT INTO inodes VALUES(?,?,0,0,2,0,0,?,?,?,NULL,?,NULL)",
                (lf, stat.S_IFDIR | 0o700, now, now, now, ROOT_INO),
            )
            conn.execute(
                "INSERT INTO dirents VALUES(?,?,?,?)",
                (ROOT_INO, LOST_FOUND, lf, _next_cookie(conn, ROOT_INO)),
            )
            conn.execute("INSERT OR REPLACE INTO meta VALUES('next_ino', ?)", (lf + 1,))
        else:
            (lf,) = row
        if t.is_dir(ino):  # its other names are in unreachable directories: drop them
            conn.execute("DELETE FROM dirents WHERE ino = ?", (ino,))
            conn.execute("UPDATE inodes SET parent = ? WHERE ino = ?", (lf, ino))
        conn.execute(
            "INSERT OR REPLACE INTO dirents VALUES(?,?,?,?)",
            (lf, f"#{ino}".encode(), ino, _next_cookie(conn, lf)),
        )
        return f"linked inode {ino} into /lost+found as #{ino}"

    return fix


def _next_cookie(conn: sqlite3.Connection, parent: int) -> int:
    (top,) = conn.execute("SELECT MAX(cookie) FROM dirents WHERE parent = ?", (parent,)).fetchone()
    return (top or 0) + 1


def check_cookies(conn: sqlite3.Connection, t: Tables) -> list[Problem]:
    out = []
    seen: set[tuple[int, int]] = set()
    for parent, name, _, cookie in t.dirents:
        if cookie <= 0 or (parent, cookie) in seen:
            out.append(
                Problem(
                    f"entry {name!r} in {parent} has a bad or repeated readdir cookie {cookie}",
                    _renumber(parent, name),
                )
            )
        seen.add((parent, cookie))
    return out


def _renumber(parent: int, name: bytes) -> Repair:
    def fix(conn: sqlite3.Connection) -> str:
        cookie = _next_cookie(conn, parent)
        conn.execute(
            "UPDATE dirents SET cookie = ? WHERE parent = ? AND CAST(name AS BLOB) = ?",
            (cookie, parent, name),
        )
        return f"gave the entry {name!r} in {parent} cookie {cookie}"

    return fix


def check_link_counts(conn: sqlite3.Connection, t: Tables) -> list[Problem]:
    out = []
    names: dict[int, int] = {}
    subdirs: dict[int, int] = {}
    for parent, _, ino, _ in _live_entries(t):
        names[ino] = names.get(ino, 0) + 1
        if t.is_dir(ino):
            subdirs[parent] = subdirs.get(parent, 0) + 1
    for ino, (mode, nlink, _) in sorted(t.inodes.items()):
        if nlink == 0 and ino != ROOT_INO:
            continue  # an orphan: check_orphans
        want = 2 + subdirs.get(ino, 0) if stat.S_ISDIR(mode) else names.get(ino, 0)
        if nlink != want and want > 0:
            out.append(
                Problem(
                    f"inode {ino} has link count {nlink}, should be {want}",
                    _sql(
                        "UPDATE inodes SET nlink = ? WHERE ino = ?",
                        (want, ino),
                        f"link count of inode {ino} set to {want}",
                    ),
                )
            )
    return out


def check_blocks(conn: sqlite3.Connection, t: Tables) -> list[Problem]:
    out = []
    for ino, idx, length in t.blocks:
        drop = _sql(
            "DELETE FROM blocks WHERE ino = ? AND idx = ?",
            (ino, idx),
            f"freed block {idx} of inode {ino}",
        )
        where = f"block {idx} of inode {ino}"
        if ino not in t.inodes:
            out.append(Problem(f"{where} belongs to no inode", drop))
        elif not stat.S_ISREG(t.inodes[ino][0]):
            out.append(Problem(f"{where} belongs to a file that is not a regular file", drop))
        elif idx < 0:
            out.append(Problem(f"{where} has a negative page index", drop))
        elif length is not None and length != BLOCK_SIZE:
            out.append(
                Problem(
                    f"{where} holds {length} bytes, not a whole page ({BLOCK_SIZE})",
                    _whole_page(ino, idx),
                )
            )
    return out


def _whole_page(ino: int, idx: int) -> Repair:
    def fix(conn: sqlite3.Connection) -> str:
        (data,) = conn.execute(
            "SELECT data FROM blocks WHERE ino = ? AND idx = ?", (ino, idx)
        ).fetchone()
        page = bytes(data)[:BLOCK_SIZE].ljust(BLOCK_SIZE, b"\0")
        conn.execute("UPDATE blocks SET data = ? WHERE ino = ? AND idx = ?", (page, ino, idx))
        return f"block {idx} of inode {ino} cut or padded with zeros to {BLOCK_SIZE} bytes"

    return fix


def check_xattrs(conn: sqlite3.Connection, t: Tables) -> list[Problem]:
    return [
        Problem(
            f"extended attributes of missing inode {ino}",
            _sql(
                "DELETE FROM xattrs WHERE ino = ?",
                (ino,),
                f"removed the attributes of missing inode {ino}",
            ),
        )
        for ino in sorted(t.xattr_inos - t.inodes.keys())
    ]


def check_space(conn: sqlite3.Connection, t: Tables) -> list[Problem]:
    out = []
    stored = len(t.blocks)
    capacity = t.meta.get("capacity_blocks", 0)
    if isinstance(capacity, int) and stored > capacity > 0:
        out.append(
            Problem(
                f"{stored} blocks stored, more than the capacity of {capacity}",
                _sql(
                    "INSERT OR REPLACE INTO meta VALUES('capacity_blocks', ?)",
                    (stored,),
                    f"capacity raised to {stored} blocks",
                ),
            )
        )
    if t.meta.get("allocated_blocks") != stored:
        out.append(
            Problem(
                f"space figures: {t.meta.get('allocated_blocks')} blocks recorded as allocated, "
                f"{stored} stored",
                _sql(
                    "INSERT OR REPLACE INTO meta VALUES('allocated_blocks', ?)",
                    (stored,),
                    f"allocated blocks set to {stored}",
                ),
            )
        )
    return out


CHECKS: tuple[Callable[[sqlite3.Connection, Tables], list[Problem]], ...] = (
    check_sqlite,
    check_meta,
    check_root,
    check_types,
    check_orphans,
    check_entries,
    check_cookies,
    check_directory_names,
    check_reachable,
    check_blocks,
    check_xattrs,
    check_link_counts,
    check_space,
)


def check(conn: sqlite3.Connection) -> list[Problem]:
    """Every problem of the store, each check on the tables as they are."""
    t = Tables.read(conn)
    out: list[Problem] = []
    for fn in CHECKS:
        out.extend(fn(conn, t))
    return out


def repair(conn: sqlite3.Connection, *, rounds: int = 5) -> tuple[list[str], list[Problem]]:
    """Fix what can be fixed, check by check (each sees the tables its predecessors
    left), until nothing fixable is left; (what was done, problems that remain)."""
    done: list[str] = []
    for _ in range(rounds):
        fixed_any = False
        for fn in CHECKS:
            t = Tables.read(conn)
            fixable = [p for p in fn(conn, t) if p.repair is not None]
            if not fixable:
                continue
            conn.execute("BEGIN IMMEDIATE")
            try:
                for p in fixable:
                    assert p.repair is not None
                    done.append(f"{p.message}: {p.repair(conn)}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            fixed_any = True
        if not fixed_any:
            break
    return done, check(conn)
