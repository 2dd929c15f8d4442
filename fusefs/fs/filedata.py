"""A regular file's data: its pages in the page cache and the block state of each page.

This module owns, for one regular file, the mapping from page index to block state:

* **hole** — no block.  A cached page there (a read fault of a hole) holds zeros.
* **reserved** — a dirty page with a promised block (delayed allocation, as ext4's
  ``ext4_da_get_block_prep``).  The reservation belongs to the *page object*
  (``reserved_pages``), so a page removed by truncate or hole punch takes its
  reservation with it and a stale holder of that page can never release a reservation
  that a newer page at the same index made.
* **allocated** — the index is in ``allocated``: a block holds the data.  The page may
  be cached (the one copy of the data) or not (a block from ``fallocate`` that was never
  written: it reads as zeros).  A copy-on-write filesystem (the ``reserve-cow`` policy,
  btrfs) also reserves a block for a store that *overwrites* an allocated page
  (``cow_reserved``): writeback then writes the new block and frees the old one.

The data itself lives only in ``mapping`` (a ``sim_mmu`` AddressSpace); there is no
second copy.  "Writing back" a page therefore moves no bytes: it turns the page's
reservation into an allocation (or allocates now, for a dirty page that has neither, the
pre-``page_mkwrite`` case) and cleans the page.  When no block can be found then, the
error is recorded on the mapping (``errseq``) and the page's data is dropped, as the
kernel's writeback drops data it cannot write.

Invariants (checked by :meth:`FileData.check`):

* a reserved page is cached in this mapping, is dirty or locked (being dirtied), and its
  index is not allocated; a ``cow_reserved`` page is the same except that its index *is*
  allocated;
* ``len(allocated)`` and ``nr_reserved`` (reserved pages + COW reservations + the
  reservations a sleeping ``page_mkwrite`` holds, ``inflight_reserved``) are this file's
  share of the pool's allocated and reserved counters;
* no page is cached wholly beyond EOF.

Concurrency (one trio loop): ``i_rwsem`` serialises write, truncate (through
``setattr``) and fallocate of one file, as the kernel's inode lock does.  A page is
changed only by a task that holds its lock or that does not sleep between looking at
the page and dirtying it; whoever sleeps re-checks ``page.mapping`` when it wakes
(truncate removes locked pages too, the holder finds out).  Bytes stored past EOF in the
last page are zeroed when the size grows and at writeback, never exposed as data.

The vm operations (``fault``/``page_mkwrite``/``writepage`` policies) build on the
methods ``page_needs_block``, ``reserve_page``, ``allocate_for_writeback``,
``release_page_space``, ``mark_page_dirty`` and ``writepage``.
"""

from __future__ import annotations

import enum
import errno
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import trio

from fusefs.fs.errors import FsError
from fusefs.fs.space import BlockPool
from sim_mmu.page import PAGE_MASK, PAGE_SHIFT, PAGE_SIZE, AddressSpace, Page, zero_page

# The largest file size (kernel: MAX_LFS_FILESIZE on 64-bit).
MAX_FILE_SIZE = (1 << 63) - 1

_ZEROS = memoryview(zero_page())


def _no_balance() -> None:
    return None


class WriteCap(Protocol):
    """The dirty throttle's hard cap as ``write(2)`` meets it (the seed's placement):
    awaited before each page is copied, it waits for room for that page under the
    hard limit and holds it until the page is dirty; ``release`` gives back room the
    write did not use."""

    async def before_page(self, data: FileData) -> None: ...

    def release(self) -> None: ...


@dataclass(slots=True)
class VmCounters:
    """What the vm operations and writeback count (per file, and summed per filesystem).

    ``lost_bytes``: bytes of file data a writer was told were stored and that writeback
    then dropped (no block: the legacy/fuse ENOSPC at writeback).
    """

    mkwrite_calls: int = 0
    sigbus: int = 0
    writeback_errors: int = 0
    lost_bytes: int = 0


class BlockState(enum.Enum):
    HOLE = "hole"
    RESERVED = "reserved"
    ALLOCATED = "allocated"


