"""Vm operations of fusefs files: what ``sim_mmu`` calls when a process maps one.

This module owns the filesystem's side of a shared mapping (kernel: ``struct
vm_operations_struct``, ``struct address_space_operations`` and the open ``struct file``
that ``mmap`` takes):

* ``->fault`` (:meth:`FileVmOps.fault`, kernel ``filemap_fault``): the page cache *is*
  the data, so a fault finds the cached page or adds a zero page for a hole (or for a
  ``fallocate``d block never written); beyond EOF it is SIGBUS.  ``shmem`` also takes
  the page's block here, for a read too (``shmem_fault``).
* ``->page_mkwrite`` per policy (see :mod:`fusefs.vm.policy`): ``reserve`` (ext4),
  ``reserve-cow`` (btrfs), ``fuse``, ``cache`` (netfs + FS-Cache); ``legacy`` and
  ``shmem`` have none.
* ``->close`` (last reference of a VMA): ``fuse`` writes the file back
  (``fuse_vma_close``); every policy drops the file reference the VMA held (a file
  closed while mapped is released when its last mapping goes, as ``fput`` does).
* :class:`SimFile`, the open file ``mmap`` takes (a ``sim_mmu.MappedFile``):
  ``fsync(start, end)`` writes back and reports a writeback error once per open file
  (errseq); ``close()`` writes back as FUSE's ``flush`` does.

Rules every hook keeps (KERNEL.md §2):

* it may run several times for one page; a page holds at most one reservation
  (``FileData.reserve_page`` is idempotent), so a retry never reserves twice;
* it locks the page, then checks ``page.mapping`` and EOF: a page truncated or punched
  out while the hook slept answers ``NOPAGE`` (the access is retried from scratch: a
  fresh page, or SIGBUS past the new EOF) and gives back anything reserved for it;
* on success it returns ``LOCKED`` with the page locked (and, when it reserved, dirty,
  as ``block_page_mkwrite`` marks it), so writeback cannot clean the page between the
  hook and the PTE becoming writable.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import trio

from fusefs.fs.filedata import FileData
from fusefs.fs.inode import Inode
from fusefs.vm.context import VmContext
from fusefs.vm.policy import Policy
from sim_mmu.page import PAGE_MASK, PAGE_SHIFT, Page
from sim_mmu.protocols import FaultFlag, VmFault, VmFaultInfo

if TYPE_CHECKING:
    from sim_mmu.vma import Vma

_LOCKED = VmFault.LOCKED
_LOCKED_MAJOR = VmFault.LOCKED | VmFault.MAJOR
_SIGBUS = VmFault.SIGBUS
_NOPAGE = VmFault.NOPAGE
_WRITE = int(FaultFlag.WRITE)


def _gives_back_room(
    page_mkwrite: Callable[[Any, VmFaultInfo], Awaitable[VmFault]],
) -> Callable[[Any, VmFaultInfo], Awaitable[VmFault]]:
    """A ``page_mkwrite`` that fails (or is cancelled) gives back the room the dirty
    throttle reserved for its page (the ``before`` placement); on success the fault
    path dirties the page and then gives back what it did not use."""

    @functools.wraps(page_mkwrite)
    async def wrapper(self: Any, vmf: VmFaultInfo) -> VmFault:
        try:
            ret = await page_mkwrite(self, vmf)
        except BaseException:
            _release_room(self.sb)
            raise
        if not ret & _LOCKED:
            _release_room(self.sb)
        return ret

    return wrapper


def _release_room(sb: VmContext) -> None:
    if sb.dirty is not None and sb.dirty.placement == "before":
        sb.dirty.release()


def _pages(size: int) -> int:
    return (size + PAGE_MASK) >> PAGE_SHIFT


# -- vm operations -----------------------------------------------------------------------
class FileVmOps:
    """``->fault`` and ``->close`` of a fusefs file; no ``page_mkwrite`` (``legacy``)."""

    def __init__(self, sb: VmContext, inode: Inode) -> None:
        assert inode.data is not None
        self.sb = sb
        self.inode = inode
        self.data: FileData = inode.data

    def __repr__(self) -> str:
        return f"<{type(self).__name__} ino={self.inode.ino}>"

    async def fault(self, vmf: VmFaultInfo) -> VmFault:
        """Find or add the page at ``vmf.pgoff``; return it locked (``filemap_fault``)."""
        data = self.data
        mapping = data.mapping
        pgoff = vmf.pgoff
        while True:
            if pgoff >= _pages(data.size):
                data.count("sigbus")
                return _SIGBUS
            page = mapping.pages.get(pgoff)
            major = page is None
            if page is None:  # a hole, or a block never written: zeros
                page = mapping.add_page(pgoff)
                page.uptodate = True
            if not page.trylock():
                await page.lock()
                if page.mapping is not mapping:  # truncated while we slept: look again
                    page.unlock()
                    continue
            if not self.fault_space(page, created=major):
                data.count("sigbus")
                return _SIGBUS
            vma = vmf.vma
            if vma.vm_shared and vma.vm_write and (vmf.flags & _WRITE or not vma.writenotify):
                self.sb.note_mapped_writer(self.inode.ino)
            vmf.page = page
            return _LOCKED_MAJOR if major else _LOCKED

    def fault_space(self, page: Page, *, created: bool) -> bool:
        """Space the fault itself must find (only ``shmem``); False: SIGBUS."""
        return True

    async def close(self, vma: Vma) -> None:
        """The VMA is gone: drop the file reference it held (``fput`` in ``remove_vma``)."""
        vma_closed = getattr(vma.file, "vma_closed", None)  # a SimFile (fusefs.vm.file)
        if vma_closed is not None:
            await vma_closed()

    async def _throttle_before(self) -> None:
        """The seed's placement of dirty throttling: at the start of ``page_mkwrite``,
        before the page is locked or can become writable (``dirty_placement`` before)."""
        dirty = self.sb.dirty
        if dirty is not None and dirty.placement == "before":
            await dirty.balance_before(self.data)

    async def _enter_mkwrite(self, vmf: VmFaultInfo) -> Page:
        """What every ``page_mkwrite`` of ours does first: throttle (seed placement),
        take the fault's page and count the call."""
        await self._throttle_before()
        page = vmf.page
        assert page is not None
        self.data.count("mkwrite_calls")
        return page

    def _made_writable(self) -> None:
        """The hook succeeded: mtime (``file_update_time``) and the mount's notice."""
        self.inode.touch_modified(self.sb.clock())
        self.sb.note_mapped_writer(self.inode.ino)

    async def _lock_checked(self, page: Page) -> bool:
        """Lock ``page``; False (unlocked) when it left the file or lies past EOF."""
        if self.sb.mkwrite_latency:  # sb_start_pagefault, journal start, ...: may sleep
            await trio.sleep(self.sb.mkwrite_latency)
        if not page.trylock():
            await page.lock()
        if page.mapping is not self.data.mapping or page.index >= _pages(self.data.size):
            page.unlock()
            return False
        return True


