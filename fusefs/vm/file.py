"""The open file a mapping holds: :class:`SimFile`, what ``sim_mmu``'s ``mmap`` takes.

It is the kernel's ``struct file`` of a fusefs regular file as the simulator sees it (a
``sim_mmu.MappedFile``): the policy's vm operations (chosen when ``mmap`` asks for
``vm_ops``), the address-space operations (``readpage``/``writepage``), ``fsync`` with
errseq reporting once per open file, and ``close`` with FUSE's flush-time writeback.
"""

from __future__ import annotations

import errno
import os

from fusefs.fs.errors import FsError
from fusefs.fs.filedata import FileData
from fusefs.fs.inode import Inode
from fusefs.vm.context import VmContext
from fusefs.vm.ops import FileVmOps, vm_ops_for
from fusefs.vm.policy import Policy
from sim_mmu.errors import SimError
from sim_mmu.page import PAGE_SHIFT, AddressSpace, Page


class FileAops:
    """``readpage``/``writepage`` (kernel ``address_space_operations``).

    The page cache holds the only copy of the data: a page that is not cached is a hole
    or a block never written, and reads as zeros.
    """

    def __init__(self, data: FileData) -> None:
        self.data = data

    async def readpage(self, page: Page) -> None:
        page.data[:] = bytes(len(page.data))
        page.uptodate = True

    async def writepage(self, page: Page) -> None:
        await self.data.writepage(page)


class SimFile:
    """An open fusefs file as ``sim_mmu`` sees it (a ``MappedFile``).

    Holds an open-file handle of the filesystem (so an unlinked file lives on while open
    or mapped).  The policy is ``policy`` if given at open, else the inode's, else the
    filesystem's, read when ``mmap`` asks for ``vm_ops``.
    """

    def __init__(
        self, sb: VmContext, inode: Inode, fh: int, flags: int, policy: Policy | None
    ) -> None:
        assert inode.data is not None
        self.sb = sb
        self.inode = inode
        self.data: FileData = inode.data
        self.fh = fh
        self.flags = flags
        self.policy_override = policy
        self.a_ops = FileAops(self.data)
        self._ops: dict[Policy, FileVmOps] = {}
        self.closed = False
        self._released = False

    def __repr__(self) -> str:
        return f"<SimFile ino={self.inode.ino} fh={self.fh} {self.policy}>"

    @property
    def ino(self) -> int:
        return self.inode.ino

    @property
    def policy(self) -> Policy:
        return self.policy_override or self.inode.policy or self.sb.policy

    @property
    def mapping(self) -> AddressSpace:
        return self.data.mapping

    @property
    def vm_ops(self) -> FileVmOps:
        policy = self.policy
        ops = self._ops.get(policy)
        if ops is None:
            ops = self._ops[policy] = vm_ops_for(self.sb, self.inode, policy)
        return ops

    @property
    def i_size(self) -> int:
        return self.data.size

    @property
    def readable(self) -> bool:
        return (self.flags & os.O_ACCMODE) != os.O_WRONLY

    @property
    def writable(self) -> bool:
        return (self.flags & os.O_ACCMODE) != os.O_RDONLY

    @property
    def accounts_dirty(self) -> bool:
        return self.policy.accounts_dirty

    def file_update_time(self) -> None:
        """The core's mtime update for a store without a hook (``file_update_time``);
        the page it made writable will take stores the mount must hear of."""
        self.inode.touch_modified(self.sb.clock())
        self.sb.note_mapped_writer(self.inode.ino)

    async def balance_dirty_pages_ratelimited(self) -> None:
        """Called by the fault path after it dirtied a page: the filesystem's dirty
        throttle (``Filesystem.balance_dirty``, e.g. a ``sim_mmu`` bdi model), if any."""
        balance = self.sb.balance_dirty
        dirty = self.sb.dirty
        if dirty is not None and dirty.placement == "before" and self.policy.has_page_mkwrite:
            dirty.release()  # page_mkwrite throttled already, before the page became
            return  # writable, and held room for it: the page is dirty now (or was)
        if balance is not None:
            await balance(self.data)

    async def fsync(self, start: int = 0, end: int = -1) -> None:
        """``vfs_fsync_range``: write back bytes ``start..end``, report an error once."""
        if self.closed:
            raise SimError(errno.EBADF, "fsync of a closed file")
        if self.policy is Policy.SHMEM:  # tmpfs: noop_fsync, nothing to write back
            self._check_error()
            return
        first = max(start, 0) >> PAGE_SHIFT
        last = None if end < 0 else end >> PAGE_SHIFT
        await self.data.writeback(first, last)
        self._check_error()

    def _check_error(self) -> None:
        try:
            self.sb.check_wb_error(self.fh)
        except FsError as exc:
            raise SimError(exc.errno, "writeback error") from None

    def _mapped(self) -> bool:
        return any(getattr(v, "file", None) is self for v in self.data.mapping.i_mmap)

    async def close(self) -> None:
        """``close(2)``: write back (FUSE ``flush``), report a writeback error, release.

        The descriptor is closed even when an error is reported.  While a mapping of
        this file remains, the file is released when the last one goes.
        """
        if self.closed:
            raise SimError(errno.EBADF, "close of a closed file")
        self.closed = True
        error: SimError | None = None
        try:
            if self.policy is not Policy.SHMEM:
                await self.data.writeback()
            self._check_error()
        except SimError as exc:
            error = exc
        finally:
            if not self._mapped():
                await self._release()
        if error is not None:
            raise error

    async def vma_closed(self) -> None:
        if self.closed and not self._mapped():
            await self._release()

    async def _release(self) -> None:
        if not self._released:
            self._released = True
            await self.sb.release(self.fh)
