"""KERNEL.md §6 rows 16-31, per policy where the policies differ."""

from __future__ import annotations

import errno
import os

import pytest
import trio
import trio.testing

from fusefs.vm.policy import Policy
from sim_mmu import MapFlags, Prot, SimError

from .conftest import ALL, HOOKED, PAGE, PRIVATE, ROOT, RW, fill, make_rig

REFUSES = {Policy.RESERVE, Policy.RESERVE_COW, Policy.SHMEM}


@pytest.mark.parametrize("policy", ALL)
async def test_row16_msync_sync(policy: Policy) -> None:
    rig = await make_rig(policy)
    for i in range(4):
        assert await rig.store(i, bytes([65 + i]) * 10)
    await rig.proc.msync(rig.addr, 4 * PAGE)
    stats = rig.fs.statistics()
    assert (stats.allocated_blocks, stats.reserved_blocks) == (4, 0)
    if policy is not Policy.SHMEM:
        assert rig.data.nr_dirty == 0
        for i in range(4):
            pte = rig.proc.pte(rig.addr + i * PAGE)
            assert pte is not None
            assert not pte.writable
            assert not pte.dirty
    assert rig.data.read(3 * PAGE, 10) == b"D" * 10
    rig.check()


async def test_row17_injected_error_once_per_open_file() -> None:
    rig = await make_rig(Policy.RESERVE)
    other = rig.fs.open_file(rig.f.ino)
    assert await rig.store(0, b"e")
    rig.data.inject_writeback_error(errno.EIO)
    with pytest.raises(SimError) as exc:
        await rig.proc.msync(rig.addr, PAGE)  # fsync of rig.f
    assert exc.value.errno == errno.EIO
    await rig.f.fsync()  # reported once
    with pytest.raises(SimError):
        await other.fsync()  # the other open file sees it once too
    await other.fsync()
    late = rig.fs.open_file(rig.f.ino)
    await late.fsync()  # opened after the error: nothing
    assert rig.data.writeback_errors == 1
    assert rig.data.lost_bytes == 0
    assert rig.data.read(0, 1) == b"e"  # the page stays cached
    for f in (other, late):
        await f.close()
    rig.check()


@pytest.mark.parametrize("policy", [Policy.FUSE, Policy.RESERVE])
async def test_row18_store_during_writeback(
    policy: Policy, autojump_clock: trio.testing.MockClock
) -> None:
    rig = await make_rig(policy, writeback_latency=1.0)
    assert await rig.store(0, b"old")
    rig.data.writeback_log = []
    done: list[float] = []

    async def store_new() -> None:
        await trio.sleep(0.5)
        assert await rig.store(0, b"new")
        done.append(trio.current_time())

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(store_new)
        await rig.data.writeback()
    assert rig.data.writeback_log[0][1][:3] == b"old"  # the pre-store snapshot
    if policy is Policy.FUSE:  # the store waited for the I/O to end
        assert done[0] - start >= 1.0
    else:
        assert done[0] - start < 1.0
    assert rig.data.nr_dirty == 1  # redirtied by the store
    assert rig.data.read(0, 3) == b"new"
    rig.check()


