"""Sparse arrays in nodes of 64: the page cache, its marks and the page tables.

The kernel keeps a file's pages in an xarray and a process's PTEs in page-table pages:
both are trees whose leaves hold 64 (xarray) or 512 (PTE page) consecutive slots, made
when the first slot is used and freed with the last.  The simulator keeps the leaves
and lets a dict find them: ``Nodes.nodes`` maps a node number (index >> 6) to a node of
64 slots followed by the count of slots in use.  An untouched range costs nothing (a
terabyte mapping costs nothing until touched), a dense one a few bytes an entry, and
every walk goes in index order.  A dict keyed by index instead costs 30 to 120 bytes an
entry, depending on how full its table happens to be, plus the key's int.

* ``PageCache``: index → ``Page`` (kernel ``mapping->i_pages``); a node is a list.
* ``PageTag``: a set of indices (an xarray mark such as PAGECACHE_TAG_DIRTY); a node is
  a ``bytearray`` of one byte per index, so setting a mark makes no new object.
* ``sim_mmu.pte.PageTable``: virtual page number → PTE bits; a node is a ``bytearray``.

The fault path and the load/store loop read ``nodes`` directly, as the kernel's
``xas_load`` and the hardware's page-table walk do, instead of calling ``get``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sim_mmu.page import Page

XA_CHUNK_SHIFT = 6
XA_CHUNK_SIZE = 1 << XA_CHUNK_SHIFT
XA_CHUNK_MASK = XA_CHUNK_SIZE - 1
COUNT = XA_CHUNK_SIZE  # the slot after the 64 that counts those in use


class Nodes:
    """What the three arrays share: the nodes, their counts, the walks and the check."""

    __slots__ = ("_count", "nodes")
    what = "entries"  # for messages

    def __init__(self) -> None:
        self.nodes: dict[int, Any] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._count} {self.what} in {len(self.nodes)} nodes>"

    @staticmethod
    def in_use(node: Sequence[Any]) -> int:
        """How many of the node's 64 slots are in use (counted, for ``check``)."""
        return XA_CHUNK_SIZE - bytes(node[:XA_CHUNK_SIZE]).count(0)

    def _new_node(self, n: int) -> Any:
        """Make node ``n`` (a node in use is never empty, so ``get(n) or _new_node(n)``)."""
        node = self.nodes[n] = bytearray(XA_CHUNK_SIZE + 1)  # a byte per slot, a count
        return node

    def _released(self, n: int, node: Any) -> None:
        """One slot of node ``n`` was emptied: count it; free the node with its last."""
        self._count -= 1
        if node[COUNT] == 1:
            del self.nodes[n]
        else:
            node[COUNT] -= 1

    def node_numbers(self, first: int, last: int | None) -> list[int]:
        """The numbers of the nodes that may hold indices ``first..last``, in order."""
        nodes = self.nodes
        lo = first >> XA_CHUNK_SHIFT
        hi = (last >> XA_CHUNK_SHIFT) if last is not None else None
        if hi is not None and hi - lo < len(nodes):
            return [n for n in range(lo, hi + 1) if n in nodes]
        return sorted(n for n in nodes if n >= lo and (hi is None or n <= hi))

    def walk(self, first: int, last: int | None) -> Iterator[tuple[int, Any]]:
        """(index, slot) of the slots in use with ``first <= index <= last``, in order.

        An entry added or removed during the walk is seen or not as in the kernel's RCU
        walk: a node already passed is not looked at again.
        """
        for n in self.node_numbers(first, last):
            node = self.nodes.get(n)
            if node is None:
                continue
            base = n << XA_CHUNK_SHIFT
            for slot in range(XA_CHUNK_SIZE):
                value = node[slot]  # a page, or a non-zero byte
                if value and first <= base + slot and (last is None or base + slot <= last):
                    yield base + slot, value

    def check(self) -> str | None:
        """What is wrong with the nodes (a miscount, an empty node), or None."""
        total = 0
        for n, node in self.nodes.items():
            used = self.in_use(node)
            if not used or used != node[COUNT]:
                return f"{self.what} node {n} has {used} in use, counts {node[COUNT]}"
            total += used
        if total != self._count:
            return f"{total} {self.what} in the nodes, {self._count} counted"
        return None


