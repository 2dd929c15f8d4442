"""Attributes: setattr (mode, owner, times, size) and Linux's timestamp rules."""

from __future__ import annotations

import stat

import pytest

from fusefs.fs.core import ROOT_INO, UTIME_NOW, Filesystem

from .conftest import ROOT, create


class Clock:
    """A nanosecond clock that the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_000_000_000

    def __call__(self) -> int:
        return self.now

    def tick(self, ns: int = 1) -> int:
        self.now += ns
        return self.now


@pytest.fixture
def clock(fs: Filesystem) -> Clock:
    c = Clock()
    fs.clock = c
    return c


async def test_create_sets_all_times_and_touches_parent(fs: Filesystem, clock: Clock) -> None:
    t = clock.tick()
    _, ino = create(fs, b"f")
    a = fs.getattr(ino)
    assert a.atime_ns == a.mtime_ns == a.ctime_ns == t
    root = fs.getattr(ROOT_INO)
    assert root.mtime_ns == root.ctime_ns == t


async def test_write_updates_mtime_ctime_not_atime(fs: Filesystem, clock: Clock) -> None:
    fh, ino = create(fs, b"f")
    before = fs.getattr(ino)
    t = clock.tick()
    await fs.write(fh, 0, b"x")
    a = fs.getattr(ino)
    assert a.mtime_ns == a.ctime_ns == t
    assert a.atime_ns == before.atime_ns


async def test_read_follows_relatime(fs: Filesystem, clock: Clock) -> None:
    fh, ino = create(fs, b"f")
    await fs.write(fh, 0, b"x")
    t = clock.tick()
    fs.read(fh, 0, 1)  # atime <= mtime: updated
    assert fs.getattr(ino).atime_ns == t
    clock.tick()
    fs.read(fh, 0, 1)  # atime newer than mtime and ctime, less than a day old: kept
    assert fs.getattr(ino).atime_ns == t
    t2 = clock.tick(24 * 3600 * 10**9)
    fs.read(fh, 0, 1)  # a day later: updated
    assert fs.getattr(ino).atime_ns == t2


async def test_chmod_keeps_type_and_sets_ctime(fs: Filesystem, clock: Clock) -> None:
    _, ino = create(fs, b"f")
    t = clock.tick()
    a = await fs.setattr(ino, mode=0o4755, ctx=ROOT)
    assert stat.S_ISREG(a.mode)
    assert stat.S_IMODE(a.mode) == 0o4755
    assert a.ctime_ns == t
    assert a.mtime_ns < t


async def test_chown_kills_setuid_and_setgid(fs: Filesystem) -> None:
    _, ino = create(fs, b"f")
    await fs.setattr(ino, mode=0o6755, ctx=ROOT)
    a = await fs.setattr(ino, uid=1000, gid=1000, ctx=ROOT)
    assert (a.uid, a.gid) == (1000, 1000)
    assert stat.S_IMODE(a.mode) == 0o755
    await fs.setattr(ino, mode=0o2644, ctx=ROOT)  # sgid without group exec: locking mark
    a = await fs.setattr(ino, gid=5, ctx=ROOT)
    assert stat.S_IMODE(a.mode) == 0o2644
    d = fs.mkdir(ROOT_INO, b"d", 0o2775, ROOT)
    a = await fs.setattr(d.ino, uid=7, ctx=ROOT)
    assert a.mode & stat.S_ISGID  # directories keep it


async def test_utimens(fs: Filesystem, clock: Clock) -> None:
    _, ino = create(fs, b"f")
    t = clock.tick()
    a = await fs.setattr(ino, atime_ns=123, mtime_ns=456_789, ctx=ROOT)
    assert (a.atime_ns, a.mtime_ns, a.ctime_ns) == (123, 456_789, t)
    t = clock.tick()
    a = await fs.setattr(ino, mtime_ns=UTIME_NOW, ctx=ROOT)
    assert (a.atime_ns, a.mtime_ns, a.ctime_ns) == (123, t, t)


async def test_truncate_sets_mtime_ctime(fs: Filesystem, clock: Clock) -> None:
    _, ino = create(fs, b"f")
    t = clock.tick()
    a = await fs.setattr(ino, size=100, ctx=ROOT)
    assert a.size == 100
    assert a.mtime_ns == a.ctime_ns == t


async def test_link_unlink_times(fs: Filesystem, clock: Clock) -> None:
    _, ino = create(fs, b"f")
    d = fs.mkdir(ROOT_INO, b"d", 0o755, ROOT)
    t = clock.tick()
    fs.link(ino, d.ino, b"g", ROOT)
    assert fs.getattr(ino).ctime_ns == t
    dd = fs.getattr(d.ino)
    assert dd.mtime_ns == dd.ctime_ns == t
    t = clock.tick()
    await fs.unlink(ROOT_INO, b"f", ROOT)
    assert fs.getattr(ino).ctime_ns == t
    root = fs.getattr(ROOT_INO)
    assert root.mtime_ns == root.ctime_ns == t
    assert fs.getattr(d.ino).mtime_ns < t


async def test_xattr_change_sets_ctime(fs: Filesystem, clock: Clock) -> None:
    _, ino = create(fs, b"f")
    t = clock.tick()
    fs.setxattr(ino, b"user.a", b"1", 0, ROOT)
    a = fs.getattr(ino)
    assert a.ctime_ns == t
    assert a.mtime_ns < t
    t = clock.tick()
    fs.removexattr(ino, b"user.a", ROOT)
    assert fs.getattr(ino).ctime_ns == t


async def test_readdir_and_readlink_touch_atime(fs: Filesystem, clock: Clock) -> None:
    d = fs.mkdir(ROOT_INO, b"d", 0o755, ROOT)
    s = fs.symlink(d.ino, b"s", b"t", ROOT)
    t = clock.tick()
    fs.readlink(s.ino)
    assert fs.getattr(s.ino).atime_ns == t
    fh = fs.opendir(d.ino, ROOT)
    list(fs.readdir(fh, 0))
    fs.releasedir(fh)
    assert fs.getattr(d.ino).atime_ns == t


def test_directory_size_counts_entries(fs: Filesystem) -> None:
    assert fs.getattr(ROOT_INO).size == 40
    fs.mkdir(ROOT_INO, b"a", 0o755, ROOT)
    assert fs.getattr(ROOT_INO).size == 60
