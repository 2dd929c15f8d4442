"""Pages and the page cache: the one copy of file data.

This module owns what the kernel keeps in ``struct page``/``struct folio`` and
``struct address_space``.  A filesystem keeps its file data here and nowhere else,
exactly as Linux does: ``read(2)``/``write(2)`` through the mount copy to and from
these pages, and a simulated process that maps the file maps *these* pages.  So a
store through a mapping is what ``cat`` reads, and a ``write(2)`` is what a mapped
load sees, without any copying between two caches.

Invariants kept here:

* ``page.mapping is mapping`` and ``mapping.pages[page.index] is page`` for every page
  in the cache; a page removed by truncation has ``mapping = None`` (the fault path
  checks exactly this after ``page_mkwrite`` has slept, as the kernel does).
* ``index in mapping.dirty_tag`` iff ``page.dirty``; ``index in mapping.writeback_tag``
  iff ``page.writeback`` (the radix-tree tags PAGECACHE_TAG_DIRTY/WRITEBACK).
* Only the holder of the page lock clears PG_dirty for I/O or removes the page, so a
  fault that holds the lock from ``page_mkwrite`` until the page is dirty cannot be
  interleaved with writeback (KERNEL.md §1, the 2009 race fix).

Who maps a page is known through ``mapping.i_mmap``: objects with ``mkclean_page`` and
``zap_range`` methods (the simulator's VMAs register themselves there).  That is the
reverse map writeback uses to write-protect a page it cleans (``folio_mkclean``) and
truncation uses to unmap (``unmap_mapping_range``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, NewType, Protocol

import trio

from sim_mmu.xarray import PageCache, PageTag

if TYPE_CHECKING:
    from sim_mmu.bdi import Bdi

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PAGE_MASK = PAGE_SIZE - 1

PageIndex = NewType("PageIndex", int)

# Pages removed from any page cache so far.  A simulated TLB entry made before the
# latest removal is not trusted (``sim_mmu.pte.PageTable``): a correct filesystem zaps
# the PTEs first, which flushes the entry anyway, but a buggy one that drops a mapped
# page must meet the simulator's "maps a page not in the page cache", not a stale
# buffer.
REMOVALS = [0]

_ZERO_PAGE = bytes(PAGE_SIZE)


def pages_spanned(offset: int, length: int) -> range:
    """The page indices that the byte range [offset, offset+length) touches."""
    if length <= 0:
        return range(0)
    return range(offset >> PAGE_SHIFT, ((offset + length - 1) >> PAGE_SHIFT) + 1)


class Page:
    """One page of a file's page cache (kernel: ``struct folio`` of order 0).

    What a filesystem attaches to a page (the kernel's ``folio->private``) it keeps in
    its own tables by index: a slot here would cost every cached page 8 bytes.
    """

    __slots__ = ("data", "dirty", "index", "locked", "mapping", "uptodate", "writeback")

    def __init__(
        self, mapping: AddressSpace, index: int, contents: bytes | memoryview | None = None
    ) -> None:
        self.mapping: AddressSpace | None = mapping
        self.index = index
        if contents is None:
            self.data = bytearray(PAGE_SIZE)
            self.uptodate = False
        else:
            if len(contents) != PAGE_SIZE:
                raise ValueError(f"a page holds {PAGE_SIZE} bytes, not {len(contents)}")
            self.data = bytearray(contents)
            self.uptodate = True
        self.dirty = False
        self.writeback = False
        self.locked = False

    def __repr__(self) -> str:
        flags = "".join(
            c
            for c, on in (
                ("U", self.uptodate),
                ("D", self.dirty),
                ("W", self.writeback),
                ("L", self.locked),
            )
            if on
        )
        state = "" if self.mapping is not None else " truncated"
        return f"<Page {self.index} [{flags}]{state}>"

    # -- PG_locked --------------------------------------------------------------------
    def trylock(self) -> bool:
        """Take the page lock if it is free (kernel: ``folio_trylock``)."""
        if self.locked:
            return False
        self.locked = True
        return True

    async def lock(self) -> None:
        """Sleep until the page lock is ours (kernel: ``folio_lock``)."""
        while self.locked:
            await _wait_on(_LOCK_WAITERS, self)
        self.locked = True

    def unlock(self) -> None:
        """Release the page lock and wake one waiter (kernel: ``folio_unlock``)."""
        if not self.locked:
            raise RuntimeError(f"unlock of unlocked {self!r}")
        self.locked = False
        if _LOCK_WAITERS:
            lot = _LOCK_WAITERS.get(self)
            if lot:
                lot.unpark()

    # -- PG_writeback -----------------------------------------------------------------
    def start_writeback(self) -> None:
        """Mark the page under I/O (kernel: ``folio_start_writeback``)."""
        if self.writeback:
            raise RuntimeError(f"{self!r} is already under writeback")
        self.writeback = True
        mapping = self.mapping
        if mapping is not None:
            mapping.writeback_tag.add(self.index)
            if mapping.bdi is not None:
                mapping.bdi.account_writeback_start()

    def end_writeback(self) -> None:
        """I/O done: clear PG_writeback and wake every waiter (``folio_end_writeback``)."""
        if not self.writeback:
            raise RuntimeError(f"{self!r} is not under writeback")
        self.writeback = False
        mapping = self.mapping
        if mapping is not None:
            mapping.writeback_tag.discard(self.index)
            if mapping.bdi is not None:
                mapping.bdi.account_writeback_end()
        if _WB_WAITERS:
            lot = _WB_WAITERS.get(self)
            if lot is not None:
                lot.unpark_all()

    async def wait_writeback(self) -> None:
        """Sleep until the page is not under writeback (``folio_wait_writeback``)."""
        while self.writeback:
            await _wait_on(_WB_WAITERS, self)


# Sleepers on a page bit live in tables beside the pages, not in every page (kernel:
# the hashed ``folio_waitqueue``): a page nobody waits on carries no wait queue at all.
# An entry exists only while someone is parked on it.
_LOCK_WAITERS: dict[Page, trio.lowlevel.ParkingLot] = {}
_WB_WAITERS: dict[Page, trio.lowlevel.ParkingLot] = {}


async def _wait_on(table: dict[Page, trio.lowlevel.ParkingLot], page: Page) -> None:
    """Park until woken through ``table[page]`` (PG_locked or PG_writeback cleared)."""
    lot = table.get(page)
    if lot is None:
        lot = table[page] = trio.lowlevel.ParkingLot()
    try:
        await lot.park()
    finally:
        if not lot and table.get(page) is lot:
            del table[page]


class Mapper(Protocol):
    """Something that maps pages of an address space: a simulated VMA."""

    def mkclean_page(self, page: Page) -> bool:
        """Write-protect and clean every PTE of ours that maps ``page``.

        Return True when one of those PTEs was dirty (the store it records must not be
        lost: the caller keeps the page dirty).
        """
        ...

    def zap_range(self, first: int, last: int, even_cows: bool = True) -> None:
        """Remove our PTEs for the file pages ``first..last`` (inclusive).

        ``even_cows``: also the private copy-on-write copies of those pages (truncation
        removes them; a hole punch or invalidation leaves them).
        """
        ...


class ErrSeq:
    """Writeback error reporting, once per opener (kernel: ``errseq_t``, 4.13+).

    ``mapping_set_error`` records an error with a new sequence number.  Each open file
    samples the sequence at open; ``check_and_advance`` reports an error recorded since
    that sample exactly once for that file, so every opener sees it once and a file opened
    after the error sees nothing - once someone has seen it: an error nobody has reported
    yet is reported to the next opener too (``ERRSEQ_SEEN``, 4.16's "errseq: Always report
    a writeback error once"), so a failure after the writer closed its file is not lost.
    """

    __slots__ = ("errno", "seen", "seq")

    def __init__(self) -> None:
        self.errno = 0
        self.seq = 0
        self.seen = True  # nothing to see yet

    def set_error(self, errno: int) -> None:
        self.errno = errno
        self.seq += 1
        self.seen = False

    def sample(self) -> int:
        """``errseq_sample``: an error nobody has seen is still ahead of the sample."""
        return self.seq if self.seen else self.seq - 1

    def check_and_advance(self, since: int) -> tuple[int, int]:
        """Return (errno or 0, the new sample to keep)."""
        if self.seq != since:
            self.seen = True
            return self.errno, self.seq
        return 0, since


class AddressSpace:
    """A file's page cache (kernel: ``struct address_space``).

    ``pages`` is sparse: an index with no page is either a hole or data the filesystem
    keeps elsewhere; the page cache does not know which.

    ``bdi`` (optional, kernel ``inode_to_bdi``): the backing device that accounts this
    mapping's dirty and writeback pages (``sim_mmu.bdi.Bdi.attach`` sets it).  With a
    ``bdi``, every page newly dirtied, cleaned for I/O, cancelled or removed dirty, and
    every writeback start and end is reported to it.
    """

    __slots__ = ("bdi", "dirty_tag", "host", "i_mmap", "pages", "wb_err", "writeback_tag")

    def __init__(self, host: object = None) -> None:
        self.host = host
        self.pages = PageCache()
        self.dirty_tag = PageTag()
        self.writeback_tag = PageTag()
        self.i_mmap: set[Mapper] = set()
        self.wb_err = ErrSeq()
        self.bdi: Bdi | None = None

    def __repr__(self) -> str:
        n, d = len(self.pages), len(self.dirty_tag)
        return f"<AddressSpace of {self.host!r}: {n} pages, {d} dirty>"

    @property
    def nrpages(self) -> int:
        return len(self.pages)

    def find_page(self, index: int) -> Page | None:
        """The cached page at ``index``, or None (kernel: ``filemap_get_folio``)."""
        return self.pages.get(index)

    def add_page(self, index: int, contents: bytes | memoryview | None = None) -> Page:
        """Insert a new page (``filemap_add_folio``).

        Without ``contents`` the page is zero-filled and not uptodate (the filesystem
        reads it in); with a whole page of ``contents`` it is built from them and is
        uptodate, which spares a write of a whole page zero-filling it first.
        """
        if index in self.pages:
            raise KeyError(f"page {index} is already cached")
        page = Page(self, index, contents)
        self.pages[index] = page
        return page

    def find_or_create_page(self, index: int) -> Page:
        page = self.pages.get(index)
        if page is None:
            page = self.add_page(index)
        return page

    # -- PG_dirty -----------------------------------------------------------------------
    def set_page_dirty(self, page: Page) -> bool:
        """Mark ``page`` dirty; return True when it was clean (``filemap_dirty_folio``)."""
        if page.dirty:
            return False
        page.dirty = True
        if page.mapping is self:
            self.dirty_tag.add(page.index)
            if self.bdi is not None:
                self.bdi.account_page_dirtied(self)
        return True

    def clear_page_dirty_for_io(self, page: Page) -> bool:
        """Clean ``page`` before writing it (kernel: ``folio_clear_dirty_for_io``).

        The caller holds the page lock.  Every PTE mapping the page is write-protected
        and cleaned first (``folio_mkclean``), so the next store faults and calls
        ``page_mkwrite`` again; a dirty PTE re-marks the page dirty, as the kernel does.
        Returns True when the page was dirty and is now clean, ready for I/O.
        """
        if not page.locked:
            raise RuntimeError(f"clear_page_dirty_for_io on unlocked {page!r}")
        was_dirty = page.dirty
        for mapper in tuple(self.i_mmap):
            if mapper.mkclean_page(page):
                page.dirty = True
        if not page.dirty:
            return False
        page.dirty = False
        self.dirty_tag.discard(page.index)
        bdi = self.bdi
        if bdi is not None and page.mapping is self:
            if not was_dirty:  # a dirty PTE's store, seen only now (folio_mark_dirty)
                bdi.account_page_dirtied(self, charge=False)
            bdi.account_page_cleaned(self)
        return True

    def cancel_dirty_page(self, page: Page) -> None:
        """Drop the dirty state without writing (truncate; ``folio_cancel_dirty``)."""
        was_dirty = page.dirty and page.mapping is self
        page.dirty = False
        self.dirty_tag.discard(page.index)
        if was_dirty and self.bdi is not None:
            self.bdi.account_page_cleaned(self, cancelled=True)

    def dirty_indices(self, first: int = 0, last: int | None = None) -> list[int]:
        """Indices of dirty pages ``first..last`` in file order (a walk of the dirty tag)."""
        return list(self.dirty_tag.between(first, last))

    def iter_pages(self, first: int = 0, last: int | None = None) -> Iterator[Page]:
        """Cached pages with ``first <= index <= last``, in index order."""
        for _, page in self.pages.items(first, last):
            yield page

    # -- removal ------------------------------------------------------------------------
    def unmap_mapping_range(
        self, first: int, last: int | None = None, *, even_cows: bool = True
    ) -> None:
        """Zap every PTE that maps file pages ``first..last`` (``unmap_mapping_range``).

        ``even_cows=False`` keeps private COW copies (kernel: hole punch passes 0).
        """
        end = last if last is not None else (1 << 62)
        for mapper in tuple(self.i_mmap):
            mapper.zap_range(first, end, even_cows)

    def delete_page(self, page: Page) -> None:
        """Remove ``page`` from the cache: its ``mapping`` becomes None.

        Kernel: ``filemap_remove_folio``.  The caller has zapped PTEs and holds the page
        lock, or knows nobody else can see the page.
        """
        if self.pages.get(page.index) is not page:
            raise KeyError(f"{page!r} is not in {self!r}")
        del self.pages[page.index]
        REMOVALS[0] += 1
        self.dirty_tag.discard(page.index)
        self.writeback_tag.discard(page.index)
        bdi = self.bdi
        if bdi is not None:  # a removed page no longer counts (its I/O is not waited for)
            if page.dirty:
                bdi.account_page_cleaned(self, cancelled=True)
            if page.writeback:
                bdi.account_writeback_end(completed=False)
        page.dirty = False
        page.mapping = None

    def truncate_pages_nowait(
        self, first: int, last: int | None = None, *, even_cows: bool = True
    ) -> list[Page]:
        """Unmap and remove the cached pages ``first..last`` without sleeping.

        Pages that are locked or under writeback are removed all the same (their lock
        holder finds ``page.mapping is None`` when it looks again, the way a sleeping
        ``page_mkwrite`` learns of a racing truncate).  Returns the removed pages so the
        filesystem can release what it attached to them.
        """
        self.unmap_mapping_range(first, last, even_cows=even_cows)
        removed = list(self.iter_pages(first, last))
        for page in removed:
            self.delete_page(page)
        return removed


def zero_page() -> bytes:
    """A page of zeros (kernel: ZERO_PAGE), shared and immutable."""
    return _ZERO_PAGE
