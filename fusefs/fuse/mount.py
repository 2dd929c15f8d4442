"""Mount lifecycle: mount, serve on one trio loop, unmount - also on signals and errors.

pyfuse3 serves one mount per process. `serving()` is the one way to serve it, used by
the command line (`serve()`, `mkwritefs mount`) and by anything that must share the
filesystem's page cache with simulated processes (the showcase, the session tests):

    async with serving(fs, mountpoint) as m:
        ...  # simulated processes run here, on the same trio loop as the FUSE server
        st = await m.run_sync(os.statvfs, m.mountpoint)  # a check, from a worker thread

It mounts (`session_init`: from then on the directory is a mount point and the kernel
queues requests), then runs in one nursery:

- the FUSE request loop (`session_main`, pyfuse3.main);
- the core's background flusher (`Filesystem.run_flusher`, the kernel's flusher thread);
- the adapter's invalidation worker (kernel cache invalidations, from a worker thread);
- with `handle_signals`, a watcher: SIGINT or SIGTERM ends the request loop.

It yields only once the kernel's INIT has been answered (`Operations.initialized`): from
then on requests are served. On leaving the block - normally, by an exception, or by
cancellation - the request loop is ended (`session_terminate`: requests in flight are
answered first, for at most `STOP_GRACE` seconds), the other tasks are cancelled and the
mount is closed with unmount (as root libfuse detaches it lazily, so it never fails
EBUSY; a file still open on it then reads ENOTCONN). Invariant: once `serving()` has
exited, the directory is no longer a live mount of ours and another mount may be made.

Never make a blocking system call on the mount from the trio thread: the request that
call sends can only be answered by this very thread. `Mount.run_sync` runs a function
in a worker thread, after the kernel's caches have been told of every simulated store
(`Mount.settle`), so what it reads is what simulated processes stored. Nothing here
touches the mount from the trio thread; mount points are found in /proc/self/mountinfo.

As root, the mount's readahead window is raised from the kernel's 128 KiB to the 1 MiB a
FUSE request can carry (`/sys/class/bdi/<major:minor>/read_ahead_kb`): pyfuse3 cannot ask
for a larger max_readahead at INIT; measured here, it more than doubles sequential read.

`serve()` (the command line's server) also tells malloc (`mallopt`) to keep up to the
filesystem's capacity of freed heap and to serve the 1 MiB request buffers from the heap:
glibc returns freed heap eagerly and every page taken back costs a fresh page fault when
a deleted file's space is written again (measured: about 1.5x faster rewrites).

pyfuse3 is used only through `fusefs.fuse.ops` (the only module that imports it).
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import trio

from fusefs import mountinfo
from fusefs.constants import BLOCK_SIZE
from fusefs.fs.core import Filesystem
from fusefs.fs.errors import FsError
from fusefs.fs.store import SqliteStore, StoreError
from fusefs.fuse.ops import (
    Operations,
    session_close,
    session_init,
    session_main,
    session_options,
    session_terminate,
)
from fusefs.vm.policy import DEFAULT_POLICY, Policy

log = logging.getLogger(__name__)

READ_AHEAD_KB = 1024  # = max_write/max_pages: the largest READ one request carries
STOP_GRACE = 5.0  # seconds the requests in flight get to finish at unmount

T = TypeVar("T")


class MountError(Exception):
    """The mount could not be set up (bad mount point, no FUSE, no permission, busy)."""


@dataclass(eq=False)
class Mount:
    """A live in-process mount, as `serving()` yields it."""

    fs: Filesystem
    mountpoint: str
    ops: Operations
    # Set when the request loop has ended: unmounted from outside, a signal, or closing.
    ended: trio.Event = field(default_factory=trio.Event)

    def path(self, *parts: str) -> str:
        """A path inside the mount."""
        return os.path.join(self.mountpoint, *parts)

    async def settle(self) -> None:
        """Make the kernel forget what simulated stores made stale, and wait until it has.

        Files written through shared mappings are reported by the core
        (`Filesystem.notify_mapped_stores`); the invalidation worker tells the kernel.
        After this returns, read(2), stat(2) and mmap through the mount see every store
        made before the call.
        """
        self.fs.notify_mapped_stores()
        await self.ops.invalidator.settled()

    async def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` in a worker thread, after `settle()`: the way to touch the mount.

        The thread is abandoned if the caller is cancelled (it cannot be interrupted, and
        the unmount that follows makes its system call fail). `fn` must not touch a real
        mmap of a file on this mount from Python (slicing it): the page fault waits for
        a READ only this loop can answer while the thread holds the GIL - a deadlock.
        Let the kernel copy from the mapping instead (os.write of a memoryview of it).
        """
        await self.settle()
        return await trio.to_thread.run_sync(lambda: fn(*args), abandon_on_cancel=True)

    async def wait_ended(self) -> None:
        """Until the request loop ends (`fusermount3 -u` from outside, or a signal)."""
        await self.ended.wait()


