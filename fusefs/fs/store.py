"""Where a filesystem keeps its state: in memory only (the default), or in a store.

A *store* is one SQLite database file (standard library ``sqlite3``) holding everything
a mounted filesystem must find again: inodes, directory entries (with their readdir
cookies), extended attributes, every allocated block as a 4096-byte blob (NULL: a block
``fallocate`` gave and nothing wrote, which reads as zeros), the capacity and the count
of allocated blocks, and a format version (also SQLite's ``user_version``; the
``application_id`` marks the file as ours).

Model (KERNEL.md's page cache, with this as its disk): the page cache stays the one copy
the filesystem works on.  At mount every block is read into the cache as a clean page
(so memory holds the whole store).  Writeback (``FileData.writepage``) and every other
change to what is persistent only *note* what changed (an inode, a directory entry, a
file's xattrs, a block index, an inode dropped); :meth:`SqliteStore.commit` then writes
the noted state, as it is at that instant, in ONE transaction.  The filesystem commits:

* ``fsync``/``msync(MS_SYNC)`` (FUSE sends FSYNC for both) after the file's writeback,
  before answering;
* every flusher period (``writeback_interval``, 5 s): the batch the flusher wrote back,
  and every metadata change since the last commit;
* at unmount, after writing back every dirty page.

A commit's snapshot is taken on the serving thread without sleeping, so it sees one
consistent state; its SQL then runs in a worker thread on copies of the pages (a batch
of up to THREAD_MAX_BLOCKS blocks) or on the serving thread straight from the cache (a
bigger one), one commit at a time.  A SIGKILL at any moment leaves the state of the last
commit (SQLite's WAL makes each commit atomic; ``synchronous=FULL`` makes it durable
before ``fsync`` returns).  A page is written whole, never half.  Reservations are
never stored: after a crash the next mount counts the blocks that exist (reserved = 0),
and an inode with no name left (unlinked while open) is removed with its blocks (the
orphan list ext4 walks at mount).  A failed commit (the store's disk full: ENOSPC;
other I/O errors: EIO) rolls back and keeps everything noted for the next commit:
nothing is acknowledged that is not in the store, and the next ``fsync`` tries again.

Sizes in memory: the noted sets hold indices, not copies of pages; a file with
STORE_BATCH_PAGES dirty pages (fusefs.fs.flusher) is written back and committed in the
background, which bounds one commit.

``syncfs``: pyfuse3 (3.5) has no syncfs handler, and the kernel sends FUSE_SYNCFS only
to virtiofs connections (``fuse_sync_fs`` returns at once unless ``fc->sync_fs``), so
``sync -f`` on a mount reaches this filesystem only as the writes it flushes; what they
wrote is committed by the next flusher period (or fsync, or unmount).  (Seen with
``--debug`` on 6.18: ``sync -f FILE`` sends OPEN, FLUSH, RELEASE and nothing else.)
``fsync`` of a directory (FSYNCDIR) commits, so a rename is made durable the usual way.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import sqlite3
import stat
import struct
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

import trio

from fusefs import mountinfo
from fusefs.constants import BLOCK_SIZE, FS_TYPE
from fusefs.fs.directory import Directory
from fusefs.fs.errors import FsError
from fusefs.fs.inode import ROOT_INO, Inode
from fusefs.fs.space import BlockPool
from fusefs.vm.policy import parse_policy

if TYPE_CHECKING:
    from fusefs.fs.core import Filesystem

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
APPLICATION_ID = 0x6D6B7766  # "mkwf"
SQLITE_MAGIC = b"SQLite format 3\x00"
DB_PAGE_SIZE = 65536  # 15 blocks per database page: sequential writes go fastest
CACHE_KIB = 64 << 10  # SQLite's page cache, at most
THREAD_MAX_BLOCKS = 2048  # a commit of more blocks runs on the serving thread, uncopied
WAL_CHECKPOINT_BYTES = 16 << 20  # the flusher folds a WAL this big into the database
MKWRITEFS_FSTYPE = FS_TYPE

SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE inodes(
    ino INTEGER PRIMARY KEY, mode INTEGER NOT NULL, uid INTEGER NOT NULL,
    gid INTEGER NOT NULL, nlink INTEGER NOT NULL, rdev INTEGER NOT NULL,
    size INTEGER NOT NULL, atime_ns INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL, target BLOB, parent INTEGER, policy TEXT);
CREATE TABLE dirents(
    parent INTEGER NOT NULL, name BLOB NOT NULL, ino INTEGER NOT NULL,
    cookie INTEGER NOT NULL, PRIMARY KEY(parent, name)) WITHOUT ROWID;
CREATE TABLE xattrs(
    ino INTEGER NOT NULL, name BLOB NOT NULL, value BLOB NOT NULL,
    PRIMARY KEY(ino, name)) WITHOUT ROWID;
CREATE TABLE blocks(
    ino INTEGER NOT NULL, idx INTEGER NOT NULL, data BLOB, PRIMARY KEY(ino, idx));
"""

