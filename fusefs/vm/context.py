"""What the vm operations may use of the filesystem: :class:`VmContext`.

A ``page_mkwrite`` needs a few things of its superblock and nothing else: the clock
(mtime), the hook's own latency, the dirty model, the backing cache of the ``cache``
policy, the retry after ENOSPC (``ext4_should_retry_alloc``), the mount's note that a
file now takes stores without requests, and, for the open file, writeback errors and
the release of its handle.  Naming them here keeps :mod:`fusefs.vm` below the
filesystem core: the core's ``Filesystem`` provides them (mypy checks it does), and the
simulator's fault path and the live fault path reach the very same code through them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from fusefs.fs.filedata import FileData
from fusefs.vm.cache import BackingCache
from fusefs.vm.policy import Policy
from fusefs.vm.throttle import DirtyThrottle


class VmContext(Protocol):
    """The superblock as the vm operations and the open file see it."""

    policy: Policy  # the mount's: a file's own or an open file's choice overrides it
    mkwrite_latency: float  # virtual seconds a page_mkwrite sleeps before locking
    cache: BackingCache
    dirty: DirtyThrottle | None  # the dirty model, or None when off
    # balance_dirty_pages_ratelimited for a page dirtied through a mapping, or None
    balance_dirty: Callable[[FileData], Awaitable[None]] | None
    clock: Callable[[], int]  # nanoseconds, for mtime

    async def retry_alloc(self) -> bool:
        """After ENOSPC: True when forcing writeback freed space (retry once)."""
        ...

    def note_mapped_writer(self, ino: int) -> None:
        """File ``ino`` has a writable page in a shared mapping: stores may change it."""
        ...

    def check_wb_error(self, fh: int) -> None:
        """Raise FsError for a writeback error open file ``fh`` has not seen yet."""
        ...

    async def release(self, fh: int) -> None:
        """Release open file ``fh`` (its last reference went)."""
        ...
