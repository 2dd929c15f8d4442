"""An address space of a simulated process (kernel: ``struct mm_struct``).

Owns the VMAs (sorted, non-overlapping, page aligned), the sparse page table
(``ptes``: virtual page number → PTE bits, see ``sim_mmu.pte``), the anonymous pages
(``anon``), and the system calls that change them: ``mmap``, ``munmap``, ``mprotect``,
``msync``, ``fork`` and exit.  Argument checks and errnos follow Linux
(``ksys_mmap_pgoff``/``do_mmap``, ``__do_munmap``, ``do_mprotect_pkey``, ``msync``).

Invariants:

* VMAs never overlap; each lies in ``[MMAP_MIN_ADDR, TASK_SIZE)``; neighbours with the
  same file, contiguous ``pgoff`` and equal flags are merged (``vma_merge``).
* Every PTE lies inside some VMA; a file PTE's page is in the file's page cache.
* A file VMA is in ``mapping.i_mmap`` exactly while it is in ``vmas``.
* Dirty PTE bits are never lost: zapping a dirty file PTE marks the page dirty.
"""

from __future__ import annotations

import bisect
import errno
from collections.abc import Iterator
from typing import TYPE_CHECKING

from sim_mmu import pte as P
from sim_mmu.errors import SimError
from sim_mmu.mmap_lock import MmapLock
from sim_mmu.page import PAGE_MASK, PAGE_SHIFT
from sim_mmu.protocols import MapFlags, MappedFile, MsFlags, Prot
from sim_mmu.vma import ACCESS, Vma, VmFlags, prot_to_flags

if TYPE_CHECKING:
    from sim_mmu.process import Simulation

TASK_SIZE = 1 << 47
MMAP_MIN_ADDR = 0x10000
MMAP_TOP = 0x7F0000000000  # mmap_base: areas are handed out top-down below it


def _page_align(n: int) -> int:
    return (n + PAGE_MASK) & ~PAGE_MASK


