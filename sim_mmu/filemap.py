"""Generic page-cache helpers a filesystem can use (kernel ``mm/filemap.c``,
``mm/page-writeback.c``).

* ``filemap_fault``: the generic ``->fault``: SIGBUS beyond EOF, find or read the page,
  return it locked (``VM_FAULT_LOCKED``), ``MAJOR`` when it had to be read.
* ``write_one_page`` / ``filemap_write_and_wait_range``: writeback of one page / a range,
  the order the kernel uses so that write notification works: lock the page, wait for
  earlier writeback, ``clear_page_dirty_for_io`` (which write-protects the PTEs:
  ``folio_mkclean``), set PG_writeback, unlock, ``writepage``, end writeback.  An I/O
  error is recorded in ``mapping.wb_err`` (errseq) for ``fsync``/``msync`` to report once
  per open file.
* ``filemap_page_mkwrite``: the generic hook (lock, mapping/EOF check ⇒ NOPAGE, wait for
  stable pages, LOCKED).
"""

from __future__ import annotations

from sim_mmu.errors import SimError
from sim_mmu.page import PAGE_MASK, PAGE_SHIFT, AddressSpace, Page
from sim_mmu.protocols import AddressSpaceOperations, VmFault, VmFaultInfo
from sim_mmu.xarray import XA_CHUNK_MASK, XA_CHUNK_SHIFT

_LOCKED = VmFault.LOCKED
_LOCKED_MAJOR = VmFault.LOCKED | VmFault.MAJOR


def size_in_pages(i_size: int) -> int:
    return (i_size + PAGE_MASK) >> PAGE_SHIFT


async def filemap_fault(vmf: VmFaultInfo) -> VmFault:
    """Find or read page ``vmf.pgoff``; return it locked (kernel ``filemap_fault``)."""
    vma = vmf.vma
    file = vma.file
    assert file is not None
    mapping = vma.mapping
    assert mapping is not None
    pgoff = vmf.pgoff
    pages = mapping.pages
    nodes = pages.nodes
    while True:
        if pgoff >= (file.i_size + PAGE_MASK) >> PAGE_SHIFT:
            return VmFault.SIGBUS
        node = nodes.get(pgoff >> XA_CHUNK_SHIFT)  # pages.get(pgoff), inlined
        page = node[pgoff & XA_CHUNK_MASK] if node is not None else None
        major = False
        if page is None:  # mapping.add_page(pgoff), inlined: we just saw the slot free
            page = pages[pgoff] = Page(mapping, pgoff)
            major = True
        if not page.locked:  # folio_trylock
            page.locked = True
        else:
            await page.lock()
            if page.mapping is not mapping:  # truncated while we slept: look again
                page.unlock()
                continue
        if not page.uptodate:
            try:
                await file.a_ops.readpage(page)
            except SimError:
                page.unlock()
                return VmFault.SIGBUS
            major = True
            if pgoff >= (file.i_size + PAGE_MASK) >> PAGE_SHIFT or page.mapping is not mapping:
                page.unlock()  # truncate raced with the read
                continue
        vmf.page = page
        return _LOCKED_MAJOR if major else _LOCKED


async def filemap_page_mkwrite(vmf: VmFaultInfo) -> VmFault:
    """The generic write notification (kernel ``filemap_page_mkwrite``)."""
    page = vmf.page
    assert page is not None
    await page.lock()
    if page.mapping is not vmf.mapping or page.index >= size_in_pages(vmf.file.i_size):
        page.unlock()
        return VmFault.NOPAGE
    vmf.mapping.set_page_dirty(page)
    await page.wait_writeback()  # stable pages
    return _LOCKED


async def write_one_page(mapping: AddressSpace, a_ops: AddressSpaceOperations, page: Page) -> bool:
    """Write ``page`` if it is dirty; return True when ``writepage`` was called."""
    await page.lock()
    try:
        if page.mapping is not mapping:
            return False
        await page.wait_writeback()
        if not mapping.clear_page_dirty_for_io(page):
            return False
        page.start_writeback()
    finally:
        page.unlock()
    try:
        await a_ops.writepage(page)
    except SimError as exc:
        mapping.wb_err.set_error(exc.errno)
    finally:
        page.end_writeback()
    return True


async def filemap_write_and_wait_range(
    mapping: AddressSpace, a_ops: AddressSpaceOperations, start: int = 0, end: int = -1
) -> int:
    """Write the dirty pages of bytes ``start..end`` and wait; return pages written."""
    first = start >> PAGE_SHIFT
    last = (end >> PAGE_SHIFT) if end >= 0 else None
    written = 0
    for index in mapping.dirty_indices(first, last):
        page = mapping.pages.get(index)
        if page is not None and await write_one_page(mapping, a_ops, page):
            written += 1
    for page in list(mapping.iter_pages(first, last)):
        await page.wait_writeback()
    return written
