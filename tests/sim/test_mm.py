"""mmap/munmap/mprotect/msync/fork/exit: argument checks, errnos, VMA split and merge."""

from __future__ import annotations

import errno

import pytest

from sim_mmu import MapFlags, MsFlags, Prot, SimError, Simulation
from sim_mmu.memfile import MemInode
from sim_mmu.mm import MMAP_MIN_ADDR

from .helpers import PAGE, PRIVATE, RO, RW, SHARED, check_invariants, mapped


async def _errno_of(coro: object) -> int:
    with pytest.raises(SimError) as info:
        await coro  # type: ignore[misc]
    return info.value.errno


async def test_mmap_argument_errors() -> None:
    sim = Simulation()
    proc = sim.spawn()
    f = MemInode(size=8 * PAGE).open()
    assert await _errno_of(proc.mmap(PAGE, RW, SHARED, f, offset=100)) == errno.EINVAL
    assert await _errno_of(proc.mmap(0, RW, SHARED, f)) == errno.EINVAL
    assert await _errno_of(proc.mmap(PAGE, RW, SHARED | PRIVATE, f)) == errno.EINVAL
    assert await _errno_of(proc.mmap(PAGE, RW, MapFlags(0), f)) == errno.EINVAL
    assert await _errno_of(proc.mmap(PAGE, RW, SHARED)) == errno.EBADF
    fixed = SHARED | MapFlags.FIXED
    assert await _errno_of(proc.mmap(PAGE, RW, fixed, f, addr=MMAP_MIN_ADDR + 1)) == errno.EINVAL
    assert proc.mm.vmas == []  # nothing was created by the failures


async def test_shared_writable_mapping_of_readonly_file_is_eacces() -> None:
    sim = Simulation()
    proc = sim.spawn()
    ro = MemInode(size=2 * PAGE).open(write=False)
    assert await _errno_of(proc.mmap(PAGE, RW, SHARED, ro)) == errno.EACCES
    addr = await proc.mmap(PAGE, RO, SHARED, ro)  # allowed read-only...
    assert await _errno_of(proc.mprotect(addr, PAGE, RW)) == errno.EACCES  # ...not later
    # a private writable mapping of the same file is fine: writes go to COW copies
    priv = await proc.mmap(PAGE, RW, PRIVATE, ro)
    await proc.store(priv, b"x")
    assert ro.inode.read(0, 1) == b"\x00"


async def test_mapping_needs_a_readable_file() -> None:
    proc = Simulation().spawn()
    wo = MemInode(size=PAGE).open(read=False, write=True)
    assert await _errno_of(proc.mmap(PAGE, RW, SHARED, wo)) == errno.EACCES


async def test_terabyte_mapping_costs_nothing_until_touched() -> None:
    sim = Simulation()
    proc = sim.spawn()
    inode = MemInode(size=1 << 40)
    addr = await proc.mmap(1 << 40, RW, SHARED, inode.open())
    assert proc.mm.rss() == 0
    assert inode.mapping.nrpages == 0
    await proc.store(addr + (1 << 39), b"far")
    assert proc.mm.rss() == 1
    assert inode.mapping.nrpages == 1
    assert inode.read(1 << 39, 3) == b"far"


@pytest.mark.parametrize("pages", [700, 5_000])
async def test_a_touched_page_costs_at_most_4k_and_256_bytes(pages: int) -> None:
    import tracemalloc

    sim = Simulation(trace=False)
    proc = sim.spawn()
    inode = MemInode(size=1 << 40)
    addr = await proc.mmap(1 << 40, RW, SHARED, inode.open())
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for a in range(addr, addr + pages * PAGE, PAGE):  # page data, cache, PTE, dirty mark
            await proc.store(a, b"x")
        per_page = (tracemalloc.get_traced_memory()[0] - before) / pages
        await proc.munmap(addr, 1 << 40)
        inode.truncate(0)
        left = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert per_page <= PAGE + 256
    assert not proc.mm.ptes.nodes
    assert not inode.mapping.pages.nodes
    assert left < 64 * pages  # the pages, leaves and nodes went back