class ReserveVmOps(FileVmOps):
    """ext4 delalloc: a hole page reserves one block; none free ⇒ SIGBUS."""

    @_gives_back_room
    async def page_mkwrite(self, vmf: VmFaultInfo) -> VmFault:
        """Kernel ``ext4_page_mkwrite`` → ``block_page_mkwrite`` (``ext4_da_get_block_prep``)."""
        page = await self._enter_mkwrite(vmf)
        data = self.data
        retried = False
        while True:
            if not await self._lock_checked(page):
                return _NOPAGE
            if data.reserve_page(page):  # allocated or already reserved: nothing new
                data.mark_page_dirty(page)
                self._made_writable()
                return _LOCKED
            page.unlock()
            if retried or not await self.sb.retry_alloc():  # ext4_should_retry_alloc
                data.count("sigbus")
                return _SIGBUS
            retried = True


class ReserveCowVmOps(FileVmOps):
    """btrfs: every store to a clean page reserves a block, overwrites included."""

    @_gives_back_room
    async def page_mkwrite(self, vmf: VmFaultInfo) -> VmFault:
        """Kernel ``btrfs_page_mkwrite``: reserve *before* locking the page (lock order
        with writeback), then lock; truncated ⇒ release the reservation, NOPAGE."""
        page = await self._enter_mkwrite(vmf)
        data = self.data
        held = False
        if page not in data.reserved_pages and page not in data.cow_reserved:
            if not data.pool.reserve(1) and (
                not await self.sb.retry_alloc() or not data.pool.reserve(1)
            ):
                data.count("sigbus")
                return _SIGBUS
            data.inflight_reserved += 1
            held = True
        try:
            locked = await self._lock_checked(page)
        except BaseException:
            if held:
                self._give_back()
            raise
        if not locked:
            if held:
                self._give_back()
            return _NOPAGE
        if held:
            data.adopt_inflight(page, cow=True)
        elif not data.reserve_cow(page):  # writeback used it up while we slept
            page.unlock()
            data.count("sigbus")
            return _SIGBUS
        data.mark_page_dirty(page)
        self._made_writable()
        return _LOCKED

    def _give_back(self) -> None:
        self.data.inflight_reserved -= 1
        self.data.pool.unreserve(1)


