"""The filesystem core: :class:`Filesystem`, the object the adapter and the simulator call.

This module owns the assembly of the core and what concerns the filesystem as a whole:
the constructor (every option and all the state), ``statfs`` and the figures, the
extended-attribute requests (user attributes, :mod:`fusefs.fs.xattrs`, and the
``user.mkwritefs.*`` control interface, :mod:`fusefs.fs.introspect`), the way simulated
processes open files (:meth:`Filesystem.open_file`, :meth:`Filesystem.open_path`,
giving a :class:`~fusefs.vm.file.SimFile`), rename (:mod:`fusefs.fs.rename`) and fsck
(:mod:`fusefs.fs.fsck`).  It imports nothing from pyfuse3: every user-caused failure is
an :class:`~fusefs.fs.errors.FsError` with an errno.

The rest of the core is in layers, each a class of its own module that calls only
down, all of them sharing the state set here:

* :mod:`fusefs.fs.namespace` - the inode table, names, lookup references, attributes,
  and the notes that keep the mount coherent with stores through mappings;
* :mod:`fusefs.fs.flusher` - writeback, the flusher, and a store's commits;
* :mod:`fusefs.fs.handles` - open files and open directories (the FUSE handles);
* :mod:`fusefs.fs.settings` - the run-time setters behind the control attributes.

What it models: a tmpfs-like filesystem with a size limit (``shmem``), except that
file data takes blocks with ext4-style delayed allocation: ``write(2)`` reserves a
block for each hole page it dirties and writeback turns reservations into allocations
(see :mod:`fusefs.fs.filedata` and :mod:`fusefs.fs.space`); the vm operations and the
write-notification policies live in :mod:`fusefs.vm.ops` and :mod:`fusefs.vm.policy`.

Invariants (checked by :meth:`Filesystem.check`, an fsck run at the end of tests): the
pool's allocated/reserved counters equal the sum of every live file's blocks, and the
namespace's own (see :mod:`fusefs.fs.namespace`).
"""

from __future__ import annotations

import copy
import errno
import os
import stat
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from fusefs.constants import BLOCK_SIZE
from fusefs.fs import dirty_attrs, introspect, xattrs
from fusefs.fs.directory import NAME_MAX, Directory
from fusefs.fs.errors import FsError
from fusefs.fs.filedata import FileData, VmCounters
from fusefs.fs.fsck import check_filesystem
from fusefs.fs.handles import OpenFile, OpenFiles
from fusefs.fs.inode import ROOT_INO, UTIME_NOW, Attr, Ctx, Inode, StatFs
from fusefs.fs.rename import RENAME_EXCHANGE, RENAME_NOREPLACE, rename_entry
from fusefs.fs.settings import Settings
from fusefs.fs.space import BlockPool, SpaceStats
from fusefs.fs.store import MEMORY, Store
from fusefs.vm.cache import BackingCache
from fusefs.vm.file import SimFile
from fusefs.vm.policy import DEFAULT_POLICY, Policy, parse_policy
from fusefs.vm.throttle import DirtyConfig, DirtyThrottle

__all__ = [
    "RENAME_EXCHANGE",
    "RENAME_NOREPLACE",
    "ROOT_INO",
    "UTIME_NOW",
    "XATTR_CREATE",
    "XATTR_REPLACE",
    "Attr",
    "Ctx",
    "Filesystem",
    "FsError",
    "Policy",
    "SimFile",
    "SpaceStats",
    "StatFs",
    "VmStats",
]

XATTR_CREATE = xattrs.XATTR_CREATE
XATTR_REPLACE = xattrs.XATTR_REPLACE

dirty_attrs.register()  # the dirty model's names among the root's control attributes


@dataclass(frozen=True, slots=True)
class VmStats:
    """The write-notification figures of a filesystem (totals over every file ever)."""

    policy: str
    mkwrite_calls: int
    sigbus: int
    writeback_errors: int
    lost_bytes: int


