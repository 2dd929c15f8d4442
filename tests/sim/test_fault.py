"""One test per row of the fault handler's decision table (sim_mmu/fault.py) and the
KERNEL.md §6 scenarios it makes possible."""

from __future__ import annotations

import errno

import pytest
import trio
import trio.lowlevel
import trio.testing

from sim_mmu import (
    BUS_ADRERR,
    SEGV_ACCERR,
    SEGV_MAPERR,
    SIGBUS,
    SIGKILL,
    SIGSEGV,
    MapFlags,
    SigInfo,
    SimSignal,
    VmFault,
)
from sim_mmu.memfile import MemInode

from .helpers import PAGE, PRIVATE, RO, RW, SHARED, check_invariants, mapped


async def test_read_fault_installs_readonly_young_clean_pte() -> None:
    sim, proc, inode, _, addr = await mapped(2)
    assert await proc.load(addr, 3) == b"\0\0\0"
    pte = proc.pte(addr)
    assert pte is not None
    assert pte.present
    assert pte.young
    assert not pte.writable
    assert not pte.dirty
    assert inode.mkwrite_calls == 0
    assert sim.statistics().major_faults == 1  # the page had to be read in
    await proc.load(addr + 1, 1)
    assert sim.statistics().faults == 1  # no second fault


async def test_read_fault_without_notify_is_writable_at_once() -> None:
    """tmpfs-like file (no hook, no dirty accounting): not write-notify."""
    sim, proc, _, _, addr = await mapped(2, mkwrite=False, accounts_dirty=False)
    await proc.load(addr, 1)
    assert proc.pte(addr).writable  # type: ignore[union-attr]
    await proc.store(addr, b"x")
    assert sim.statistics().faults == 1
    assert sim.statistics().wp_faults == 0


async def test_dirty_accounting_without_hook_still_write_protects() -> None:
    """Modern vma_wants_writenotify: a disk fs without page_mkwrite is write-notify too."""
    sim, proc, inode, _, addr = await mapped(2, mkwrite=False, accounts_dirty=True)
    await proc.load(addr, 1)
    assert not proc.pte(addr).writable  # type: ignore[union-attr]
    await proc.store(addr, b"x")
    assert sim.statistics().wp_faults == 1
    assert sim.statistics().mkwrite_calls == 0
    assert inode.mapping.find_page(0).dirty  # type: ignore[union-attr]


async def test_access_outside_every_vma_is_segv_maperr() -> None:
    _, proc, inode, _, addr = await mapped(2)
    inode.truncate(PAGE + 10)
    assert await proc.load(addr + PAGE + 100, 1) == b"\0"  # tail of the last page: fine
    with pytest.raises(SimSignal) as info:
        await proc.load(addr + 2 * PAGE, 1)
    assert info.value.info == SigInfo(SIGSEGV, SEGV_MAPERR, addr + 2 * PAGE)


async def test_sigbus_beyond_eof_inside_mapping() -> None:
    sim, proc, inode, _, addr = await mapped(3)
    inode.truncate(PAGE)
    with pytest.raises(SimSignal) as info:
        await proc.load(addr + PAGE, 1)
    assert info.value.info == SigInfo(SIGBUS, BUS_ADRERR, addr + PAGE)
    assert sim.statistics().sigbus == 1
    assert not proc.alive  # default action killed it


async def test_shared_write_fault_on_absent_page_is_one_fault() -> None:
    """Row 6: read-in + page_mkwrite + writable dirty PTE, in a single fault."""
    sim, proc, inode, _, addr = await mapped(2)
    await proc.store(addr, b"hello")
    stats = sim.statistics()
    assert (stats.faults, stats.wp_faults, stats.mkwrite_calls) == (1, 0, 1)
    pte = proc.pte(addr)
    assert pte is not None
    assert pte.writable
    assert pte.dirty
    assert pte.young
    page = inode.mapping.find_page(0)
    assert page is not None
    assert page.dirty
    assert not page.locked
    check_invariants(sim)


