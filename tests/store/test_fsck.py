"""`mkwritefs fsck STORE [--repair]` finds each kind of damage, lists it, and repairs it.

The damage is made with SQL on an unmounted store that a real mount filled."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from tests.mount.conftest import stop_server

from .conftest import fsck

pytestmark = pytest.mark.mount


@pytest.fixture
def filled(new_store, mount_store) -> Path:
    store = new_store()
    server = mount_store(store)
    root = Path(server.mountpoint)
    (root / "d").mkdir()
    (root / "d" / "f").write_bytes(b"f" * 9000)  # 3 blocks
    os.link(root / "d" / "f", root / "g")
    (root / "h").write_bytes(b"h" * 100)
    stop_server(server)
    assert fsck(store) == (0, f"{store}: clean\n")
    return store


def ino_of(conn: sqlite3.Connection, name: bytes) -> int:
    return conn.execute("SELECT ino FROM dirents WHERE name = ?", (name,)).fetchone()[0]


def test_fsck_lists_and_repairs_damage(filled: Path, mount_store) -> None:
    conn = sqlite3.connect(filled, isolation_level=None)
    f, h, d = ino_of(conn, b"f"), ino_of(conn, b"h"), ino_of(conn, b"d")
    conn.execute("UPDATE inodes SET nlink = 7 WHERE ino = ?", (f,))  # link count
    conn.execute("INSERT INTO blocks VALUES(999, 0, zeroblob(4096))")  # nobody's block
    conn.execute("INSERT INTO blocks VALUES(?, 5, zeroblob(4096))", (d,))  # a directory's
    conn.execute("UPDATE blocks SET data = zeroblob(100) WHERE ino = ? AND idx = 1", (f,))
    conn.execute(  # an orphan: an inode unlinked while open, with a block
        "INSERT INTO inodes VALUES(500, ?, 0, 0, 0, 0, 4096, 1, 1, 1, NULL, NULL, NULL)",
        (stat.S_IFREG | 0o644,),
    )
    conn.execute("INSERT INTO blocks VALUES(500, 0, zeroblob(4096))")
    conn.execute("INSERT INTO dirents VALUES(1, 'ghost', 777, 900)")  # names nothing
    conn.execute("DELETE FROM dirents WHERE name = ?", (b"h",))  # h unreachable
    conn.execute("INSERT INTO xattrs VALUES(888, 'user.x', 'y')")
    conn.execute("UPDATE inodes SET parent = 1234 WHERE ino = ?", (d,))  # wrong '..'
    conn.execute("UPDATE meta SET value = 3 WHERE key = 'allocated_blocks'")
    conn.close()

    code, out = fsck(filled)
    assert code == 1, out
    for expected in (
        f"inode {f} has link count 7, should be 2",
        "block 0 of inode 999 belongs to no inode",
        f"block 5 of inode {d} belongs to a file that is not a regular file",
        f"block 1 of inode {f} holds 100 bytes, not a whole page (4096)",
        "orphaned inode 500 (unlinked while open), 1 block(s)",
        "entry b'ghost' in 1 names missing inode 777",
        f"inode {h} cannot be reached from the root",
        "extended attributes of missing inode 888",
        f"directory {d}'s '..' is 1234, not 1 which names it",
        "space figures: 3 blocks recorded as allocated",
    ):
        assert expected in out, out
    assert "(--repair fixes it)" in out

    code, out = fsck(filled, "--repair")
    assert code == 0, out
    assert "fixed:" in out
    assert out.strip().endswith("clean")
    assert "linked inode" in out
    assert "into /lost+found" in out
    assert fsck(filled) == (0, f"{filled}: clean\n")

    root = Path(mount_store(filled).mountpoint)
    assert (root / "g").read_bytes()[:4096] == b"f" * 4096
    assert os.stat(root / "g").st_nlink == 2
    assert (root / "lost+found" / f"#{h}").read_bytes() == b"h" * 100
    assert sorted(os.listdir(root)) == ["d", "g", "lost+found"]
