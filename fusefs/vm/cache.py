"""The backing cache of the ``cache`` policy: a second store that holds copies of pages
(FS-Cache's local disk cache), whose writes take virtual time.

``page_mkwrite`` under ``cache`` (:mod:`fusefs.vm.ops`) waits until the cache holds a
page's current contents before the page may become writable; ``captures`` records every
write, so a test can check the cache got the contents from *before* a store.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio

from sim_mmu.page import Page


@dataclass(frozen=True, slots=True)
class CacheCapture:
    """One page written to the backing cache: whose, which, what, when (trio clock)."""

    ino: int
    index: int
    data: bytes
    at: float


class BackingCache:
    """A second store holding copies of pages (FS-Cache's local disk cache).

    ``store_page`` copies the page's current contents and takes ``write_latency``
    seconds of virtual time to write them; ``captures`` records every write, so a test
    can check the cache got the contents from *before* a store.
    """

    def __init__(self, write_latency: float = 0.005) -> None:
        self.write_latency = write_latency
        self.pages: dict[tuple[int, int], bytes] = {}
        self.captures: list[CacheCapture] = []

    def holds(self, ino: int, page: Page) -> bool:
        return self.pages.get((ino, page.index)) == page.data

    async def store_page(self, ino: int, page: Page) -> None:
        """Write the page's current contents to the cache (the caller holds its lock)."""
        snapshot = bytes(page.data)
        if self.write_latency:
            await trio.sleep(self.write_latency)
        self.pages[(ino, page.index)] = snapshot
        self.captures.append(CacheCapture(ino, page.index, snapshot, trio.current_time()))

    def forget(self, ino: int) -> None:
        for key in [k for k in self.pages if k[0] == ino]:
            del self.pages[key]
