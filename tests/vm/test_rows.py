"""KERNEL.md §6 rows 1-12, per policy: the outcome each policy's kernel gives."""

from __future__ import annotations

import errno

import pytest
import trio
import trio.testing

from fusefs.fs.handles import FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE
from fusefs.vm.policy import Policy
from sim_mmu import SimError

from .conftest import ALL, HOOKED, PAGE, ROOT, fill, make_rig

L, R, C, F, K, S = (
    Policy.LEGACY,
    Policy.RESERVE,
    Policy.RESERVE_COW,
    Policy.FUSE,
    Policy.CACHE,
    Policy.SHMEM,
)
REFUSES = {R, C, S}  # refuse a store that needs space when none is free


@pytest.mark.parametrize("policy", ALL)
async def test_row1_full_fs_store_into_hole(policy: Policy) -> None:
    rig = await make_rig(policy, capacity=4)
    await fill(rig.fs)
    ok = await rig.store(0, b"A" * 100)
    rig.check()
    data = rig.data
    if policy in REFUSES:
        assert not ok
        assert len(rig.sigbus) == 1
        pte = rig.proc.pte(rig.addr)
        assert pte is None or not pte.writable
        assert data.nr_dirty == 0
        assert data.nr_reserved == 0
        assert data.counters.sigbus == 1
        assert rig.fs.statistics().free_blocks == 0
        await rig.proc.msync(rig.addr, PAGE)  # nothing was acknowledged, nothing to report
        assert data.lost_bytes == 0
    else:  # acknowledged, then lost at writeback; reported once
        assert ok
        assert not rig.sigbus
        with pytest.raises(SimError) as exc:
            await rig.proc.msync(rig.addr, PAGE)
        assert exc.value.errno == errno.ENOSPC
        await rig.proc.msync(rig.addr, PAGE)  # once per open file
        assert data.lost_bytes == PAGE
        assert data.writeback_errors == 1
        assert data.read(0, 100) == bytes(100)  # the data is gone
    rig.check()


@pytest.mark.parametrize("policy", ALL)
async def test_row2_store_into_hole_with_space(policy: Policy) -> None:
    rig = await make_rig(policy, capacity=4)
    assert await rig.store(0, b"B")
    stats = rig.fs.statistics()
    if policy in REFUSES:  # the block is taken at the store (reserved) or fault (shmem)
        assert stats.free_blocks == 3
        assert (stats.reserved_blocks, stats.allocated_blocks) == (
            (0, 1) if policy is S else (1, 0)
        )
    else:
        assert stats.free_blocks == 4
    await rig.proc.msync(rig.addr, PAGE)
    stats = rig.fs.statistics()
    assert (stats.free_blocks, stats.reserved_blocks, stats.allocated_blocks) == (3, 0, 1)
    rig.check()


@pytest.mark.parametrize("policy", ALL)
async def test_row3_full_fs_overwrite_allocated(policy: Policy) -> None:
    rig = await make_rig(policy, capacity=1, pages=1)
    await rig.fs.fallocate(rig.f.fh, FALLOC_FL_KEEP_SIZE, 0, PAGE)
    assert rig.fs.space.free == 0
    ok = await rig.store(0, b"C")
    if policy is C:  # btrfs: an overwrite needs a block for the copy
        assert not ok
        assert len(rig.sigbus) == 1
    else:
        assert ok
        assert not rig.sigbus
        await rig.proc.msync(rig.addr, PAGE)
        assert rig.data.read(0, 1) == b"C"
    rig.check()


@pytest.mark.parametrize("policy", ALL)
async def test_row5_read_fault_then_store(policy: Policy) -> None:
    rig = await make_rig(policy)
    assert await rig.proc.load(rig.addr, 1) == b"\0"
    pte = rig.proc.pte(rig.addr)
    assert pte is not None
    assert pte.writable == (policy is S)  # tmpfs: no write notification
    assert await rig.store(0, b"x")
    assert rig.data.counters.mkwrite_calls == (1 if policy.has_page_mkwrite else 0)
    rig.check()


