"""The page-fault handler: the whole decision table in one place.

Models ``handle_mm_fault`` → ``handle_pte_fault`` → ``do_fault``/``do_wp_page`` of
``mm/memory.c`` (modern), with the differences of older kernels switched by the
simulation's ``Profile`` (see ``sim_mmu.profile``).  The arch part
(``do_user_addr_fault``: VMA lookup, access check, signals, the retry loop) is
``do_user_addr_fault`` at the bottom.

Decision table (PTE = the entry for the faulting page; "shared" = VM_SHARED):

==================  ==============  =========================================================
PTE                 access / VMA    action
==================  ==============  =========================================================
none                anonymous       read: map the zero page RO; write: new zeroed anon page,
                                    writable+dirty (``do_anonymous_page``)
none                read            ``->fault``; install present+young, writable only if
                                    shared+writable and not write-notify (``do_read_fault``)
none                write, private  ``->fault``; copy into a new anon page, writable+dirty;
                                    file page untouched, no hook (``do_cow_fault``)
none                write, shared   ``->fault``; unlock; ``page_mkwrite``; install
                                    writable+dirty+young; page dirty; unlock; balance
                                    (``do_shared_fault``)
present, RO         write, anon     mapcount 1: reuse (make writable); else copy
present, RO         write, shared   ``wp_page_shared``: ``page_mkwrite``, then ``pte_same``
                    + VM_WRITE      and ``page.mapping`` re-check (changed: NOPAGE, refault),
                                    else young+dirty+writable, page dirty, unlock, balance
present, RO         write, other    ``wp_page_copy``: COW into an anon page (private VMA, or a
                                    forced GUP write to a RO shared VMA before 3.15)
present, RW         any             spurious: set young (and dirty on write)
==================  ==============  =========================================================

``page_mkwrite`` results (``do_page_mkwrite``): LOCKED = success with the page locked; 0 =
success, the core locks the page and finds ``mapping`` NULL ⇒ silent refault; NOPAGE ⇒
nothing installed, the access is retried from scratch; SIGBUS/OOM ⇒ signal (GUP:
-EFAULT); RETRY ⇒ the whole fault is retried.  In the ``2.6.18`` profile any failure,
NOPAGE included, is SIGBUS and the page is never held locked by the core.

Invariant kept (modern, write-notify VMA): a PTE becomes writable only after the hook
succeeded, while the page lock is held, and the page is marked dirty before that lock is
released, so writeback (which locks the page before cleaning it) cannot interleave.

Results are plain ``int`` bit masks of ``VmFault`` values inside this module (enum
arithmetic is too slow for the hot path); ``VmFault(x)`` converts them for callers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any

from sim_mmu import pte as P
from sim_mmu.errors import (
    BUS_ADRERR,
    BUS_MCEERR_AR,
    SEGV_ACCERR,
    SEGV_MAPERR,
    SIGBUS,
    SIGKILL,
    SIGSEGV,
    SigInfo,
)
from sim_mmu.page import PAGE_MASK, PAGE_SHIFT, Page
from sim_mmu.profile import GupForce
from sim_mmu.protocols import FaultFlag, VmFault, VmFaultInfo, page_mkwrite_of

if TYPE_CHECKING:
    from sim_mmu.mm import MM
    from sim_mmu.protocols import PageMkwrite
    from sim_mmu.vma import Vma

OOM = VmFault.OOM.value
SIGBUS_F = VmFault.SIGBUS.value
MAJOR = VmFault.MAJOR.value
WRITE_F = VmFault.WRITE.value
HWPOISON = VmFault.HWPOISON.value
SIGSEGV_F = VmFault.SIGSEGV.value
NOPAGE = VmFault.NOPAGE.value
LOCKED = VmFault.LOCKED.value
RETRY = VmFault.RETRY.value
ERROR = OOM | SIGBUS_F | SIGSEGV_F | HWPOISON
GIVE_UP = ERROR | NOPAGE | RETRY
RETRY_OR_ERROR = RETRY | ERROR

USED = P.PageTable.USED
LEAF_SHIFT, LEAF_MASK = P.LEAF_SHIFT, P.LEAF_MASK

FL_WRITE = int(FaultFlag.WRITE)
FL_MKWRITE = int(FaultFlag.MKWRITE)
FL_USER = int(FaultFlag.USER)
FL_ALLOW_RETRY = int(FaultFlag.ALLOW_RETRY)
FL_TRIED = int(FaultFlag.TRIED)
FL_REMOTE = int(FaultFlag.REMOTE)

PRESENT, WRITE, DIRTY, YOUNG, ANON, ZERO = P.PRESENT, P.WRITE, P.DIRTY, P.YOUNG, P.ANON, P.ZERO


def _vm_fault_value(result: object, who: str) -> int:
    if not isinstance(result, VmFault):
        raise TypeError(f"{who} must return a VmFault, not {result!r}")
    return result._value_


# -- entry ------------------------------------------------------------------------------
async def handle_mm_fault(mm: MM, vma: Vma, address: int, flags: int, task: object) -> int:
    """Resolve one fault on ``address`` in ``vma`` (caller holds mmap_lock for read)."""
    c = mm.sim.counters
    c.faults += 1
    vpn = address >> PAGE_SHIFT
    leaf = mm.ptes.nodes.get(vpn >> LEAF_SHIFT)  # pte_offset_map: the PTE's byte
    b = leaf[vpn & LEAF_MASK] if leaf is not None else 0
    bits = b ^ USED if b else None
    write = flags & FL_WRITE
    if bits is None:
        if vma.file is None:
            kind, ret = "anonymous", do_anonymous_page(mm, vma, vpn, write)
        elif not write:
            kind, ret = "read", await do_read_fault(mm, vma, address, vpn, flags, task)
        elif not vma.vm_shared:
            kind, ret = "cow", await do_cow_fault(mm, vma, address, vpn, flags, task)
        else:
            kind, ret = "shared", await do_shared_fault(mm, vma, address, vpn, flags, task)
    elif write and not bits & WRITE:
        kind, ret = "wp", await do_wp_page(mm, vma, address, vpn, bits, flags, task)
    else:  # spurious (another thread fixed it): hardware bits only
        mm.ptes[vpn] = bits | YOUNG | (DIRTY if write else 0)
        kind, ret = "spurious", 0
    if ret & MAJOR:
        c.major_faults += 1
    elif not ret & ERROR:
        c.minor_faults += 1
    if mm.sim.trace.enabled:
        pgoff = vma.pgoff_of(address) if vma.file is not None else -1
        mm.sim.trace.record("fault", mm.pid, address, pgoff, f"{kind} {VmFault(ret)!r}")
    return ret


# -- not-present faults -----------------------------------------------------------------
def do_anonymous_page(mm: MM, vma: Vma, vpn: int, write: int) -> int:
    if not write:
        mm.ptes[vpn] = PRESENT | ZERO | YOUNG
        return 0
    mm.anon[vpn] = P.AnonPage()
    mm.ptes[vpn] = PRESENT | ANON | YOUNG | DIRTY | (WRITE if vma.vm_write else 0)
    return 0


def _fault_done(vmf: VmFaultInfo, result: object) -> int:
    """Check what ``->fault`` returned (first half of ``__do_fault``).

    On GIVE_UP a page the handler left locked is unlocked.  Otherwise ``vmf.page`` is
    set; the caller locks it unless the result says LOCKED (``__do_fault`` always hands
    the page on locked).
    """
    if result.__class__ is not VmFault:
        _vm_fault_value(result, "fault")
    ret: int = result._value_  # type: ignore[attr-defined]
    if ret & GIVE_UP:
        if ret & LOCKED and vmf.page is not None:
            vmf.page.unlock()
        return ret
    if vmf.page is None:
        raise RuntimeError("->fault succeeded without setting vmf.page")
    return ret


async def do_read_fault(mm: MM, vma: Vma, address: int, vpn: int, flags: int, task: object) -> int:
    pgoff = vma.pgoff + ((address - vma.start) >> PAGE_SHIFT)
    vmf = VmFaultInfo(vma, address & ~PAGE_MASK, pgoff, flags, task)
    ret = _fault_done(vmf, await vma.vm_ops.fault(vmf))  # type: ignore[union-attr]
    if ret & GIVE_UP:
        return ret
    page = vmf.page
    assert page is not None
    if not ret & LOCKED:
        await page.lock()
    if page.mapping is not vma.mapping or vma.mapping is None:  # truncated: refault
        page.unlock()
        return NOPAGE
    mm.ptes.set_if_none(vpn, PRESENT | YOUNG | vma.new_pte_write(), page.data)  # finish_fault
    page.unlock()
    return ret & ~LOCKED


async def do_cow_fault(mm: MM, vma: Vma, address: int, vpn: int, flags: int, task: object) -> int:
    pgoff = vma.pgoff + ((address - vma.start) >> PAGE_SHIFT)
    vmf = VmFaultInfo(vma, address & ~PAGE_MASK, pgoff, flags, task)
    ret = _fault_done(vmf, await vma.vm_ops.fault(vmf))  # type: ignore[union-attr]
    if ret & GIVE_UP:
        return ret
    page = vmf.page
    assert page is not None
    if not ret & LOCKED:
        await page.lock()
    copy = P.AnonPage(page.data)
    page.unlock()
    if vpn in mm.ptes:
        return ret & ~LOCKED
    mm.anon[vpn] = copy
    mm.ptes[vpn] = PRESENT | ANON | YOUNG | DIRTY | (WRITE if vma.vm_write else 0)
    mm.sim.counters.cow_copies += 1
    mm.sim.trace.record("cow", mm.pid, address, vmf.pgoff, "do_cow_fault")
    return ret & ~LOCKED


async def do_shared_fault(
    mm: MM, vma: Vma, address: int, vpn: int, flags: int, task: object
) -> int:
    pgoff = vma.pgoff + ((address - vma.start) >> PAGE_SHIFT)
    vmf = VmFaultInfo(vma, address & ~PAGE_MASK, pgoff, flags, task)
    ret = _fault_done(vmf, await vma.vm_ops.fault(vmf))  # type: ignore[union-attr]
    if ret & GIVE_UP:
        return ret
    page = vmf.page
    assert page is not None
    if not ret & LOCKED:
        await page.lock()
    profile = mm.profile
    hook = getattr(vma.vm_ops, "page_mkwrite", None) if profile.notify else None
    if hook is not None and not callable(hook):  # page_mkwrite_of, inlined
        hook = None
    locked = True
    if hook is not None:
        page.unlock()
        tmp = await do_page_mkwrite(mm, vmf, page, hook)
        if not tmp or tmp & GIVE_UP:
            return tmp
        locked = profile.page_lock
    mapping = vma.mapping
    if (
        page.mapping is not mapping
        or mapping is None
        or not mm.ptes.set_if_none(
            vpn, PRESENT | YOUNG | DIRTY | (WRITE if vma.vm_write else 0), page.data
        )
    ):
        # truncated while the hook slept (2.6.18: truncate_count changed), or another
        # thread installed the PTE first: back out, the access is retried.
        if locked:
            page.unlock()
        return NOPAGE
    throttle = fault_dirty_shared_page(mm, vma, page, hook, locked)
    if throttle is not None:
        await throttle
    return ret & ~LOCKED


# -- page_mkwrite and its aftermath -----------------------------------------------------
async def do_page_mkwrite(mm: MM, vmf: VmFaultInfo, page: Page, hook: PageMkwrite) -> int:
    """Call the hook; on success return with LOCKED set (``do_page_mkwrite``).

    The page is then locked by us iff ``profile.page_lock``.  0 means "refault".
    """
    c = mm.sim.counters
    profile = mm.profile
    c.mkwrite_calls += 1
    vmf.flags |= FL_WRITE | FL_MKWRITE
    vmf.page = page
    result = await hook(vmf)
    if result.__class__ is not VmFault:
        _vm_fault_value(result, "page_mkwrite")
    ret: int = result._value_
    if ret == LOCKED:
        c.mkwrite_ok += 1
        if mm.sim.trace.enabled:
            mm.sim.trace.record("mkwrite", mm.pid, vmf.address, vmf.pgoff, "LOCKED")
    else:
        _count_mkwrite(mm, ret, vmf)
    if profile.int_result:  # 2.6.18: int result, no page lock across the hook
        if ret & LOCKED:
            page.unlock()
        return SIGBUS_F if ret & GIVE_UP else LOCKED
    if ret & GIVE_UP:
        if ret & LOCKED:
            page.unlock()
        return ret
    if not ret & LOCKED:
        await page.lock()
        if page.mapping is None:  # truncated: silent refault
            page.unlock()
            return 0
        ret |= LOCKED
    elif not page.locked:
        raise RuntimeError("page_mkwrite returned VM_FAULT_LOCKED with the page unlocked")
    return ret


def _count_mkwrite(mm: MM, ret: int, vmf: VmFaultInfo) -> None:
    c = mm.sim.counters
    if ret & SIGBUS_F:
        c.mkwrite_sigbus += 1
        what = "SIGBUS"
    elif ret & OOM:
        c.mkwrite_oom += 1
        what = "OOM"
    elif ret & NOPAGE:
        c.mkwrite_nopage += 1
        what = "NOPAGE"
    elif ret & RETRY:
        c.mkwrite_retry += 1
        what = "RETRY"
    else:
        c.mkwrite_ok += 1
        what = "LOCKED" if ret & LOCKED else "0"
    mm.sim.trace.record("mkwrite", mm.pid, vmf.address, vmf.pgoff, what)


def fault_dirty_shared_page(
    mm: MM, vma: Vma, page: Page, hook: PageMkwrite | None, locked: bool
) -> Coroutine[Any, Any, None] | None:
    """Mark the page dirty, unlock it, throttle (``fault_dirty_shared_page``).

    The throttling may sleep: it is returned as a coroutine for the caller to await
    (``balance_dirty_pages_ratelimited``, then ``file_update_time`` when there is no
    hook).  None: nothing can sleep, all was done here.
    """
    file = vma.file
    assert file is not None
    assert vma.mapping is not None
    dirty_at_fault = mm.profile.dirty_at_fault
    dirtied = dirty_at_fault and vma.mapping.set_page_dirty(page)
    if locked:
        page.unlock()
    if dirtied or (hook is not None and dirty_at_fault):
        balance = getattr(file, "balance_dirty_pages_ratelimited", None)
        if balance is not None:
            return _balance_then_update(file, balance, hook is None)
    if hook is None:
        _file_update_time(file)
    return None


async def _balance_then_update(
    file: object, balance: Callable[[], Awaitable[None]], update: bool
) -> None:
    await balance()
    if update:
        _file_update_time(file)


def _file_update_time(file: object) -> None:
    update = getattr(file, "file_update_time", None)
    if update is not None:
        update()


# -- write-protect faults ---------------------------------------------------------------
async def do_wp_page(
    mm: MM, vma: Vma, address: int, vpn: int, bits: int, flags: int, task: object
) -> int:
    mm.sim.counters.wp_faults += 1
    if bits & ZERO:
        return wp_page_copy(mm, vma, address, vpn, bits, None)
    if bits & ANON:  # anonymous pages first, never passed to the filesystem
        anon = mm.anon[vpn]
        if anon.mapcount == 1:
            mm.ptes[vpn] = bits | YOUNG | DIRTY | (WRITE if vma.vm_write else 0)
            return WRITE_F
        return wp_page_copy(mm, vma, address, vpn, bits, anon.data)
    if vma.vm_shared and (vma.vm_write or mm.profile.gup_force is GupForce.DRAFT):
        return await wp_page_shared(mm, vma, address, vpn, bits, flags, task)
    assert vma.mapping is not None
    page = _file_page(mm, vma, vpn)
    return wp_page_copy(mm, vma, address, vpn, bits, page.data)


def _file_page(mm: MM, vma: Vma, vpn: int) -> Page:
    assert vma.mapping is not None
    pgoff = vma.pgoff + vpn - (vma.start >> PAGE_SHIFT)
    page = vma.mapping.pages.get(pgoff)
    if page is None:
        raise RuntimeError(
            f"BUG: pid {mm.pid} PTE at {vpn << PAGE_SHIFT:#x} maps file page {pgoff}, "
            "which is not in the page cache (removed without unmap_mapping_range?)"
        )
    return page


def wp_page_copy(
    mm: MM, vma: Vma, address: int, vpn: int, bits: int, data: bytearray | None
) -> int:
    """Break COW: give this PTE its own anonymous copy (``wp_page_copy``)."""
    if bits & ANON:
        mm.anon[vpn].mapcount -= 1
    mm.anon[vpn] = P.AnonPage(data)
    mm.ptes[vpn] = PRESENT | ANON | YOUNG | DIRTY | (WRITE if vma.vm_write else 0)
    mm.sim.counters.cow_copies += 1
    mm.sim.trace.record("cow", mm.pid, address, vma.pgoff_of(address), "wp_page_copy")
    return WRITE_F


async def wp_page_shared(
    mm: MM, vma: Vma, address: int, vpn: int, bits: int, flags: int, task: object
) -> int:
    """Write to a read-only PTE of a shared writable mapping (``wp_page_shared``)."""
    assert vma.file is not None
    mapping = vma.file.mapping
    page = _file_page(mm, vma, vpn)
    pgoff = page.index
    hook = page_mkwrite_of(vma.vm_ops) if mm.profile.notify else None
    if hook is not None:
        vmf = VmFaultInfo(vma, address & ~PAGE_MASK, pgoff, flags, task)
        tmp = await do_page_mkwrite(mm, vmf, page, hook)
        if not tmp or tmp & GIVE_UP:
            return tmp
        locked = mm.profile.page_lock
    else:
        await page.lock()
        locked = True
    # finish_mkwrite_fault: the PTE (and the page it maps) must be what we faulted on
    if mm.ptes.get(vpn) != bits or mapping.pages.get(pgoff) is not page:
        mm.sim.counters.pte_changed += 1
        mm.sim.trace.record("pte_changed", mm.pid, address, pgoff, "")
        if locked:
            page.unlock()
        return NOPAGE
    mm.ptes[vpn] = bits | YOUNG | DIRTY | (WRITE if vma.vm_write else 0)  # wp_page_reuse
    throttle = fault_dirty_shared_page(mm, vma, page, hook, locked)
    if throttle is not None:
        await throttle
    return WRITE_F


# -- the arch fault handler: access check, retry loop, signals ---------------------------
async def do_user_addr_fault(
    mm: MM, address: int, write: bool, task: object, *, user: bool = True
) -> SigInfo | None:
    """Handle an access fault; return the signal to deliver, or None to re-execute.

    ``user=False`` is a kernel-mode access (``copy_to_user``): the caller turns the
    would-be signal into -EFAULT, nothing is delivered or counted as a signal.
    """
    flags = (FL_USER if user else 0) | FL_ALLOW_RETRY | (FL_WRITE if write else 0)
    lock = mm.mmap_lock
    while True:
        if lock.writer or lock.waiting_writers:
            await lock.acquire_read()
        else:
            lock.readers += 1  # uncontended down_read: no scheduling
        try:
            vma = mm.find_vma(address)
            if vma is None:
                return _signal(mm, SigInfo(SIGSEGV, SEGV_MAPERR, address), user)
            if not (vma.vm_write if write else vma.vm_access):
                return _signal(mm, SigInfo(SIGSEGV, SEGV_ACCERR, address), user)
            ret = await handle_mm_fault(mm, vma, address, flags, task)
        finally:
            lock.readers -= 1  # up_read; wake writers only if some wait
            if lock.waiting_writers and not lock.readers:
                lock.wake_writers()
        if not ret & RETRY_OR_ERROR:
            return None
        if ret & RETRY:
            flags |= FL_TRIED
            continue
        if ret & ERROR:
            return _fault_signal(mm, ret, address, user)
        return None


def _fault_signal(mm: MM, ret: int, address: int, user: bool) -> SigInfo:
    if ret & OOM:
        return _signal(mm, SigInfo(SIGKILL, 0, address), user)
    if ret & SIGSEGV_F:
        return _signal(mm, SigInfo(SIGSEGV, SEGV_ACCERR, address), user)
    code = BUS_MCEERR_AR if ret & HWPOISON else BUS_ADRERR
    return _signal(mm, SigInfo(SIGBUS, code, address), user)


def _signal(mm: MM, info: SigInfo, user: bool) -> SigInfo:
    if not user:
        mm.sim.trace.record("efault", mm.pid, info.addr, -1, str(info))
        return info
    c = mm.sim.counters
    if info.signo == SIGBUS:
        c.sigbus += 1
        kind = "sigbus"
    elif info.signo == SIGSEGV:
        c.sigsegv += 1
        kind = "sigsegv"
    else:
        c.oom_kills += 1
        kind = "oom_kill"
    mm.sim.trace.record(kind, mm.pid, info.addr, -1, str(info))
    return info
