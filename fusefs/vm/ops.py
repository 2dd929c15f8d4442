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

import errno
import functools
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import trio

from fusefs.fs.errors import FsError
from fusefs.fs.filedata import FileData
from fusefs.fs.inode import Inode
from fusefs.vm.policy import Policy
from sim_mmu.errors import SimError
from sim_mmu.page import PAGE_MASK, PAGE_SHIFT, AddressSpace, Page
from sim_mmu.protocols import FaultFlag, VmFault, VmFaultInfo

if TYPE_CHECKING:
    from fusefs.fs.core import Filesystem
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
            _release_room(self.fs)
            raise
        if not ret & _LOCKED:
            _release_room(self.fs)
        return ret

    return wrapper


def _release_room(fs: Filesystem) -> None:
    if fs.dirty is not None and fs.dirty.placement == "before":
        fs.dirty.release()


def _pages(size: int) -> int:
    return (size + PAGE_MASK) >> PAGE_SHIFT


# -- the backing cache of the ``cache`` policy -------------------------------------------
@dataclass(frozen=True, slots=True)
class CacheCapture:
    """One page written to the backing cache: whose, which, what, when (trio clock)."""

    ino: int
    index: int
    data: bytes
    at: float


class BackingCache:
    """A second store holding copies of pages (FS-Cache's local disk cache).

    ``store_page`` copies the page's current contents and takes ``write_latency``
    seconds of virtual time to write them; ``captures`` records every write, so a test
    can check the cache got the contents from *before* a store.
    """

    def __init__(self, write_latency: float = 0.005) -> None:
        self.write_latency = write_latency
        self.pages: dict[tuple[int, int], bytes] = {}
        self.captures: list[CacheCapture] = []

    def holds(self, ino: int, page: Page) -> bool:
        return self.pages.get((ino, page.index)) == page.data

    async def store_page(self, ino: int, page: Page) -> None:
        """Write the page's current contents to the cache (the caller holds its lock)."""
        snapshot = bytes(page.data)
        if self.write_latency:
            await trio.sleep(self.write_latency)
        self.pages[(ino, page.index)] = snapshot
        self.captures.append(CacheCapture(ino, page.index, snapshot, trio.current_time()))

    def forget(self, ino: int) -> None:
        for key in [k for k in self.pages if k[0] == ino]:
            del self.pages[key]


# -- vm operations -----------------------------------------------------------------------
class FileVmOps:
    """``->fault`` and ``->close`` of a fusefs file; no ``page_mkwrite`` (``legacy``)."""

    def __init__(self, fs: Filesystem, inode: Inode) -> None:
        assert inode.data is not None
        self.fs = fs
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
                self.fs.note_mapped_writer(self.inode.ino)
            vmf.page = page
            return _LOCKED_MAJOR if major else _LOCKED

    def fault_space(self, page: Page, *, created: bool) -> bool:
        """Space the fault itself must find (only ``shmem``); False: SIGBUS."""
        return True

    async def close(self, vma: Vma) -> None:
        """The VMA is gone: drop the file reference it held (``fput`` in ``remove_vma``)."""
        file = vma.file
        if isinstance(file, SimFile):
            await file.vma_closed()

    async def _throttle_before(self) -> None:
        """The seed's placement of dirty throttling: at the start of ``page_mkwrite``,
        before the page is locked or can become writable (``dirty_placement`` before)."""
        dirty = self.fs.dirty
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
        self.inode.touch_modified(self.fs.clock())
        self.fs.note_mapped_writer(self.inode.ino)

    async def _lock_checked(self, page: Page) -> bool:
        """Lock ``page``; False (unlocked) when it left the file or lies past EOF."""
        if self.fs.mkwrite_latency:  # sb_start_pagefault, journal start, ...: may sleep
            await trio.sleep(self.fs.mkwrite_latency)
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
            if retried or not await self.fs.retry_alloc():  # ext4_should_retry_alloc
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
                not await self.fs.retry_alloc() or not data.pool.reserve(1)
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
        cache = self.fs.cache
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


def vm_ops_for(fs: Filesystem, inode: Inode, policy: Policy) -> FileVmOps:
    return _OPS[policy](fs, inode)


# -- the open file ---------------------------------------------------------------------
class FileAops:
    """``readpage``/``writepage`` (kernel ``address_space_operations``).

    The page cache holds the only copy of the data: a page that is not cached is a hole
    or a block never written, and reads as zeros.
    """

    def __init__(self, data: FileData) -> None:
        self.data = data

    async def readpage(self, page: Page) -> None:
        page.data[:] = bytes(len(page.data))
        page.uptodate = True

    async def writepage(self, page: Page) -> None:
        await self.data.writepage(page)


