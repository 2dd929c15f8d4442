"""Writeback: the flusher, ``sync``, and the commits of a persistent store.

This module owns when dirty pages leave the page cache and when a store commits: the
flusher's period and expiry (kernel ``dirty_writeback_centisecs`` and
``dirty_expire_centisecs``), the periodic ``wb_writeback`` of files dirty for long
enough, the dirty model's device flusher beside it, ``sync``/``syncfs``, the last commit
at unmount, and the background batches that bound what one commit of a store copies.
How one file is written back (reservations turned into allocations, errors recorded on
the mapping) is :mod:`fusefs.fs.filedata`'s; the store itself is :mod:`fusefs.fs.store`.

Invariants: the flusher's period is at least :data:`MIN_WRITEBACK_INTERVAL` and its
expiry is not negative (EINVAL otherwise, changing nothing); a change applies at once
to a sleeping flusher; a failed periodic commit is logged and retried at the next one,
while ``sync`` and ``close`` raise it.
"""

from __future__ import annotations

import errno
import logging

import trio

from fusefs.fs.errors import FsError
from fusefs.fs.filedata import FileData
from fusefs.fs.inode import Inode
from fusefs.fs.namespace import Namespace
from fusefs.vm.policy import Policy
from fusefs.vm.throttle import DirtyConfig

# The core's one logger, whichever of its layers speaks (the mount's log names it).
log = logging.getLogger("fusefs.fs.core")

# With a store: a file with this many dirty pages (128 MiB) is written back and committed
# in the background, which bounds what one commit copies from the page cache.  Not for
# speed: measured here, smaller batches made write + fsync slower, not faster (the
# SQLite thread and the serving thread contend for the GIL).
STORE_BATCH_PAGES = 32768

# The flusher's shortest period: one centisecond, the unit of the kernel's
# dirty_writeback_centisecs.
MIN_WRITEBACK_INTERVAL = 0.01


