"""Page-table entries: a sparse table of PTE bits, in leaves of 64 as the kernel's are.

An mm's page table maps a virtual page number to an ``int`` of PTE bits.  It is kept the
way the hardware's is: in leaves (the kernel's PTE pages, here of 64 entries, one byte
each), one per 64 consecutive virtual pages that hold any entry, made with the first
entry and freed with the last.  An untouched range costs nothing, so a terabyte mapping
costs nothing until touched, and a densely touched one about 2 bytes a page.  A missing
entry is ``pte_none``; a byte of a leaf holds the bits with ``_USED`` set, so an entry
whose bits are all clear (a PROT_NONE page that lost its young bit) is still an entry.

A file page's PTE does not store the page: the page is found through the VMA (its file
mapping and ``pgoff``), the way the kernel's rmap finds it through ``vma->vm_pgoff``.
Truncation and invalidation zap PTEs before they remove a page (``unmap_mapping_range``),
so a present file PTE always has its page in the page cache; a missing one is a bug and
is reported as such.  Anonymous pages (private COW copies, anonymous memory) live in the
mm's ``anon`` dict beside the PTE (bit ``ANON``); the shared zero page is bit ``ZERO``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from sim_mmu.page import PAGE_SIZE, REMOVALS
from sim_mmu.xarray import XA_CHUNK_MASK, XA_CHUNK_SHIFT, XA_CHUNK_SIZE, NodeMap

PRESENT = 0x01
WRITE = 0x02
DIRTY = 0x04
YOUNG = 0x08
ANON = 0x10  # maps mm.anon[vpn], not a page-cache page
ZERO = 0x20  # maps the shared zero page (read-only)
_USED = 0x80  # in a leaf's byte: an entry is there (not pte_none)

LEAF_SHIFT, LEAF_SIZE, LEAF_MASK = XA_CHUNK_SHIFT, XA_CHUNK_SIZE, XA_CHUNK_MASK


class PageTable(NodeMap):
    """One mm's PTEs by virtual page number; used as a dict of ``int`` bits.

    ``get``, ``[]``, ``in``, ``len``, ``del``, ``pop``, ``items``/``between`` (in address
    order).  ``nodes`` (the kernel's PTE pages, here of 64 entries: node number →
    ``bytearray`` of 64 entries, then the count of entries) is what the "hardware" walks
    in the load/store loop of ``sim_mmu.process``: a byte there is ``bits | USED``, or 0
    for pte_none.
    """

    USED = _USED
    __slots__ = ("tlb_data", "tlb_removals", "tlb_vpn")
    what = "PTEs"

    def __init__(self) -> None:
        super().__init__()
        # A one-entry TLB: the memory the entry at ``tlb_vpn`` maps, so the access that
        # follows a fault, or the next access to the same page, need not find the page
        # again.  Filled by ``set_if_none`` (update_mmu_cache) and by the load/store
        # loop; every change of an entry through this class flushes it (flush_tlb_page).
        self.tlb_vpn = -1
        self.tlb_data: bytearray | bytes | None = None
        self.tlb_removals = -1  # REMOVALS[0] when the entry was loaded

    def get(self, vpn: int) -> int | None:
        leaf = self.nodes.get(vpn >> LEAF_SHIFT)
        if leaf is None:
            return None
        b: int = leaf[vpn & LEAF_MASK]
        return b ^ _USED if b else None

    def __setitem__(self, vpn: int, bits: int) -> None:
        if not 0 <= bits < _USED:
            raise ValueError(f"PTE bits {bits:#x} out of range")
        n = vpn >> LEAF_SHIFT
        leaf = self.nodes.get(n) or self._new_node(n)
        slot = vpn & LEAF_MASK
        if not leaf[slot]:
            leaf[LEAF_SIZE] += 1
            self._count += 1
        leaf[slot] = bits | _USED
        if vpn == self.tlb_vpn:
            self.tlb_vpn = -1
            self.tlb_data = None

    def set_if_none(self, vpn: int, bits: int, data: bytearray | None = None) -> bool:
        """Install ``bits`` unless an entry is there already; True when installed.

        What ``finish_fault`` does under the page-table lock: a racing fault that
        installed the entry first wins, and this one backs out.  ``data``: the page's
        memory, loaded into the TLB for the access that retries (update_mmu_cache).
        """
        n = vpn >> LEAF_SHIFT
        leaf = self.nodes.get(n) or self._new_node(n)
        slot = vpn & LEAF_MASK
        if leaf[slot]:
            return False
        leaf[slot] = bits | _USED
        leaf[LEAF_SIZE] += 1
        self._count += 1
        if data is not None:  # load_tlb, inlined: this is every fault's last step
            self.tlb_vpn = vpn
            self.tlb_data = data
            self.tlb_removals = REMOVALS[0]
        return True

    def load_tlb(self, vpn: int, data: bytearray | bytes) -> None:
        self.tlb_vpn = vpn
        self.tlb_data = data
        self.tlb_removals = REMOVALS[0]

    def __delitem__(self, vpn: int) -> None:
        n = vpn >> LEAF_SHIFT
        leaf = self.nodes.get(n)
        slot = vpn & LEAF_MASK
        if leaf is None or not leaf[slot]:
            raise KeyError(vpn)
        leaf[slot] = 0
        self._released(n, leaf)  # free_pte_range: the leaf goes with its last entry
        if vpn == self.tlb_vpn:
            self.tlb_vpn = -1
            self.tlb_data = None

    def items(self) -> Iterator[tuple[int, int]]:
        return self.between(0, 1 << 64)

    def between(self, lo: int, hi: int) -> Iterator[tuple[int, int]]:
        """(vpn, bits) of the entries with ``lo <= vpn < hi``, in order."""
        return ((vpn, b ^ _USED) for vpn, b in self.walk(lo, hi - 1))


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
