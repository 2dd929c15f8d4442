"""Kernel access to a process's memory: ``get_user_pages`` and ``access_process_vm``.

What ptrace ``PEEK``/``POKE`` and ``/proc/PID/mem`` do (KERNEL.md §5).  A *forced* write
needs only VM_MAYWRITE, so it can target a read-only mapping; what happens then depends
on the era:

* modern (3.15+, ``check_vma_flags``): a forced write is allowed only on a COW mapping
  (private with VM_MAYWRITE); a read-only shared mapping gives -EFAULT.
* 2.6.18 .. 3.14: the write fault COWs the page into an anonymous page *inside the
  shared VMA*; ptrace writes the copy, the file is untouched and no hook runs (a
  not-present page first goes through ``do_no_page``, which in those kernels did call
  ``page_mkwrite`` for any VM_SHARED VMA).
* Howells' draft: ``do_wp_page`` tested only VM_SHARED, so the fault calls
  ``page_mkwrite`` for a VMA the user cannot write and the forced write lands in the
  file page (the bug Zijlstra's note fixed).

The page walk follows the pre-4.9 ``get_user_pages`` loop: fault with FOLL_WRITE until the
PTE allows the access; a fault that returns VM_FAULT_WRITE (COW broken or page reused)
lets the next lookup proceed as a read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sim_mmu import fault as F
from sim_mmu import pte as P
from sim_mmu.page import PAGE_MASK, PAGE_SHIFT, PAGE_SIZE, Page, zero_page
from sim_mmu.profile import GupForce

if TYPE_CHECKING:
    from sim_mmu.mm import MM
    from sim_mmu.vma import Vma

_MAX_TRIES = 64


def check_vma_flags(mm: MM, vma: Vma, write: bool, force: bool) -> bool:
    """May GUP access ``vma`` this way at all? (``check_vma_flags``)."""
    if write:
        if vma.vm_write:
            return True
        if not force or not vma.vm_maywrite:
            return False
        # 3.15+ (cda540ace6a1): only COW mappings may be force-written
        return not (mm.profile.gup_force is GupForce.EFAULT and vma.vm_shared)
    return vma.vm_access or force


def _follow(mm: MM, vma: Vma, vpn: int, bits: int) -> tuple[bytearray | bytes, Page | None]:
    if bits & P.ANON:
        return mm.anon[vpn].data, None
    if bits & P.ZERO:
        return zero_page(), None
    page = F._file_page(mm, vma, vpn)
    return page.data, page


async def _faultin(
    mm: MM, vma: Vma, addr: int, write: bool, task: object
) -> tuple[bytearray | bytes, Page | None] | None:
    """Fault the page at ``addr`` in until it can be accessed; None on failure."""
    vpn = addr >> PAGE_SHIFT
    foll_write = write
    for _ in range(_MAX_TRIES):
        bits = mm.ptes.get(vpn)
        if bits is not None and (not foll_write or bits & P.WRITE):
            return _follow(mm, vma, vpn, bits)
        flags = F.FL_REMOTE | (F.FL_WRITE if foll_write else 0)
        if bits is not None and not bits & P.PRESENT and not foll_write:
            return _follow(mm, vma, vpn, bits)  # PROT_NONE page read by force
        ret = await F.handle_mm_fault(mm, vma, addr & ~PAGE_MASK, flags, task)
        if ret & F.RETRY:
            continue
        if ret & F.ERROR:
            return None
        if ret & F.WRITE_F:
            foll_write = False
    raise RuntimeError(f"get_user_pages livelock at {addr:#x}")


async def access_process_vm(
    mm: MM, addr: int, data: bytes | int, *, write: bool, force: bool = True, task: object = None
) -> bytes | int:
    """Copy ``data`` into (write) or ``data`` bytes out of (read) another mm.

    Returns bytes read, or the count written; stops at the first page it cannot access
    (the kernel's "ignore errors, just check how much was successfully transferred").
    """
    mm.sim.counters.gup_calls += 1
    length = len(data) if isinstance(data, bytes | bytearray | memoryview) else int(data)
    src = memoryview(bytes(data)) if write and not isinstance(data, int) else None
    out = bytearray()
    done = 0
    await mm.mmap_lock.acquire_read()
    try:
        while done < length:
            a = addr + done
            vma = mm.find_vma(a)
            if vma is None or not check_vma_flags(mm, vma, write, force):
                break
            target = await _faultin(mm, vma, a, write, task)
            if target is None:
                break
            buf, page = target
            off = a & PAGE_MASK
            n = min(PAGE_SIZE - off, length - done)
            if write:
                assert src is not None
                assert isinstance(buf, bytearray)
                buf[off : off + n] = src[done : done + n]
                if page is not None and page.mapping is not None:
                    page.mapping.set_page_dirty(page)  # set_page_dirty_lock
            else:
                out += buf[off : off + n]
            done += n
    finally:
        mm.mmap_lock.release_read()
    mm.sim.trace.record("gup", mm.pid, addr, -1, f"{'write' if write else 'read'} {done}/{length}")
    return done if write else bytes(out)