@asynccontextmanager
async def serving(
    fs: Filesystem,
    mountpoint: str,
    *,
    writeback_cache: bool = False,
    debug: bool = False,
    handle_signals: bool = False,
    stop_grace: float = STOP_GRACE,
) -> AsyncIterator[Mount]:
    """Mount `fs` on `mountpoint` and serve it on this trio loop while the block runs.

    At the end, requests in flight get `stop_grace` seconds to be answered before they
    are cancelled. Raises MountError when the mount cannot be made (nothing is mounted
    then).
    """
    mountpoint = await trio.to_thread.run_sync(os.path.realpath, mountpoint)
    if mountinfo.find(mountpoint) is not None:
        raise MountError(f"{mountpoint} is already a mount point")
    ops = Operations(fs, writeback_cache=writeback_cache)
    try:
        session_init(ops, mountpoint, session_options(debug=debug))
    except (RuntimeError, OSError) as exc:  # session_init freed what it had made
        raise MountError(f"cannot mount {mountpoint}: {exc}") from None
    log.info(
        "mounted %s: %d blocks of %d bytes, policy %s",
        mountpoint,
        fs.space.capacity,
        BLOCK_SIZE,
        fs.policy,
    )
    m = Mount(fs, mountpoint, ops)
    try:
        async with _unwrapped(), trio.open_nursery() as nursery:
            await nursery.start(ops.invalidator.run)
            await nursery.start(_run_flusher, fs)
            if handle_signals:
                await nursery.start(_watch_signals)
            nursery.start_soon(_request_loop, m)
            await ops.initialized.wait()
            if os.getuid() == 0:
                _set_read_ahead(mountpoint, READ_AHEAD_KB)
            try:
                yield m
            finally:
                await _stop(m, nursery.cancel_scope, stop_grace)
    finally:
        _close(unmount=True)
        log.info("unmounted %s", mountpoint)


@asynccontextmanager
async def _unwrapped() -> AsyncIterator[None]:
    """The body's own exception, not a group of one: the body runs inside our nursery,
    which wraps whatever leaves it (trio's strict exception groups)."""
    try:
        yield
    except BaseExceptionGroup as group:
        if len(group.exceptions) != 1:
            raise
        exc = group.exceptions[0]
        raise exc from exc.__cause__


async def _stop(m: Mount, nursery_scope: trio.CancelScope, grace: float) -> None:
    """Send the invalidations still queued, end the request loop gracefully (requests in
    flight are answered), then cancel the other tasks."""
    invalidator = m.ops.invalidator
    with trio.CancelScope(shield=True) as scope:
        scope.deadline = trio.current_time() + grace
        invalidator.close()
        await invalidator.settled()
        if not m.ended.is_set():
            session_terminate()
            await m.ended.wait()
    if scope.cancelled_caught:
        log.warning("still busy %.1f s after unmount began: cancelled", grace)
    if m.fs.on_invalidate == invalidator.notify:  # the filesystem outlives the mount
        m.fs.on_invalidate = None
        m.fs.on_invalidate_entry = None
    nursery_scope.cancel()