# The Inode attributes a store keeps (a change to one notes the inode).
_PERSISTED = frozenset(
    ("mode", "uid", "gid", "rdev", "nlink", "atime_ns", "mtime_ns", "ctime_ns", "target", "policy")
)


class StoreError(Exception):
    """A store that cannot be used (not a store, newer, in use, read-only...): one line."""


# -- the default: memory only --------------------------------------------------------


class Store:
    """Memory only (tmpfs-like): nothing outlives the mount.  The interface of a store."""

    persistent = False
    path: str | None = None
    capacity_blocks = 0

    def attach(self, fs: Filesystem) -> None:
        """Load the filesystem's state and start noting its changes."""

    def commit(self) -> None:
        """Make everything noted so far persistent, atomically (FsError on failure)."""

    async def commit_async(self, *, checkpoint: bool = False) -> None:
        """:meth:`commit` while serving (the SQLite work off the serving thread)."""

    def close(self) -> None:
        """Let go of the store (after a last commit)."""


MEMORY = Store()


# -- checking a store before use -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Header:
    format_version: int
    application_id: int


def read_header(path: str) -> Header:
    """Read the SQLite header of ``path`` without opening it as a database; StoreError
    if it is not a mkwritefs store of a format this program reads."""
    try:
        with open(path, "rb") as f:
            head = f.read(100)
    except FileNotFoundError:
        raise StoreError(f"{path}: no such store (create one with mkwritefs mkfs)") from None
    except IsADirectoryError:
        raise StoreError(f"{path} is a directory, not a store") from None
    except OSError as exc:
        raise StoreError(f"{path}: cannot read: {exc.strerror}") from None
    if len(head) < 100 or not head.startswith(SQLITE_MAGIC):
        raise StoreError(f"{path} is not a mkwritefs store (not an SQLite database)")
    (version,) = struct.unpack(">I", head[60:64])
    (app,) = struct.unpack(">I", head[68:72])
    if app != APPLICATION_ID:
        raise StoreError(f"{path} is not a mkwritefs store (an SQLite database of another kind)")
    if version > FORMAT_VERSION:
        raise StoreError(
            f"{path} has store format {version}, newer than this mkwritefs reads "
            f"({FORMAT_VERSION}): use a newer mkwritefs"
        )
    if version < 1:
        raise StoreError(f"{path} is not a mkwritefs store (no format version)")
    return Header(version, app)


def _containing_mount(path: str) -> mountinfo.MountEntry | None:
    """The mount that holds ``path`` (a real path), read from mountinfo (no stat on it)."""
    best: mountinfo.MountEntry | None = None
    with open(mountinfo.MOUNTINFO) as f:
        for line in f:
            fields = line.split()
            point = mountinfo._unescape(fields[4])
            inside = path == point or path.startswith(point.rstrip("/") + "/")
            if inside and (best is None or len(point) >= len(best.mountpoint)):
                sep = fields.index("-")
                best = mountinfo.MountEntry(point, fields[sep + 1], fields[2])
    return best


def check_location(path: str) -> str:
    """The store's real path; StoreError if it would live on a mkwritefs mount (the
    server would wait on itself) or cannot be written (read-only file or filesystem)."""
    real = os.path.realpath(path)
    entry = _containing_mount(real)
    if entry is not None and entry.fstype == MKWRITEFS_FSTYPE:
        raise StoreError(
            f"{path} is on the mkwritefs mount {entry.mountpoint}: a store must live on "
            "another filesystem (its server would wait on itself)"
        )
    return real