class MM:
    """One address space.  Shared by the threads of a process, copied by ``fork``."""

    def __init__(self, sim: Simulation, pid: int) -> None:
        self.sim = sim
        self.profile = sim.profile
        self.pid = pid
        self.ptes = P.PageTable()
        self.anon: dict[int, P.AnonPage] = {}
        self.vmas: list[Vma] = []
        self._starts: list[int] = []
        self._last_vma: Vma | None = None  # the kernel's old mm->mmap_cache
        self.mmap_lock = MmapLock()
        self.dead = False
        self.users = 1

    def __repr__(self) -> str:
        return f"<MM pid={self.pid} {len(self.vmas)} vmas {len(self.ptes)} ptes>"

    # -- lookup ---------------------------------------------------------------------------
    def find_vma(self, addr: int) -> Vma | None:
        """The VMA containing ``addr``, or None (kernel ``vma_lookup``).

        The last VMA found is tried first; a VMA removed from the mm has ``mm = None``
        and a split or merge updates ``start``/``end`` in place, so the check is exact.
        """
        vma = self._last_vma
        if vma is not None and vma.start <= addr < vma.end and vma.mm is self:
            return vma
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0:
            vma = self.vmas[i]
            if addr < vma.end:
                self._last_vma = vma
                return vma
        return None

    def vmas_in(self, start: int, end: int) -> list[Vma]:
        """VMAs overlapping ``[start, end)``, in address order."""
        i = max(bisect.bisect_right(self._starts, start) - 1, 0)
        out = []
        for vma in self.vmas[i:]:
            if vma.start >= end:
                break
            if vma.end > start:
                out.append(vma)
        return out

    def pte(self, addr: int) -> P.PteView | None:
        """The PTE mapping ``addr`` (None: pte_none), for inspection."""
        return P.PteView.of(self.ptes.get(addr >> PAGE_SHIFT))

    def iter_ptes(self, vma: Vma) -> Iterator[tuple[int, int]]:
        """(vpn, bits) of the PTEs inside ``vma``, in address order."""
        return self.ptes.between(vma.start >> PAGE_SHIFT, vma.end >> PAGE_SHIFT)

    def rss(self) -> int:
        """Pages mapped (present PTEs)."""
        return len(self.ptes)

    # -- VMA list maintenance -----------------------------------------------------------
    def _insert(self, vma: Vma) -> None:
        i = bisect.bisect_left(self._starts, vma.start)
        self._starts.insert(i, vma.start)
        self.vmas.insert(i, vma)
        if vma.mapping is not None:
            vma.mapping.i_mmap.add(vma)

    def _remove(self, vma: Vma) -> None:
        i = self.vmas.index(vma)
        del self.vmas[i]
        del self._starts[i]
        if vma.mapping is not None:
            vma.mapping.i_mmap.discard(vma)
        vma.mm = None

    def _split(self, vma: Vma, addr: int) -> Vma:
        """Split ``vma`` at ``addr``; return the upper part (``__split_vma``)."""
        upper = Vma(self, addr, vma.end, vma.pgoff_of(addr), vma.file, vma.vm_flags)
        vma.end = addr
        self._insert(upper)
        return upper

    def _mergeable(self, a: Vma, b: Vma) -> bool:
        if a.end != b.start or a.file is not b.file or a.vm_flags != b.vm_flags:
            return False
        return a.file is None or a.pgoff_of(a.end) == b.pgoff

    def _merge_around(self, start: int, end: int) -> None:
        """Merge mergeable neighbours of the VMAs covering ``[start, end)``."""
        i = max(bisect.bisect_right(self._starts, start) - 2, 0)
        while i + 1 < len(self.vmas):
            a, b = self.vmas[i], self.vmas[i + 1]
            if a.start > end:
                break
            if self._mergeable(a, b):
                self._remove(b)
                a.end = b.end
                continue
            i += 1

    def _range_free(self, start: int, end: int) -> bool:
        return not self.vmas_in(start, end)

    def get_unmapped_area(self, length: int, hint: int = 0) -> int:
        """Find room for ``length`` bytes, top-down below MMAP_TOP (``get_unmapped_area``)."""
        if hint:
            hint = _page_align(hint)
            end = hint + length
            if hint >= MMAP_MIN_ADDR and end <= TASK_SIZE and self._range_free(hint, end):
                return hint
        end = MMAP_TOP
        for vma in reversed(self.vmas):
            if vma.start >= end:
                continue
            if vma.end <= end - length:
                break
            end = vma.start
        if end - length < MMAP_MIN_ADDR:
            raise SimError(errno.ENOMEM, "no room for the mapping")
        return end - length

    # -- zapping ----------------------------------------------------------------------
    def zap_vpns(self, vma: Vma, lo: int, hi: int, *, even_cows: bool = True) -> None:
        """Clear the PTEs of ``vma`` for pages ``lo..hi-1`` (kernel ``zap_pte_range``).

        A dirty file PTE marks its page dirty; anonymous pages lose a mapcount.
        """
        ptes, anon = self.ptes, self.anon
        mapping = vma.mapping
        base = (vma.start >> PAGE_SHIFT) - vma.pgoff
        for vpn, bits in list(self.ptes.between(lo, hi)):
            if bits & P.ANON:
                if not even_cows:
                    continue
                anon.pop(vpn).mapcount -= 1
            elif bits & P.DIRTY and mapping is not None:
                page = mapping.pages.get(vpn - base)
                if page is not None:
                    mapping.set_page_dirty(page)
            del ptes[vpn]

    # -- mmap ---------------------------------------------------------------------------
    async def mmap(
        self,
        addr: int,
        length: int,
        prot: Prot,
        flags: MapFlags,
        file: MappedFile | None = None,
        offset: int = 0,
    ) -> int:
        """Create a mapping; return its address (kernel ``ksys_mmap_pgoff``/``do_mmap``)."""
        anonymous = bool(flags & MapFlags.ANONYMOUS)
        if file is None and not anonymous:
            raise SimError(errno.EBADF, "mmap of no file without MAP_ANONYMOUS")
        if offset & PAGE_MASK or offset < 0:
            raise SimError(errno.EINVAL, f"offset {offset} is not page aligned")
        if length <= 0:
            raise SimError(errno.EINVAL, "zero length")
        length = _page_align(length)
        if length > TASK_SIZE:
            raise SimError(errno.ENOMEM, "longer than the address space")
        if anonymous:
            file, offset = None, 0
        shared = bool(flags & MapFlags.SHARED)
        if shared == bool(flags & MapFlags.PRIVATE):
            raise SimError(errno.EINVAL, "exactly one of MAP_SHARED and MAP_PRIVATE")
        if (offset >> PAGE_SHIFT) + (length >> PAGE_SHIFT) >= 1 << (64 - PAGE_SHIFT):
            raise SimError(errno.EOVERFLOW, "offset + length overflow")
        vm_flags = prot_to_flags(prot) | VmFlags.MAYREAD | VmFlags.MAYWRITE | VmFlags.MAYEXEC
        if shared:
            vm_flags |= VmFlags.SHARED | VmFlags.MAYSHARE
        if file is not None:
            if shared and prot & Prot.WRITE and not file.writable:
                raise SimError(errno.EACCES, "shared writable mapping of a file not open for write")
            if not file.readable:
                raise SimError(errno.EACCES, "file not open for reading")
            if shared and not file.writable:
                vm_flags &= ~(VmFlags.MAYWRITE | VmFlags.SHARED)
        elif shared:
            file = self.sim.shmem_file(length)  # shmem_zero_setup
        fixed = bool(flags & (MapFlags.FIXED | MapFlags.FIXED_NOREPLACE))
        await self.mmap_lock.acquire_write()
        try:
            if fixed:
                if addr & PAGE_MASK:
                    raise SimError(errno.EINVAL, "MAP_FIXED address not page aligned")
                if addr < MMAP_MIN_ADDR or addr + length > TASK_SIZE:
                    raise SimError(errno.ENOMEM if addr >= MMAP_MIN_ADDR else errno.EPERM)
                if not self._range_free(addr, addr + length):
                    if flags & MapFlags.FIXED_NOREPLACE:
                        raise SimError(errno.EEXIST, "MAP_FIXED_NOREPLACE over a mapping")
                    await self._do_munmap(addr, addr + length)
            else:
                addr = self.get_unmapped_area(length, addr)
            vma = Vma(self, addr, addr + length, offset >> PAGE_SHIFT, file, vm_flags)
            self._insert(vma)
            self._merge_around(addr, addr + length)
        finally:
            self.mmap_lock.release_write()
        detail = f"{length} {prot} {flags}"
        self.sim.trace.record("mmap", self.pid, addr, offset >> PAGE_SHIFT, detail)
        return addr

    # -- munmap -------------------------------------------------------------------------
    async def munmap(self, addr: int, length: int) -> None:
        """Remove mappings in ``[addr, addr+length)`` (kernel ``__do_munmap``)."""
        if addr & PAGE_MASK:
            raise SimError(errno.EINVAL, "munmap address not page aligned")
        if length <= 0:
            raise SimError(errno.EINVAL, "zero length")
        length = _page_align(length)
        if length > TASK_SIZE or addr > TASK_SIZE - length:
            raise SimError(errno.EINVAL, "range outside the address space")
        await self.mmap_lock.acquire_write()
        try:
            await self._do_munmap(addr, addr + length)
        finally:
            self.mmap_lock.release_write()
        self.sim.trace.record("munmap", self.pid, addr, -1, str(length))

    async def _do_munmap(self, start: int, end: int) -> None:
        closing = []
        for vma in self.vmas_in(start, end):
            if vma.start < start:
                vma = self._split(vma, start)
            if vma.end > end:
                self._split(vma, end)
            self.zap_vpns(vma, vma.start >> PAGE_SHIFT, vma.end >> PAGE_SHIFT)
            self._remove(vma)
            closing.append(vma)
        for vma in closing:
            close = getattr(vma.vm_ops, "close", None)
            if close is not None:
                await close(vma)

    # -- mprotect ----------------------------------------------------------------------
    async def mprotect(self, addr: int, length: int, prot: Prot) -> None:
        """Change protection of ``[addr, addr+length)`` (kernel ``do_mprotect_pkey``)."""
        if addr & PAGE_MASK:
            raise SimError(errno.EINVAL, "mprotect address not page aligned")
        if length == 0:
            return
        end = addr + _page_align(length)
        if length < 0 or end > TASK_SIZE:
            raise SimError(errno.ENOMEM, "range outside the address space")
        new_access = prot_to_flags(prot)
        await self.mmap_lock.acquire_write()
        try:
            self._mprotect_locked(addr, end, new_access)
        finally:
            self._merge_around(addr, end)
            self.mmap_lock.release_write()
        self.sim.trace.record("mprotect", self.pid, addr, -1, f"{end - addr} {prot}")

    def _mprotect_locked(self, start: int, end: int, new_access: VmFlags) -> None:
        vma = self.find_vma(start)
        if vma is None:
            raise SimError(errno.ENOMEM, "mprotect of an unmapped address")
        cur = start
        for vma in self.vmas_in(start, end):
            if vma.start > cur:
                raise SimError(errno.ENOMEM, "mprotect range has a hole")
            newflags = (vma.vm_flags & ~ACCESS) | new_access
            if newflags & VmFlags.WRITE and not newflags & VmFlags.MAYWRITE:
                raise SimError(errno.EACCES, "PROT_WRITE on a mapping that may not be written")
            if newflags & VmFlags.READ and not newflags & VmFlags.MAYREAD:
                raise SimError(errno.EACCES, "PROT_READ not allowed")
            if vma.start < start:
                vma = self._split(vma, start)
            if vma.end > end:
                self._split(vma, end)
            vma.set_flags(newflags, self.profile)
            self._change_protection(vma)
            cur = vma.end
        if cur < end:
            raise SimError(errno.ENOMEM, "mprotect range runs past the last mapping")

    def _change_protection(self, vma: Vma) -> None:
        """Re-stamp the PTEs of ``vma`` after its flags changed (``change_protection``)."""
        ptes = self.ptes
        for vpn, bits in list(self.iter_ptes(vma)):
            new = bits | P.PRESENT if vma.vm_access else bits & ~P.PRESENT
            if not vma.vm_write:
                new &= ~P.WRITE
            elif not bits & P.WRITE and self._may_upgrade(vma, vpn, bits):
                new |= P.WRITE
            ptes[vpn] = new

    def _may_upgrade(self, vma: Vma, vpn: int, bits: int) -> bool:
        """``can_change_{shared,private}_pte_writable``: avoid a pointless fault later."""
        if bits & P.ZERO:
            return False
        if bits & P.ANON:
            return self.anon[vpn].mapcount == 1
        if not vma.vm_shared:
            return False
        return not vma.writenotify or bool(bits & P.DIRTY)

    # -- msync --------------------------------------------------------------------------
    async def msync(self, addr: int, length: int, flags: MsFlags) -> None:
        """Flush a range of shared file mappings (kernel ``sys_msync``)."""
        if not isinstance(flags, MsFlags) or flags & MsFlags.ASYNC and flags & MsFlags.SYNC:
            raise SimError(errno.EINVAL, "bad msync flags")
        if addr & PAGE_MASK:
            raise SimError(errno.EINVAL, "msync address not page aligned")
        end = addr + _page_align(max(length, 0))
        if length < 0 or end > TASK_SIZE:
            raise SimError(errno.ENOMEM, "range outside the address space")
        if end == addr:
            return
        unmapped_error = 0
        syncs: list[tuple[MappedFile, int, int]] = []
        await self.mmap_lock.acquire_read()
        try:
            cur = addr
            for vma in self.vmas_in(addr, end):
                if vma.start > cur:
                    unmapped_error = errno.ENOMEM
                lo, hi = max(vma.start, addr), min(vma.end, end)
                if vma.file is not None and vma.vm_shared:
                    if self.profile.msync_transfers_dirty:
                        self._transfer_dirty(vma, lo, hi)
                    if flags & MsFlags.SYNC:
                        fstart = (vma.pgoff_of(lo)) << PAGE_SHIFT
                        syncs.append((vma.file, fstart, fstart + (hi - lo) - 1))
                cur = vma.end
            if cur < end:
                unmapped_error = errno.ENOMEM
        finally:
            self.mmap_lock.release_read()
        self.sim.trace.record("msync", self.pid, addr, -1, f"{end - addr} {flags}")
        for file, fstart, fend in syncs:
            await file.fsync(fstart, fend)
        if unmapped_error:
            raise SimError(unmapped_error, "msync range has unmapped pages")

    def _transfer_dirty(self, vma: Vma, lo: int, hi: int) -> None:
        """Pre-2.6.19 msync: move PTE dirty bits to the pages (``msync_pte_range``)."""
        assert vma.mapping is not None
        base = (vma.start >> PAGE_SHIFT) - vma.pgoff
        for vpn, bits in list(self.ptes.between(lo >> PAGE_SHIFT, hi >> PAGE_SHIFT)):
            if bits & P.DIRTY and not bits & (P.ANON | P.ZERO):
                self.ptes[vpn] = bits & ~P.DIRTY
                page = vma.mapping.pages.get(vpn - base)
                if page is not None:
                    vma.mapping.set_page_dirty(page)

    # -- fork and exit ------------------------------------------------------------------
    async def fork(self, child_pid: int) -> MM:
        """A copy of this address space for a child (kernel ``dup_mmap``)."""
        child = MM(self.sim, child_pid)
        await self.mmap_lock.acquire_write()
        try:
            for vma in self.vmas:
                copy = Vma(child, vma.start, vma.end, vma.pgoff, vma.file, vma.vm_flags)
                child._insert(copy)
                self._copy_page_range(child, vma)
        finally:
            self.mmap_lock.release_write()
        return child

    def _copy_page_range(self, child: MM, vma: Vma) -> None:
        """Copy PTEs only where the VMA has anonymous pages (``vma_needs_copy``)."""
        entries = list(self.iter_ptes(vma))
        if not any(bits & P.ANON for _, bits in entries):
            return  # file pages refault in the child
        for vpn, bits in entries:
            new = bits & ~P.YOUNG
            if bits & P.ANON:
                page = self.anon[vpn]
                page.mapcount += 1
                child.anon[vpn] = page
                self.ptes[vpn] = bits & ~P.WRITE
                new &= ~P.WRITE
            elif vma.vm_shared:
                new &= ~P.DIRTY
            child.ptes[vpn] = new

    async def exit_mmap(self) -> None:
        """Tear the address space down (kernel ``exit_mmap``)."""
        if self.dead:
            return
        await self.mmap_lock.acquire_write()
        try:
            self.dead = True
            await self._do_munmap(0, TASK_SIZE)
        finally:
            self.mmap_lock.release_write()
