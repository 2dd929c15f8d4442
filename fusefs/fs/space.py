"""Space accounting: a capacity of 4096-byte blocks, each free, reserved or allocated.

This module owns the filesystem-wide block counters (the kernel keeps the same three
numbers for ext4: free clusters, ``s_dirtyclusters_counter`` for delayed-allocation
reservations, and the blocks on disk).  A *reserved* block is promised to a dirty page
that has no block yet (delayed allocation): writeback turns it into an *allocated*
block without ever failing for space.  An *allocated* block holds file data (or was
preallocated by ``fallocate``).

Invariant at every instant, checked by :meth:`BlockPool.check`::

    0 <= allocated,  0 <= reserved,  allocated + reserved <= capacity

``free = capacity - allocated - reserved`` is what ``statfs`` reports.  Every method
that would break the invariant refuses instead (returns False, or raises ``FsError``):
a caller that asks for a block it cannot have gets ENOSPC, never an over-commit.

The pool counts blocks; which page owns which block is the file's business
(:mod:`fusefs.fs.filedata`), and ``check`` there ties the two together.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from fusefs.fs.errors import FsError


@dataclass(frozen=True, slots=True)
class SpaceStats:
    """A snapshot of the block counters (all in 4096-byte blocks)."""

    capacity_blocks: int
    free_blocks: int
    reserved_blocks: int
    allocated_blocks: int


class BlockPool:
    """The free/reserved/allocated block counters of one filesystem."""

    __slots__ = ("_allocated", "_capacity", "_reserved")

    def __init__(self, capacity_blocks: int) -> None:
        if capacity_blocks < 0:
            raise FsError(errno.EINVAL, f"negative capacity {capacity_blocks}")
        self._capacity = capacity_blocks
        self._reserved = 0
        self._allocated = 0

    def __repr__(self) -> str:
        return (
            f"<BlockPool capacity={self._capacity} allocated={self._allocated}"
            f" reserved={self._reserved} free={self.free}>"
        )

    # -- figures ----------------------------------------------------------------------
    @property
    def capacity(self) -> int:
        return self._capacity

    @property
    def free(self) -> int:
        return self._capacity - self._allocated - self._reserved

    @property
    def reserved(self) -> int:
        return self._reserved

    @property
    def allocated(self) -> int:
        return self._allocated

    def statistics(self) -> SpaceStats:
        return SpaceStats(
            capacity_blocks=self._capacity,
            free_blocks=self.free,
            reserved_blocks=self._reserved,
            allocated_blocks=self._allocated,
        )

    def check(self) -> None:
        """Raise AssertionError when the invariant does not hold (an fsck step)."""
        if self._allocated < 0 or self._reserved < 0:
            raise AssertionError(f"negative block counter in {self!r}")
        if self._allocated + self._reserved > self._capacity:
            raise AssertionError(f"allocated + reserved > capacity in {self!r}")

    # -- transitions ------------------------------------------------------------------
    def reserve(self, n: int = 1) -> bool:
        """free -> reserved for ``n`` blocks, all or nothing (delalloc reservation)."""
        if n < 0:
            raise ValueError(n)
        if n > self.free:
            return False
        self._reserved += n
        return True

    def unreserve(self, n: int = 1) -> None:
        """reserved -> free (the dirty page went away before writeback)."""
        if n < 0 or n > self._reserved:
            raise AssertionError(f"unreserve {n} of {self._reserved} reserved blocks")
        self._reserved -= n

    def claim_reserved(self, n: int = 1) -> None:
        """reserved -> allocated (writeback of a delalloc page); cannot fail for space."""
        if n < 0 or n > self._reserved:
            raise AssertionError(f"claim {n} of {self._reserved} reserved blocks")
        self._reserved -= n
        self._allocated += n

    def allocate(self, n: int = 1) -> bool:
        """free -> allocated for ``n`` blocks, all or nothing."""
        if n < 0:
            raise ValueError(n)
        if n > self.free:
            return False
        self._allocated += n
        return True

    def release(self, n: int = 1) -> None:
        """allocated -> free (truncate, hole punch, last close of an unlinked file)."""
        if n < 0 or n > self._allocated:
            raise AssertionError(f"release {n} of {self._allocated} allocated blocks")
        self._allocated -= n

    def set_capacity(self, capacity_blocks: int) -> None:
        """Grow or shrink the filesystem at run time (``mount -o remount,size=``).

        Shrinking below what is in use (allocated + reserved) answers EINVAL, as tmpfs
        does for a remount below its current use, and changes nothing.
        """
        if capacity_blocks < self._allocated + self._reserved:
            raise FsError(
                errno.EINVAL,
                f"capacity {capacity_blocks} below the {self._allocated} allocated"
                f" + {self._reserved} reserved blocks in use",
            )
        self._capacity = capacity_blocks