async def _request_loop(m: Mount) -> None:
    """pyfuse3.main until the session ends."""
    try:
        await session_main()
    finally:
        m.ended.set()


def _close(*, unmount: bool) -> None:
    try:
        session_close(unmount=unmount)
    except Exception:
        # Already unmounted from outside (fusermount3 -u): nothing left to undo.
        log.debug("closing the FUSE session", exc_info=True)


def _set_read_ahead(mountpoint: str, kb: int) -> None:
    entry = mountinfo.find(mountpoint)
    if entry is None:
        log.warning("%s is not in %s", mountpoint, mountinfo.MOUNTINFO)
        return
    path = f"/sys/class/bdi/{entry.device}/read_ahead_kb"
    try:
        with open(path, "w") as f:
            f.write(f"{kb}\n")
    except OSError as exc:  # no writable sysfs (a container): the kernel's default stays
        log.info("cannot set %s: %s", path, exc)


async def _run_flusher(fs: Filesystem, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    await fs.run_flusher(task_status=task_status)


async def _watch_signals(*, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        async for signum in signals:
            log.info("%s: unmounting", signal.Signals(signum).name)
            session_terminate()
            return


# -- the command line's server ----------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class MountConfig:
    mountpoint: str
    capacity_blocks: int
    policy: Policy = DEFAULT_POLICY
    debug: bool = False
    writeback_cache: bool = False
    store: str | None = None  # a store's path (fusefs.fs.store); None: memory only
    dirty_throttle: str | None = None  # the dirty model from the start (fusefs.vm.throttle)
    dirty_placement: str | None = None  # where stores are throttled: before | after


def serve(config: MountConfig, *, on_ready: Callable[[], None] | None = None) -> None:
    """Mount a new filesystem on `config.mountpoint`, serve it until it is unmounted or
    the process gets SIGINT/SIGTERM, then unmount.

    `on_ready` is called once the mount serves requests. Raises MountError when the
    mount cannot be made; blocks otherwise.
    """
    _tune_malloc(keep_bytes=config.capacity_blocks * BLOCK_SIZE)
    trio.run(_serve, config, on_ready)


async def _serve(config: MountConfig, on_ready: Callable[[], None] | None) -> None:
    store = None
    if config.store is not None:
        try:  # locked from here until closed: a second mount of it is refused
            store = SqliteStore(config.store)
        except StoreError as exc:
            raise MountError(str(exc)) from None
    try:
        capacity = store.capacity_blocks if store is not None else config.capacity_blocks
        fs = Filesystem(capacity_blocks=capacity, policy=config.policy, store=store)
        if config.dirty_placement is not None:  # as `mkwritefs set` would, before serving
            fs.dirty_config.placement = config.dirty_placement
        if config.dirty_throttle is not None:
            fs.set_dirty_throttle(config.dirty_throttle)
    except BaseException:
        if store is not None:
            store.close()
        raise
    try:
        async with serving(
            fs,
            config.mountpoint,
            writeback_cache=config.writeback_cache,
            debug=config.debug,
            handle_signals=True,
        ) as m:
            if on_ready is not None:
                on_ready()
            await m.wait_ended()
    finally:
        with trio.CancelScope(shield=True):
            try:
                await fs.close()  # unmounted: commit everything (a store's last commit)
            except FsError as exc:
                log.error(
                    "the store's last commit failed, changes since the one before are lost: %s", exc
                )


_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 4 << 20  # above the largest FUSE request buffer (1 MiB + header)
_MAX_KEEP = 1 << 30


def _tune_malloc(*, keep_bytes: int) -> None:
    """glibc only: keep freed heap up to the capacity; request buffers from the heap."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc
        return
    mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)
    mallopt(_M_TRIM_THRESHOLD, max(min(keep_bytes, _MAX_KEEP), 128 << 10))
