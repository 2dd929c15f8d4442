"""Counters and settings through the root's and files' user.mkwritefs.* attributes; the
flusher; open/close of simulated files; the coherence notifications for the mount."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

import pytest
import trio
import trio.testing

from fusefs.fs.core import ROOT_INO, Filesystem, FsError
from fusefs.vm.policy import Policy
from sim_mmu import MapFlags

from .conftest import PAGE, ROOT, RW, USER, fill, make_rig

P = b"user.mkwritefs."


def errno_of(fn: Callable[..., object], *args: object) -> int:
    try:
        fn(*args)
    except FsError as exc:
        return exc.errno
    raise AssertionError("no error")


async def test_counters_per_file_and_root() -> None:
    rig = await make_rig(Policy.RESERVE, capacity=2)
    fs = rig.fs
    assert await rig.store(0, b"a")
    await fill(fs)
    assert not await rig.store(1, b"b")
    get = fs.getxattr
    assert get(rig.f.ino, P + b"mkwrite_calls", ROOT) == b"2"
    assert get(rig.f.ino, P + b"sigbus", ROOT) == b"1"
    assert get(ROOT_INO, P + b"sigbus", ROOT) == b"1"
    assert get(ROOT_INO, P + b"policy", ROOT) == b"reserve"
    fs.setxattr(ROOT_INO, P + b"policy", b"legacy", 0, ROOT)
    g = fs.open_path(b"/g", os.O_RDWR | os.O_CREAT)
    await fs.setattr(g.ino, size=PAGE, ctx=ROOT)
    addr = await rig.proc.mmap(PAGE, RW, MapFlags.SHARED, g)  # a legacy mapping
    assert await rig.proc.store(addr, b"lost") == 4
    with pytest.raises(Exception, match="No space"):
        await g.fsync()
    assert get(g.ino, P + b"lost_bytes", ROOT) == str(PAGE).encode()
    assert get(g.ino, P + b"writeback_errors", ROOT) == b"1"
    assert get(ROOT_INO, P + b"lost_bytes", ROOT) == str(PAGE).encode()
    assert get(ROOT_INO, P + b"mkwrite_calls", ROOT) == b"2"
    stats = fs.vm_statistics()
    assert (stats.policy, stats.mkwrite_calls, stats.sigbus, stats.lost_bytes) == (
        "legacy",
        2,
        1,
        PAGE,
    )
    assert fs.listxattr(ROOT_INO, ROOT) == []
    assert fs.listxattr(g.ino, ROOT) == []
    # the root keeps totals when the file is gone
    await rig.proc.exit()
    await g.close()
    await fs.unlink(ROOT_INO, b"g", ROOT)
    assert get(ROOT_INO, P + b"lost_bytes", ROOT) == str(PAGE).encode()
    rig.check()


async def test_root_settings_owner_only() -> None:
    fs = Filesystem(capacity_blocks=8, uid=0, gid=0)
    set_ = fs.setxattr
    assert errno_of(set_, ROOT_INO, P + b"policy", b"fuse", 0, USER) == errno.EPERM
    assert errno_of(set_, ROOT_INO, P + b"policy", b"nonsense", 0, ROOT) == errno.EINVAL
    assert fs.policy is Policy.RESERVE
    for value in (b"legacy", b"reserve-cow", b"fuse", b"cache", b"shmem", b"reserve"):
        set_(ROOT_INO, P + b"policy", value, 0, ROOT)
        assert fs.getxattr(ROOT_INO, P + b"policy", ROOT) == value
    f = fs.open_path(b"/f", os.O_RDWR | os.O_CREAT)
    await fs.write(f.fh, 0, b"x" * (3 * PAGE))
    assert errno_of(set_, ROOT_INO, P + b"capacity_blocks", b"2", 0, ROOT) == errno.EINVAL
    assert errno_of(set_, ROOT_INO, P + b"capacity_blocks", b"-1", 0, ROOT) == errno.EINVAL
    assert errno_of(set_, ROOT_INO, P + b"capacity_blocks", b"9", 0, USER) == errno.EPERM
    assert fs.statfs().blocks == 8
    set_(ROOT_INO, P + b"capacity_blocks", b"3", 0, ROOT)
    assert fs.statfs().blocks == 3
    set_(ROOT_INO, P + b"writeback_interval", b"0.5", 0, ROOT)
    set_(ROOT_INO, P + b"dirty_expire", b"2", 0, ROOT)
    assert fs.getxattr(ROOT_INO, P + b"writeback_interval", ROOT) == b"0.5"
    assert fs.getxattr(ROOT_INO, P + b"dirty_expire", ROOT) == b"2"
    for bad in (b"0", b"-1", b"nan", b"x", b"1e-300", b"0.009"):  # a centisecond at least
        assert errno_of(set_, ROOT_INO, P + b"writeback_interval", bad, 0, ROOT) == errno.EINVAL
    assert fs.writeback_interval == 0.5
    assert errno_of(set_, ROOT_INO, P + b"dirty_expire", b"1", 0, USER) == errno.EPERM
    assert errno_of(set_, ROOT_INO, P + b"free_blocks", b"1", 0, ROOT) == errno.EPERM
    assert errno_of(set_, f.ino, P + b"policy", b"fuse", 0, ROOT) == errno.EPERM
    assert errno_of(fs.getxattr, ROOT_INO, P + b"nonsense", ROOT) == errno.ENODATA
    await f.close()
    fs.check()


async def test_flusher_settings_apply_at_once(autojump_clock: trio.testing.MockClock) -> None:
    rig = await make_rig(Policy.RESERVE, writeback_interval=100.0, dirty_expire=1000.0)
    fs = rig.fs
    async with trio.open_nursery() as nursery:
        await nursery.start(fs.run_flusher)
        assert await rig.store(0, b"f")
        await trio.sleep(50)
        assert rig.data.nr_dirty == 1
        fs.setxattr(ROOT_INO, P + b"writeback_interval", b"1", 0, ROOT)
        fs.setxattr(ROOT_INO, P + b"dirty_expire", b"3", 0, ROOT)
        await trio.sleep(1.5)  # one new period, not the old 100 s one
        assert rig.data.nr_dirty == 0
        assert fs.space.allocated == 1
        pte = rig.proc.pte(rig.addr)
        assert pte is not None
        assert not pte.writable  # cleaned and write-protected by the flusher
        nursery.cancel_scope.cancel()
    rig.check()


async def test_close_while_mapped_and_unlinked() -> None:
    rig = await make_rig(Policy.RESERVE)
    fs = rig.fs
    assert await rig.store(0, b"keep")
    await rig.f.close()  # writes back; the mapping keeps the file
    await fs.unlink(ROOT_INO, b"f", ROOT)
    assert await rig.store(1, b"more")
    assert await rig.proc.load(rig.addr, 4) == b"keep"
    assert fs.space.allocated + fs.space.reserved == 2
    await rig.proc.munmap(rig.addr, 4 * PAGE)  # last reference: the inode goes
    assert fs.space.allocated + fs.space.reserved == 0
    assert rig.f.ino not in fs.inodes
    rig.check()


async def test_open_path_errors() -> None:
    fs = Filesystem(capacity_blocks=4, uid=0, gid=0)
    with pytest.raises(FsError) as exc:
        fs.open_path(b"/missing")
    assert exc.value.errno == errno.ENOENT
    fs.mkdir(ROOT_INO, b"d", 0o755, ROOT)
    with pytest.raises(FsError) as exc:
        fs.open_path(b"/d")
    assert exc.value.errno == errno.EISDIR
    f = fs.open_path(b"/d/x", os.O_RDWR | os.O_CREAT, policy="fuse")
    assert f.policy is Policy.FUSE
    with pytest.raises(FsError) as exc:
        fs.open_path(b"/d/x", os.O_RDWR | os.O_CREAT | os.O_EXCL)
    assert exc.value.errno == errno.EEXIST
    await f.close()
    fs.set_policy("cache", f.ino)
    g = fs.open_path(b"/d/x")
    assert g.policy is Policy.CACHE
    await g.close()
    fs.check()


async def test_coherence_notifications() -> None:
    rig = await make_rig(Policy.RESERVE)
    seen: list[int] = []
    rig.fs.on_invalidate = seen.append
    rig.fs.notify_mapped_stores()
    assert seen == []  # nothing writable yet
    assert await rig.store(0, b"s")
    rig.fs.notify_mapped_stores()
    assert seen == [rig.f.ino]
    assert await rig.store(0, b"t")  # no fault: still reported (writable mapping lives)
    rig.fs.notify_mapped_stores()
    assert seen == [rig.f.ino, rig.f.ino]
    await rig.proc.munmap(rig.addr, 4 * PAGE)
    rig.fs.notify_mapped_stores()  # last report: no writable mapping any more
    rig.fs.notify_mapped_stores()
    assert seen == [rig.f.ino] * 3
    rig.check()


async def test_coherence_notifications_without_a_hook() -> None:
    rig = await make_rig(Policy.LEGACY)
    seen: list[int] = []
    rig.fs.on_invalidate = seen.append
    assert await rig.proc.load(rig.addr, 1) == b"\0"  # read-only PTE (write-notify)
    rig.fs.notify_mapped_stores()
    assert seen == []
    assert await rig.store(0, b"s")  # write-protect fault handled by the core alone
    rig.fs.notify_mapped_stores()
    assert seen == [rig.f.ino]
    rig.check()


async def test_balance_dirty_is_called_after_a_store_dirties_a_page() -> None:
    rig = await make_rig(Policy.RESERVE)
    calls: list[int] = []

    async def balance(data: object) -> None:
        calls.append(rig.data.nr_dirty)

    rig.fs.balance_dirty = balance
    assert await rig.store(0, b"a")
    assert await rig.store(0, b"b")  # no fault: no call
    assert await rig.store(1, b"c")
    assert calls == [1, 2]
    rig.check()
