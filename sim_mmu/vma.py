"""Virtual memory areas (kernel: ``struct vm_area_struct``) and the reverse map.

A ``Vma`` is a range ``[start, end)`` of one mm, page aligned, mapping a file from page
``pgoff`` (or anonymous memory), with ``vm_flags``.  File VMAs register in their
mapping's ``i_mmap`` so writeback and truncation can find the PTEs that map a page:
``mkclean_page`` (kernel ``page_mkclean_one``) and ``zap_range`` (``unmap_mapping_range``
→ ``zap_pte_range``).

The flags the fault path tests on every fault are cached as booleans (``vm_write``,
``vm_shared``, ``writenotify``...) and recomputed by ``set_flags``: enum arithmetic is too
slow for a path that must run hundreds of thousands of times a second.

Write notification (``vma_wants_writenotify``): modern kernels write-protect the PTEs of
a shared writable mapping when the file has ``page_mkwrite`` or its device accounts dirty
pages; 2.6.18 only when the hook exists; before the hook never.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

from sim_mmu import pte as P
from sim_mmu.page import PAGE_SHIFT, Page
from sim_mmu.protocols import MappedFile, Prot, page_mkwrite_of

if TYPE_CHECKING:
    from sim_mmu.mm import MM
    from sim_mmu.profile import Profile


class VmFlags(enum.Flag):
    """``vma->vm_flags`` (the subset that matters here)."""

    NONE = 0
    READ = 0x01
    WRITE = 0x02
    EXEC = 0x04
    SHARED = 0x08
    MAYREAD = 0x10
    MAYWRITE = 0x20
    MAYEXEC = 0x40
    MAYSHARE = 0x80


ACCESS = VmFlags.READ | VmFlags.WRITE | VmFlags.EXEC


def prot_to_flags(prot: Prot) -> VmFlags:
    flags = VmFlags.NONE
    if prot & Prot.READ:
        flags |= VmFlags.READ
    if prot & Prot.WRITE:
        flags |= VmFlags.WRITE
    if prot & Prot.EXEC:
        flags |= VmFlags.EXEC
    return flags


def vma_wants_writenotify(
    flags: VmFlags, file: MappedFile | None, profile: Profile, vm_ops: object = None
) -> bool:
    """Must new PTEs of a VMA with ``flags`` be write-protected to catch the first store?"""
    if not profile.notify or file is None:
        return False
    if not (flags & VmFlags.SHARED and flags & VmFlags.WRITE):
        return False
    if page_mkwrite_of(vm_ops if vm_ops is not None else file.vm_ops) is not None:
        return True
    return profile.notify_dirty_accounting and bool(file.accounts_dirty)


class Vma:
    """One mapping of an mm.  ``end`` is exclusive; addresses are page aligned."""

    __slots__ = (
        "__weakref__",
        "end",
        "file",
        "mapping",
        "mm",
        "pgoff",
        "start",
        "vm_access",
        "vm_flags",
        "vm_maywrite",
        "vm_shared",
        "vm_ops",
        "vm_write",
        "writenotify",
    )

    def __init__(
        self, mm: MM, start: int, end: int, pgoff: int, file: MappedFile | None, flags: VmFlags
    ) -> None:
        self.mm: MM | None = mm
        self.start = start
        self.end = end
        self.pgoff = pgoff
        self.file = file
        self.mapping = file.mapping if file is not None else None
        # kernel: the file's ->mmap sets vma->vm_ops once; faults use the VMA's copy
        self.vm_ops = file.vm_ops if file is not None else None
        self.vm_flags = flags
        self.vm_write = self.vm_shared = self.vm_access = self.vm_maywrite = False
        self.writenotify = False
        self.set_flags(flags, mm.profile)

    def __repr__(self) -> str:
        kind = "anon" if self.file is None else f"file@{self.pgoff}"
        return f"<Vma {self.start:#x}-{self.end:#x} {kind} {self.vm_flags!r}>"

    def set_flags(self, flags: VmFlags, profile: Profile) -> None:
        self.vm_flags = flags
        self.vm_write = bool(flags & VmFlags.WRITE)
        self.vm_shared = bool(flags & VmFlags.SHARED)
        self.vm_access = bool(flags & ACCESS)
        self.vm_maywrite = bool(flags & VmFlags.MAYWRITE)
        self.writenotify = vma_wants_writenotify(flags, self.file, profile, self.vm_ops)

    @property
    def anonymous(self) -> bool:
        return self.file is None

    @property
    def prot(self) -> Prot:
        prot = Prot.NONE
        if self.vm_flags & VmFlags.READ:
            prot |= Prot.READ
        if self.vm_flags & VmFlags.WRITE:
            prot |= Prot.WRITE
        if self.vm_flags & VmFlags.EXEC:
            prot |= Prot.EXEC
        return prot

    def new_pte_write(self) -> int:
        """The write bit ``vm_page_prot`` stamps into a PTE installed by a read fault."""
        if self.vm_shared and self.vm_write and not self.writenotify:
            return P.WRITE
        return 0

    def pgoff_of(self, addr: int) -> int:
        return self.pgoff + ((addr - self.start) >> PAGE_SHIFT)

    def vpn_of_pgoff(self, pgoff: int) -> int | None:
        """The virtual page mapping file page ``pgoff`` here, or None if outside."""
        vpn = (self.start >> PAGE_SHIFT) + pgoff - self.pgoff
        if self.start >> PAGE_SHIFT <= vpn < self.end >> PAGE_SHIFT:
            return vpn
        return None

    # -- the reverse map (Mapper protocol of sim_mmu.page) -----------------------------
    def mkclean_page(self, page: Page) -> bool:
        """Write-protect and clean our PTE mapping ``page`` (kernel ``page_mkclean_one``).

        Only shared mappings are cleaned (a private VMA never maps a file page
        writable).  Returns True when the PTE was dirty.
        """
        mm = self.mm
        if mm is None or not self.vm_shared or not mm.profile.mkclean:
            return False
        vpn = self.vpn_of_pgoff(page.index)
        if vpn is None:
            return False
        bits = mm.ptes.get(vpn)
        if bits is None or bits & (P.ANON | P.ZERO):
            return False
        if bits & (P.WRITE | P.DIRTY):
            mm.ptes[vpn] = bits & ~(P.WRITE | P.DIRTY)
            mm.sim.counters.mkclean += 1
            mm.sim.trace.record("mkclean", mm.pid, vpn << PAGE_SHIFT, page.index)
        return bool(bits & P.DIRTY)

    def zap_range(self, first: int, last: int, even_cows: bool = True) -> None:
        """Remove our PTEs for file pages ``first..last`` (``unmap_mapping_range``).

        ``even_cows``: also private COW copies of those pages (truncate does; hole punch
        does not).
        """
        mm = self.mm
        if mm is None:
            return
        lo = max(first, self.pgoff)
        hi = min(last, self.pgoff + ((self.end - self.start) >> PAGE_SHIFT) - 1)
        if lo > hi:
            return
        base = (self.start >> PAGE_SHIFT) - self.pgoff
        mm.zap_vpns(self, base + lo, base + hi + 1, even_cows=even_cows)
