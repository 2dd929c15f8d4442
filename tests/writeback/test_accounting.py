"""The page cache reports to its bdi: dirtied, cleaned for I/O, writeback, truncate."""

from __future__ import annotations

import pytest
import trio
from trio.testing import MockClock

from sim_mmu import MapFlags, Prot, Simulation
from sim_mmu.bdi import Bdi, DirtyDomain
from sim_mmu.filemap import write_one_page
from sim_mmu.memfile import MemInode
from sim_mmu.page import PAGE_SIZE


def _setup(pages: int = 8) -> tuple[DirtyDomain, Bdi, MemInode]:
    dom = DirtyDomain(10000)
    bdi = Bdi(dom, "disk")
    inode = MemInode(size=pages * PAGE_SIZE)
    bdi.attach(inode.mapping, inode.a_ops)
    return dom, bdi, inode


async def test_write_then_writeback_moves_pages_through_the_counters(
    autojump_clock: MockClock,
) -> None:
    dom, bdi, inode = _setup()
    inode.write(0, b"x" * (3 * PAGE_SIZE))
    inode.write(0, b"y")  # rewriting a dirty page dirties nothing new
    assert (dom.nr_dirty, bdi.reclaimable, bdi.dirtied) == (3, 3, 3)
    assert dom.task_state().dirtied_total == 3
    assert inode.mapping in bdi.b_dirty
    dom.check()
    assert await inode.writeback() == 3
    assert (dom.nr_dirty, dom.nr_writeback, bdi.written) == (0, 0, 3)
    assert inode.mapping not in bdi.b_dirty  # clean inodes leave the dirty list
    dom.check()


async def test_writeback_counts_while_in_flight(autojump_clock: MockClock) -> None:
    dom, bdi, inode = _setup()
    inode.writepage_sleep = 1.0
    inode.write(0, b"x")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(write_one_page, inode.mapping, inode.a_ops, inode.mapping.pages[0])
        await trio.sleep(0.5)
        assert (dom.nr_dirty, dom.nr_writeback, bdi.writeback) == (0, 1, 1)
    assert (dom.nr_writeback, bdi.written, bdi.completions) == (0, 1, 1.0)


async def test_truncate_cancels_dirty_pages_and_releases_writeback(
    autojump_clock: MockClock,
) -> None:
    dom, bdi, inode = _setup()
    inode.writepage_sleep = 1.0
    inode.write(0, b"x" * (4 * PAGE_SIZE))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(write_one_page, inode.mapping, inode.a_ops, inode.mapping.pages[3])
        await trio.sleep(0.5)
        inode.truncate(PAGE_SIZE)  # pages 1, 2 dirty, page 3 under writeback
        assert (dom.nr_dirty, dom.nr_writeback, bdi.cancelled) == (1, 0, 2)
    assert (dom.nr_writeback, bdi.written) == (0, 0)  # the orphaned I/O is not a completion
    page = inode.mapping.pages[0]
    inode.mapping.cancel_dirty_page(page)
    assert (dom.nr_dirty, bdi.cancelled) == (0, 3)
    dom.check()


async def test_store_through_mapping_after_writeback_is_dirtied_again(
    autojump_clock: MockClock,
) -> None:
    dom, bdi, inode = _setup()
    sim = Simulation(trace=False)
    proc = sim.spawn()
    addr = await proc.mmap(2 * PAGE_SIZE, Prot.READ | Prot.WRITE, MapFlags.SHARED, inode.open())
    await proc.store(addr, b"a")
    await proc.store(addr + 1, b"b")  # same page, PTE already writable: nothing new
    assert bdi.dirtied == 1
    await inode.writeback()
    await proc.store(addr, b"c")  # write-protected by writeback: fault, dirty again
    assert (bdi.dirtied, dom.nr_dirty, bdi.written) == (2, 1, 1)
    dom.check()


async def test_attach_counts_pages_already_dirty_and_detach_needs_clean(
    autojump_clock: MockClock,
) -> None:
    dom = DirtyDomain(10000)
    bdi = Bdi(dom, "disk")
    inode = MemInode(size=4 * PAGE_SIZE)
    inode.write(0, b"x" * (2 * PAGE_SIZE))
    bdi.attach(inode.mapping, inode.a_ops)
    assert (dom.nr_dirty, bdi.reclaimable) == (2, 2)
    with pytest.raises(RuntimeError, match="dirty"):
        bdi.detach(inode.mapping)
    with pytest.raises(ValueError, match="already attached"):
        Bdi(dom, "other").attach(inode.mapping, inode.a_ops)
    await inode.writeback()
    bdi.detach(inode.mapping)
    assert inode.mapping.bdi is None
    dom.check()


def test_unknown_throttle_model_is_refused() -> None:
    with pytest.raises(ValueError, match="throttle"):
        DirtyDomain(100, throttle="fast")