async def test_read_then_store_calls_the_hook_once() -> None:
    """Rows 5 and 7: RO PTE, store ⇒ wp fault ⇒ hook once; further stores free."""
    sim, proc, inode, _, addr = await mapped(2)
    await proc.load(addr, 1)
    await proc.store(addr, b"a")
    await proc.store(addr + 1, b"b")
    stats = sim.statistics()
    assert (stats.faults, stats.wp_faults, stats.mkwrite_calls) == (2, 1, 1)
    assert inode.read(0, 2) == b"ab"


async def test_private_write_fault_copies_without_hook() -> None:
    """Row 21 / do_cow_fault: anon copy, file page untouched, no hook."""
    sim, proc, inode, f, _ = await mapped(2)
    inode.write(0, b"file")
    priv = await proc.mmap(2 * PAGE, RW, PRIVATE, f)
    await proc.store(priv, b"COW!")
    assert proc.pte(priv).anon
    assert proc.pte(priv).writable
    assert inode.read(0, 4) == b"file"
    assert await proc.load(priv, 4) == b"COW!"
    assert sim.statistics().mkwrite_calls == 0
    assert sim.statistics().cow_copies == 1


async def test_private_wp_fault_copies_file_page_then_reuses_anon() -> None:
    sim, proc, inode, f, _ = await mapped(2)
    inode.write(0, b"file")
    priv = await proc.mmap(PAGE, RW, PRIVATE, f)
    assert await proc.load(priv, 4) == b"file"
    await proc.store(priv, b"mine")  # wp fault on a file page: copy
    await proc.store(priv, b"MINE")  # writable anon: no fault
    stats = sim.statistics()
    assert (stats.wp_faults, stats.cow_copies) == (1, 1)
    await proc.mprotect(priv, PAGE, RO)
    await proc.mprotect(priv, PAGE, RW)  # exclusive anon page: writable again at once
    await proc.store(priv, b"more")
    assert sim.statistics().wp_faults == 1


async def test_anonymous_zero_page_then_write_copies() -> None:
    sim = (await mapped(1))[0]
    proc = sim.spawn()
    addr = await proc.mmap(PAGE, RW, PRIVATE | MapFlags.ANONYMOUS)
    assert await proc.load(addr, 2) == b"\0\0"
    await proc.store(addr, b"z")
    assert proc.pte(addr).anon
    assert sim.statistics().cow_copies == 1


async def test_writeback_write_protects_so_next_store_calls_hook_again() -> None:
    """Row 8 and row 16: msync cleans and write-protects; the next store notifies."""
    sim, proc, inode, _, addr = await mapped(2)
    await proc.store(addr, b"one")
    await proc.msync(addr, PAGE)
    pte = proc.pte(addr)
    assert pte is not None
    assert not pte.writable
    assert not pte.dirty
    assert not inode.mapping.find_page(0).dirty  # type: ignore[union-attr]
    assert inode.store[0][:3] == b"one"
    await proc.store(addr, b"two")
    assert inode.mkwrite_calls == 2
    assert inode.mapping.find_page(0).dirty  # type: ignore[union-attr]
    check_invariants(sim)


async def test_mkwrite_sigbus_leaves_nothing_writable() -> None:
    """Row 1: the hook refuses (ENOSPC): SIGBUS at the store, no writable PTE, no dirt."""
    sim, proc, inode, _, addr = await mapped(2)
    inode.mkwrite_result = VmFault.SIGBUS
    seen: list[SigInfo] = []
    proc.sigaction(SIGBUS, seen.append)  # handler returns None: abandon the store
    assert await proc.store(addr, b"x") == 0
    assert seen == [SigInfo(SIGBUS, BUS_ADRERR, addr)]
    assert proc.pte(addr) is None
    assert not inode.mapping.dirty_tag
    stats = sim.statistics()
    assert (stats.sigbus, stats.mkwrite_sigbus) == (1, 1)
    assert proc.alive