class Filesystem(OpenFiles, Settings):
    """One mounted filesystem (a ``super_block``).

    Write notification: ``policy`` (see :mod:`fusefs.vm.policy`) governs files mapped by
    simulated processes (:meth:`open_file`, :meth:`open_path`); ``writeback_interval``
    and ``dirty_expire`` drive the flusher; ``mkwrite_latency`` is the virtual time a
    ``page_mkwrite`` sleeps before locking its page (journal start, etc.),
    ``writeback_latency`` the time one batch of writeback I/O takes, and
    ``cache_write_latency`` the backing cache's write time (``cache`` policy).
    """

    root_ino = ROOT_INO

    def __init__(
        self,
        *,
        capacity_blocks: int,
        uid: int | None = None,
        gid: int | None = None,
        max_inodes: int | None = None,
        clock: Callable[[], int] = time.time_ns,
        policy: Policy | str = DEFAULT_POLICY,
        writeback_interval: float = 5.0,
        dirty_expire: float = 30.0,
        mkwrite_latency: float = 0.0,
        writeback_latency: float = 0.0,
        cache_write_latency: float = 0.005,
        dirty: DirtyConfig | None = None,
        store: Store | None = None,
    ) -> None:
        self.space: BlockPool = BlockPool(capacity_blocks)
        # Where the state lives: memory only (MEMORY), or a persistent store (fusefs.fs.store).
        self.store: Store = store if store is not None else MEMORY
        self._inode_class: type[Inode] = getattr(self.store, "inode_class", Inode)
        self._store_batches: set[int] = set()  # files being written back in a batch
        self.policy: Policy = parse_policy(policy)
        # The dirty-page model (fusefs.vm.throttle): its configuration, kept while it is
        # off; the model once on (``dirty=`` here, or ``set_dirty_throttle``).
        self.dirty_config = copy.deepcopy(dirty) if dirty else DirtyConfig()  # our own
        self.writeback_interval = 5.0
        self.dirty_expire = 30.0
        self._flusher_kick = trio.Event()
        self.set_flusher(interval=writeback_interval, expire=dirty_expire)
        self.mkwrite_latency = mkwrite_latency
        self.writeback_latency = writeback_latency
        self.writeback_fault: tuple[int, int] = (0, 0)  # (errno, pages): inject_writeback_error
        self.cache = BackingCache(cache_write_latency)
        self.vm_totals = VmCounters()
        # Dirty throttling for stores (balance_dirty_pages): None, or a coroutine
        # function the fault path awaits after dirtying a page of the given file.
        self.balance_dirty: Callable[[FileData], Awaitable[None]] | None = None
        self.dirty: DirtyThrottle | None = None
        self._flusher_nursery: trio.Nursery | None = None
        self._mapped_writers: set[int] = set()
        self.max_inodes = max_inodes if max_inodes is not None else max(capacity_blocks, 1 << 16)
        self.clock = clock
        self.on_invalidate: Callable[[int], None] | None = None
        # A trace of space and writeback events: (ino, kind, page index, detail).
        self.on_vm_event: Callable[[int, str, int, str], None] | None = None
        # Set by the adapter: a name appeared or went without a request (negative dentry).
        self.on_invalidate_entry: Callable[[int, bytes], None] | None = None
        self.inodes: dict[int, Inode] = {}
        self._next_ino = ROOT_INO + 1
        self._files: dict[int, OpenFile] = {}
        self._dirs: dict[int, Inode] = {}
        self._next_fh = 1
        root = self._inode_class(
            ROOT_INO,
            stat.S_IFDIR | 0o755,
            os.getuid() if uid is None else uid,
            os.getgid() if gid is None else gid,
            clock(),
        )
        root.nlink = 2
        root.lookups = 1  # the kernel's reference to the mount root, never forgotten
        root.dir = Directory(parent=ROOT_INO)
        self.inodes[ROOT_INO] = root
        if self.store.persistent:  # the root and everything else come from the store
            self.store.attach(self)
        if dirty is not None:
            self.set_dirty_throttle(dirty.throttle)

    # -- the filesystem as a whole ------------------------------------------------------
    def statfs(self) -> StatFs:
        free = self.space.free
        ffree = max(0, self.max_inodes - len(self.inodes))
        return StatFs(
            bsize=BLOCK_SIZE,
            frsize=BLOCK_SIZE,
            blocks=self.space.capacity,
            bfree=free,
            bavail=free,
            files=self.max_inodes,
            ffree=ffree,
            favail=ffree,
            namemax=NAME_MAX,
        )

    def statistics(self) -> SpaceStats:
        return self.space.statistics()

    # -- extended attributes ------------------------------------------------------------
    def getxattr(self, ino: int, name: bytes, ctx: Ctx) -> bytes:
        if name == xattrs.SECURITY_CAPABILITY:
            raise FsError(errno.ENODATA)
        inode = self.inode(ino)
        if introspect.is_introspection(name):
            return introspect.get(self, inode, name, is_root=ino == ROOT_INO)
        return xattrs.get(inode, name, ctx)

    def setxattr(self, ino: int, name: bytes, value: bytes, flags: int, ctx: Ctx) -> None:
        inode = self.inode(ino)
        if introspect.is_introspection(name):
            introspect.set_(self, name, value, ctx, is_root=ino == ROOT_INO)
            return
        xattrs.set_(inode, name, value, flags, ctx)
        inode.touch_changed(self.clock())

    def listxattr(self, ino: int, ctx: Ctx) -> list[bytes]:
        return xattrs.names(self.inode(ino), ctx)

    def removexattr(self, ino: int, name: bytes, ctx: Ctx) -> None:
        inode = self.inode(ino)
        if introspect.is_introspection(name):
            introspect.refuse_change(name)
        xattrs.remove(inode, name, ctx)
        inode.touch_changed(self.clock())

    def open_file(
        self, ino: int, flags: int = os.O_RDWR, *, policy: Policy | str | None = None
    ) -> SimFile:
        """Open regular file ``ino`` for a simulated process (``mmap`` takes the result).

        ``flags``: the access mode (and O_TRUNC) as for ``open(2)``; ``policy``
        overrides the file's and the filesystem's for mappings of this open file.
        Close it with ``await f.close()``.
        """
        inode = self.inode(ino)
        if inode.is_dir:
            raise FsError(errno.EISDIR)
        if inode.data is None:
            raise FsError(errno.ENXIO, "not a regular file")
        chosen = None if policy is None else parse_policy(policy)
        fh = self.open(ino, flags, Ctx(0, 0, 0))
        return SimFile(self, inode, fh, flags, chosen)

    def open_path(
        self,
        path: bytes | str,
        flags: int = os.O_RDWR,
        *,
        mode: int = 0o644,
        ctx: Ctx | None = None,
        policy: Policy | str | None = None,
    ) -> SimFile:
        """:meth:`open_file` by absolute path; O_CREAT creates a missing last component."""
        raw = os.fsencode(path)
        parts = [p for p in raw.split(b"/") if p]
        if not raw.startswith(b"/") or not parts:
            raise FsError(errno.EINVAL, f"not an absolute file path: {raw!r}")
        ctx = ctx or Ctx(0, 0, 0)
        parent = ROOT_INO
        for name in parts[:-1]:
            _, pdir = self._dir(parent)
            found = pdir.lookup(name)
            if found is None:
                raise FsError(errno.ENOENT, f"no {name!r} in {raw!r}")
            parent = found
        _, pdir = self._dir(parent)
        ino = pdir.lookup(parts[-1])
        if ino is None:
            if not flags & os.O_CREAT:
                raise FsError(errno.ENOENT, f"no {raw!r}")
            attr = self.mknod(parent, parts[-1], stat.S_IFREG | (mode & 0o7777), 0, ctx)
            ino = attr.ino
            self.forget([(ino, 1)])  # no kernel holds a lookup reference to it
            if self.on_invalidate_entry is not None:  # the kernel may cache "no such name"
                self.on_invalidate_entry(parent, parts[-1])
            self._invalidate(parent)
        elif flags & os.O_CREAT and flags & os.O_EXCL:
            raise FsError(errno.EEXIST)
        return self.open_file(ino, flags & ~(os.O_CREAT | os.O_EXCL), policy=policy)

    async def retry_alloc(self) -> bool:
        """After ENOSPC in ``page_mkwrite``: True when forcing writeback freed space, so
        the caller retries once (kernel ``ext4_should_retry_alloc``, which commits the
        journal when freed blocks await it).  What writeback frees here: the copy-on-write
        reservations of overwritten pages (writing the new block frees the old one)."""
        pending = [i for i in self.inodes.values() if i.data is not None and i.data.cow_reserved]
        if not pending:
            return False
        before = self.space.free
        for inode in pending:
            assert inode.data is not None
            await inode.data.writeback()
        return self.space.free > before

    def vm_statistics(self) -> VmStats:
        t = self.vm_totals
        return VmStats(
            str(self.policy), t.mkwrite_calls, t.sigbus, t.writeback_errors, t.lost_bytes
        )

    # -- rename -------------------------------------------------------------------------
    async def rename(
        self,
        old_parent: int,
        old_name: bytes,
        new_parent: int,
        new_name: bytes,
        flags: int,
        ctx: Ctx,
    ) -> None:
        """rename(2)/renameat2(2) with RENAME_NOREPLACE or RENAME_EXCHANGE."""
        rename_entry(self, old_parent, old_name, new_parent, new_name, flags)

    # -- fsck ---------------------------------------------------------------------------
    def check(self) -> None:
        """Raise AssertionError when an invariant of the filesystem does not hold."""
        check_filesystem(self)
        if self.dirty is not None:  # the model's counters are the page cache's
            self.dirty.domain.check()
