"""Unit tests of the small modules: errors, trace, pte, mmap_lock, filemap, page rmap."""

from __future__ import annotations

import errno

import pytest
import trio
import trio.testing

from sim_mmu import SIGBUS, SigInfo, SimError, Simulation, VmFault
from sim_mmu.filemap import filemap_fault, filemap_page_mkwrite, write_one_page
from sim_mmu.memfile import MemInode
from sim_mmu.mmap_lock import MmapLock
from sim_mmu.protocols import VmFaultInfo
from sim_mmu.pte import DIRTY, PRESENT, WRITE, PteView, describe
from sim_mmu.trace import Trace

from .helpers import PAGE, PRIVATE, RW, SHARED, mapped


def test_errors_read_well() -> None:
    e = SimError(errno.ENOSPC, "no room")
    assert e.errno == errno.ENOSPC
    assert "ENOSPC" in str(e)
    assert "no room" in str(e)
    assert str(SigInfo(SIGBUS, 2, 0x1000)) == "SIGBUS code=2 addr=0x1000"


def test_pte_views() -> None:
    assert describe(None) == "-"
    assert describe(PRESENT | WRITE | DIRTY) == "PWD"
    view = PteView.of(PRESENT | DIRTY)
    assert view is not None
    assert view.dirty
    assert not view.writable
    assert PteView.of(None) is None


async def test_trace_records_virtual_time(autojump_clock: trio.testing.MockClock) -> None:
    trace = Trace(limit=3)
    trace.record("a", 1)
    await trio.sleep(5)
    for kind in "bcd":
        trace.record(kind, 1, 0x10, 2, "x")
    assert [e.kind for e in trace] == ["b", "c", "d"]
    assert trace.events("c")[0].time - 5 == pytest.approx(trio.current_time() - 5)
    trace.enabled = False
    trace.record("e", 1)
    assert len(trace) == 3
    trace.clear()
    assert trace.events() == []


async def test_mmap_lock_writer_waits_for_readers_and_blocks_new_ones(
    autojump_clock: trio.testing.MockClock,
) -> None:
    lock = MmapLock()
    order: list[str] = []

    async def reader(name: str, hold: float) -> None:
        await lock.acquire_read()
        order.append(f"{name}+")
        await trio.sleep(hold)
        order.append(f"{name}-")
        lock.release_read()

    async def writer() -> None:
        await lock.acquire_write()
        order.append("W+")
        await trio.sleep(1)
        order.append("W-")
        lock.release_write()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader, "r1", 2)
        await trio.sleep(0.1)
        nursery.start_soon(writer)
        await trio.sleep(0.1)
        nursery.start_soon(reader, "r2", 0)  # must queue behind the waiting writer
    assert order == ["r1+", "r1-", "W+", "W-", "r2+", "r2-"]