async def test_mkwrite_oom_kills() -> None:
    sim, proc, inode, _, addr = await mapped(1)
    inode.mkwrite_result = VmFault.OOM
    with pytest.raises(SimSignal) as info:
        await proc.store(addr, b"x")
    assert info.value.signo == SIGKILL
    assert sim.statistics().oom_kills == 1


async def test_mkwrite_retry_retries_whole_fault() -> None:
    sim, proc, inode, _, addr = await mapped(1)
    results = [VmFault.RETRY, VmFault.RETRY]
    hook = inode.vm_ops.page_mkwrite  # type: ignore[attr-defined]

    async def flaky(vmf: object) -> VmFault:
        if results:
            return results.pop()
        return await hook(vmf)

    inode.vm_ops.page_mkwrite = flaky  # type: ignore[attr-defined]
    await proc.store(addr, b"x")
    stats = sim.statistics()
    assert (stats.mkwrite_calls, stats.mkwrite_retry, stats.mkwrite_ok) == (3, 2, 1)


async def test_mkwrite_returning_zero_is_locked_by_core_and_truncate_refaults() -> None:
    """Result 0: the core locks and re-checks page.mapping; NULL ⇒ silent refault."""
    sim, proc, inode, _, addr = await mapped(2)
    await proc.load(addr, 1)

    async def truncating_hook(vmf: object) -> VmFault:
        inode.truncate(0)  # the page loses its mapping under the hook
        return VmFault(0)

    inode.vm_ops.page_mkwrite = truncating_hook  # type: ignore[attr-defined]
    with pytest.raises(SimSignal) as info:
        await proc.store(addr, b"x")
    assert info.value.signo == SIGBUS  # the refault finds the page beyond EOF


