"""The pyfuse3 adapter: every FUSE request the kernel sends, translated to the core.

This is the only module that imports pyfuse3 (the FUSE boundary). It owns no policy:
space, permissions beyond the mode bits and every errno come from `fusefs.fs.core`. What it
does own is the shape of the conversation with the kernel's FUSE driver:

- Errors. A handler may let only `pyfuse3.FUSEError` escape; anything else would end the
  request loop and leave a stale mount ("Transport endpoint is not connected"). So every
  handler runs inside `_boundary`: `FsError(e)` becomes `FUSEError(e)`, any other
  exception is logged as a bug with its traceback and answered with EIO. `forget` never
  raises at all.
- Caches. The kernel caches attributes and dentries only for the timeouts we return
  (`ATTR_TIMEOUT`, `ENTRY_TIMEOUT`); with zero timeouts every write(2) costs a GETATTR
  too. Files are opened with `keep_cache`, so the kernel keeps its page cache across
  opens - except a file that a simulated process maps writable, whose data can change by
  stores no request announces: its opens drop the kernel's cached pages. Beyond that,
  every change that does not come through the kernel (the simulator's stores, the
  flusher) reaches `_Invalidator`, which tells the kernel
  with `pyfuse3.invalidate_inode` - from a worker thread, never inline in a handler,
  since the notification can block until the kernel is done with the inode and the
  kernel may be waiting for a reply from this very loop.
- Never `direct_io`: it makes mmap(MAP_SHARED) of the file fail with ENODEV.
- `getxattr("security.capability")` arrives once per write(2) as soon as getxattr is
  implemented at all; it is answered ENODATA before any other work.
- READDIRPLUS: pyfuse3 always uses it, so every entry the kernel accepts is a lookup
  (`Filesystem.inc_lookup`); an entry `readdir_reply` refuses was not taken.
- The writeback cache stays off unless asked for (`writeback_cache=True`): with it the
  kernel acknowledges write(2) before we see the data, and ENOSPC surfaces only at
  fsync or never.

fallocate(2) reaches `Filesystem.fallocate` through `Operations.fallocate`, a handler
stock pyfuse3 3.5 lacks: scripts/setup builds pyfuse3 with patches/ adding it. Without
the patch the handler is never called, the kernel answers EOPNOTSUPP, and glibc's
posix_fallocate falls back to writing zeros (no KEEP_SIZE, no PUNCH_HOLE).

The session functions at the bottom (`session_init`, `session_main`, ...) let
`fusefs.fuse.mount` run the lifecycle without importing pyfuse3 itself.
"""

from __future__ import annotations

import errno
import functools
import logging
import math
import os
import reprlib
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, ParamSpec, TypeVar

import pyfuse3
import trio

from fusefs.fs.core import Attr, Ctx, Filesystem
from fusefs.fs.errors import FsError

log = logging.getLogger(__name__)

ATTR_TIMEOUT = 1.0
ENTRY_TIMEOUT = 1.0
_SECURITY_CAPABILITY = b"security.capability"

P = ParamSpec("P")
R = TypeVar("R")