class FileData:
    """One regular file's size, pages and blocks (the data half of an inode)."""

    def __init__(self, pool: BlockPool, host: object = None) -> None:
        self.pool = pool
        self.mapping = AddressSpace(host)
        self.size = 0
        self.allocated: set[int] = set()
        self.reserved_pages: set[Page] = set()
        # When the file went from clean to dirty (trio clock), for the flusher's expiry.
        self.dirtied_when: float | None = None
        # Set by the filesystem: called when data changed not through a request.
        self.on_invalidate: Callable[[], None] | None = None
        # Per-file counters, and the filesystem's totals (shared by every file).
        self.counters = VmCounters()
        self.totals = VmCounters()
        # reserve-cow: overwrites of allocated pages holding a block for the new copy.
        self.cow_reserved: set[Page] = set()
        # Reservations a page_mkwrite took before it could lock its page (btrfs order).
        self.inflight_reserved = 0
        # Writeback: virtual seconds one batch of page I/O takes (PG_writeback that long),
        # an injected I/O error (errno, pages left to fail) and an optional log of what
        # each page write sent to the store: (index, bytes), for tests and the demo.
        self.io_latency = 0.0
        self._inject: tuple[int, int] = (0, 0)
        self.writeback_log: list[tuple[int, bytes]] | None = None
        # Set by the filesystem: a trace of space and writeback events (kind, page, detail).
        self.on_event: Callable[[str, int, str], None] | None = None
        # Set by the filesystem: the dirty throttle write(2) calls after each page it
        # copied (``balance_dirty_pages_ratelimited``), or None; or, under the seed's
        # placement, a WriteCap called before each page (room under the hard limit).
        self.get_balance: Callable[[], Callable[[FileData], Awaitable[None]] | WriteCap | None] = (
            _no_balance
        )
        # Set by a persistent store (fusefs.fs.store): called with the index of each block
        # whose contents or allocation changed (written back, allocated, freed, zeroed).
        self.on_block: Callable[[int], None] | None = None
        # i_rwsem: write, truncate and fallocate of one file run one at a time.
        self.i_rwsem = trio.Lock()

    def __repr__(self) -> str:
        return (
            f"<FileData size={self.size} allocated={len(self.allocated)}"
            f" reserved={len(self.reserved_pages)} dirty={len(self.mapping.dirty_tag)}>"
        )

    # -- block state of a page ----------------------------------------------------------
    @property
    def nr_allocated(self) -> int:
        return len(self.allocated)

    @property
    def nr_reserved(self) -> int:
        return len(self.reserved_pages) + len(self.cow_reserved) + self.inflight_reserved

    @property
    def writeback_errors(self) -> int:
        return self.counters.writeback_errors

    @property
    def lost_bytes(self) -> int:
        return self.counters.lost_bytes

    def count(self, field: str, n: int = 1) -> None:
        """Add ``n`` to counter ``field`` of this file and of the filesystem's totals."""
        setattr(self.counters, field, getattr(self.counters, field) + n)
        setattr(self.totals, field, getattr(self.totals, field) + n)

    @property
    def nr_dirty(self) -> int:
        return len(self.mapping.dirty_tag)

    def block_state(self, index: int) -> BlockState:
        if index in self.allocated:
            return BlockState.ALLOCATED
        page = self.mapping.pages.get(index)
        if page is not None and page in self.reserved_pages:
            return BlockState.RESERVED
        return BlockState.HOLE

    def page_needs_block(self, index: int) -> bool:
        """True when a store at ``index`` needs a block it does not have yet."""
        return self.block_state(index) is BlockState.HOLE

    def reserve_page(self, page: Page) -> bool:
        """Make sure ``page`` has space: keep what it has, or reserve a free block.

        Idempotent (one reservation per page).  False when the page needs a block and
        none is free: the caller answers ENOSPC (``write``) or SIGBUS (``page_mkwrite``).
        """
        if page.mapping is not self.mapping:  # the caller checks under the page lock
            raise AssertionError(f"reserve for {page!r} outside {self.mapping!r}")
        if page.index in self.allocated or page in self.reserved_pages:
            return True
        if not self.pool.reserve(1):
            self._event("reserve", page.index, "ENOSPC")
            return False
        self.reserved_pages.add(page)
        self._event("reserve", page.index, "reserved")
        return True

    def reserve_cow(self, page: Page) -> bool:
        """reserve-cow: make sure the store to locked ``page`` has a block to write to.

        A hole page gets its delalloc reservation (``reserve_page``); an allocated page
        gets one more block for its copy (btrfs reserves for overwrites too), once until
        writeback uses it.  False when a block is needed and none is free.
        """
        if page.index not in self.allocated:
            return self.reserve_page(page)
        if page in self.cow_reserved:
            return True
        if not self.pool.reserve(1):
            self._event("reserve", page.index, "copy-on-write: ENOSPC")
            return False
        self.cow_reserved.add(page)
        self._event("reserve", page.index, "copy-on-write: reserved")
        return True

    def adopt_inflight(self, page: Page, *, cow: bool) -> None:
        """Attach one reservation taken before the page was locked to locked ``page``;
        give it back when the page already has what it needs (idempotent hook)."""
        self.inflight_reserved -= 1
        if page.index in self.allocated:
            if cow and page not in self.cow_reserved:
                self.cow_reserved.add(page)
                return
        elif page not in self.reserved_pages:
            self.reserved_pages.add(page)
            return
        self.pool.unreserve(1)

    def release_page_space(self, page: Page) -> None:
        """Give back the reservation ``page`` holds, if any (the page is going away)."""
        if page in self.reserved_pages:
            self.reserved_pages.discard(page)
            self.pool.unreserve(1)
        if page in self.cow_reserved:
            self.cow_reserved.discard(page)
            self.pool.unreserve(1)

    def allocate_for_writeback(self, page: Page) -> bool:
        """Give ``page`` a block for writeback: reserved -> allocated, or allocate now.

        False only for a page that has neither an allocation nor a reservation when no
        block is free (the legacy, pre-``page_mkwrite`` loss).
        """
        index = page.index
        if index in self.allocated:
            if page in self.cow_reserved:  # COW: write the new block, free the old one
                self.cow_reserved.discard(page)
                self.pool.claim_reserved(1)
                self.pool.release(1)
            return True
        if page in self.reserved_pages:
            self.reserved_pages.discard(page)
            self.pool.claim_reserved(1)
        elif not self.pool.allocate(1):
            return False
        self.allocated.add(index)
        return True

    def mark_page_dirty(self, page: Page) -> None:
        """Dirty ``page`` and note when the file became dirty (``__mark_inode_dirty``)."""
        self.mapping.set_page_dirty(page)
        if self.dirtied_when is None:
            self.dirtied_when = trio.current_time()

    # -- read(2) ------------------------------------------------------------------------
    def read(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes from ``offset``, never past EOF; holes read as zeros."""
        if offset < 0 or size < 0:
            raise FsError(errno.EINVAL, "negative offset or size")
        end = min(self.size, offset + size)
        if offset >= end:
            return b""
        pages = self.mapping.pages
        parts: list[memoryview] = []
        pos = offset
        while pos < end:
            start = pos & PAGE_MASK
            chunk = min(PAGE_SIZE - start, end - pos)
            page = pages.get(pos >> PAGE_SHIFT)
            if page is None:
                parts.append(_ZEROS[:chunk])
            else:
                parts.append(memoryview(page.data)[start : start + chunk])
            pos += chunk
        return b"".join(parts)

    # -- write(2) -----------------------------------------------------------------------
    async def write(self, offset: int, data: bytes | bytearray | memoryview) -> int:
        """Copy ``data`` into the pages at ``offset``; return how much was written.

        Each hole page touched gets a reservation before any byte of it changes; when
        none is left the write stops at that page and returns the short count (ENOSPC
        if nothing was written).  A page is updated whole or not at all.
        """
        if offset < 0:
            raise FsError(errno.EINVAL, "negative offset")
        length = len(data)
        if length == 0:
            return 0
        if offset >= MAX_FILE_SIZE:
            raise FsError(errno.EFBIG)
        length = min(length, MAX_FILE_SIZE - offset)
        src = memoryview(data).cast("B")
        async with self.i_rwsem:
            if offset + length > self.size:
                self._zero_beyond_eof()
            done = await self._copy_in(offset, src[:length])
            if done == 0:
                raise FsError(errno.ENOSPC)
            if offset + done > self.size:
                self.size = offset + done
            return done

    async def _copy_in(self, offset: int, src: memoryview) -> int:
        """Copy page by page; stop at the first page that cannot get space.

        The fast path neither locks nor sleeps: with no ``await`` between looking at a
        page and dirtying it, no other task can see the page half-updated, which is
        what the page lock guarantees.  A page that is locked (a fault in
        ``page_mkwrite``, writeback) or under writeback takes the slow path, which
        sleeps for it.
        """
        balance = self.get_balance()
        cap = None
        if balance is not None and not callable(balance):
            cap, balance = balance, None
        try:
            return await self._copy_pages(offset, src, balance, cap)
        finally:
            if cap is not None:
                cap.release()

    async def _copy_pages(
        self,
        offset: int,
        src: memoryview,
        balance: Callable[[FileData], Awaitable[None]] | None,
        cap: WriteCap | None,
    ) -> int:
        mapping = self.mapping
        pages = mapping.pages
        allocated = self.allocated
        reserved = self.reserved_pages
        pool = self.pool
        done = 0
        end = len(src)
        while done < end:
            if cap is not None:
                # the seed's placement: room for this page under the hard limit first
                if done:
                    self.size = max(self.size, offset + done)
                await cap.before_page(self)
            elif done and balance is not None:
                # after each page copied, as generic_perform_write; i_size first (its
                # write_end), or the flusher would drop the new pages as past EOF
                self.size = max(self.size, offset + done)
                await balance(self)
            pos = offset + done
            index = pos >> PAGE_SHIFT
            start = pos & PAGE_MASK
            chunk = min(PAGE_SIZE - start, end - done)
            page = pages.get(index)
            slow = False
            if page is None:
                if index not in allocated and not pool.reserve(1):
                    break
                if chunk == PAGE_SIZE:
                    # A whole new page: build it from the data (no zero-fill, no copy).
                    page = mapping.add_page(index, src[done : done + PAGE_SIZE])
                    if index not in allocated:
                        reserved.add(page)
                    mapping.set_page_dirty(page)
                    done += chunk
                    continue
                page = mapping.add_page(index)
                if index not in allocated:
                    reserved.add(page)
            elif page.locked or page.writeback:
                slow = True
                page = await self._get_locked_page_with_space(index)
                if page is None:
                    break
            elif index not in allocated and page not in reserved:
                if not pool.reserve(1):
                    break
                reserved.add(page)
            page.data[start : start + chunk] = src[done : done + chunk]
            page.uptodate = True
            if not page.dirty:
                mapping.set_page_dirty(page)
            if slow:
                page.unlock()
            done += chunk
        if done and self.dirtied_when is None:
            self.dirtied_when = trio.current_time()
        if done and balance is not None:
            self.size = max(self.size, offset + done)
            await balance(self)
        return done

    async def _get_locked_page_with_space(self, index: int) -> Page | None:
        """The page at ``index``, locked, with a block or reservation; None if no space.

        Never leaves a new empty page behind when there is no space for it.
        """
        mapping = self.mapping
        while True:
            page = mapping.pages.get(index)
            if page is None:
                if index not in self.allocated and self.pool.free == 0:
                    return None
                page = mapping.add_page(index)
                page.uptodate = True
                page.trylock()
            elif not page.trylock():
                await page.lock()
            if page.writeback:  # stable pages: no change while under I/O
                try:
                    await page.wait_writeback()
                except BaseException:  # cancelled: never leave the page locked
                    page.unlock()
                    raise
            if page.mapping is not mapping:  # truncated while we slept
                page.unlock()
                continue
            if self.reserve_page(page):
                return page
            page.unlock()
            return None

    # -- size changes -------------------------------------------------------------------
    def _zero_beyond_eof(self) -> None:
        """Zero the last page past EOF (stores there through a mapping are not data)."""
        start = self.size & PAGE_MASK
        if start:
            index = self.size >> PAGE_SHIFT
            page = self.mapping.pages.get(index)
            if page is not None:
                page.data[start:] = _ZEROS[start:]
                if self.on_block is not None and index in self.allocated:
                    self.on_block(index)

    def truncate(self, new_size: int) -> None:
        """Set the size; a size not above the old one frees every page and block past
        the new EOF at once, preallocated (KEEP_SIZE) blocks included, as ext4 and tmpfs
        do even when the size does not change.  Growing allocates nothing.

        Kernel: ``truncate_setsize`` + ``truncate_pagecache`` + the fs's block freeing.
        """
        if new_size < 0:
            raise FsError(errno.EINVAL, "negative size")
        if new_size > MAX_FILE_SIZE:
            raise FsError(errno.EFBIG)
        if new_size > self.size:
            self._zero_beyond_eof()
            self.size = new_size
            return
        self.size = new_size
        first = (new_size + PAGE_MASK) >> PAGE_SHIFT
        self._remove_pages(first, None)
        self._release_blocks(first, None)
        self._zero_beyond_eof()

    def _remove_pages(self, first: int, last: int | None) -> None:
        """Unmap and drop the cached pages ``first..last``, with their reservations."""
        for page in self.mapping.truncate_pages_nowait(first, last):
            self.release_page_space(page)
        if not self.mapping.dirty_tag:
            self.dirtied_when = None

    def _release_blocks(self, first: int, last: int | None) -> None:
        """Free the allocated blocks of pages ``first..last``."""
        if last is not None and last - first < len(self.allocated):
            doomed = [i for i in range(first, last + 1) if i in self.allocated]
        else:
            top = MAX_FILE_SIZE if last is None else last
            doomed = [i for i in self.allocated if first <= i <= top]
        for i in doomed:
            self.allocated.discard(i)
        self.pool.release(len(doomed))
        if self.on_block is not None:
            for i in doomed:
                self.on_block(i)

    def _zero_range_in_page(self, index: int, start: int, end: int) -> None:
        page = self.mapping.pages.get(index)
        if page is not None:
            page.data[start:end] = _ZEROS[start:end]
            if self.on_block is not None and index in self.allocated:
                self.on_block(index)

    def punch_hole(self, offset: int, length: int) -> None:
        """Deallocate [offset, offset+length): whole pages are freed, edges zeroed."""
        if offset < 0 or length <= 0:
            raise FsError(errno.EINVAL, "bad range")
        end = min(offset + length, MAX_FILE_SIZE)
        first_full = (offset + PAGE_MASK) >> PAGE_SHIFT
        last_full = (end >> PAGE_SHIFT) - 1
        head = offset >> PAGE_SHIFT
        tail = (end - 1) >> PAGE_SHIFT
        if head == tail and head < first_full:  # inside one page
            self._zero_range_in_page(head, offset & PAGE_MASK, ((end - 1) & PAGE_MASK) + 1)
            return
        if head < first_full:
            self._zero_range_in_page(head, offset & PAGE_MASK, PAGE_SIZE)
        if tail > last_full:
            self._zero_range_in_page(tail, 0, ((end - 1) & PAGE_MASK) + 1)
        if first_full <= last_full:
            self._remove_pages(first_full, last_full)
            self._release_blocks(first_full, last_full)

    def fallocate(self, offset: int, length: int, *, keep_size: bool) -> None:
        """Allocate blocks for every page of the range, all or nothing (ENOSPC).

        A reserved page's reservation becomes its allocation; a page without a cached
        page gets a block that reads as zeros.  Later writes and stores to the range
        need no space.  Without ``keep_size`` the size grows to cover the range.
        """
        if offset < 0 or length <= 0:
            raise FsError(errno.EINVAL, "bad range")
        if offset + length > MAX_FILE_SIZE:
            raise FsError(errno.EFBIG)
        span = range(offset >> PAGE_SHIFT, ((offset + length - 1) >> PAGE_SHIFT) + 1)
        if len(span) > len(self.allocated):
            have = sum(1 for i in self.allocated if i in span)
        else:
            have = sum(1 for i in span if i in self.allocated)
        have += sum(1 for p in self.reserved_pages if p.index in span)
        if len(span) - have > self.pool.free:
            raise FsError(errno.ENOSPC)
        for index in span:
            if index in self.allocated:
                continue
            page = self.mapping.pages.get(index)
            if page is not None and page in self.reserved_pages:
                self.reserved_pages.discard(page)
                self.pool.claim_reserved(1)
            elif not self.pool.allocate(1):
                raise AssertionError("fallocate lost a block it counted as free")
            self.allocated.add(index)
            if self.on_block is not None:
                self.on_block(index)
        if not keep_size and offset + length > self.size:
            self._zero_beyond_eof()
            self.size = offset + length

    # -- writeback ----------------------------------------------------------------------
    def inject_writeback_error(self, err: int, pages: int = 1) -> None:
        """Make the next ``pages`` page writes fail with ``err`` (a failing disk)."""
        self._inject = (err, pages)

    async def writeback(self, first: int = 0, last: int | None = None) -> None:
        """Write back the dirty pages ``first..last`` and wait for the I/O.

        Kernel: ``filemap_write_and_wait_range`` / ``write_cache_pages`` (WB_SYNC_ALL).
        Each page is locked, waited for if already under writeback, cleaned with
        ``clear_page_dirty_for_io`` (which write-protects every PTE mapping it, so the
        next store calls ``page_mkwrite`` again), given its block (``writepage``), set
        PG_writeback and unlocked; then the batch's I/O takes ``io_latency`` seconds and
        PG_writeback ends.  A store during the I/O faults (the PTE is read-only) and its
        ``page_mkwrite`` decides whether it waits for the I/O (stable pages, FUSE).
        """
        mapping = self.mapping
        in_flight: list[Page] = []
        try:
            for n, index in enumerate(mapping.dirty_indices(first, last)):
                if n and n % 256 == 0:
                    await trio.lowlevel.checkpoint()  # let requests in during a long writeback
                page = mapping.pages.get(index)
                if page is not None and await self._write_one(page):
                    in_flight.append(page)
            if in_flight and self.io_latency:
                await trio.sleep(self.io_latency)
        finally:
            for page in in_flight:
                page.end_writeback()
        for index in list(mapping.writeback_tag.between(first, last)):  # others' I/O: wait
            page = mapping.pages.get(index)
            if page is not None:
                await page.wait_writeback()
        if not mapping.dirty_tag:
            self.dirtied_when = None

    async def _write_one(self, page: Page) -> bool:
        """Lock, clean and start writeback of ``page``; True when its I/O was started."""
        mapping = self.mapping
        await page.lock()
        try:
            if page.writeback:
                await page.wait_writeback()
            if page.mapping is not mapping:  # truncated while we slept
                return False
            if not mapping.clear_page_dirty_for_io(page):
                return False
            page.start_writeback()
            await self.writepage(page)
            return True
        finally:
            page.unlock()

    async def writepage(self, page: Page) -> None:
        """Write one locked page under writeback: give it a block, or lose it (ENOSPC).

        Kernel: ``->writepage`` (``block_write_full_page`` with delalloc).  The part of
        the last page past EOF is zeroed, and a page wholly past EOF is discarded.  An
        injected I/O error is recorded on the mapping; the page stays cached (clean),
        as the kernel leaves it after a failed write.
        """
        if page.index << PAGE_SHIFT >= self.size:
            self._event("writeback", page.index, "beyond EOF: dropped")
            self._drop_page(page)
            return
        if not self.allocate_for_writeback(page):
            self._event("writeback", page.index, "ENOSPC: page dropped, data lost")
            self.mapping.wb_err.set_error(errno.ENOSPC)
            self.count("writeback_errors")
            self.count("lost_bytes", min(PAGE_SIZE, self.size - (page.index << PAGE_SHIFT)))
            self._drop_page(page)
            if self.on_invalidate is not None:
                self.on_invalidate()
            return
        if page.index == self.size >> PAGE_SHIFT:
            self._zero_beyond_eof()
        err, left = self._inject
        if left:
            self._inject = (err, left - 1)
            self.mapping.wb_err.set_error(err)
            self.count("writeback_errors")
            self._event("writeback", page.index, errno.errorcode.get(err, str(err)))
            return
        self._event("writeback", page.index, "written")
        if self.on_block is not None:
            self.on_block(page.index)
        if self.writeback_log is not None:
            self.writeback_log.append((page.index, bytes(page.data)))

    def _event(self, kind: str, index: int, detail: str) -> None:
        if self.on_event is not None:
            self.on_event(kind, index, detail)

    def _drop_page(self, page: Page) -> None:
        self.release_page_space(page)
        self.mapping.truncate_pages_nowait(page.index, page.index)

    # -- the end of the inode -----------------------------------------------------------
    def evict(self) -> None:
        """Free every page and block (last close and forget of an unlinked file)."""
        self._remove_pages(0, None)
        self._release_blocks(0, None)

    def check(self) -> None:
        """Raise AssertionError when a per-file invariant does not hold."""
        mapping = self.mapping
        for page in self.reserved_pages:
            if page.mapping is not mapping or mapping.pages.get(page.index) is not page:
                raise AssertionError(f"reserved {page!r} is not in {mapping!r}")
            if page.index in self.allocated:
                raise AssertionError(f"{page!r} both reserved and allocated")
            if not (page.dirty or page.locked):
                raise AssertionError(f"reserved {page!r} is clean and unlocked")
        for page in self.cow_reserved:
            if page.mapping is not mapping or mapping.pages.get(page.index) is not page:
                raise AssertionError(f"COW-reserved {page!r} is not in {mapping!r}")
            if page.index not in self.allocated:
                raise AssertionError(f"COW-reserved {page!r} has no block to copy")
            if not (page.dirty or page.locked):
                raise AssertionError(f"COW-reserved {page!r} is clean and unlocked")
        if self.inflight_reserved < 0:
            raise AssertionError(f"negative in-flight reservations in {self!r}")
        eof_pages = (self.size + PAGE_MASK) >> PAGE_SHIFT
        for index in mapping.pages:
            if index >= eof_pages:
                raise AssertionError(f"page {index} cached past EOF {self.size}")
