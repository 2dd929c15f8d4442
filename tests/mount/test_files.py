"""Files, directories, links, rename, attributes and xattrs through a real mount.

Every call here is an ordinary system call on the mount, answered by the kernel's FUSE
driver and our server in another process: what a program using mkwritefs relies on.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import pyfuse3
import pytest

from .support import (
    BLOCK,
    FALLOC_FL_KEEP_SIZE,
    FALLOC_FL_PUNCH_HOLE,
    FALLOC_FL_ZERO_RANGE,
    RENAME_EXCHANGE,
    RENAME_NOREPLACE,
    fallocate,
    raises_errno,
    renameat2,
    wait_until,
)

pytestmark = pytest.mark.mount


def test_write_read_and_append(workdir: Path) -> None:
    f = workdir / "f"
    f.write_bytes(b"hello ")
    with f.open("ab") as out:
        out.write(b"world")
    assert f.read_bytes() == b"hello world"
    assert f.stat().st_size == 11
    assert stat.S_ISREG(f.stat().st_mode)


def test_create_exclusive_and_o_trunc(workdir: Path) -> None:
    f = workdir / "f"
    fd = os.open(f, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o640)
    os.write(fd, b"x" * 10000)
    os.close(fd)
    assert stat.S_IMODE(f.stat().st_mode) == 0o640 & ~_umask()
    with pytest.raises(FileExistsError):
        os.open(f, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    fd = os.open(f, os.O_WRONLY | os.O_TRUNC)
    os.close(fd)
    assert f.stat().st_size == 0
    assert f.read_bytes() == b""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_directories(workdir: Path) -> None:
    d = workdir / "d"
    d.mkdir(mode=0o750)
    assert stat.S_ISDIR(d.stat().st_mode)
    (d / "a").write_bytes(b"1")
    (d / "sub").mkdir()
    assert sorted(os.listdir(d)) == ["a", "sub"]
    assert d.stat().st_nlink == 3
    with raises_errno(errno.ENOTEMPTY):
        d.rmdir()
    with pytest.raises(FileExistsError):
        d.mkdir()
    with pytest.raises(NotADirectoryError):
        os.listdir(d / "a")
    (d / "a").unlink()
    (d / "sub").rmdir()
    d.rmdir()
    assert not d.exists()
    with pytest.raises(FileNotFoundError):
        (workdir / "missing").stat()


def test_symlinks(workdir: Path) -> None:
    (workdir / "target").write_bytes(b"data")
    link = workdir / "link"
    link.symlink_to("target")
    assert os.readlink(link) == "target"
    assert stat.S_ISLNK(link.lstat().st_mode)
    assert link.lstat().st_size == len("target")
    assert link.read_bytes() == b"data"
    dangling = workdir / "dangling"
    dangling.symlink_to("nowhere/" * 100)
    assert os.readlink(dangling) == "nowhere/" * 100
    assert not dangling.exists()


def test_hard_links(workdir: Path) -> None:
    a = workdir / "a"
    a.write_bytes(b"shared")
    b = workdir / "b"
    os.link(a, b)
    assert a.stat().st_ino == b.stat().st_ino
    assert a.stat().st_nlink == 2
    b.write_bytes(b"changed")
    assert a.read_bytes() == b"changed"
    a.unlink()
    assert b.stat().st_nlink == 1
    assert b.read_bytes() == b"changed"
    (workdir / "d").mkdir()
    with pytest.raises(PermissionError):  # EPERM: no hard links to directories
        os.link(workdir / "d", workdir / "d2")


def test_rename(workdir: Path) -> None:
    (workdir / "a").write_bytes(b"A")
    (workdir / "b").write_bytes(b"B")
    (workdir / "sub").mkdir()
    os.rename(workdir / "a", workdir / "sub" / "a2")
    assert (workdir / "sub" / "a2").read_bytes() == b"A"
    assert not (workdir / "a").exists()
    os.rename(workdir / "sub" / "a2", workdir / "b")  # replaces b
    assert (workdir / "b").read_bytes() == b"A"
    assert sorted(os.listdir(workdir)) == ["b", "sub"]
    with raises_errno(errno.EINVAL):
        os.rename(workdir, workdir / "sub" / "inside")
    (workdir / "full").mkdir()
    (workdir / "full" / "x").write_bytes(b"")
    with raises_errno(errno.ENOTEMPTY):
        os.rename(workdir / "sub", workdir / "full")


def test_rename_noreplace_and_exchange(workdir: Path) -> None:
    a, b, c = workdir / "a", workdir / "b", workdir / "c"
    a.write_bytes(b"A")
    b.write_bytes(b"B")
    with raises_errno(errno.EEXIST):
        renameat2(a, b, RENAME_NOREPLACE)
    assert b.read_bytes() == b"B"
    renameat2(a, c, RENAME_NOREPLACE)
    assert c.read_bytes() == b"A"
    assert not a.exists()
    renameat2(b, c, RENAME_EXCHANGE)
    assert (b.read_bytes(), c.read_bytes()) == (b"A", b"B")
    with pytest.raises(FileNotFoundError):
        renameat2(a, c, RENAME_EXCHANGE)


def test_chmod_chown_and_nanosecond_times(workdir: Path) -> None:
    f = workdir / "f"
    f.write_bytes(b"")
    os.chmod(f, 0o4711)
    assert stat.S_IMODE(f.stat().st_mode) == 0o4711
    before = f.stat().st_ctime_ns
    os.chown(f, 1234, 5678)
    st = f.stat()
    assert (st.st_uid, st.st_gid) == (1234, 5678)
    assert st.st_ctime_ns >= before
    os.utime(f, ns=(1_000_000_123, 2_000_000_456))
    st = f.stat()
    assert (st.st_atime_ns, st.st_mtime_ns) == (1_000_000_123, 2_000_000_456)
    os.utime(f)  # UTIME_NOW
    assert f.stat().st_mtime_ns > 2_000_000_456


def test_write_updates_mtime_and_size(workdir: Path) -> None:
    f = workdir / "f"
    f.write_bytes(b"")
    os.utime(f, ns=(0, 0))
    with f.open("r+b") as out:
        out.write(b"x" * 5000)
    st = f.stat()
    assert st.st_size == 5000
    assert st.st_mtime_ns > 0


def test_unlink_while_open(workdir: Path) -> None:
    f = workdir / "f"
    data = os.urandom(3 * BLOCK + 17)
    f.write_bytes(data)
    free_before = os.statvfs(workdir).f_bfree
    fd = os.open(f, os.O_RDWR)
    try:
        f.unlink()
        assert not f.exists()
        assert os.pread(fd, len(data) + 10, 0) == data
        os.pwrite(fd, b"more", len(data))
        assert os.fstat(fd).st_nlink == 0
        assert os.fstat(fd).st_size == len(data) + 4
        assert os.statvfs(workdir).f_bfree == free_before  # the blocks still belong to it
    finally:
        os.close(fd)
    # The kernel sends RELEASE and FORGET after close(2) returns: wait for them.
    wait_until(lambda: os.statvfs(workdir).f_bfree == free_before + 4)


def test_sparse_file_costs_no_blocks_in_the_hole(workdir: Path) -> None:
    f = workdir / "sparse"
    with f.open("wb") as out:
        out.seek(10 * 2**20)
        out.write(b"end")
    st = f.stat()
    assert st.st_size == 10 * 2**20 + 3
    assert st.st_blocks == BLOCK // 512  # one block: the one holding b"end"
    with f.open("rb") as src:
        assert src.read(BLOCK) == bytes(BLOCK)
        src.seek(10 * 2**20)
        assert src.read() == b"end"


def test_truncate_up_and_down(workdir: Path) -> None:
    f = workdir / "f"
    f.write_bytes(b"a" * (3 * BLOCK))
    assert f.stat().st_blocks == 3 * BLOCK // 512
    os.truncate(f, BLOCK + 10)
    assert f.stat().st_size == BLOCK + 10
    assert f.stat().st_blocks == 2 * BLOCK // 512
    os.truncate(f, 5 * BLOCK)
    data = f.read_bytes()
    assert data == b"a" * (BLOCK + 10) + bytes(4 * BLOCK - 10)  # the tail was zeroed
    assert f.stat().st_blocks == 2 * BLOCK // 512  # growing makes a hole
    with f.open("r+b") as out:
        os.ftruncate(out.fileno(), 0)
    assert f.stat().st_size == 0
    assert f.stat().st_blocks == 0


def test_posix_fallocate_allocates(workdir: Path) -> None:
    _need_fallocate()
    f = workdir / "f"
    free = os.statvfs(workdir).f_bfree
    fd = os.open(f, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.posix_fallocate(fd, 0, 8 * BLOCK)
        st = os.fstat(fd)
        assert st.st_size == 8 * BLOCK
        assert st.st_blocks == 8 * BLOCK // 512
        assert os.statvfs(workdir).f_bfree == free - 8
        assert os.pread(fd, 8 * BLOCK, 0) == bytes(8 * BLOCK)
    finally:
        os.close(fd)


def test_fallocate_keep_size_and_punch_hole(workdir: Path) -> None:
    _need_fallocate()
    f = workdir / "f"
    f.write_bytes(b"z" * (4 * BLOCK))
    free = os.statvfs(workdir).f_bfree
    fd = os.open(f, os.O_RDWR)
    try:
        fallocate(fd, FALLOC_FL_KEEP_SIZE, 4 * BLOCK, 6 * BLOCK)  # past EOF, size kept
        assert os.fstat(fd).st_size == 4 * BLOCK
        assert os.fstat(fd).st_blocks == 10 * BLOCK // 512
        assert os.statvfs(workdir).f_bfree == free - 6
        fallocate(fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, BLOCK, 2 * BLOCK)
        assert os.fstat(fd).st_size == 4 * BLOCK
        assert os.fstat(fd).st_blocks == 8 * BLOCK // 512
        assert os.statvfs(workdir).f_bfree == free - 4  # the hole's blocks came back
        assert os.pread(fd, 4 * BLOCK, 0) == b"z" * BLOCK + bytes(2 * BLOCK) + b"z" * BLOCK
        with raises_errno(errno.EOPNOTSUPP):  # the VFS: PUNCH_HOLE needs KEEP_SIZE
            fallocate(fd, FALLOC_FL_PUNCH_HOLE, 0, BLOCK)
        with raises_errno(errno.EOPNOTSUPP):
            fallocate(fd, FALLOC_FL_ZERO_RANGE, 0, BLOCK)
    finally:
        os.close(fd)


def _need_fallocate() -> None:
    assert hasattr(pyfuse3.Operations, "fallocate"), (
        "this pyfuse3 has no fallocate handler: run scripts/setup, which builds it with "
        "patches/pyfuse3-3.5.0-fallocate.patch"
    )


def test_statvfs_reports_blocks_and_names(mkwritefs: object, workdir: Path) -> None:
    st = os.statvfs(workdir)
    assert st.f_bsize == BLOCK
    assert st.f_frsize == BLOCK
    assert st.f_blocks == 64 * 2**20 // BLOCK
    assert 0 < st.f_bfree <= st.f_blocks
    assert st.f_bavail == st.f_bfree
    assert st.f_namemax == 255
    before = st.f_bfree
    (workdir / "f").write_bytes(b"x" * (5 * BLOCK))
    assert os.statvfs(workdir).f_bfree == before - 5
    (workdir / "f").unlink()  # freed when the kernel forgets the inode, just after
    wait_until(lambda: os.statvfs(workdir).f_bfree == before, "blocks freed by unlink")


def test_long_names(workdir: Path) -> None:
    (workdir / ("n" * 255)).write_bytes(b"")
    with raises_errno(errno.ENAMETOOLONG):
        (workdir / ("n" * 256)).write_bytes(b"")


def test_inodes_come_back_after_readdirplus_and_unlink(workdir: Path) -> None:
    # Every entry READDIRPLUS hands the kernel is a lookup the kernel will FORGET; the
    # inode of an unlinked file is freed only when those counts reach zero. Counting an
    # entry the kernel refused (a full reply buffer, several times in 300 entries)
    # would leak the inode: f_ffree would never come back.
    ffree = os.statvfs(workdir).f_ffree
    names = [f"f{i}" for i in range(300)]
    for name in names:
        (workdir / name).write_bytes(b"x")
    assert os.statvfs(workdir).f_ffree == ffree - 300
    for _ in range(3):
        assert sorted(os.listdir(workdir)) == sorted(names)
        with os.scandir(workdir) as entries:
            assert all(e.stat().st_size == 1 for e in entries)
    for name in names:
        (workdir / name).unlink()
    wait_until(lambda: os.statvfs(workdir).f_ffree == ffree, "every inode freed")