def _boundary(fn: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """Let only FUSEError leave a handler: FsError keeps its errno, a bug becomes EIO."""

    @functools.wraps(fn)
    async def handler(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except pyfuse3.FUSEError:
            raise
        except FsError as exc:
            raise pyfuse3.FUSEError(exc.errno) from None
        except Exception:
            log.exception("BUG: %s%s raised; answering EIO", fn.__name__, _short(args[1:]))
            raise pyfuse3.FUSEError(errno.EIO) from None

    return handler


_short_repr = reprlib.Repr()
_short_repr.maxstring = _short_repr.maxother = 60


def _short(args: tuple[object, ...]) -> str:
    """The request's arguments for a log line, a write's data cut short."""
    return _short_repr.repr(args)


def _ctx(ctx: pyfuse3.RequestContext) -> Ctx:
    return Ctx(uid=ctx.uid, gid=ctx.gid, pid=ctx.pid, umask=ctx.umask)


def entry_attributes(attr: Attr) -> pyfuse3.EntryAttributes:
    """The core's Attr as the kernel's `struct fuse_entry_out`, with cache timeouts."""
    entry = pyfuse3.EntryAttributes()
    entry.st_ino = attr.ino
    entry.generation = attr.generation
    entry.entry_timeout = ENTRY_TIMEOUT
    entry.attr_timeout = ATTR_TIMEOUT
    entry.st_mode = attr.mode
    entry.st_nlink = attr.nlink
    entry.st_uid = attr.uid
    entry.st_gid = attr.gid
    entry.st_rdev = attr.rdev
    entry.st_size = attr.size
    entry.st_blksize = attr.blksize
    entry.st_blocks = attr.blocks
    entry.st_atime_ns = attr.atime_ns
    entry.st_mtime_ns = attr.mtime_ns
    entry.st_ctime_ns = attr.ctime_ns
    return entry


def _file_info(fh: int, *, keep_cache: bool = True) -> pyfuse3.FileInfo:
    # keep_cache: see the module docstring; direct_io never (MAP_SHARED would fail).
    return pyfuse3.FileInfo(fh=fh, direct_io=False, keep_cache=keep_cache)


_Stale = int | tuple[int, bytes]  # an inode, or (parent inode, name)


class _Invalidator:
    """Queue of what the kernel caches that went stale: an inode's data and attributes,
    or a directory entry (a name created or removed without a request).

    `notify(ino)` and `notify_entry(parent, name)` are what the core calls
    (`Filesystem.on_invalidate`, `.on_invalidate_entry`): they never block and never talk
    to the kernel. `run()` drains the queue, one `invalidate_inode`/`invalidate_entry` at
    a time, in a worker thread, until cancelled or `close()`d. Something already queued
    is not queued twice (one invalidation covers every change made before it starts).
    `settled()` waits until every notification made so far has reached the kernel.
    After `close()`, notifications are ignored (the mount is going away).
    """

    def __init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel[_Stale](math.inf)
        self._pending: set[_Stale] = set()
        self._outstanding = 0  # queued or being sent to the kernel
        self._idle = trio.Event()
        self._idle.set()
        self._closed = False

    def notify(self, ino: int) -> None:
        self._queue(ino)

    def notify_entry(self, parent: int, name: bytes) -> None:
        self._queue((parent, name))

    def _queue(self, stale: _Stale) -> None:
        if self._closed or stale in self._pending:
            return
        self._pending.add(stale)
        if self._outstanding == 0:
            self._idle = trio.Event()
        self._outstanding += 1
        self._send.send_nowait(stale)

    async def settled(self) -> None:
        """Until the kernel has acted on every notification made before this call."""
        await self._idle.wait()

    def close(self) -> None:
        """No more notifications: `run()` returns once the queue is drained."""
        self._closed = True
        self._send.close()

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            async for stale in self._receive:
                self._pending.discard(stale)
                try:
                    await trio.to_thread.run_sync(_invalidate, stale, abandon_on_cancel=True)
                finally:
                    self._outstanding -= 1
                    if self._outstanding == 0:
                        self._idle.set()
        finally:  # cancelled or closed: nobody will send what is left; wake the waiters
            self._closed = True
            self._pending.clear()
            self._idle.set()


def _invalidate(stale: _Stale) -> None:
    try:
        if isinstance(stale, int):
            pyfuse3.invalidate_inode(stale, False)
        else:
            pyfuse3.invalidate_entry(stale[0], stale[1])
    except OSError as exc:
        # ENOENT: the kernel holds no cache for it (never looked up, or forgotten);
        # ENODEV/ENOTCONN: the mount is already gone.
        if exc.errno not in (errno.ENOENT, errno.ENODEV, errno.ENOTCONN):
            log.warning("invalidating %r failed: %s", stale, exc)


class Operations(pyfuse3.Operations):
    """pyfuse3 request handlers over one `fusefs.fs.core.Filesystem`."""

    supports_dot_lookup = False  # no NFS export: the kernel resolves "." and ".." itself

    def __init__(self, fs: Filesystem, *, writeback_cache: bool = False) -> None:
        super().__init__()
        self.fs = fs
        self.enable_writeback_cache = writeback_cache
        self.invalidator = _Invalidator()
        fs.on_invalidate = self.invalidator.notify
        fs.on_invalidate_entry = self.invalidator.notify_entry
        # Set when the kernel's INIT arrives; libfuse sends the reply as soon as `init`
        # returns, before any task woken by this event runs.
        self.initialized = trio.Event()

    def init(self) -> None:
        try:
            self.initialized.set()
        except Exception:  # init must never raise
            log.exception("BUG: init")

    # -- names and attributes ---------------------------------------------------------

    @_boundary
    async def lookup(
        self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        return entry_attributes(self.fs.lookup(parent_inode, name, _ctx(ctx)))

    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        try:
            self.fs.forget(inode_list)
        except Exception:
            log.exception("BUG: forget(%r) raised", inode_list)

    @_boundary
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return entry_attributes(self.fs.getattr(inode))

    @_boundary
    async def setattr(
        self,
        inode: int,
        attr: pyfuse3.EntryAttributes,
        fields: pyfuse3.SetattrFields,
        fh: int | None,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        # pyfuse3 has already turned UTIME_NOW into the current time in `attr`.
        new = await self.fs.setattr(
            inode,
            mode=attr.st_mode if fields.update_mode else None,
            uid=attr.st_uid if fields.update_uid else None,
            gid=attr.st_gid if fields.update_gid else None,
            size=attr.st_size if fields.update_size else None,
            atime_ns=attr.st_atime_ns if fields.update_atime else None,
            mtime_ns=attr.st_mtime_ns if fields.update_mtime else None,
            ctx=_ctx(ctx),
        )
        return entry_attributes(new)

    @_boundary
    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        return self.fs.readlink(inode)

    # -- creating and removing names --------------------------------------------------

    @_boundary
    async def mknod(
        self, parent_inode: int, name: bytes, mode: int, rdev: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        return entry_attributes(self.fs.mknod(parent_inode, name, mode, rdev, _ctx(ctx)))

    @_boundary
    async def mkdir(
        self, parent_inode: int, name: bytes, mode: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        return entry_attributes(self.fs.mkdir(parent_inode, name, mode, _ctx(ctx)))

    @_boundary
    async def symlink(
        self, parent_inode: int, name: bytes, target: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        return entry_attributes(self.fs.symlink(parent_inode, name, target, _ctx(ctx)))

    @_boundary
    async def link(
        self, inode: int, new_parent_inode: int, new_name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        return entry_attributes(self.fs.link(inode, new_parent_inode, new_name, _ctx(ctx)))

    @_boundary
    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        await self.fs.unlink(parent_inode, name, _ctx(ctx))

    @_boundary
    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        await self.fs.rmdir(parent_inode, name, _ctx(ctx))

    @_boundary
    async def rename(
        self,
        parent_inode_old: int,
        name_old: bytes,
        parent_inode_new: int,
        name_new: bytes,
        flags: int,
        ctx: pyfuse3.RequestContext,
    ) -> None:
        # pyfuse3.RENAME_NOREPLACE/EXCHANGE carry Linux's values, as the core's do.
        await self.fs.rename(
            parent_inode_old, name_old, parent_inode_new, name_new, int(flags), _ctx(ctx)
        )

    # -- file I/O ---------------------------------------------------------------------

    @_boundary
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        fh = self.fs.open(inode, flags, _ctx(ctx))
        # While the simulator may be storing into the file, no request tells us of each
        # store: open without keep_cache, so the kernel drops its cached pages and this
        # opener reads the page cache as it is now.
        return _file_info(fh, keep_cache=not self.fs.may_change_unseen(inode))

    @_boundary
    async def create(
        self, parent_inode: int, name: bytes, mode: int, flags: int, ctx: pyfuse3.RequestContext
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        fh, attr = self.fs.create(parent_inode, name, mode, flags, _ctx(ctx))
        return _file_info(fh), entry_attributes(attr)

    @_boundary
    async def read(self, fh: int, off: int, size: int) -> bytes:
        return self.fs.read(fh, off, size)

    @_boundary
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        return await self.fs.write(fh, off, buf)

    @_boundary
    async def writepage(self, fh: int, off: int, buf: bytes) -> int:
        # Writeback of the kernel's page cache (FUSE_WRITE_CACHE: a shared mapping's
        # pages). The kernel ignores a writeback reply's count (fuse_writepage_end sees
        # only the error), so a short count would lose the rest silently and msync would
        # say 0: a WRITE that does not wholly fit answers ENOSPC, which msync reports.
        # Called by our patched pyfuse3 (patches/pyfuse3-3.5.0-writepage.patch).
        written = await self.fs.write(fh, off, buf)
        if written < len(buf):
            raise pyfuse3.FUSEError(errno.ENOSPC)
        return written

    @_boundary
    async def flush(self, fh: int) -> None:
        await self.fs.flush(fh)

    @_boundary
    async def fsync(self, fh: int, datasync: bool) -> None:
        await self.fs.fsync(fh, datasync)

    @_boundary
    async def release(self, fh: int) -> None:
        await self.fs.release(fh)

    @_boundary
    async def fallocate(self, fh: int, mode: int, offset: int, length: int) -> None:
        # The kernel has checked the mode (PUNCH_HOLE needs KEEP_SIZE), and after a
        # success it updates i_size itself and drops its cached pages of a punched hole.
        await self.fs.fallocate(fh, mode, offset, length)

    # -- directories ------------------------------------------------------------------

    @_boundary
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        return self.fs.opendir(inode, _ctx(ctx))

    @_boundary
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        for name, attr, next_id in self.fs.readdir(fh, start_id):
            if not pyfuse3.readdir_reply(token, name, entry_attributes(attr), next_id):
                break  # the kernel's buffer is full; this entry was not taken
            self.fs.inc_lookup(attr.ino)

    @_boundary
    async def releasedir(self, fh: int) -> None:
        self.fs.releasedir(fh)

    @_boundary
    async def fsyncdir(self, fh: int, datasync: bool) -> None:
        await self.fs.fsyncdir(fh)

    @_boundary
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        st = self.fs.statfs()
        data = pyfuse3.StatvfsData()
        data.f_bsize = st.bsize
        data.f_frsize = st.frsize
        data.f_blocks = st.blocks
        data.f_bfree = st.bfree
        data.f_bavail = st.bavail
        data.f_files = st.files
        data.f_ffree = st.ffree
        data.f_favail = st.favail
        data.f_namemax = st.namemax
        return data

    # -- extended attributes ----------------------------------------------------------

    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        if name == _SECURITY_CAPABILITY:  # asked once per write(2): answer before any work
            raise pyfuse3.FUSEError(errno.ENODATA)
        return await self._getxattr(inode, name, ctx)

    @_boundary
    async def _getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        return self.fs.getxattr(inode, name, _ctx(ctx))

    @_boundary
    async def setxattr(
        self, inode: int, name: bytes, value: bytes, ctx: pyfuse3.RequestContext
    ) -> None:
        # pyfuse3 checks XATTR_CREATE/XATTR_REPLACE itself (with a getxattr first) and
        # does not pass the flags on.
        self.fs.setxattr(inode, name, value, 0, _ctx(ctx))

    @_boundary
    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> Sequence[bytes]:
        return self.fs.listxattr(inode, _ctx(ctx))

    @_boundary
    async def removexattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        self.fs.removexattr(inode, name, _ctx(ctx))


# -- the session, for fusefs.fuse.mount ------------------------------------------------------


def session_options(*, debug: bool = False) -> set[str]:
    """Mount options: named in /proc/mounts as mkwritefs, the kernel checks mode bits."""
    options = {"fsname=mkwritefs", "subtype=mkwritefs", "default_permissions"}
    if os.getuid() == 0:
        options.add("allow_other")
    if debug:
        options.add("debug")
    return options


def session_init(ops: Operations, mountpoint: str, options: set[str]) -> None:
    """Mount (pyfuse3.init): after it returns the mount point is a mount.

    Raises RuntimeError when it cannot mount; the half-made session is destroyed then,
    so a later mount can be tried.
    """
    try:
        pyfuse3.init(ops, mountpoint, options)
    except RuntimeError as exc:
        if "fuse_session_mount" in str(exc):  # the session exists: free it
            pyfuse3.close(unmount=False)
        raise


async def session_main() -> None:
    """Serve requests until the mount goes away or `session_terminate` is called."""
    await pyfuse3.main()


def session_terminate() -> None:
    pyfuse3.terminate()


def session_close(*, unmount: bool) -> None:
    pyfuse3.close(unmount=unmount)
