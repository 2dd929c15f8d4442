"""Open files and open directories: the file handles FUSE passes back on every request.

This module owns the open file descriptions (kernel ``struct file``): open, create,
read, write, fsync, fallocate and release of regular files, and opendir, readdir,
fsyncdir and releasedir of directories.  The data itself is the page cache's
(:mod:`fusefs.fs.filedata`); this layer checks the handle and its access mode, charges
``write(2)`` to the dirty throttle, and reports writeback errors.

Invariants: a handle is in exactly one table (files or directories) from its open to
its release, and holds one ``opens`` count on its inode, so an unlinked inode lives
until its last handle goes (``iput_final``); a writeback error is reported once per
open file (``errseq``: ``file->f_wb_err``, sampled at open, checked and advanced by
fsync).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass

from fusefs.fs.directory import Directory, check_name
from fusefs.fs.errors import FsError
from fusefs.fs.flusher import Writeback
from fusefs.fs.inode import Attr, Ctx, Inode
from fusefs.vm.throttle import CHARGED_TASK, Writer

FALLOC_FL_KEEP_SIZE = 1
FALLOC_FL_PUNCH_HOLE = 2


@dataclass(slots=True)
class OpenFile:
    """One open file description (kernel: ``struct file``) as the filesystem sees it."""

    inode: Inode
    flags: int
    wb_err_since: int  # errseq sample taken at open (``file->f_wb_err``)
    writer: Writer | None = None  # whom the dirty throttle charges for its write(2)s

    @property
    def writable(self) -> bool:
        return (self.flags & os.O_ACCMODE) != os.O_RDONLY


class OpenFiles(Writeback):
    """The handle tables, over :class:`~fusefs.fs.flusher.Writeback` (a write(2) to a
    store may start a background batch; fsync writes back and commits).

    The state is set by ``Filesystem.__init__``; declared here is what this layer adds.
    """

    _files: dict[int, OpenFile]
    _dirs: dict[int, Inode]
    _next_fh: int  # shared by both tables: a handle number is never reused

    # -- open files ---------------------------------------------------------------------
    def _new_fh(self, inode: Inode, flags: int) -> int:
        assert inode.data is not None
        fh = self._next_fh
        self._next_fh += 1
        self._files[fh] = OpenFile(inode, flags, inode.data.mapping.wb_err.sample())
        inode.opens += 1
        return fh

    def _handle(self, fh: int) -> OpenFile:
        try:
            return self._files[fh]
        except KeyError:
            raise FsError(errno.EBADF) from None

    def open(self, ino: int, flags: int, ctx: Ctx) -> int:
        inode = self.inode(ino)
        if inode.is_dir:
            raise FsError(errno.EISDIR)
        if inode.data is None:
            raise FsError(errno.ENXIO, "not a regular file")
        fh = self._new_fh(inode, flags)
        if flags & os.O_TRUNC:  # Linux truncates even with O_RDONLY (may_open checked it)
            inode.data.truncate(0)
            inode.touch_modified(self.clock())
        return fh

    def create(self, parent: int, name: bytes, mode: int, flags: int, ctx: Ctx) -> tuple[int, Attr]:
        pinode, pdir = self._dir(parent)
        check_name(name)
        existing = pdir.lookup(name)
        if existing is not None:
            if flags & os.O_EXCL:
                raise FsError(errno.EEXIST)
            fh = self.open(existing, flags, ctx)
            inode = self.inode(existing)
            inode.lookups += 1
            return fh, inode.attr()
        attr = self.mknod(parent, name, stat.S_IFREG | (mode & 0o7777), 0, ctx)
        return self._new_fh(self.inodes[attr.ino], flags), attr

    def read(self, fh: int, offset: int, size: int) -> bytes:
        of = self._handle(fh)
        assert of.inode.data is not None
        data = of.inode.data.read(offset, size)
        of.inode.touch_accessed(self.clock())
        return data

    async def write(self, fh: int, offset: int, data: bytes) -> int:
        of = self._handle(fh)
        if not of.writable:
            raise FsError(errno.EBADF, "file not open for writing")
        assert of.inode.data is not None
        if self.dirty is None:
            n = await of.inode.data.write(offset, data)
        else:  # charge the open file: a FUSE request is a trio task of its own
            of.writer = of.writer or Writer(f"fh {fh}")
            token = self.dirty.charging(of.writer)
            try:
                n = await of.inode.data.write(offset, data)
            finally:
                CHARGED_TASK.reset(token)
        of.inode.touch_modified(self.clock())
        if self.store.persistent:
            self._store_batch_due(of.inode)
        return n

    async def flush(self, fh: int) -> None:
        self._handle(fh)

    async def fsync(self, fh: int, datasync: bool) -> None:
        """Write the file back; report a writeback error once per open file."""
        of = self._handle(fh)
        data = of.inode.data
        assert data is not None
        await data.writeback()
        await self.store.commit_async()  # FsError (ENOSPC, EIO) when the store cannot take it
        self.check_wb_error(fh)

    def check_wb_error(self, fh: int) -> None:
        """Report a writeback error once per open file (``file_check_and_advance_wb_err``)."""
        of = self._handle(fh)
        assert of.inode.data is not None
        wb_err = of.inode.data.mapping.wb_err
        err, of.wb_err_since = wb_err.check_and_advance(of.wb_err_since)
        if err:
            raise FsError(err, "writeback failed")

    async def release(self, fh: int) -> None:
        of = self._files.pop(fh, None)
        if of is None:
            raise FsError(errno.EBADF)
        of.inode.opens -= 1
        self._maybe_evict(of.inode)

    async def fallocate(self, fh: int, mode: int, offset: int, length: int) -> None:
        of = self._handle(fh)
        if mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE):
            raise FsError(errno.EOPNOTSUPP, f"fallocate mode {mode:#x}")
        if mode & FALLOC_FL_PUNCH_HOLE and not mode & FALLOC_FL_KEEP_SIZE:
            raise FsError(errno.EOPNOTSUPP, "PUNCH_HOLE needs KEEP_SIZE")
        if offset < 0 or length <= 0:
            raise FsError(errno.EINVAL, "bad fallocate range")
        if not of.writable:
            raise FsError(errno.EBADF, "file not open for writing")
        data = of.inode.data
        assert data is not None
        async with data.i_rwsem:
            if mode & FALLOC_FL_PUNCH_HOLE:
                data.punch_hole(offset, length)
            else:
                data.fallocate(offset, length, keep_size=bool(mode & FALLOC_FL_KEEP_SIZE))
        of.inode.touch_modified(self.clock())

    # -- directories --------------------------------------------------------------------
    def opendir(self, ino: int, ctx: Ctx) -> int:
        inode, _ = self._dir(ino)
        fh = self._next_fh
        self._next_fh += 1
        self._dirs[fh] = inode
        inode.opens += 1
        return fh

    def readdir(self, fh: int, start_id: int) -> Iterator[tuple[bytes, Attr, int]]:
        try:
            inode = self._dirs[fh]
        except KeyError:
            raise FsError(errno.EBADF) from None
        assert inode.dir is not None
        if start_id == 0:
            inode.touch_accessed(self.clock())
        return self._readdir(inode.dir, start_id)

    def _readdir(self, d: Directory, start_id: int) -> Iterator[tuple[bytes, Attr, int]]:
        for name, ino, cookie in d.entries_after(start_id):
            yield name, self.inodes[ino].attr(), cookie

    async def fsyncdir(self, fh: int) -> None:
        """fsync of a directory: its entries (and every other change so far) committed
        to the store before it returns (a rename made durable: rename, then fsync the
        directory).  Memory only: nothing to do."""
        if fh not in self._dirs:
            raise FsError(errno.EBADF)
        await self.store.commit_async()

    def releasedir(self, fh: int) -> None:
        inode = self._dirs.pop(fh, None)
        if inode is None:
            raise FsError(errno.EBADF)
        inode.opens -= 1
        self._maybe_evict(inode)