def check_writable(path: str) -> None:
    """StoreError for a store that cannot be written: read-only file, directory (SQLite
    makes its -wal and -shm files beside it) or filesystem."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise StoreError(f"{path} is not a regular file")
    if not st.st_mode & 0o222 or not os.access(path, os.W_OK):
        raise StoreError(f"{path} is read-only: a mounted store must be writable")
    folder = os.path.dirname(path) or "."
    if not os.access(folder, os.W_OK):
        raise StoreError(f"{folder} is not writable: SQLite keeps its log beside the store")
    if os.statvfs(path).f_flag & os.ST_RDONLY:
        raise StoreError(f"{path} is on a read-only filesystem")


def lock_store(path: str) -> int:
    """An fd of ``path`` holding an exclusive flock (SQLite's own locks are fcntl locks,
    which flock does not touch); StoreError when another mount or fsck holds it."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreError(f"{path} is in use by another mount (or fsck)") from None
    return fd


def check_store(path: str, *, writable: bool = True) -> str:
    """Everything that can be checked without changing the file; its real path."""
    real = check_location(path)
    read_header(real)
    if writable:
        check_writable(real)
    fd = lock_store(real)
    os.close(fd)
    return real


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA wal_autocheckpoint=0")  # checkpoints at quiet moments only
    # A transaction's pages stay in memory until COMMIT writes them to the WAL once
    # (the default 2 MiB cache spills a big batch half-way: measured 30 % slower).
    conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
    conn.execute("PRAGMA foreign_keys=OFF")
    return conn


def mkfs(path: str, capacity_blocks: int, *, uid: int, gid: int, now_ns: int) -> None:
    """Create a new, empty store at ``path`` (which must not exist): an empty root."""
    real = check_location(path)
    if os.path.lexists(real):
        raise StoreError(f"{path} already exists: mkfs makes a new store only")
    folder = os.path.dirname(real)
    if not os.path.isdir(folder):
        raise StoreError(f"{os.path.dirname(path) or '.'} is not an existing directory")
    if not os.access(folder, os.W_OK):
        raise StoreError(f"{folder} is not writable")
    try:
        conn = sqlite3.connect(real, isolation_level=None)
        try:
            conn.execute(f"PRAGMA page_size={DB_PAGE_SIZE}")
            conn.execute("PRAGMA journal_mode=WAL")  # recorded in the header for good
            conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version={FORMAT_VERSION}")
            conn.executescript(SCHEMA)
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO meta VALUES(?, ?)",
                [
                    ("format_version", FORMAT_VERSION),
                    ("capacity_blocks", capacity_blocks),
                    ("allocated_blocks", 0),
                    ("next_ino", ROOT_INO + 1),
                ],
            )
            conn.execute(
                "INSERT INTO inodes VALUES(?,?,?,?,2,0,0,?,?,?,NULL,?,NULL)",
                (ROOT_INO, stat.S_IFDIR | 0o755, uid, gid, now_ns, now_ns, now_ns, ROOT_INO),
            )
            conn.execute("COMMIT")
        finally:
            conn.close()
    except sqlite3.Error as exc:
        for suffix in ("", "-wal", "-shm", "-journal"):
            try:
                os.unlink(real + suffix)
            except OSError:
                pass
        raise StoreError(f"cannot create {path}: {exc}") from None


