"""A tiny in-memory file implementing the ``sim_mmu`` protocols (for its own tests).

``MemInode`` is the file: its page cache (``mapping``), size, and a "disk" (``store``:
page index → bytes written back) so writeback is observable.  ``MemInode.open()`` gives
a ``MemFile`` (an open file: FMODE_READ/WRITE and its errseq sample), which is what
``mmap`` takes.

The write-notification hook can be steered by tests: ``mkwrite_result`` (return this
instead of succeeding: SIGBUS, NOPAGE, OOM, RETRY...), ``mkwrite_sleep`` (seconds of
virtual time the hook sleeps before locking the page), ``mkwrite_sleep_locked`` (sleeps
holding the page lock, after its checks), ``mkwrite=False`` (no hook, like
tmpfs), and ``wait_stable`` (wait for writeback of the page, as FUSE and stable-page
devices do).  ``writepage_error`` makes writeback fail with that errno.

Also provides what a filesystem does around the page cache: ``write``/``read`` through
the cache (``write(2)``/``read(2)``), ``truncate`` (unmap, drop pages, zero the tail of the
new last page, SIGBUS beyond EOF afterwards), ``punch_hole`` and writeback
(``writeback``/``fsync``) with errors reported once per open file.
"""

from __future__ import annotations

import errno

import trio

from sim_mmu.errors import SimError
from sim_mmu.filemap import filemap_fault, filemap_write_and_wait_range, size_in_pages
from sim_mmu.page import PAGE_MASK, PAGE_SHIFT, PAGE_SIZE, AddressSpace, Page
from sim_mmu.protocols import VmFault, VmFaultInfo

_LOCKED = VmFault.LOCKED  # a member looked up once: VmFault.X costs a class lookup


class MemAops:
    """``readpage``/``writepage`` against the inode's ``store``."""

    def __init__(self, inode: MemInode) -> None:
        self.inode = inode

    async def readpage(self, page: Page) -> None:
        data = self.inode.store.get(page.index)
        if data is not None:
            page.data[:] = data
        # else a hole: the page is zeros already (a page is zeroed when it is made, and
        # nothing writes to it before it is uptodate)
        page.uptodate = True

    async def writepage(self, page: Page) -> None:
        inode = self.inode
        inode.writepage_calls += 1
        if inode.writepage_sleep:
            await trio.sleep(inode.writepage_sleep)
        if inode.writepage_error:
            raise SimError(inode.writepage_error, f"writepage of page {page.index}")
        data = bytearray(page.data)
        tail = inode.size - (page.index << PAGE_SHIFT)
        if tail < PAGE_SIZE:  # the part beyond EOF is zeroed on the way out
            data[max(tail, 0) :] = bytes(PAGE_SIZE - max(tail, 0))
        inode.store[page.index] = bytes(data)


class MemVmOps:
    """``->fault`` only: no write notification (tmpfs-like)."""

    def __init__(self, inode: MemInode) -> None:
        self.inode = inode

    fault = staticmethod(filemap_fault)  # the generic ->fault, as most filesystems do


class MemVmOpsMkwrite(MemVmOps):
    """``->fault`` and a steerable ``->page_mkwrite``."""

    async def page_mkwrite(self, vmf: VmFaultInfo) -> VmFault:
        inode = self.inode
        inode.mkwrite_calls += 1
        page = vmf.page
        assert page is not None
        if inode.mkwrite_sleep:
            await trio.sleep(inode.mkwrite_sleep)
        if inode.mkwrite_result is not None:
            return inode.mkwrite_result
        if page.locked:
            await page.lock()
        else:
            page.locked = True  # folio_trylock
        # truncated, or the page now starts at or beyond EOF
        if page.mapping is not inode.mapping or page.index << PAGE_SHIFT >= inode.size:
            page.unlock()
            return VmFault.NOPAGE
        if inode.wait_stable:
            await page.wait_writeback()
        if inode.mkwrite_sleep_locked:
            await trio.sleep(inode.mkwrite_sleep_locked)
        return _LOCKED