async def test_truncate_while_hook_sleeps_gives_sigbus(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Row 10: NOPAGE ⇒ refault ⇒ SIGBUS; nothing stays locked or dirty."""
    sim, proc, inode, _, addr = await mapped(2)
    inode.mkwrite_sleep = 1.0
    outcome: list[object] = []

    async def storer() -> None:
        try:
            await proc.store(addr + PAGE, b"x")
        except SimSignal as e:
            outcome.append(e.info)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(storer)
        await trio.sleep(0.5)
        inode.truncate(PAGE)
    assert outcome == [SigInfo(SIGBUS, BUS_ADRERR, addr + PAGE)]
    assert sim.statistics().mkwrite_nopage == 1
    assert not inode.mapping.dirty_tag


async def test_hole_punch_while_hook_sleeps_retries_cleanly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Row 11: NOPAGE ⇒ fresh page ⇒ hook again ⇒ store succeeds (modern)."""
    sim, proc, inode, _, addr = await mapped(2)
    inode.mkwrite_sleep = 1.0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(proc.store, addr, b"kept")
        await trio.sleep(0.5)
        inode.mkwrite_sleep = 0
        inode.punch_hole(0, PAGE)
    assert inode.read(0, 4) == b"kept"
    assert inode.mkwrite_calls == 2
    assert sim.statistics().mkwrite_nopage == 1
    check_invariants(sim)


async def test_hole_punch_under_2_6_18_is_a_bogus_sigbus(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Row 11, 2.6.18-2.6.29: the int hook could only say "fail"."""
    sim, proc, inode, _, addr = await mapped(2, profile="2.6.18")
    inode.mkwrite_sleep = 1.0
    got: list[int] = []

    async def storer() -> None:
        try:
            await proc.store(addr, b"x")
        except SimSignal as e:
            got.append(e.signo)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(storer)
        await trio.sleep(0.5)
        inode.punch_hole(0, PAGE)
    assert got == [SIGBUS]


async def test_two_threads_race_on_one_readonly_page(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Row 12: both call the hook; the loser's pte_same fails and it refaults."""
    sim, proc, inode, _, addr = await mapped(1)
    await proc.load(addr, 1)
    inode.mkwrite_sleep = 1.0
    thread = proc.clone_thread()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(proc.store, addr, b"A")
        nursery.start_soon(thread.store, addr + 1, b"B")
    assert inode.read(0, 2) == b"AB"
    stats = sim.statistics()
    assert stats.mkwrite_calls == 2
    assert stats.pte_changed == 1
    check_invariants(sim)


async def test_writeback_cannot_clean_between_hook_and_dirty(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Row 9: the page lock is held from page_mkwrite until the page is dirty."""
    sim, proc, inode, _, addr = await mapped(1)
    inode.write(0, b"old")  # dirty in the page cache (write(2)), so writeback wants it
    await proc.load(addr, 1)
    inode.mkwrite_sleep_locked = 1.0  # the hook holds the page lock while it sleeps
    async with trio.open_nursery() as nursery:
        nursery.start_soon(proc.store, addr, b"new")
        await trio.sleep(0.5)
        check_invariants_unlocked_ok(sim)
        await inode.writeback()  # waits for the page lock: cannot clean mid-fault
    assert inode.store[0][:3] == b"new"  # the I/O saw the store, nothing was lost
    pte = proc.pte(addr)
    assert pte is not None
    assert not pte.writable
    check_invariants(sim)


def check_invariants_unlocked_ok(sim: object) -> None:
    """Mid-fault the page is legitimately locked; only check the PTE rule."""
    for proc in sim.processes:  # type: ignore[attr-defined]
        for vpn, bits in proc.mm.ptes.items():
            vma = proc.mm.find_vma(vpn * PAGE)
            page = vma.mapping.pages[vma.pgoff_of(vpn * PAGE)]
            assert not bits & 0x2 or page.dirty


async def test_store_into_page_under_writeback_waits_for_stable_page(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Row 18: with stable pages the store blocks; written data is the old snapshot."""
    sim, proc, inode, _, addr = await mapped(1, wait_stable=True)
    await proc.store(addr, b"old")
    inode.writepage_sleep = 1.0
    done_at: list[float] = []

    async def late_store() -> None:
        await trio.sleep(0.1)
        await proc.store(addr, b"new")
        done_at.append(trio.current_time())

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(inode.writeback)
        nursery.start_soon(late_store)
    assert done_at[0] - start >= 1.0
    assert inode.store[0][:3] == b"old"
    assert inode.mapping.find_page(0).dirty  # type: ignore[union-attr]


async def test_store_to_readonly_mapping_is_segv_accerr() -> None:
    sim, proc, _, _, addr = await mapped(1, prot=RO)
    with pytest.raises(SimSignal) as info:
        await proc.store(addr, b"x")
    assert (info.value.signo, info.value.code) == (SIGSEGV, SEGV_ACCERR)
    assert sim.statistics().sigsegv == 1


async def test_mprotect_ro_to_rw_then_store_calls_hook() -> None:
    """Row 23."""
    sim, proc, inode, _, addr = await mapped(2, prot=RO)
    await proc.load(addr, 1)
    await proc.mprotect(addr, 2 * PAGE, RW)
    assert not proc.pte(addr).writable  # type: ignore[union-attr]
    await proc.store(addr, b"x")
    assert inode.mkwrite_calls == 1


async def test_truncate_up_then_store_at_former_sigbus_address() -> None:
    """Row 26, with a handler that fixes the cause and restarts the access."""
    sim, proc, inode, _, addr = await mapped(2)
    inode.truncate(PAGE)

    def grow(info: SigInfo) -> bool:
        inode.truncate(2 * PAGE)
        return True  # return from the handler: the store is re-executed

    proc.sigaction(SIGBUS, grow)
    assert await proc.store(addr + PAGE, b"ok") == 2
    assert inode.read(PAGE, 2) == b"ok"
    assert sim.statistics().sigbus == 1


async def test_tail_store_is_zeroed_at_writeback() -> None:
    """Row 25: a store past EOF in the last page is allowed but never reaches the file."""
    _, proc, inode, _, addr = await mapped(1)
    inode.truncate(10)
    await proc.store(addr + 8, b"abcd")
    await proc.msync(addr, PAGE)
    assert inode.size == 10
    assert inode.store[0][8:12] == b"ab\0\0"


async def test_copy_to_user_fault_failure_is_efault_not_signal() -> None:
    """Row 29: read(2) into a mapped buffer whose hook fails: short copy, no signal."""
    sim, proc, inode, _, addr = await mapped(2)
    await proc.store(addr, b"x")
    inode.mkwrite_result = VmFault.SIGBUS
    not_copied = await proc.copy_to_user(addr + PAGE - 4, b"12345678")
    assert not_copied == 4
    assert proc.alive
    assert sim.statistics().sigbus == 0
    assert inode.read(PAGE - 4, 4) == b"1234"


async def test_signal_handler_may_be_async_and_errno_is_exposed() -> None:
    sim, proc, inode, _, addr = await mapped(1)
    inode.truncate(0)
    seen: list[int] = []

    async def handler(info: SigInfo) -> None:
        await trio.lowlevel.checkpoint()
        seen.append(info.signo)

    proc.sigaction(SIGBUS, handler)
    assert await proc.load(addr, 4) == b""
    assert seen == [SIGBUS]
    assert errno.EINVAL  # keep the import honest


async def test_statistics_is_a_frozen_snapshot_and_events_are_recorded() -> None:
    import dataclasses

    sim, proc, _, _, addr = await mapped(1)
    before = sim.statistics()
    await proc.store(addr, b"x")
    assert before.faults == 0
    assert sim.statistics().faults == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        before.faults = 3  # type: ignore[misc]
    kinds = [e.kind for e in sim.events()]
    assert kinds == ["mmap", "mkwrite", "fault"]
    ev = sim.events("mkwrite")[0]
    assert ev.addr == addr
    assert ev.pgoff == 0
    assert ev.detail == "LOCKED"
    with pytest.raises(AttributeError):
        ev.kind = "x"  # type: ignore[misc]


async def test_page_mkwrite_must_return_vmfault() -> None:
    _, proc, inode, _, addr = await mapped(1)

    async def bad(vmf: object) -> int:
        return 0

    inode.vm_ops.page_mkwrite = bad  # type: ignore[attr-defined]
    with pytest.raises(TypeError, match="VmFault"):
        await proc.store(addr, b"x")


async def test_trace_can_be_off_and_bounded() -> None:
    from sim_mmu import Simulation

    sim = Simulation(trace=False)
    p = sim.spawn()
    f = MemInode(size=PAGE).open()
    a = await p.mmap(PAGE, RW, SHARED, f)
    await p.store(a, b"x")
    assert sim.events() == []
    sim = Simulation(trace_limit=2)
    p = sim.spawn()
    a = await p.mmap(PAGE, RW, SHARED, f)
    await p.store(a, b"x")
    assert len(sim.events()) == 2


async def test_the_tlb_never_hands_out_a_page_the_pte_no_longer_maps() -> None:
    # private mapping: a load loads the file page into the TLB; the store that COWs
    # must go to the new anonymous page, and later loads must see it, not the file's
    sim, proc, inode, _, addr = await mapped(2, flags=PRIVATE)
    inode.write(0, b"file")
    assert await proc.load(addr, 4) == b"file"
    await proc.store(addr, b"anon")
    assert await proc.load(addr, 4) == b"anon"
    assert inode.read(0, 4) == b"file"
    # shared mapping: truncate and refault between two accesses to the same page
    sim, proc, inode, f, addr = await mapped(2)
    await proc.store(addr + 8, b"old")
    inode.truncate(0)
    inode.truncate(2 * PAGE)
    await proc.store(addr + 8, b"new")
    assert inode.read(8, 3) == b"new"
    assert await proc.load(addr + 8, 3) == b"new"
    # a write-protect (writeback's mkclean) flushes the entry, and the next store
    # faults and calls the hook again rather than writing through a stale permission
    calls = inode.mkwrite_calls
    await f.fsync()
    await proc.store(addr + 8, b"NEW")
    assert inode.mkwrite_calls == calls + 1
    check_invariants(sim)