async def test_munmap_waits_for_a_fault_sleeping_in_the_hook(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sim, proc, inode, _, addr = await mapped(1)
    inode.mkwrite_sleep = 1.0
    thread = proc.clone_thread()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(proc.store, addr, b"done")
        await trio.sleep(0.5)
        await thread.munmap(addr, PAGE)
        assert trio.current_time() >= 1.0  # waited for the fault (mmap_lock)
    assert inode.read(0, 4) == b"done"
    assert inode.mapping.find_page(0).dirty  # type: ignore[union-attr]


async def test_filemap_fault_read_error_is_sigbus() -> None:
    sim, proc, inode, _, addr = await mapped(1)

    async def broken(page: object) -> None:
        raise SimError(errno.EIO, "bad sector")

    inode.a_ops.readpage = broken  # type: ignore[method-assign]
    vmf = VmFaultInfo(proc.mm.vmas[0], addr, 0, 0)
    assert await filemap_fault(vmf) == VmFault.SIGBUS
    assert not inode.mapping.find_page(0).locked  # type: ignore[union-attr]


async def test_filemap_page_mkwrite_truncated_page_is_nopage() -> None:
    sim, proc, inode, _, addr = await mapped(1)
    await proc.load(addr, 1)
    page = inode.mapping.find_page(0)
    vmf = VmFaultInfo(proc.mm.vmas[0], addr, 0, 0)
    vmf.page = page
    inode.truncate(0)
    assert await filemap_page_mkwrite(vmf) == VmFault.NOPAGE
    inode.truncate(PAGE)
    await proc.load(addr, 1)
    vmf.page = inode.mapping.find_page(0)
    assert await filemap_page_mkwrite(vmf) == VmFault.LOCKED
    assert vmf.page.dirty
    assert vmf.page.locked
    vmf.page.unlock()  # type: ignore[union-attr]


async def test_write_one_page_records_error_and_cleans() -> None:
    inode = MemInode(size=PAGE)
    inode.write(0, b"x")
    inode.writepage_error = errno.ENOSPC
    page = inode.mapping.find_page(0)
    assert page is not None
    assert await write_one_page(inode.mapping, inode.a_ops, page)
    assert not page.dirty
    assert not page.writeback
    assert not page.locked
    assert inode.mapping.wb_err.errno == errno.ENOSPC
    assert not await write_one_page(inode.mapping, inode.a_ops, page)  # clean: nothing


async def test_truncate_zaps_private_copies_but_hole_punch_keeps_them() -> None:
    sim, proc, inode, f, _ = await mapped(2)
    inode.write(0, b"a" * 2 * PAGE)
    priv = await proc.mmap(2 * PAGE, RW, PRIVATE, f)
    await proc.store(priv, b"copy0")
    await proc.store(priv + PAGE, b"copy1")
    inode.punch_hole(0, PAGE)
    assert await proc.load(priv, 5) == b"copy0"  # even_cows=0: the COW copy stays
    inode.truncate(PAGE)
    assert proc.pte(priv + PAGE) is None  # even_cows=1: zapped
    assert await proc.load(priv, 5) == b"copy0"


async def test_close_balance_and_update_time_hooks_are_called() -> None:
    calls: list[str] = []
    inode = MemInode(size=PAGE, mkwrite=False)
    f = inode.open()

    async def balance() -> None:
        calls.append("balance")

    async def close(vma: object) -> None:
        calls.append("close")

    f.balance_dirty_pages_ratelimited = balance  # type: ignore[attr-defined]
    f.file_update_time = lambda: calls.append("mtime")  # type: ignore[attr-defined]
    inode.vm_ops.close = close  # type: ignore[attr-defined]
    proc = Simulation().spawn()
    addr = await proc.mmap(PAGE, RW, SHARED, f)
    await proc.store(addr, b"x")
    await proc.store(addr, b"y")  # no fault: no more calls
    await proc.munmap(addr, PAGE)
    assert calls == ["balance", "mtime", "close"]


async def test_check_simulation_catches_broken_invariants() -> None:
    from sim_mmu.check import InvariantError, check_simulation

    sim, proc, inode, _, addr = await mapped(2)
    await proc.store(addr, b"x")
    check_simulation(sim)
    page = inode.mapping.find_page(0)
    assert page is not None
    inode.mapping.cancel_dirty_page(page)  # a buggy fs cleans without page_mkclean
    with pytest.raises(InvariantError, match="maps clean"):
        check_simulation(sim)
    inode.mapping.delete_page(page)  # ...or drops a mapped page without unmapping it
    with pytest.raises(InvariantError, match="no cached page"):
        check_simulation(sim)
    with pytest.raises(RuntimeError, match="BUG"):
        await proc.store(addr, b"y")


async def test_trace_exports_jsonl_and_chrome_trace() -> None:
    import io
    import json

    sim, proc, _, _, addr = await mapped(1)
    await proc.store(addr, b"x")
    buf = io.StringIO()
    assert sim.trace.write_jsonl(buf) == len(sim.events())
    lines = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert [d["kind"] for d in lines] == [e.kind for e in sim.events()]
    doc = sim.trace.chrome_trace()
    assert [e["name"] for e in doc["traceEvents"]] == ["mmap", "mkwrite", "fault"]
    assert doc["traceEvents"][1]["args"]["detail"] == "LOCKED"
    json.dumps(doc)  # serialisable as is


async def test_page_sleepers_are_woken_and_leave_no_wait_queue_behind(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from sim_mmu.page import _LOCK_WAITERS, _WB_WAITERS, AddressSpace

    page = AddressSpace().add_page(0)
    assert page.trylock()
    order: list[str] = []

    async def locker(name: str) -> None:
        await page.lock()
        order.append(name)
        await trio.sleep(1)
        page.unlock()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(locker, "a")
        await trio.sleep(1)
        nursery.start_soon(locker, "b")
        await trio.sleep(1)
        assert page in _LOCK_WAITERS
        page.unlock()
    assert order == ["a", "b"]  # one waiter at a time, in order
    assert not page.locked
    assert page not in _LOCK_WAITERS

    woken: list[int] = []

    async def wait_io(n: int) -> None:
        await page.wait_writeback()
        woken.append(n)

    page.start_writeback()
    async with trio.open_nursery() as nursery:
        for n in range(3):
            nursery.start_soon(wait_io, n)
        await trio.sleep(1)
        assert page in _WB_WAITERS
        page.end_writeback()  # wakes all
    assert sorted(woken) == [0, 1, 2]
    assert page not in _WB_WAITERS

    assert page.trylock()
    with trio.move_on_after(1):  # a sleeper that gives up takes its queue with it
        await page.lock()
    assert page not in _LOCK_WAITERS
    page.unlock()


def test_page_tags_are_sets_of_indices() -> None:
    from sim_mmu.page import AddressSpace

    mapping = AddressSpace()
    pages = [mapping.add_page(i) for i in range(3)]
    assert mapping.set_page_dirty(pages[2])
    assert mapping.set_page_dirty(pages[0])
    assert not mapping.set_page_dirty(pages[0])  # already dirty
    tag = mapping.dirty_tag
    assert 0 in tag
    assert 2 in tag
    assert 1 not in tag
    assert len(tag) == 2
    assert sorted(tag) == [0, 2] == mapping.dirty_indices()
    mapping.cancel_dirty_page(pages[2])
    assert list(tag) == [0]
    tag.discard(7)  # absent: no error, as set.discard
    tag.add(7)
    assert 7 in tag
    assert repr(tag) == "PageTag([0, 7])"


async def test_find_vma_follows_splits_merges_and_unmaps() -> None:
    from .helpers import RO

    _, proc, _, _, addr = await mapped(4)
    mm = proc.mm
    whole = mm.find_vma(addr + 3 * PAGE)  # now remembered as the last VMA found
    assert whole is not None
    assert whole.end == addr + 4 * PAGE
    await proc.mprotect(addr + 2 * PAGE, 2 * PAGE, RO)  # split in two
    upper = mm.find_vma(addr + 3 * PAGE)
    assert upper is not None
    assert upper.start == addr + 2 * PAGE
    assert not upper.vm_write
    lower = mm.find_vma(addr + PAGE)
    assert lower is not None
    assert lower.end == addr + 2 * PAGE
    assert lower.vm_write
    assert mm.find_vma(addr + 2 * PAGE) is upper
    await proc.mprotect(addr + 2 * PAGE, 2 * PAGE, RW)  # merged back into one
    merged = mm.find_vma(addr + 3 * PAGE)
    assert merged is not None
    assert (merged.start, merged.end) == (addr, addr + 4 * PAGE)
    await proc.munmap(addr, 4 * PAGE)
    assert mm.find_vma(addr + 3 * PAGE) is None
    assert mm.find_vma(addr) is None


def test_page_cache_is_a_dict_in_nodes_of_64() -> None:
    from sim_mmu.page import AddressSpace
    from sim_mmu.xarray import XA_CHUNK_SIZE

    mapping = AddressSpace()
    cache = mapping.pages
    indices = [0, 63, 64, 5000, 1 << 40]
    pages = {i: mapping.add_page(i) for i in reversed(indices)}
    assert len(cache) == 5
    assert list(cache) == indices  # index order, whatever the order of insertion
    assert [p.index for p in cache.values()] == indices
    assert [i for i, _ in cache.items(64, 5000)] == [64, 5000]
    assert cache[63] is pages[63]
    assert cache.get(62) is None
    assert 62 not in cache
    assert "x" not in cache
    assert len(cache.nodes) == 4  # 0 and 63 share a node
    with pytest.raises(KeyError):
        mapping.add_page(63)
    mapping.delete_page(pages[0])
    assert len(cache.nodes) == 4  # 63 still holds its node
    mapping.delete_page(pages[63])
    assert len(cache.nodes) == 3  # the node went with its last page
    with pytest.raises(KeyError):
        del cache[63]
    assert cache.pop(63) is None
    assert cache.pop(64) is pages[64]
    with pytest.raises(KeyError):
        cache[-1] = pages[5000]
    assert XA_CHUNK_SIZE == 64


def test_page_tag_walks_ranges_in_order() -> None:
    from sim_mmu.xarray import PageTag

    tag = PageTag()
    for i in (1 << 40, 700, 3, 64, 63, 3):
        tag.add(i)
    assert len(tag) == 5
    assert list(tag) == [3, 63, 64, 700, 1 << 40]
    assert list(tag.between(4, 700)) == [63, 64, 700]
    assert list(tag.between(65, None)) == [700, 1 << 40]
    assert -1 not in tag
    tag.discard(64)
    tag.discard(64)
    assert len(tag) == 4
    assert 64 not in tag
    assert 63 in tag


def test_page_table_keeps_entries_whose_bits_are_all_clear() -> None:
    from sim_mmu.pte import LEAF_SIZE, PageTable

    ptes = PageTable()
    ptes[5] = 0  # present-less and old: a PROT_NONE page after fork, still an entry
    assert 5 in ptes
    assert ptes.get(5) == 0
    assert ptes.get(6) is None
    ptes[LEAF_SIZE * 3] = 0x0F
    assert list(ptes.items()) == [(5, 0), (LEAF_SIZE * 3, 0x0F)]
    assert list(ptes.between(6, LEAF_SIZE * 3 + 1)) == [(LEAF_SIZE * 3, 0x0F)]
    assert len(ptes) == 2
    with pytest.raises(ValueError, match="out of range"):
        ptes[7] = 0x80
    del ptes[5]
    assert len(ptes.nodes) == 1
    assert ptes.pop(5) is None
    with pytest.raises(KeyError):
        del ptes[5]


async def test_check_simulation_catches_broken_nodes_and_a_stale_tlb() -> None:
    from sim_mmu.check import InvariantError, check_simulation

    sim, proc, inode, _, addr = await mapped(2)
    await proc.store(addr, b"x")
    check_simulation(sim)
    leaf = next(iter(proc.mm.ptes.nodes.values()))
    leaf[64] += 1  # a leaf that miscounts its entries
    with pytest.raises(InvariantError, match="PTEs node"):
        check_simulation(sim)
    leaf[64] -= 1
    node = next(iter(inode.mapping.pages.nodes.values()))
    node[64] += 1  # type: ignore[operator]
    with pytest.raises(InvariantError, match="pages node"):
        check_simulation(sim)
    node[64] -= 1  # type: ignore[operator]
    proc.mm.ptes.tlb_data = bytearray(PAGE)  # a TLB entry that is not the mapped page
    with pytest.raises(InvariantError, match="TLB"):
        check_simulation(sim)