class FuseVmOps(FileVmOps):
    """The kernel's FUSE: wait for the page's writeback to end, reserve nothing."""

    @_gives_back_room
    async def page_mkwrite(self, vmf: VmFaultInfo) -> VmFault:
        """Kernel ``fuse_page_mkwrite``: lock, mapping check, ``fuse_wait_on_page_writeback``."""
        page = await self._enter_mkwrite(vmf)
        if not await self._lock_checked(page):
            return _NOPAGE
        if page.writeback:
            try:
                await page.wait_writeback()
            except BaseException:
                page.unlock()
                raise
            if page.mapping is not self.data.mapping:  # truncated while we waited
                page.unlock()
                return _NOPAGE
        self._made_writable()
        return _LOCKED

    async def close(self, vma: Vma) -> None:
        """``fuse_vma_close``: write the file back when a shared writable VMA goes."""
        if vma.vm_shared and vma.vm_maywrite:
            await self.data.writeback()
        await super().close(vma)


class CacheVmOps(FileVmOps):
    """netfs with FS-Cache: the page may become writable only once the backing cache
    holds its current contents; no reservation (the server's ENOSPC comes at writeback)."""

    @_gives_back_room
    async def page_mkwrite(self, vmf: VmFaultInfo) -> VmFault:
        """Kernel ``nfs_vm_page_mkwrite`` / ``netfs_page_mkwrite``: wait for the cache write."""
        page = await self._enter_mkwrite(vmf)
        if not await self._lock_checked(page):
            return _NOPAGE
        cache = self.sb.cache
        try:
            if not cache.holds(self.inode.ino, page):
                await cache.store_page(self.inode.ino, page)
            if page.writeback:
                await page.wait_writeback()
        except BaseException:
            page.unlock()
            raise
        if page.mapping is not self.data.mapping:  # truncated while we slept (locked)
            page.unlock()
            return _NOPAGE
        self._made_writable()
        return _LOCKED


class ShmemVmOps(FileVmOps):
    """tmpfs: no hook; the fault takes the page's block (``shmem_get_folio`` SGP_CACHE)."""

    def fault_space(self, page: Page, *, created: bool) -> bool:
        data = self.data
        if not data.page_needs_block(page.index):
            return True
        if data.pool.allocate(1):
            data.allocated.add(page.index)
            return True
        page.unlock()
        if created and not page.dirty and page.mapping is data.mapping:
            data.mapping.delete_page(page)  # leave no page behind for the failed fault
        return False


_OPS: dict[Policy, type[FileVmOps]] = {
    Policy.LEGACY: FileVmOps,
    Policy.RESERVE: ReserveVmOps,
    Policy.RESERVE_COW: ReserveCowVmOps,
    Policy.FUSE: FuseVmOps,
    Policy.CACHE: CacheVmOps,
    Policy.SHMEM: ShmemVmOps,
}


def vm_ops_for(sb: VmContext, inode: Inode, policy: Policy) -> FileVmOps:
    return _OPS[policy](sb, inode)