@pytest.mark.parametrize("policy", ALL)
async def test_row6_7_store_to_not_present_then_again(policy: Policy) -> None:
    rig = await make_rig(policy)
    assert await rig.store(0, b"x")
    assert rig.sim.statistics().faults == 1
    pte = rig.proc.pte(rig.addr)
    assert pte is not None
    assert pte.writable
    assert pte.dirty
    reserved = rig.fs.space.reserved
    assert await rig.store(0, b"y")  # row 7: no fault, no hook, no extra reservation
    assert rig.sim.statistics().faults == 1
    assert rig.data.counters.mkwrite_calls == (1 if policy.has_page_mkwrite else 0)
    assert rig.fs.space.reserved == reserved
    assert rig.data.read(0, 1) == b"y"
    rig.check()


@pytest.mark.parametrize("policy", ALL)
async def test_row8_store_writeback_store(policy: Policy) -> None:
    rig = await make_rig(policy)
    assert await rig.store(0, b"1")
    await rig.proc.msync(rig.addr, PAGE)
    pte = rig.proc.pte(rig.addr)
    assert pte is not None
    assert pte.writable == (policy is S)  # page_mkclean write-protected it (tmpfs: no writeback)
    assert await rig.store(0, b"2")
    hook_calls = 2 if policy.has_page_mkwrite else 0
    assert rig.data.counters.mkwrite_calls == hook_calls
    assert rig.fs.space.allocated == 1
    assert rig.fs.space.reserved == (1 if policy is C else 0)  # COW needs a new block
    assert rig.data.nr_dirty == 1
    await rig.proc.msync(rig.addr, PAGE)
    assert rig.fs.statistics().allocated_blocks == 1
    assert rig.fs.space.reserved == 0
    assert rig.data.read(0, 1) == b"2"
    rig.check()


async def test_row9_writeback_waits_for_hook(autojump_clock: trio.testing.MockClock) -> None:
    """The hook holds the page lock until the page is dirty: writeback cannot clean in
    between (cache policy: the hook sleeps on the cache write under the lock)."""
    rig = await make_rig(K, cache_write_latency=1.0)
    await rig.fs.write(rig.f.fh, 0, b"w")  # the page is dirty already
    rig.data.writeback_log = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(rig.store, 0, b"9")
        await trio.sleep(0.5)
        assert rig.data.mapping.pages[0].locked
        await rig.data.writeback()  # waits for the page lock
    # writeback cleaned the page after the store's PTE was made writable and dirty:
    # it wrote the stored byte and write-protected the PTE again
    assert [(i, d[:1]) for i, d in rig.data.writeback_log] == [(0, b"9")]
    pte = rig.proc.pte(rig.addr)
    assert pte is not None
    assert not pte.writable
    assert rig.data.nr_dirty == 0
    rig.check()


