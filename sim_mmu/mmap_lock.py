"""``mmap_lock``: the reader/writer semaphore of an mm (kernel ``mm->mmap_lock``).

Faults take it for reading (they may sleep in ``page_mkwrite`` while holding it);
``mmap``/``munmap``/``mprotect``/``fork``/exit take it for writing, so a VMA cannot change
under a sleeping fault.  Writers are preferred once waiting (as the kernel's rwsem hands
over), so a stream of faults cannot starve an ``munmap``.  The uncontended paths do not
touch the trio scheduler at all: they are a couple of integer operations.
"""

from __future__ import annotations

import trio


class MmapLock:
    __slots__ = ("_lot", "readers", "waiting_writers", "writer")

    def __init__(self) -> None:
        self.readers = 0
        self.writer = False
        self.waiting_writers = 0
        self._lot = trio.lowlevel.ParkingLot()

    async def acquire_read(self) -> None:
        while self.writer or self.waiting_writers:
            await self._lot.park()
        self.readers += 1

    def release_read(self) -> None:
        self.readers -= 1
        if self.readers == 0 and self.waiting_writers:
            self._lot.unpark_all()

    def wake_writers(self) -> None:
        """The last reader left and writers wait (what ``release_read`` does then)."""
        self._lot.unpark_all()

    async def acquire_write(self) -> None:
        self.waiting_writers += 1
        try:
            while self.writer or self.readers:
                await self._lot.park()
        finally:
            self.waiting_writers -= 1
        self.writer = True

    def release_write(self) -> None:
        self.writer = False
        if self._lot:
            self._lot.unpark_all()