async def test_row19_cache_gets_contents_before_the_store(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rig = await make_rig(Policy.CACHE, cache_write_latency=1.0)
    await rig.fs.write(rig.f.fh, 0, b"before")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(rig.store, 0, b"AFTER!")
        await trio.sleep(0.5)
        pte = rig.proc.pte(rig.addr)
        assert pte is None or not pte.writable  # not writable while the cache writes
    captures = rig.fs.cache.captures
    assert len(captures) == 1
    assert captures[0].data[:6] == b"before"
    assert captures[0].at >= 1.0
    assert rig.data.read(0, 6) == b"AFTER!"
    rig.check()


@pytest.mark.parametrize("policy", ALL)
async def test_row20_munmap_without_msync(policy: Policy) -> None:
    rig = await make_rig(policy)
    assert await rig.store(1, b"m")
    await rig.proc.munmap(rig.addr, 4 * PAGE)
    if policy is Policy.FUSE:  # fuse_vma_close writes back
        assert rig.data.nr_dirty == 0
    else:
        assert rig.data.nr_dirty == 1
        assert rig.fs.space.reserved == (1 if policy.reserves else 0)
    await rig.f.close()
    assert rig.data.read(PAGE, 1) == b"m"
    assert rig.fs.space.allocated == 1
    rig.fs.check()


@pytest.mark.parametrize("policy", ALL)
async def test_row21_private_store(policy: Policy) -> None:
    rig = await make_rig(policy, flags=PRIVATE)
    assert await rig.store(0, b"p")
    assert rig.data.counters.mkwrite_calls == 0
    assert rig.data.read(0, 1) == b"\0"
    assert rig.fs.space.reserved == 0
    assert await rig.proc.load(rig.addr, 1) == b"p"
    rig.check()


@pytest.mark.parametrize("policy", HOOKED)
async def test_row22_fork_child_store(policy: Policy) -> None:
    rig = await make_rig(policy)
    assert await rig.store(0, b"1")
    child = await rig.proc.fork()
    rig.catch(child)
    assert await rig.store(0, b"2", child)
    assert rig.data.counters.mkwrite_calls == 2  # the child refaulted and called the hook
    assert rig.fs.space.reserved == (1 if policy.reserves else 0)
    assert await rig.proc.load(rig.addr, 1) == b"2"
    await child.exit()
    rig.check()


@pytest.mark.parametrize("policy", HOOKED)
async def test_row23_mprotect_ro_to_rw(policy: Policy) -> None:
    rig = await make_rig(policy, prot=Prot.READ)
    assert await rig.proc.load(rig.addr, 1) == b"\0"
    await rig.proc.mprotect(rig.addr, 4 * PAGE, RW)
    assert await rig.store(0, b"w")
    assert rig.data.counters.mkwrite_calls == 1
    rig.check()


async def test_row24_shared_write_of_read_only_fd() -> None:
    rig = await make_rig(Policy.RESERVE, open_flags=os.O_RDONLY, prot=Prot.READ)
    with pytest.raises(SimError) as exc:
        await rig.proc.mmap(PAGE, RW, MapFlags.SHARED, rig.f)
    assert exc.value.errno == errno.EACCES
    with pytest.raises(SimError) as exc:
        await rig.proc.mprotect(rig.addr, PAGE, RW)
    assert exc.value.errno == errno.EACCES


@pytest.mark.parametrize("policy", ALL)
async def test_row25_beyond_eof_and_tail(policy: Policy) -> None:
    rig = await make_rig(policy, pages=1)
    await rig.fs.setattr(rig.f.ino, size=100, ctx=ROOT)
    addr = await rig.proc.mmap(2 * PAGE, RW, MapFlags.SHARED, rig.f)
    assert await rig.proc.store(addr + PAGE, b"x") == 0  # wholly beyond EOF
    assert len(rig.sigbus) == 1
    assert await rig.proc.store(addr + 200, b"tail") == 4  # inside the last page
    await rig.f.fsync()
    assert rig.fs.getattr(rig.f.ino).size == 100
    if policy is not Policy.SHMEM:  # zeroed on the way out
        assert bytes(rig.data.mapping.pages[0].data[200:204]) == bytes(4)
    await rig.fs.setattr(rig.f.ino, size=300, ctx=ROOT)
    assert rig.data.read(200, 4) == bytes(4)  # never exposed as data
    rig.check()


@pytest.mark.parametrize("policy", ALL)
async def test_row26_truncate_up_then_store(policy: Policy) -> None:
    rig = await make_rig(policy, pages=1)
    addr = await rig.proc.mmap(2 * PAGE, RW, MapFlags.SHARED, rig.f)
    assert await rig.proc.store(addr + PAGE, b"x") == 0
    await rig.fs.setattr(rig.f.ino, size=2 * PAGE, ctx=ROOT)
    assert await rig.proc.store(addr + PAGE, b"y") == 1
    assert rig.fs.space.reserved + rig.fs.space.allocated == (1 if policy in REFUSES else 0)
    rig.check()


@pytest.mark.parametrize("policy", HOOKED)
async def test_row27_gup_force_write_read_only_shared(policy: Policy) -> None:
    rig = await make_rig(policy, prot=Prot.READ)
    assert await rig.proc.access_process_vm(rig.addr, b"z", write=True) == 0  # -EFAULT
    assert rig.data.counters.mkwrite_calls == 0
    assert rig.data.read(0, 1) == b"\0"
    rig.check()


@pytest.mark.parametrize("policy", HOOKED)
async def test_row28_gup_force_write_private(policy: Policy) -> None:
    rig = await make_rig(policy, prot=Prot.READ, flags=PRIVATE)
    assert await rig.proc.access_process_vm(rig.addr, b"z", write=True) == 1
    assert await rig.proc.load(rig.addr, 1) == b"z"
    assert rig.data.counters.mkwrite_calls == 0
    assert rig.data.read(0, 1) == b"\0"
    rig.check()


@pytest.mark.parametrize("policy", ALL)
async def test_row29_kernel_copy_into_hole_on_full_fs(policy: Policy) -> None:
    rig = await make_rig(policy, capacity=2)
    await fill(rig.fs)
    left = await rig.proc.copy_to_user(rig.addr, b"r" * 10)
    assert not rig.sigbus  # a kernel-mode fault: no signal
    assert left == (10 if policy in REFUSES else 0)  # -EFAULT, or lost later
    rig.check()


@pytest.mark.parametrize("policy", ALL)
async def test_row30_write_into_hole_on_full_fs(policy: Policy) -> None:
    from fusefs.fs.errors import FsError

    rig = await make_rig(policy, capacity=2)
    await fill(rig.fs)
    with pytest.raises(FsError) as exc:
        await rig.fs.write(rig.f.fh, 0, b"w")
    assert exc.value.errno == errno.ENOSPC
    rig.check()


@pytest.mark.parametrize("policy", ALL)
async def test_row31_one_page_cache(policy: Policy) -> None:
    rig = await make_rig(policy)
    assert await rig.store(0, b"stored")
    assert rig.fs.read(rig.f.fh, 0, 6) == b"stored"
    await rig.fs.write(rig.f.fh, PAGE, b"written")
    assert await rig.proc.load(rig.addr + PAGE, 7) == b"written"
    rig.check()


async def test_row33_shmem_sigbus_on_first_touch_even_a_read() -> None:
    rig = await make_rig(Policy.SHMEM, capacity=2)
    await fill(rig.fs)
    assert await rig.proc.load(rig.addr, 1) == b""  # abandoned by the SIGBUS handler
    assert len(rig.sigbus) == 1
    assert rig.data.counters.sigbus == 1
    assert not rig.data.mapping.pages  # the failed fault left no page behind
    rig.check()


async def test_reserve_retries_after_writeback_frees_cow_blocks() -> None:
    """ext4_should_retry_alloc: ENOSPC in page_mkwrite forces writeback when it would
    free blocks (here: a copy-on-write file's pending copies), then tries once more."""
    rig = await make_rig(Policy.RESERVE, capacity=4, pages=1)
    fs = rig.fs
    cow = fs.open_path(b"/cow", os.O_RDWR | os.O_CREAT, policy="reserve-cow")
    await fs.fallocate(cow.fh, 0, 0, 2 * PAGE)
    addr = await rig.proc.mmap(2 * PAGE, RW, MapFlags.SHARED, cow)
    assert await rig.proc.store(addr, b"c") == 1  # overwrite: one COW reservation
    assert fs.space.free == 1
    assert await rig.proc.store(addr + PAGE, b"c") == 1
    assert fs.space.free == 0
    assert await rig.store(0, b"r")  # retried after writeback freed the old blocks
    assert not rig.sigbus
    assert cow.data.nr_dirty == 0
    assert fs.space.reserved == 1
    await rig.proc.munmap(addr, 2 * PAGE)
    await cow.close()
    rig.check()


async def test_fsync_waits_for_writeback_started_by_another(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rig = await make_rig(Policy.RESERVE, writeback_latency=1.0)
    assert await rig.store(0, b"s")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(rig.data.writeback)  # the flusher
        await trio.sleep(0.5)
        await rig.f.fsync()  # nothing dirty, but the page is still under I/O
        assert trio.current_time() >= 1.0
        assert not rig.data.mapping.writeback_tag
    rig.check()


@pytest.mark.parametrize("policy", HOOKED)
async def test_row32_mtime_on_first_store_after_clean(policy: Policy) -> None:
    ticks = iter(range(10**9, 2 * 10**9, 1000))
    rig = await make_rig(policy, clock=lambda: next(ticks))
    inode = rig.fs.inode(rig.f.ino)
    t0 = inode.mtime_ns
    assert await rig.store(0, b"1")
    t1 = inode.mtime_ns
    assert t1 > t0
    assert await rig.store(0, b"2")  # no fault, no hook: unchanged
    assert inode.mtime_ns == t1
    await rig.f.fsync()
    assert await rig.store(0, b"3")  # first store after the page was cleaned
    assert inode.mtime_ns > t1
    rig.check()


async def test_truncate_while_cache_write_holds_the_page(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Truncate removes a locked page too: the cache hook finds it gone when its write
    ends and answers NOPAGE; the refault is past EOF."""
    rig = await make_rig(Policy.CACHE, cache_write_latency=1.0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(rig.store, 3, b"c")
        await trio.sleep(0.5)
        await rig.fs.setattr(rig.f.ino, size=PAGE, ctx=ROOT)
    assert len(rig.sigbus) == 1
    assert rig.data.nr_dirty == 0
    rig.check()


async def test_truncate_while_fuse_hook_waits_for_writeback(
    autojump_clock: trio.testing.MockClock,
) -> None:
    rig = await make_rig(Policy.FUSE, writeback_latency=1.0)
    assert await rig.store(3, b"a")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(rig.data.writeback)
        await trio.sleep(0.25)
        nursery.start_soon(rig.store, 3, b"b")  # waits for the I/O in the hook
        await trio.sleep(0.25)
        await rig.fs.setattr(rig.f.ino, size=PAGE, ctx=ROOT)
    assert len(rig.sigbus) == 1
    assert rig.fs.space.allocated == 0
    rig.check()