class MemInode:
    """An in-memory file: page cache + a dict standing in for the disk."""

    def __init__(
        self,
        *,
        size: int = 0,
        mkwrite: bool = True,
        accounts_dirty: bool = True,
        wait_stable: bool = False,
        name: str = "memfile",
    ) -> None:
        self.name = name
        self.size = size
        self.mapping = AddressSpace(self)
        self.store: dict[int, bytes] = {}
        self.a_ops = MemAops(self)
        self.vm_ops: MemVmOps = MemVmOpsMkwrite(self) if mkwrite else MemVmOps(self)
        self.accounts_dirty = accounts_dirty
        self.wait_stable = wait_stable
        self.mkwrite_result: VmFault | None = None
        self.mkwrite_sleep = 0.0
        self.mkwrite_sleep_locked = 0.0
        self.mkwrite_calls = 0
        self.writepage_calls = 0
        self.writepage_error = 0
        self.writepage_sleep = 0.0

    def __repr__(self) -> str:
        return f"<MemInode {self.name} size={self.size}>"

    def open(self, *, read: bool = True, write: bool = True) -> MemFile:
        return MemFile(self, readable=read, writable=write)

    # -- data through the page cache ---------------------------------------------------
    def _page(self, index: int) -> Page:
        page = self.mapping.find_or_create_page(index)
        if not page.uptodate:
            data = self.store.get(index)
            if data is not None:
                page.data[:] = data
            page.uptodate = True
        return page

    def write(self, offset: int, data: bytes) -> int:
        """``write(2)``: copy into the page cache, dirty the pages, extend the size."""
        pos = 0
        while pos < len(data):
            index, off = (offset + pos) >> PAGE_SHIFT, (offset + pos) & PAGE_MASK
            n = min(PAGE_SIZE - off, len(data) - pos)
            page = self._page(index)
            page.data[off : off + n] = data[pos : pos + n]
            self.mapping.set_page_dirty(page)
            pos += n
        self.size = max(self.size, offset + len(data))
        return len(data)

    def read(self, offset: int, length: int) -> bytes:
        """``read(2)``: what the file holds now (page cache first, then the disk)."""
        length = max(0, min(length, self.size - offset))
        out = bytearray()
        pos = 0
        while pos < length:
            index, off = (offset + pos) >> PAGE_SHIFT, (offset + pos) & PAGE_MASK
            n = min(PAGE_SIZE - off, length - pos)
            page = self.mapping.find_page(index)
            if page is not None and page.uptodate:
                out += page.data[off : off + n]
            else:
                out += (self.store.get(index) or bytes(PAGE_SIZE))[off : off + n]
            pos += n
        return bytes(out)

    def truncate(self, size: int) -> None:
        """``ftruncate``: shrink or grow; pages wholly beyond EOF leave (``truncate_pagecache``)."""
        if size < 0:
            raise SimError(errno.EINVAL, "negative size")
        old = self.size
        self.size = size
        if size >= old:
            self._zero_tail(old)  # what lay beyond the old EOF must read as zeros
            return
        first_gone = size_in_pages(size)
        self.mapping.truncate_pages_nowait(first_gone)
        for index in [i for i in self.store if i >= first_gone]:
            del self.store[index]
        self._zero_tail(size)

    def _zero_tail(self, size: int) -> None:
        """Zero the part of the page holding byte ``size`` that lies at or beyond it."""
        tail = size & PAGE_MASK
        if tail:
            index = size >> PAGE_SHIFT
            page = self.mapping.find_page(index)
            if page is not None:
                page.data[tail:] = bytes(PAGE_SIZE - tail)
            if index in self.store:
                self.store[index] = self.store[index][:tail] + bytes(PAGE_SIZE - tail)

    def punch_hole(self, offset: int, length: int) -> None:
        """``fallocate(PUNCH_HOLE)`` of whole pages: data gone, size unchanged."""
        first = (offset + PAGE_MASK) >> PAGE_SHIFT
        last = ((offset + length) >> PAGE_SHIFT) - 1
        if last < first:
            return
        self.mapping.truncate_pages_nowait(first, last, even_cows=False)
        for index in [i for i in self.store if first <= i <= last]:
            del self.store[index]

    async def writeback(self, start: int = 0, end: int = -1) -> int:
        """Write dirty pages back and wait (``filemap_write_and_wait_range``)."""
        return await filemap_write_and_wait_range(self.mapping, self.a_ops, start, end)


class MemFile:
    """An open ``MemInode`` (a ``MappedFile``)."""

    def __init__(self, inode: MemInode, *, readable: bool, writable: bool) -> None:
        self.inode = inode
        self.readable = readable
        self.writable = writable
        self.wb_since = inode.mapping.wb_err.sample()

    def __repr__(self) -> str:
        mode = ("r" if self.readable else "") + ("w" if self.writable else "")
        return f"<MemFile {self.inode.name} {mode}>"

    @property
    def mapping(self) -> AddressSpace:
        return self.inode.mapping

    @property
    def a_ops(self) -> MemAops:
        return self.inode.a_ops

    @property
    def vm_ops(self) -> MemVmOps:
        return self.inode.vm_ops

    @property
    def i_size(self) -> int:
        return self.inode.size

    @property
    def accounts_dirty(self) -> bool:
        return self.inode.accounts_dirty

    async def fsync(self, start: int = 0, end: int = -1) -> None:
        """Write back and report a writeback error once for this open file (errseq)."""
        await self.inode.writeback(start, end)
        err, self.wb_since = self.mapping.wb_err.check_and_advance(self.wb_since)
        if err:
            raise SimError(err, "writeback error")