async def test_munmap_splits_and_frees() -> None:
    _, proc, _, _, addr = await mapped(4)
    await proc.store(addr, b"a" * 4 * PAGE)
    await proc.munmap(addr + PAGE, PAGE)
    assert [(v.start - addr, v.end - addr, v.pgoff) for v in proc.mm.vmas] == [
        (0, PAGE, 0),
        (2 * PAGE, 4 * PAGE, 2),
    ]
    assert proc.pte(addr + PAGE) is None
    assert await _errno_of(proc.munmap(addr + 1, PAGE)) == errno.EINVAL
    assert await _errno_of(proc.munmap(addr, 0)) == errno.EINVAL
    await proc.munmap(addr + PAGE, PAGE)  # unmapping a hole is not an error
    await proc.munmap(addr, 4 * PAGE)
    assert proc.mm.vmas == []
    assert not proc.mm.ptes
    assert not proc.mm.ptes.nodes  # the leaves went with their last entries


async def test_munmap_transfers_dirty_ptes_to_pages() -> None:
    """Row 20: store, munmap without msync: the page stays dirty for writeback."""
    _, proc, inode, _, addr = await mapped(2, profile="legacy")
    await proc.store(addr, b"legacy")
    page = inode.mapping.find_page(0)
    assert page is not None
    assert not page.dirty
    await proc.munmap(addr, 2 * PAGE)
    assert page.dirty
    await inode.writeback()
    assert inode.store[0][:6] == b"legacy"


async def test_mprotect_splits_merges_and_checks() -> None:
    sim, proc, _, _, addr = await mapped(4)
    await proc.mprotect(addr + PAGE, 2 * PAGE, RO)
    assert [v.prot for v in proc.mm.vmas] == [RW, RO, RW]
    await proc.mprotect(addr + PAGE, 2 * PAGE, RW)
    assert len(proc.mm.vmas) == 1  # merged back
    assert await _errno_of(proc.mprotect(addr + 1, PAGE, RO)) == errno.EINVAL
    assert await _errno_of(proc.mprotect(addr - 16 * PAGE, PAGE, RO)) == errno.ENOMEM
    assert await _errno_of(proc.mprotect(addr, 8 * PAGE, RO)) == errno.ENOMEM
    check_invariants(sim)


async def test_mprotect_none_then_access_is_segv_accerr() -> None:
    from sim_mmu import SEGV_ACCERR, SimSignal

    _, proc, _, _, addr = await mapped(2)
    await proc.store(addr, b"x")
    await proc.mprotect(addr, PAGE, Prot.NONE)
    with pytest.raises(SimSignal) as info:
        await proc.load(addr, 1)
    assert (info.value.code, info.value.addr) == (SEGV_ACCERR, addr)


async def test_mprotect_ro_drops_write_bits() -> None:
    _, proc, _, _, addr = await mapped(2)
    await proc.store(addr, b"x")
    assert proc.pte(addr).writable  # type: ignore[union-attr]
    await proc.mprotect(addr, 2 * PAGE, RO)
    assert not proc.pte(addr).writable  # type: ignore[union-attr]


async def test_msync_errors() -> None:
    _, proc, _, _, addr = await mapped(2)
    assert await _errno_of(proc.msync(addr + 1, PAGE)) == errno.EINVAL
    assert await _errno_of(proc.msync(addr, PAGE, MsFlags.SYNC | MsFlags.ASYNC)) == errno.EINVAL
    assert await _errno_of(proc.msync(addr, 4 * PAGE)) == errno.ENOMEM
    await proc.msync(addr, 2 * PAGE, MsFlags.ASYNC)
    await proc.msync(addr, 2 * PAGE, MsFlags.INVALIDATE)


async def test_msync_reports_writeback_error_once_per_open_file() -> None:
    """Row 17: each fd's next msync reports EIO once; a later opener sees nothing."""
    _, proc, inode, f, addr = await mapped(2)
    other = inode.open()
    await proc.store(addr, b"doomed")
    inode.writepage_error = errno.EIO
    assert await _errno_of(proc.msync(addr, PAGE)) == errno.EIO
    await proc.msync(addr, PAGE)  # reported once
    late = inode.open()
    with pytest.raises(SimError):
        await other.fsync()
    await late.fsync()


