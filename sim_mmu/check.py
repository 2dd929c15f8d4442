"""Consistency checks over a simulation (an fsck for the mm), for tests and scenarios.

``check_simulation(sim)`` verifies the invariants of KERNEL.md §1 that must hold whenever
no fault is in progress, and raises ``InvariantError`` naming the first one broken:

* VMAs of an mm are sorted and disjoint; a file VMA is in its mapping's ``i_mmap``.
* Every PTE lies inside a VMA; an anonymous PTE has its page; a file PTE's page is in the
  page cache (truncation zaps PTEs before it removes pages).
* A private VMA never maps a file page writable (stores there go to COW copies).
* Write notification (profiles with dirty tracking at fault time): a writable PTE of a
  write-notify VMA maps a dirty page, so writeback, which cleans and write-protects
  together, can never leave a page clean under a writable PTE.
* Page-cache tags agree with page flags, and no page is left locked.
* The nodes of the page cache, of its marks and of the page tables count what they
  hold, and none is left empty; the TLB holds nothing the page table no longer maps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sim_mmu import pte as P
from sim_mmu.page import PAGE_SHIFT, REMOVALS, AddressSpace, zero_page

if TYPE_CHECKING:
    from sim_mmu.mm import MM
    from sim_mmu.process import Simulation


class InvariantError(AssertionError):
    """A simulator invariant does not hold."""


def _fail(msg: str) -> None:
    raise InvariantError(msg)


def check_simulation(sim: Simulation, *, allow_locked: bool = False) -> None:
    """Check every live mm of ``sim`` and the page caches they map."""
    mappings: dict[int, AddressSpace] = {}
    seen_mms: set[int] = set()
    for proc in sim.processes:
        mm = proc.mm
        if not proc.alive or id(mm) in seen_mms:
            continue
        seen_mms.add(id(mm))
        for a, b in zip(mm.vmas, mm.vmas[1:], strict=False):
            if a.end > b.start:
                _fail(f"overlapping VMAs {a!r} {b!r}")
        for vma in mm.vmas:
            if vma.mm is not mm:
                _fail(f"{vma!r} does not point back to its mm")
            if vma.mapping is not None:
                mappings[id(vma.mapping)] = vma.mapping
                if vma not in vma.mapping.i_mmap:
                    _fail(f"{vma!r} missing from i_mmap")
        _check_ptes(sim, proc.pid, mm)
    for mapping in mappings.values():
        _check_mapping(mapping, allow_locked)


def _check_ptes(sim: Simulation, pid: int, mm: object) -> None:
    from sim_mmu.mm import MM

    assert isinstance(mm, MM)
    problem = mm.ptes.check()
    if problem:
        _fail(f"pid {pid}: {problem}")
    _check_tlb(pid, mm)
    for vpn, bits in mm.ptes.items():
        addr = vpn << PAGE_SHIFT
        vma = mm.find_vma(addr)
        if vma is None:
            _fail(f"pid {pid}: PTE at {addr:#x} outside every VMA")
            return
        if bits & P.ANON:
            if vpn not in mm.anon:
                _fail(f"pid {pid}: anonymous PTE at {addr:#x} without a page")
            continue
        if bits & P.ZERO or vma.mapping is None:
            continue
        page = vma.mapping.pages.get(vma.pgoff_of(addr))
        if page is None or page.mapping is not vma.mapping:
            _fail(f"pid {pid}: file PTE at {addr:#x} maps no cached page")
            return
        if not bits & P.WRITE:
            continue
        if not vma.vm_shared or not vma.vm_write:
            _fail(f"pid {pid}: writable PTE at {addr:#x} in {vma!r}")
        if vma.writenotify and sim.profile.dirty_at_fault and not page.dirty:
            _fail(f"pid {pid}: writable PTE at {addr:#x} maps clean {page!r}")
    for vpn in mm.anon:
        if vpn not in mm.ptes:
            _fail(f"pid {pid}: anonymous page at {vpn << PAGE_SHIFT:#x} without a PTE")


def _check_tlb(pid: int, mm: MM) -> None:
    ptes = mm.ptes
    if ptes.tlb_vpn < 0 or ptes.tlb_removals != REMOVALS[0]:
        return  # empty, or not trusted any more
    vpn = ptes.tlb_vpn
    bits = ptes.get(vpn)
    if bits is None:
        _fail(f"pid {pid}: the TLB holds {vpn << PAGE_SHIFT:#x}, which maps nothing")
        return
    if bits & P.ANON:
        held: object = mm.anon[vpn].data
    elif bits & P.ZERO:
        held = zero_page()
    else:
        vma = mm.find_vma(vpn << PAGE_SHIFT)
        page = (
            vma.mapping.pages.get(vma.pgoff_of(vpn << PAGE_SHIFT)) if vma and vma.mapping else None
        )
        held = page.data if page is not None else None
    if held is not ptes.tlb_data:
        _fail(f"pid {pid}: the TLB's page for {vpn << PAGE_SHIFT:#x} is not the one mapped")


def _check_mapping(mapping: AddressSpace, allow_locked: bool) -> None:
    for problem in (
        mapping.pages.check(),
        mapping.dirty_tag.check(),
        mapping.writeback_tag.check(),
    ):
        if problem:
            _fail(f"{mapping!r}: {problem}")
    for index, page in mapping.pages.items():
        if page.mapping is not mapping or page.index != index:
            _fail(f"{page!r} misfiled in {mapping!r}")
        if (index in mapping.dirty_tag) != page.dirty:
            _fail(f"dirty tag disagrees with {page!r}")
        if (index in mapping.writeback_tag) != page.writeback:
            _fail(f"writeback tag disagrees with {page!r}")
        if page.locked and not allow_locked:
            _fail(f"{page!r} left locked")
