"""Settings changed at run time: capacity, policy, the dirty model, writeback latency
and injected writeback errors.

This module owns the setters that the root's ``user.mkwritefs.*`` attributes
(:mod:`fusefs.fs.introspect`, the mount's control interface) and scenarios call; the
flusher's period and expiry are :mod:`fusefs.fs.flusher`'s (``set_flusher``).

Invariants: a refused value (EINVAL, or EBUSY for removing the dirty model) changes
nothing; a setting that concerns files applies at once to every regular file and to
every file created later (new files are wired in ``Namespace._init_file_data``).
"""

from __future__ import annotations

import errno

from fusefs.fs.errors import FsError
from fusefs.fs.flusher import Writeback
from fusefs.vm.policy import Policy, parse_policy
from fusefs.vm.throttle import DirtyThrottle


class Settings(Writeback):
    """The run-time settings, over :class:`~fusefs.fs.flusher.Writeback` (the dirty model's
    device flusher starts in the running flusher's nursery)."""

    # -- space --------------------------------------------------------------------------
    def set_capacity(self, capacity_blocks: int) -> None:
        """Resize at run time (``remount,size=``); EINVAL below the blocks in use."""
        self.space.set_capacity(capacity_blocks)
        if self.store.persistent:
            self.store.settings_changed()

    # -- dirty throttling (fusefs.vm.throttle: the sim_mmu model, KERNEL.md §4) ------------
    def set_dirty_throttle(self, mode: str) -> None:
        """Turn the dirty-page model on (``modern``, ``crude`` or ``off``: counting and
        background writeback without throttling) or switch its model.  ``none`` (no model)
        only while it was never on: EBUSY after.  The device is made at the first switch,
        from ``dirty_config``; every regular file is attached to it."""
        if mode == "none":
            if self.dirty is not None:
                raise FsError(errno.EBUSY, "the dirty model cannot be removed; use off")
            return
        if mode not in ("modern", "crude", "off"):
            raise FsError(errno.EINVAL, f"dirty_throttle {mode!r}: none, off, crude or modern")
        self.dirty_config.throttle = mode
        if self.dirty is not None:
            self.dirty.domain.throttle = mode
            return
        self.dirty = DirtyThrottle(self.dirty_config, fuse_policy=self.policy is Policy.FUSE)
        for inode in self.inodes.values():
            if inode.data is not None:
                self.dirty.attach(inode.data)
        self.balance_dirty = self.dirty.balance
        self._start_device_flusher()

    # -- write-notification policy, writeback latency and faults ------------------------
    def set_policy(self, policy: Policy | str, ino: int | None = None) -> None:
        """Set the filesystem's policy, or one file's (``policy=None`` not allowed)."""
        parsed = parse_policy(policy)
        if ino is None:
            self.policy = parsed
        else:
            self.file_data(ino)
            self.inode(ino).policy = parsed

    def set_writeback_latency(self, seconds: float) -> None:
        """Virtual seconds one batch of writeback I/O takes, for every file."""
        if not seconds >= 0:
            raise FsError(errno.EINVAL, "negative latency")
        self.writeback_latency = seconds
        for inode in self.inodes.values():
            if inode.data is not None:
                inode.data.io_latency = seconds

    def inject_writeback_error(self, err: int, pages: int = 1) -> None:
        """A failing disk: the next ``pages`` page writes of every regular file, and of
        each file created later, fail with ``err`` (recorded on the mapping, reported
        once per open file by fsync/msync); ``pages=0`` stops it."""
        if pages < 0 or (pages and err <= 0):
            raise FsError(errno.EINVAL, f"bad writeback fault {err}:{pages}")
        self.writeback_fault = (err, pages) if pages else (0, 0)
        for inode in self.inodes.values():
            if inode.data is not None:
                inode.data.inject_writeback_error(*self.writeback_fault)