async def test_fixed_mapping_replaces_and_noreplace_refuses() -> None:
    _, proc, _, _, addr = await mapped(4)
    other = MemInode(size=PAGE)
    other.write(0, b"other")
    await proc.mmap(PAGE, RW, SHARED | MapFlags.FIXED, other.open(), addr=addr + PAGE)
    assert await proc.load(addr + PAGE, 5) == b"other"
    assert len(proc.mm.vmas) == 3
    flags = SHARED | MapFlags.FIXED_NOREPLACE
    assert await _errno_of(proc.mmap(PAGE, RW, flags, other.open(), addr=addr)) == errno.EEXIST


async def test_anonymous_private_and_shared_mappings() -> None:
    sim = Simulation()
    parent = sim.spawn()
    priv = await parent.mmap(2 * PAGE, RW, PRIVATE | MapFlags.ANONYMOUS)
    shared = await parent.mmap(2 * PAGE, RW, SHARED | MapFlags.ANONYMOUS)
    assert await parent.load(priv, 4) == bytes(4)
    assert parent.pte(priv).zero  # type: ignore[union-attr]
    await parent.store(priv, b"mine")
    child = await parent.fork()
    await child.store(priv, b"kids")
    await child.store(shared, b"both")
    assert await parent.load(priv, 4) == b"mine"
    assert await parent.load(shared, 4) == b"both"
    check_invariants(sim)


async def test_fork_shared_refaults_and_private_is_cow_on_both_sides() -> None:
    """Rows 21, 22."""
    sim, parent, inode, f, addr = await mapped(2)
    priv = await parent.mmap(2 * PAGE, RW, PRIVATE, f)
    await parent.store(addr, b"shared")
    await parent.store(priv, b"privat")
    child = await parent.fork()
    assert child.pte(addr) is None  # shared file PTEs are not copied
    assert child.pte(priv).anon
    assert not child.pte(priv).writable
    assert not parent.pte(priv).writable  # type: ignore[union-attr]
    calls = inode.mkwrite_calls
    await child.store(addr + PAGE, b"child")  # child refaults: the hook runs in the child
    assert inode.mkwrite_calls == calls + 1
    await child.store(priv, b"CHILD!")
    await parent.store(priv, b"PARENT")
    assert await child.load(priv, 6) == b"CHILD!"
    assert await parent.load(priv, 6) == b"PARENT"
    assert inode.read(0, 6) == b"shared"  # private stores never reach the file
    # parent: first private store copies; child: copies (page shared); parent: reuses
    assert sim.statistics().cow_copies == 2
    check_invariants(sim)


async def test_exit_unmaps_everything_and_keeps_dirt() -> None:
    _, proc, inode, _, addr = await mapped(2)
    await proc.store(addr, b"bye")
    await proc.exit()
    assert inode.mapping.i_mmap == set()
    assert inode.mapping.find_page(0).dirty  # type: ignore[union-attr]
    from sim_mmu import ProcessExited

    with pytest.raises(ProcessExited):
        await proc.load(addr, 1)


async def test_threads_share_the_mm() -> None:
    _, proc, _, _, addr = await mapped(2)
    thread = proc.clone_thread()
    await thread.store(addr, b"t")
    assert await proc.load(addr, 1) == b"t"
    await thread.exit()
    assert proc.mm.vmas  # the process still has its mm


async def test_fatal_signal_kills_every_thread() -> None:
    from sim_mmu import SimSignal

    _, proc, inode, _, addr = await mapped(1)
    thread = proc.clone_thread()
    await thread.store(addr, b"kept")
    inode.truncate(0)
    with pytest.raises(SimSignal):
        await thread.load(addr, 1)
    assert not proc.alive
    assert proc.killed_by == thread.killed_by
    assert proc.mm.vmas == []