class SimFile:
    """An open fusefs file as ``sim_mmu`` sees it (a ``MappedFile``).

    Holds an open-file handle of the filesystem (so an unlinked file lives on while open
    or mapped).  The policy is ``policy`` if given at open, else the inode's, else the
    filesystem's, read when ``mmap`` asks for ``vm_ops``.
    """

    def __init__(
        self, fs: Filesystem, inode: Inode, fh: int, flags: int, policy: Policy | None
    ) -> None:
        assert inode.data is not None
        self.fs = fs
        self.inode = inode
        self.data: FileData = inode.data
        self.fh = fh
        self.flags = flags
        self.policy_override = policy
        self.a_ops = FileAops(self.data)
        self._ops: dict[Policy, FileVmOps] = {}
        self.closed = False
        self._released = False

    def __repr__(self) -> str:
        return f"<SimFile ino={self.inode.ino} fh={self.fh} {self.policy}>"

    @property
    def ino(self) -> int:
        return self.inode.ino

    @property
    def policy(self) -> Policy:
        return self.policy_override or self.inode.policy or self.fs.policy

    @property
    def mapping(self) -> AddressSpace:
        return self.data.mapping

    @property
    def vm_ops(self) -> FileVmOps:
        policy = self.policy
        ops = self._ops.get(policy)
        if ops is None:
            ops = self._ops[policy] = vm_ops_for(self.fs, self.inode, policy)
        return ops

    @property
    def i_size(self) -> int:
        return self.data.size

    @property
    def readable(self) -> bool:
        return (self.flags & os.O_ACCMODE) != os.O_WRONLY

    @property
    def writable(self) -> bool:
        return (self.flags & os.O_ACCMODE) != os.O_RDONLY

    @property
    def accounts_dirty(self) -> bool:
        return self.policy.accounts_dirty

    def file_update_time(self) -> None:
        """The core's mtime update for a store without a hook (``file_update_time``);
        the page it made writable will take stores the mount must hear of."""
        self.inode.touch_modified(self.fs.clock())
        self.fs.note_mapped_writer(self.inode.ino)

    async def balance_dirty_pages_ratelimited(self) -> None:
        """Called by the fault path after it dirtied a page: the filesystem's dirty
        throttle (``Filesystem.balance_dirty``, e.g. a ``sim_mmu`` bdi model), if any."""
        balance = self.fs.balance_dirty
        dirty = self.fs.dirty
        if dirty is not None and dirty.placement == "before" and self.policy.has_page_mkwrite:
            dirty.release()  # page_mkwrite throttled already, before the page became
            return  # writable, and held room for it: the page is dirty now (or was)
        if balance is not None:
            await balance(self.data)

    async def fsync(self, start: int = 0, end: int = -1) -> None:
        """``vfs_fsync_range``: write back bytes ``start..end``, report an error once."""
        if self.closed:
            raise SimError(errno.EBADF, "fsync of a closed file")
        if self.policy is Policy.SHMEM:  # tmpfs: noop_fsync, nothing to write back
            self._check_error()
            return
        first = max(start, 0) >> PAGE_SHIFT
        last = None if end < 0 else end >> PAGE_SHIFT
        await self.data.writeback(first, last)
        self._check_error()

    def _check_error(self) -> None:
        try:
            self.fs.check_wb_error(self.fh)
        except FsError as exc:
            raise SimError(exc.errno, "writeback error") from None

    def _mapped(self) -> bool:
        return any(getattr(v, "file", None) is self for v in self.data.mapping.i_mmap)

    async def close(self) -> None:
        """``close(2)``: write back (FUSE ``flush``), report a writeback error, release.

        The descriptor is closed even when an error is reported.  While a mapping of
        this file remains, the file is released when the last one goes.
        """
        if self.closed:
            raise SimError(errno.EBADF, "close of a closed file")
        self.closed = True
        error: SimError | None = None
        try:
            if self.policy is not Policy.SHMEM:
                await self.data.writeback()
            self._check_error()
        except SimError as exc:
            error = exc
        finally:
            if not self._mapped():
                await self._release()
        if error is not None:
            raise error

    async def vma_closed(self) -> None:
        if self.closed and not self._mapped():
            await self._release()

    async def _release(self) -> None:
        if not self._released:
            self._released = True
            await self.fs.release(self.fh)