@pytest.mark.parametrize("policy", HOOKED)
async def test_row10_truncate_while_hook_sleeps(
    policy: Policy, autojump_clock: trio.testing.MockClock
) -> None:
    rig = await make_rig(policy, mkwrite_latency=1.0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(rig.store, 2, b"T")
        await trio.sleep(0.5)
        await rig.fs.setattr(rig.f.ino, size=PAGE, ctx=ROOT)
    assert len(rig.sigbus) == 1  # NOPAGE, refault past the new EOF: SIGBUS
    assert rig.fs.space.reserved == 0
    assert rig.fs.space.allocated == 0
    rig.check()


@pytest.mark.parametrize("policy", HOOKED)
async def test_row11_punch_hole_while_hook_sleeps(
    policy: Policy, autojump_clock: trio.testing.MockClock
) -> None:
    rig = await make_rig(policy, mkwrite_latency=1.0)
    assert await rig.proc.load(rig.addr + 2 * PAGE, 1) == b"\0"
    async with trio.open_nursery() as nursery:
        nursery.start_soon(rig.store, 2, b"P")
        await trio.sleep(0.5)
        await rig.fs.fallocate(rig.f.fh, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4 * PAGE)
    assert not rig.sigbus  # a fresh page, the hook again, the store lands
    assert rig.data.counters.mkwrite_calls == 2
    assert rig.data.read(2 * PAGE, 1) == b"P"
    assert rig.fs.space.reserved == (1 if policy.reserves else 0)
    rig.check()


@pytest.mark.parametrize("policy", HOOKED)
async def test_row12_two_threads_one_page(
    policy: Policy, autojump_clock: trio.testing.MockClock
) -> None:
    rig = await make_rig(policy, mkwrite_latency=1.0)
    assert await rig.proc.load(rig.addr, 1) == b"\0"  # read-only PTE
    t2 = rig.proc.clone_thread()
    results: list[bool] = []

    async def store(proc, byte: bytes) -> None:  # noqa: ANN001
        results.append(await rig.store(0, byte, proc))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(store, rig.proc, b"a")
        nursery.start_soon(store, t2, b"b")
    assert results == [True, True]
    assert rig.data.counters.mkwrite_calls == 2
    assert rig.fs.space.reserved == (1 if policy.reserves else 0)  # counted once
    assert rig.data.read(0, 1) in (b"a", b"b")
    rig.check()


async def test_legacy_profile_row8_dirt_lives_in_ptes() -> None:
    """The pre-2.6.19 kernel (sim profile ``legacy``) with the legacy policy: the PTE is
    writable at first touch and stays so after writeback; a later store is invisible
    to writeback until munmap transfers the PTE's dirty bit."""
    rig = await make_rig(L, profile="legacy")
    assert await rig.store(0, b"1")
    await rig.proc.msync(rig.addr, PAGE)  # transfers the PTE dirty bit, writes back
    assert rig.fs.space.allocated == 1
    assert await rig.store(0, b"2")
    pte = rig.proc.pte(rig.addr)
    assert pte is not None
    assert pte.writable
    assert rig.data.nr_dirty == 0  # the store is invisible to accounting
    await rig.proc.munmap(rig.addr, 4 * PAGE)
    assert rig.data.nr_dirty == 1  # the dirty bit reached the page at unmap
    await rig.f.close()
    assert rig.data.read(0, 1) == b"2"
    rig.fs.check()


async def test_legacy_profile_ignores_the_hook() -> None:
    """A kernel without page_mkwrite never calls the reserve hook: a full filesystem
    loses the store at writeback even under ``reserve``."""
    rig = await make_rig(R, capacity=2, profile="legacy")
    await fill(rig.fs)
    assert await rig.store(0, b"x")
    with pytest.raises(SimError) as exc:
        await rig.proc.msync(rig.addr, PAGE)
    assert exc.value.errno == errno.ENOSPC
    assert rig.data.counters.mkwrite_calls == 0
    assert rig.data.lost_bytes == PAGE
    rig.check()


async def test_row11_on_2_6_18_is_a_bogus_sigbus(autojump_clock: trio.testing.MockClock) -> None:
    """The 2.6.18 hook could only say yes or no: NOPAGE after a racing hole punch became
    SIGBUS (fixed by 56a76f8275c3).  Nothing is leaked either way."""
    rig = await make_rig(R, profile="2.6.18", mkwrite_latency=1.0)
    assert await rig.proc.load(rig.addr, 1) == b"\0"
    async with trio.open_nursery() as nursery:
        nursery.start_soon(rig.store, 0, b"P")
        await trio.sleep(0.5)
        await rig.fs.fallocate(rig.f.fh, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, PAGE)
    assert len(rig.sigbus) == 1
    assert rig.fs.space.reserved == 0
    rig.check()