class Writeback(Namespace):
    """The flusher and the store's commits, over the inode table of :class:`Namespace`.

    The state is set by ``Filesystem.__init__``; declared here is what this layer adds.
    """

    # The dirty-page model's configuration (fusefs.vm.throttle), kept while it is off; its
    # device flusher follows the same period and expiry.
    dirty_config: DirtyConfig
    writeback_interval: float
    dirty_expire: float
    _flusher_kick: trio.Event  # set: a sleeping flusher starts its new period now
    _flusher_nursery: trio.Nursery | None  # the running flusher's, for background work
    _store_batches: set[int]  # files being written back in a batch

    # -- writeback ----------------------------------------------------------------------
    async def writeback(self, ino: int | None = None) -> None:
        """Write back dirty pages of one file, or of every file (``sync``)."""
        if ino is not None:
            await self.file_data(ino).writeback()
            return
        for inode in list(self.inodes.values()):
            if inode.data is not None and inode.data.mapping.dirty_tag:
                await inode.data.writeback()

    def set_flusher(self, *, interval: float | None = None, expire: float | None = None) -> None:
        """Set the flusher's period and the age at which dirty data is written (seconds;
        kernel ``dirty_writeback_centisecs``/``dirty_expire_centisecs``); EINVAL for a
        value that is not a period of at least a centisecond (the kernel's unit; a
        shorter one would keep the flusher spinning) or a non-negative age, changing
        nothing."""
        if interval is not None and not interval >= MIN_WRITEBACK_INTERVAL:
            raise FsError(
                errno.EINVAL,
                f"writeback interval {interval} is below {MIN_WRITEBACK_INTERVAL} s "
                "(dirty_writeback_centisecs counts centiseconds)",
            )
        if expire is not None and not expire >= 0:
            raise FsError(errno.EINVAL, f"dirty expire {expire} is negative")
        if interval is not None:
            self.writeback_interval = float(interval)
        if expire is not None:
            self.dirty_expire = float(expire)
        settings = self.dirty_config.settings  # the device's flusher uses the same
        settings.dirty_writeback_interval = self.writeback_interval
        settings.dirty_expire_interval = self.dirty_expire
        self._flusher_kick.set()  # a sleeping flusher starts its new period now

    async def run_flusher(
        self,
        *,
        interval: float | None = None,
        expire: float | None = None,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Every ``writeback_interval`` s, write back files dirty for ``dirty_expire`` s
        or longer, and tell the mount about stores through mappings.

        Kernel: the flusher's periodic ``wb_writeback`` with ``dirty_writeback_centisecs``
        and ``dirty_expire_centisecs`` (5 s and 30 s by default).  Arguments given here
        set the filesystem's values; later changes (``set_flusher``, the root's
        ``user.mkwritefs.writeback_interval``/``dirty_expire``) apply at once.
        """
        if interval is not None or expire is not None:
            self.set_flusher(interval=interval, expire=expire)
        async with trio.open_nursery() as nursery:
            self._flusher_nursery = nursery
            try:
                self._start_device_flusher()
                task_status.started()
                while True:
                    self._flusher_kick = trio.Event()
                    with trio.move_on_after(self.writeback_interval):
                        await self._flusher_kick.wait()
                        continue  # settings changed: sleep the new period from now
                    self.notify_mapped_stores()
                    await self._write_expired(trio.current_time())
                    await self.commit_batch()
            finally:
                self._flusher_nursery = None

    def _start_device_flusher(self) -> None:
        """With the dirty model on, its device flusher (background writeback above the
        background threshold) runs beside this one, in the same nursery."""
        if self.dirty is not None and not self.dirty.flusher_running and self._flusher_nursery:
            self.dirty.flusher_running = True
            self._flusher_nursery.start_soon(self.dirty.run_flusher)

    async def _write_expired(self, now: float) -> None:
        expire = self.dirty_expire
        for inode in list(self.inodes.values()):
            data = inode.data
            if data is None or (inode.policy or self.policy) is Policy.SHMEM:
                continue  # tmpfs has no writeback
            if not data.mapping.dirty_tag:  # cleaned by truncate or fsync meanwhile
                data.dirtied_when = None
            elif data.dirtied_when is None:  # dirtied behind our back: start the clock
                data.dirtied_when = now
                if expire == 0:
                    await data.writeback()
            elif now - data.dirtied_when >= expire:
                await data.writeback()

    # -- sync and the store's commits ---------------------------------------------------
    async def sync(self) -> None:
        """``sync``/``syncfs``: write back every dirty page and commit the store (FsError
        when the store cannot take it; the state stays noted for the next commit)."""
        await self.writeback()
        await self.store.commit_async()

    async def close(self) -> None:
        """The end of the mount: write back and commit everything and let go of the
        store (FsError when the last commit failed).  Memory only: nothing to do."""
        if not self.store.persistent:
            return
        try:
            await self.sync()
        finally:
            self.store.close()

    async def commit_batch(self) -> None:
        """The flusher's periodic commit: what it wrote back and every metadata change
        since the last commit.  A failure is logged and retried at the next one."""
        if not self.store.persistent:
            return
        try:
            await self.store.commit_async(checkpoint=True)
        except FsError as exc:
            log.warning("store commit failed (retried later): %s", exc)

    def _store_batch_due(self, inode: Inode) -> None:
        """After write(2) to a store: once a file holds STORE_BATCH_PAGES dirty pages,
        write them back and commit them in the background (the flusher's nursery), as
        the kernel's background writeback above ``dirty_background``."""
        data = inode.data
        if (
            data is None
            or len(data.mapping.dirty_tag) < STORE_BATCH_PAGES
            or inode.ino in self._store_batches
            or self._flusher_nursery is None
        ):
            return
        self._store_batches.add(inode.ino)
        self._flusher_nursery.start_soon(self._store_batch, inode.ino, data)

    async def _store_batch(self, ino: int, data: FileData) -> None:
        try:
            await data.writeback()
            await self.commit_batch()
        finally:
            self._store_batches.discard(ino)