def _failure(exc: sqlite3.Error) -> FsError:
    """What a failed commit tells the caller: ENOSPC for a full disk, else EIO."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code == sqlite3.SQLITE_FULL or "full" in str(exc):
        return FsError(errno.ENOSPC, f"store: {exc}")
    return FsError(errno.EIO, f"store: {exc}")


# -- the SQLite store --------------------------------------------------------------------


def _tracked_inode_class(store: SqliteStore) -> type[Inode]:
    """An Inode whose persistent attributes note the inode when set (in the store's
    current note sets, which a commit's snapshot swaps: class attributes)."""
    persisted = _PERSISTED
    setter = object.__setattr__

    class StoredInode(Inode):
        __slots__ = ()
        note: set[int] = store.dirty_inodes
        xnote: set[int] = store.dirty_xattrs

        def __setattr__(self, name: str, value: object) -> None:
            setter(self, name, value)
            if name in persisted:
                StoredInode.note.add(self.ino)

        def xattrs_changed(self) -> None:
            StoredInode.xnote.add(self.ino)

    return StoredInode


@dataclass(eq=False)
class _Batch:
    """One commit: the notes it takes, and the rows they mean at the snapshot."""

    inodes: set[int]
    xattrs: set[int]
    dirents: set[tuple[int, bytes]]
    blocks: dict[int, set[int]]
    dropped: set[int]
    meta_dirty: bool
    inode_rows: list[tuple[object, ...]] = field(default_factory=list)
    dirent_put: list[tuple[int, bytes, int, int]] = field(default_factory=list)
    dirent_del: list[tuple[int, bytes]] = field(default_factory=list)
    xattr_inos: list[tuple[int]] = field(default_factory=list)
    xattr_put: list[tuple[int, bytes, bytes]] = field(default_factory=list)
    block_put: list[tuple[int, int, bytes | None]] = field(default_factory=list)
    block_del: list[tuple[int, int]] = field(default_factory=list)
    new_rows: list[tuple[int, int, bool]] = field(default_factory=list)
    allocated: int = 0
    meta: list[tuple[str, int]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class LoadReport:
    inodes: int
    blocks: int
    orphans: int  # unlinked-open inodes of the last session, removed at this mount
    orphan_blocks: int


class SqliteStore(Store):
    """A store in one SQLite database file, locked (flock) while this object lives."""

    persistent = True

    def __init__(self, path: str) -> None:
        real = check_location(path)
        read_header(real)
        check_writable(real)
        self.path = real
        self._lock_fd = lock_store(real)
        try:
            self.conn = _connect(real)
            meta = dict(self.conn.execute("SELECT key, value FROM meta"))
            self.capacity_blocks = int(meta["capacity_blocks"])
            self.next_ino = int(meta.get("next_ino", ROOT_INO + 1))
        except (sqlite3.Error, KeyError, ValueError) as exc:
            self._release()
            raise StoreError(f"{path} is a damaged store ({exc}): run mkwritefs fsck") from None
        self.fs: Filesystem | None = None
        self.dirty_inodes: set[int] = set()
        self.dirty_xattrs: set[int] = set()
        self.dirty_dirents: set[tuple[int, bytes]] = set()
        self.dirty_blocks: dict[int, set[int]] = {}
        self.dropped: set[int] = set()
        self.meta_dirty = False
        self.rows: dict[int, set[int]] = {}  # the block rows the store holds, per inode
        self.row_count = 0
        self.inode_class = _tracked_inode_class(self)
        self._commit_lock = trio.Lock()
        self.commits = 0
        self.load_report: LoadReport | None = None

    def _release(self) -> None:
        conn = getattr(self, "conn", None)
        if conn is not None:
            conn.close()
            self.conn = None  # type: ignore[assignment]
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    # -- noting changes (hooks the core installs) ---------------------------------------
    def block_changed(self, ino: int, index: int) -> None:
        got = self.dirty_blocks.get(ino)
        if got is None:
            self.dirty_blocks[ino] = {index}
        else:
            got.add(index)

    def dirent_changed(self, parent: int, name: bytes) -> None:
        self.dirty_dirents.add((parent, name))

    def inode_dropped(self, ino: int) -> None:
        self.dropped.add(ino)

    def settings_changed(self) -> None:
        self.meta_dirty = True

    def hook_directory(self, ino: int, d: Directory) -> None:
        d.on_change = partial(self.dirent_changed, ino)

    def hook_file(self, ino: int, data: object) -> None:
        data.on_block = partial(self.block_changed, ino)  # type: ignore[attr-defined]

    @property
    def pending(self) -> bool:
        return bool(
            self.dirty_inodes
            or self.dirty_xattrs
            or self.dirty_dirents
            or self.dirty_blocks
            or self.dropped
            or self.meta_dirty
        )

    # -- loading -------------------------------------------------------------------------
    def attach(self, fs: Filesystem) -> None:
        """Fill the freshly made ``fs`` (an empty root) from the store; remove orphans."""
        self.fs = fs
        conn = self.conn
        orphans = [
            ino
            for (ino,) in conn.execute(
                "SELECT ino FROM inodes WHERE nlink = 0 AND ino != ?", (ROOT_INO,)
            )
        ]
        orphan_blocks = 0
        if orphans:
            marks = ",".join("?" * len(orphans))
            (orphan_blocks,) = conn.execute(
                f"SELECT COUNT(*) FROM blocks WHERE ino IN ({marks})", orphans
            ).fetchone()
            self.dropped.update(orphans)
        skip = set(orphans)
        make = self.inode_class
        inodes: dict[int, Inode] = {}
        for row in conn.execute("SELECT * FROM inodes ORDER BY ino"):
            (
                ino,
                mode,
                uid,
                gid,
                nlink,
                rdev,
                size,
                atime,
                mtime,
                ctime,
                target,
                parent,
                policy,
            ) = row
            if ino in skip:
                continue
            inode = make(ino, mode, uid, gid, ctime)
            inode.nlink = nlink
            inode.rdev = rdev
            inode.atime_ns, inode.mtime_ns, inode.ctime_ns = atime, mtime, ctime
            inode.target = bytes(target or b"")
            if policy:
                inode.policy = parse_policy(policy)
            if stat.S_ISDIR(mode):
                inode.dir = Directory(parent=parent if parent is not None else ROOT_INO)
            elif stat.S_ISREG(mode):
                fs._init_file_data(inode)
                assert inode.data is not None
                inode.data.size = size
            inodes[ino] = inode
        if ROOT_INO not in inodes or inodes[ROOT_INO].dir is None:
            raise StoreError(f"{self.path} has no root directory: run mkwritefs fsck")
        for parent, name, ino, cookie in conn.execute(
            "SELECT parent, name, ino, cookie FROM dirents ORDER BY parent, cookie"
        ):
            d = inodes[parent].dir if parent in inodes else None
            if d is None or ino not in inodes:
                raise StoreError(f"{self.path}: entry {bytes(name)!r} is broken: run fsck")
            d.load(bytes(name), ino, cookie)
        for ino, name, value in conn.execute("SELECT ino, name, value FROM xattrs"):
            if ino in inodes:
                inodes[ino].xattrs[bytes(name)] = bytes(value)
        blocks = 0
        for ino, idx, data in conn.execute("SELECT ino, idx, data FROM blocks"):
            inode = inodes.get(ino)
            if inode is None or inode.data is None:
                continue  # an orphan's (dropped below) or damage fsck reports
            fd = inode.data
            fd.allocated.add(idx)
            self.rows.setdefault(ino, set()).add(idx)
            blocks += 1
            if data is not None:
                blob = bytes(data)
                if len(blob) != BLOCK_SIZE:
                    blob = blob[:BLOCK_SIZE].ljust(BLOCK_SIZE, b"\0")
                fd.mapping.add_page(idx, blob)
        for inode in inodes.values():
            if inode.data is not None:
                inode.data._zero_beyond_eof()
            if inode.dir is not None:
                self.hook_directory(inode.ino, inode.dir)
        root = inodes[ROOT_INO]
        root.lookups = 1
        fs.inodes = inodes
        fs.space = BlockPool(self.capacity_blocks)
        for inode in inodes.values():
            if inode.data is not None:
                inode.data.pool = fs.space
        if blocks and not fs.space.allocate(blocks):
            raise StoreError(
                f"{self.path} holds {blocks} blocks, more than its capacity "
                f"{self.capacity_blocks}: run mkwritefs fsck"
            )
        fs._next_ino = max(self.next_ino, max(inodes) + 1)
        # Loading set attributes through the tracking class: nothing is new.
        self.dirty_inodes.clear()
        self.dirty_xattrs.clear()
        self.row_count = blocks  # the orphans' rows go in the first commit
        self.load_report = LoadReport(len(inodes), blocks, len(orphans), orphan_blocks)
        if orphans:
            log.info(
                "store %s: removed %d orphaned inode(s) (%d blocks)",
                self.path,
                len(orphans),
                orphan_blocks,
            )
            self.commit()

    # -- committing ----------------------------------------------------------------------
    def commit(self) -> None:
        """Write everything noted, as the filesystem holds it now, in one transaction,
        on this thread (at mount and unmount; while serving, :meth:`commit_async`).

        Raises FsError (ENOSPC: the store's disk is full; EIO otherwise) after rolling
        back; what was noted stays noted, for the next commit."""
        batch = self._snapshot()
        if batch is None:
            return
        try:
            self._apply(batch)
        except FsError:
            self._restore(batch)
            raise
        self._finish(batch)

    async def commit_async(self, *, checkpoint: bool = False) -> None:
        """:meth:`commit`, with the SQLite work in a worker thread: the snapshot is taken
        here, at one instant (pages copied), so the serving loop answers other requests
        meanwhile; a batch of more than THREAD_MAX_BLOCKS blocks is written from the
        page cache on this thread instead (copying it would cost a good part of
        writing it).  Commits run one at a time, in the order they were asked for.  With
        ``checkpoint`` (the flusher's) a WAL grown past WAL_CHECKPOINT_BYTES is folded
        into the database after the commit, in the same thread."""
        async with self._commit_lock:
            batch = self._snapshot()
            if batch is None:
                return
            try:
                if len(batch.block_put) > THREAD_MAX_BLOCKS:
                    # Copying it would cost a good part of writing it: write it from
                    # the page cache now, on this thread (nothing changes meanwhile).
                    self._apply(batch, checkpoint)
                else:
                    batch.block_put = [
                        (i, x, None if d is None else bytes(d)) for i, x, d in batch.block_put
                    ]  # stable copies
                    await trio.to_thread.run_sync(self._apply, batch, checkpoint)
            except FsError:
                self._restore(batch)
                raise
            self._finish(batch)

    def _snapshot(self) -> _Batch | None:
        """Take what is noted (clearing the notes) and the rows it means, now."""
        if self.conn is None or not self.pending:
            return None
        fs = self.fs
        assert fs is not None
        b = _Batch(
            self.dirty_inodes,
            self.dirty_xattrs,
            self.dirty_dirents,
            self.dirty_blocks,
            self.dropped,
            self.meta_dirty,
        )
        self.dirty_inodes = set()
        self.dirty_xattrs = set()
        self.dirty_dirents = set()
        self.dirty_blocks = {}
        self.dropped = set()
        self.meta_dirty = False
        self.inode_class.note = self.dirty_inodes  # type: ignore[attr-defined]
        self.inode_class.xnote = self.dirty_xattrs  # type: ignore[attr-defined]
        inodes = fs.inodes
        dropped = b.dropped
        for ino in b.inodes | b.xattrs | b.blocks.keys():
            inode = inodes.get(ino)
            if inode is None or ino in dropped:
                continue
            d = inode.dir
            b.inode_rows.append(
                (
                    ino,
                    inode.mode,
                    inode.uid,
                    inode.gid,
                    inode.nlink,
                    inode.rdev,
                    inode.data.size if inode.data is not None else 0,
                    inode.atime_ns,
                    inode.mtime_ns,
                    inode.ctime_ns,
                    inode.target or None,
                    d.parent if d is not None else None,
                    inode.policy.value if inode.policy is not None else None,
                )
            )
        for parent, name in b.dirents:
            pinode = inodes.get(parent)
            entry = None
            if pinode is not None and pinode.dir is not None and parent not in dropped:
                entry = pinode.dir.entries.get(name)
            if entry is None:
                b.dirent_del.append((parent, name))
            else:
                b.dirent_put.append((parent, name, entry[0], entry[1]))
        for ino in b.xattrs:
            inode = inodes.get(ino)
            b.xattr_inos.append((ino,))
            if inode is not None and ino not in dropped:
                b.xattr_put.extend((ino, n, v) for n, v in inode.xattrs.items())
        rows = self.rows
        for ino, indices in b.blocks.items():
            inode = inodes.get(ino)
            if inode is None or inode.data is None or ino in dropped:
                continue
            data = inode.data
            allocated = data.allocated
            pages = data.mapping.pages
            have = rows.get(ino, ())
            for idx in indices:
                if idx in allocated:
                    page = pages.get(idx)
                    b.block_put.append((ino, idx, page.data if page is not None else None))
                    if idx not in have:
                        b.new_rows.append((ino, idx, True))
                elif idx in have:
                    b.block_del.append((ino, idx))
                    b.new_rows.append((ino, idx, False))
        dropped_rows = sum(len(rows.get(ino, ())) for ino in dropped)
        b.allocated = (
            self.row_count - dropped_rows + sum(1 if add else -1 for _, _, add in b.new_rows)
        )
        b.meta = [
            ("allocated_blocks", b.allocated),
            ("next_ino", fs._next_ino),
            ("capacity_blocks", fs.space.capacity),
        ]
        return b

    def _apply(self, b: _Batch, checkpoint: bool = False) -> None:
        """The SQL of one batch, in one transaction (any thread; one commit at a time)."""
        conn = self.conn
        gone = [(ino,) for ino in b.dropped]
        try:
            conn.execute("BEGIN IMMEDIATE")
            if gone:
                conn.executemany("DELETE FROM inodes WHERE ino = ?", gone)
                conn.executemany("DELETE FROM blocks WHERE ino = ?", gone)
                conn.executemany("DELETE FROM xattrs WHERE ino = ?", gone)
                conn.executemany("DELETE FROM dirents WHERE parent = ?", gone)
            if b.inode_rows:
                conn.executemany(
                    "INSERT OR REPLACE INTO inodes VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)", b.inode_rows
                )
            if b.dirent_del:
                conn.executemany("DELETE FROM dirents WHERE parent = ? AND name = ?", b.dirent_del)
            if b.dirent_put:
                conn.executemany("INSERT OR REPLACE INTO dirents VALUES(?,?,?,?)", b.dirent_put)
            if b.xattr_inos:
                conn.executemany("DELETE FROM xattrs WHERE ino = ?", b.xattr_inos)
                conn.executemany("INSERT INTO xattrs VALUES(?,?,?)", b.xattr_put)
            if b.block_del:
                conn.executemany("DELETE FROM blocks WHERE ino = ? AND idx = ?", b.block_del)
            if b.block_put:
                conn.executemany("INSERT OR REPLACE INTO blocks VALUES(?,?,?)", b.block_put)
            conn.executemany("INSERT OR REPLACE INTO meta VALUES(?, ?)", b.meta)
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise _failure(exc) from None
        if checkpoint:
            self._checkpoint()

    def _finish(self, b: _Batch) -> None:
        rows = self.rows
        for ino in b.dropped:
            rows.pop(ino, None)
        for ino, idx, add in b.new_rows:
            if add:
                rows.setdefault(ino, set()).add(idx)
            else:
                rows[ino].discard(idx)
        self.row_count = b.allocated
        self.capacity_blocks = b.meta[2][1]
        self.commits += 1

    def _restore(self, b: _Batch) -> None:
        """A failed batch: note again everything it held (the next commit retries)."""
        self.dirty_inodes |= b.inodes
        self.dirty_xattrs |= b.xattrs
        self.dirty_dirents |= b.dirents
        for ino, indices in b.blocks.items():
            self.dirty_blocks.setdefault(ino, set()).update(indices)
        self.dropped |= b.dropped
        self.meta_dirty = self.meta_dirty or b.meta_dirty

    def _checkpoint(self) -> None:
        """Fold a big WAL back into the database (a PASSIVE checkpoint never waits)."""
        try:
            if os.path.getsize(self.path + "-wal") >= WAL_CHECKPOINT_BYTES:
                self.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except (OSError, sqlite3.Error) as exc:
            log.warning("store %s: checkpoint failed: %s", self.path, exc)

    def close(self) -> None:
        """Checkpoint (the WAL folded in and removed) and release the lock; the last
        commit is the caller's (``Filesystem.close``)."""
        if self.conn is None:
            return
        try:
            self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as exc:
            log.warning("store %s: final checkpoint failed: %s", self.path, exc)
        self._release()
