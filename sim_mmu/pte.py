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

PRESENT = 0x01
WRITE = 0x02
DIRTY = 0x04
YOUNG = 0x08
ANON = 0x10  # maps mm.anon[vpn], not a page-cache page
ZERO = 0x20  # maps the shared zero page (read-only)
_USED = 0x80  # in a leaf's byte: an entry is there (not pte_none)

LEAF_SHIFT = 6
LEAF_SIZE = 1 << LEAF_SHIFT
LEAF_MASK = LEAF_SIZE - 1


class PageTable:
    """One mm's PTEs by virtual page number; used as a dict of ``int`` bits.

    ``get``, ``[]``, ``in``, ``len``, ``del``, ``pop``, ``items``/``between`` (in address
    order).  ``leaves`` (leaf number → ``bytearray``: 64 entries, then the count of
    entries) is what the "hardware" walks in the load/store loop of ``sim_mmu.process``:
    a byte there is ``bits | USED``, or 0 for pte_none.
    """

    USED = _USED
    __slots__ = ("_count", "leaves", "tlb_data", "tlb_removals", "tlb_vpn")

    def __init__(self) -> None:
        self.leaves: dict[int, bytearray] = {}
        self._count = 0
        # A one-entry TLB: the memory the entry at ``tlb_vpn`` maps, so the access that
        # follows a fault, or the next access to the same page, need not find the page
        # again.  Filled by ``set_if_none`` (update_mmu_cache) and by the load/store
        # loop; every change of an entry through this class flushes it (flush_tlb_page).
        self.tlb_vpn = -1
        self.tlb_data: bytearray | bytes | None = None
        self.tlb_removals = -1  # REMOVALS[0] when the entry was loaded

    def __repr__(self) -> str:
        return f"<PageTable {self._count} entries in {len(self.leaves)} leaves>"

    def get(self, vpn: int) -> int | None:
        leaf = self.leaves.get(vpn >> LEAF_SHIFT)
        if leaf is None:
            return None
        b = leaf[vpn & LEAF_MASK]
        return b ^ _USED if b else None

    def __getitem__(self, vpn: int) -> int:
        bits = self.get(vpn)
        if bits is None:
            raise KeyError(vpn)
        return bits

    def __contains__(self, vpn: object) -> bool:
        return isinstance(vpn, int) and self.get(vpn) is not None

    def __setitem__(self, vpn: int, bits: int) -> None:
        if not 0 <= bits < _USED:
            raise ValueError(f"PTE bits {bits:#x} out of range")
        n = vpn >> LEAF_SHIFT
        leaf = self.leaves.get(n)
        if leaf is None:
            leaf = self.leaves[n] = bytearray(LEAF_SIZE + 1)
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
        leaf = self.leaves.get(n)
        if leaf is None:
            leaf = self.leaves[n] = bytearray(LEAF_SIZE + 1)
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

    def tlb_lookup(self, vpn: int) -> bytearray | bytes | None:
        """The memory the TLB holds for ``vpn``, or None (a miss: walk the tables)."""
        if vpn == self.tlb_vpn and self.tlb_removals == REMOVALS[0]:
            return self.tlb_data
        return None

    def __delitem__(self, vpn: int) -> None:
        n = vpn >> LEAF_SHIFT
        leaf = self.leaves.get(n)
        slot = vpn & LEAF_MASK
        if leaf is None or not leaf[slot]:
            raise KeyError(vpn)
        leaf[slot] = 0
        self._count -= 1
        if vpn == self.tlb_vpn:
            self.tlb_vpn = -1
            self.tlb_data = None
        if leaf[LEAF_SIZE] == 1:
            del self.leaves[n]  # free_pte_range: the leaf went with its last entry
        else:
            leaf[LEAF_SIZE] -= 1

    def check(self) -> str | None:
        """What is wrong with the leaves (counts, empty leaves), or None."""
        total = 0
        for n, leaf in self.leaves.items():
            used = LEAF_SIZE - leaf.count(0, 0, LEAF_SIZE)
            if not used or used != leaf[LEAF_SIZE]:
                return f"page-table leaf {n} has {used} entries, counts {leaf[LEAF_SIZE]}"
            total += used
        if total != self._count:
            return f"page table has {total} entries, counts {self._count}"
        return None

    def pop(self, vpn: int, default: int | None = None) -> int | None:
        bits = self.get(vpn)
        if bits is None:
            return default
        del self[vpn]
        return bits

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[int]:
        return (vpn for vpn, _ in self.items())

    def items(self) -> Iterator[tuple[int, int]]:
        return self.between(0, 1 << 64)

    def between(self, lo: int, hi: int) -> Iterator[tuple[int, int]]:
        """(vpn, bits) of the entries with ``lo <= vpn < hi``, in order."""
        leaves = self.leaves
        first, last = lo >> LEAF_SHIFT, (hi - 1) >> LEAF_SHIFT
        if last - first < len(leaves):
            numbers = [n for n in range(first, last + 1) if n in leaves]
        else:
            numbers = sorted(n for n in leaves if first <= n <= last)
        for n in numbers:
            leaf = leaves.get(n)
            if leaf is None:
                continue
            base = n << LEAF_SHIFT
            for slot in range(LEAF_SIZE):
                b = leaf[slot]
                if b and lo <= base + slot < hi:
                    yield base + slot, b ^ _USED


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