class NodeMap(Nodes):
    """An array used as a dict: ``[]``, ``in``, ``pop`` and iteration over ``get``."""

    __slots__ = ()

    def get(self, index: int) -> Any:
        raise NotImplementedError

    def items(self) -> Iterator[tuple[int, Any]]:
        raise NotImplementedError

    def __getitem__(self, index: int) -> Any:
        value = self.get(index)
        if value is None:
            raise KeyError(index)
        return value

    def __contains__(self, index: object) -> bool:
        return isinstance(index, int) and self.get(index) is not None

    def pop(self, index: int, default: Any = None) -> Any:
        value = self.get(index)
        if value is None:
            return default
        del self[index]  # type: ignore[attr-defined]
        return value

    def __iter__(self) -> Iterator[int]:
        return (index for index, _ in self.items())


class PageCache(NodeMap):
    """A file's cached pages by index (kernel: the xarray ``mapping->i_pages``).

    Used as a dict from index to ``Page`` (``get``, ``[]``, ``in``, ``len``, ``del``,
    ``pop``, iteration, ``items``, ``values``); iteration is in index order.
    """

    __slots__ = ()
    what = "pages"

    @staticmethod
    def in_use(node: Sequence[Any]) -> int:
        return sum(slot is not None for slot in node[:XA_CHUNK_SIZE])

    def _new_node(self, n: int) -> list[Page | None | int]:
        node: list[Page | None | int] = [None] * XA_CHUNK_SIZE
        node.append(0)
        self.nodes[n] = node
        return node

    def get(self, index: int) -> Page | None:
        node = self.nodes.get(index >> XA_CHUNK_SHIFT)
        return None if node is None else node[index & XA_CHUNK_MASK]  # type: ignore[no-any-return]

    def __setitem__(self, index: int, page: Page) -> None:
        if index < 0:
            raise KeyError(f"page index {index} is negative")
        n = index >> XA_CHUNK_SHIFT
        node = self.nodes.get(n) or self._new_node(n)
        slot = index & XA_CHUNK_MASK
        if node[slot] is None:
            node[COUNT] += 1
            self._count += 1
        node[slot] = page

    def __delitem__(self, index: int) -> None:
        n = index >> XA_CHUNK_SHIFT
        node = self.nodes.get(n)
        slot = index & XA_CHUNK_MASK
        if node is None or node[slot] is None:
            raise KeyError(index)
        node[slot] = None
        self._released(n, node)

    def values(self) -> Iterator[Page]:
        return (page for _, page in self.items())

    def items(  # type: ignore[override]
        self, first: int = 0, last: int | None = None
    ) -> Iterator[tuple[int, Page]]:
        """(index, page) for the cached pages with ``first <= index <= last``, in order."""
        return self.walk(first, last)


class PageTag(Nodes):
    """The page indices carrying one page-cache mark (kernel: an xarray mark such as
    PAGECACHE_TAG_DIRTY).

    Used as a set of ints (``in``, ``len``, iteration in index order, ``add``,
    ``discard``, ``between``).  The kernel keeps a mark as a bit per slot in each node,
    so a walk of the marked pages skips the unmarked nodes; here a node is a byte per
    index (setting a byte makes no new object, where a bit of an int word would make
    two) made with the node's first mark.
    """

    __slots__ = ()
    what = "marks"

    def add(self, index: int) -> None:
        n = index >> XA_CHUNK_SHIFT
        node = self.nodes.get(n) or self._new_node(n)
        slot = index & XA_CHUNK_MASK
        if not node[slot]:
            node[slot] = 1
            node[COUNT] += 1
            self._count += 1

    def discard(self, index: int) -> None:
        n = index >> XA_CHUNK_SHIFT
        node = self.nodes.get(n)
        slot = index & XA_CHUNK_MASK
        if node is not None and node[slot]:
            node[slot] = 0
            self._released(n, node)

    def __contains__(self, index: object) -> bool:
        if not isinstance(index, int) or index < 0:
            return False
        node = self.nodes.get(index >> XA_CHUNK_SHIFT)
        return node is not None and bool(node[index & XA_CHUNK_MASK])

    def __iter__(self) -> Iterator[int]:
        return self.between(0, None)

    def between(self, first: int, last: int | None) -> Iterator[int]:
        """The marked indices with ``first <= index <= last``, in order."""
        return (index for index, _ in self.walk(first, last))

    def __repr__(self) -> str:
        return f"PageTag({list(self)!r})"
