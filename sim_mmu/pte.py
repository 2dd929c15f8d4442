"""Page-table entries: a sparse table of small integers.

An mm's page table is one ``dict`` from virtual page number to an ``int`` of PTE bits.
A missing key is ``pte_none``; nothing at all is allocated for untouched pages, so a
terabyte mapping costs nothing until touched.  The bits are small integers (Python
caches them), so an entry costs one dict slot.

A file page's PTE does not store the page: the page is found through the VMA (its file
mapping and ``pgoff``), the way the kernel's rmap finds it through ``vma->vm_pgoff``.
Truncation and invalidation zap PTEs before they remove a page (``unmap_mapping_range``),
so a present file PTE always has its page in the page cache; a missing one is a bug and
is reported as such.  Anonymous pages (private COW copies, anonymous memory) live in the
mm's ``anon`` dict beside the PTE (bit ``ANON``); the shared zero page is bit ``ZERO``.
"""

from __future__ import annotations

from typing import NamedTuple

from sim_mmu.page import PAGE_SIZE

PRESENT = 0x01
WRITE = 0x02
DIRTY = 0x04
YOUNG = 0x08
ANON = 0x10  # maps mm.anon[vpn], not a page-cache page
ZERO = 0x20  # maps the shared zero page (read-only)


class AnonPage:
    """An anonymous page (private COW copy or anonymous memory).

    ``mapcount`` counts the PTEs mapping it (fork shares it between parent and child;
    the write fault reuses it only when ``mapcount == 1``: kernel ``wp_can_reuse_anon``).
    """

    __slots__ = ("data", "mapcount")

    def __init__(self, data: bytes | bytearray | None = None) -> None:
        self.data = bytearray(data) if data is not None else bytearray(PAGE_SIZE)
        self.mapcount = 1


class PteView(NamedTuple):
    """A read-only view of one PTE, for tests and tools."""

    present: bool
    writable: bool
    dirty: bool
    young: bool
    anon: bool
    zero: bool

    @classmethod
    def of(cls, bits: int | None) -> PteView | None:
        if bits is None:
            return None
        return cls(
            bool(bits & PRESENT),
            bool(bits & WRITE),
            bool(bits & DIRTY),
            bool(bits & YOUNG),
            bool(bits & ANON),
            bool(bits & ZERO),
        )


def describe(bits: int | None) -> str:
    """``"PWDY"``-style text for a PTE (``-`` for pte_none)."""
    if bits is None:
        return "-"
    return "".join(c for c, b in zip("PWDYAZ", (1, 2, 4, 8, 16, 32), strict=True) if bits & b)
