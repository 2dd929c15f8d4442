"""Unmount and mount again: a store keeps everything a user can see.

Contents (holes and preallocated blocks included), modes, owners, times, extended
attributes, hard links, symlinks, special files, directory order, and the space figures;
and fsck finds the store clean in between.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.mount.conftest import stop_server
from tests.mount.support import FALLOC_FL_KEEP_SIZE, fallocate, wait_until

from .conftest import fsck

pytestmark = pytest.mark.mount

STAT_FIELDS = (
    "st_mode",
    "st_uid",
    "st_gid",
    "st_nlink",
    "st_size",
    "st_blocks",
    "st_mtime_ns",
    "st_ctime_ns",
    "st_atime_ns",
    "st_rdev",
)


def populate(root: Path) -> None:
    (root / "dir" / "sub").mkdir(parents=True)
    (root / "empty").write_bytes(b"")
    (root / "dir" / "text").write_bytes(b"hello, store\n")
    data = bytes(range(256)) * 4096  # 1 MiB
    (root / "dir" / "sub" / "big").write_bytes(data)
    with open(root / "sparse", "wb") as f:  # a hole, then data, then a hole, then data
        f.write(b"head")
        f.seek(5 * 4096 + 100)
        f.write(b"middle")
        f.seek(20 * 4096)
        f.write(b"tail")
    with open(root / "prealloc", "wb") as f:  # blocks past EOF, never written
        f.write(b"x" * 5000)
        fallocate(f.fileno(), FALLOC_FL_KEEP_SIZE, 0, 8 * 4096)
    os.chmod(root / "dir" / "text", 0o4750)
    os.chown(root / "dir" / "text", 1234, 5678)
    os.chown(root / "dir" / "sub", 42, 43)
    os.chmod(root / "dir" / "sub", 0o2775)
    os.link(root / "dir" / "text", root / "hardlink")
    os.symlink("dir/sub/big", root / "symlink")
    os.symlink("/nowhere/at/all", root / "dangling")
    os.mkfifo(root / "fifo", 0o600)
    os.setxattr(root / "dir" / "text", "user.colour", b"blue")
    os.setxattr(root / "dir", "user.empty", b"")
    os.setxattr(root / "sparse", "user.binary", bytes(range(256)) * 10)
    os.setxattr(root / "dir" / "text", "trusted.secret", b"root only")
    for i in range(40):  # a directory whose readdir order must survive
        (root / "dir" / f"n{(i * 7) % 40:02d}").write_bytes(str(i).encode())
    for i in range(0, 40, 3):
        os.unlink(root / "dir" / f"n{i:02d}")
    os.utime(root / "empty", ns=(1_000_000_123, 2_000_000_456))
    os.utime(root / "symlink", ns=(3_000_000_000, 4_000_000_000), follow_symlinks=False)


def snapshot(root: Path) -> dict[str, object]:
    """Everything a user sees: read contents first (reads move atime), then stat."""
    contents: dict[str, object] = {}
    paths = sorted(p for p in root.rglob("*"))
    for p in paths:
        rel = str(p.relative_to(root))
        mode = os.lstat(p).st_mode
        if stat.S_ISREG(mode):
            contents[rel] = p.read_bytes()
        elif stat.S_ISLNK(mode):
            contents[rel] = os.readlink(p)
        elif stat.S_ISDIR(mode):
            contents[rel] = os.listdir(p)  # in readdir order
        if not stat.S_ISLNK(mode) and not stat.S_ISFIFO(mode):
            contents[rel + " xattrs"] = {n: os.getxattr(p, n) for n in sorted(os.listxattr(p))}
    contents["/ listing"] = os.listdir(root)
    for p in [root, *paths]:
        st = os.lstat(p)
        contents[f"{p.relative_to(root)} stat"] = {f: getattr(st, f) for f in STAT_FIELDS}
    vfs = os.statvfs(root)
    contents["statvfs"] = (vfs.f_blocks, vfs.f_bfree, vfs.f_files - vfs.f_ffree)
    return contents


def test_remount_keeps_everything(new_store, mount_store) -> None:
    store = new_store()
    server = mount_store(store)
    root = Path(server.mountpoint)
    populate(root)
    before = snapshot(root)
    assert before["sparse"][:4] == b"head"  # the fixture wrote what it meant to
    stop_server(server)
    assert fsck(store) == (0, f"{store}: clean\n")

    after = snapshot(Path(mount_store(store).mountpoint))
    assert after.keys() == before.keys()
    for key in before:
        assert after[key] == before[key], key


def test_remount_after_changes_and_deletes(new_store, mount_store) -> None:
    """What was removed, truncated, renamed or punched stays so; its space comes back."""
    store = new_store()
    server = mount_store(store)
    root = Path(server.mountpoint)
    free0 = os.statvfs(root).f_bfree
    (root / "a").write_bytes(b"a" * 100_000)
    (root / "b").write_bytes(b"b" * 100_000)
    (root / "d").mkdir()
    (root / "d" / "c").write_bytes(b"c" * 10_000)
    os.sync()
    os.unlink(root / "a")
    os.truncate(root / "b", 5000)
    os.rename(root / "d", root / "e")
    os.truncate(root / "e" / "c", 30_000)  # grows: a hole, zeros past the old end
    free1 = os.statvfs(root).f_bfree
    stop_server(server)
    assert fsck(store)[0] == 0

    root = Path(mount_store(store).mountpoint)
    assert sorted(os.listdir(root)) == ["b", "e"]
    assert (root / "b").read_bytes() == b"b" * 5000
    assert (root / "e" / "c").read_bytes() == b"c" * 10_000 + bytes(20_000)
    assert os.statvfs(root).f_bfree == free1
    os.unlink(root / "b")
    os.unlink(root / "e" / "c")
    os.rmdir(root / "e")
    # the blocks come back when the kernel forgets the unlinked inodes (FORGET)
    wait_until(lambda: os.statvfs(root).f_bfree == free0, "all blocks free again")
