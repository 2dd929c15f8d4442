"""The inode table and the directory tree: the layer every other part of the core builds on.

This module owns the filesystem's inodes (``new_inode``, eviction at ``iput_final``),
the names in its directories (create, link, unlink, rmdir, rename), the lookup
references the kernel holds, inode attributes, and the notes that keep the mount
coherent when simulated stores change a file without a request.  :class:`Namespace`
is the base of :class:`~fusefs.fs.core.Filesystem`; the layers above it (open files,
writeback, settings, the simulator's way in) call down into it, never the other way.

Invariants (checked by ``Filesystem.check``, :mod:`fusefs.fs.fsck`):

* every directory entry names a live inode; a non-directory's ``nlink`` is the number
  of entries naming it; a directory's ``nlink`` is 2 + its subdirectories;
* an inode with ``nlink == 0`` stays (with its data and blocks) until its last lookup
  reference is forgotten and its last open file released (``iput_final``).

The kernel checks mode bits itself (the adapter mounts with ``default_permissions``);
this layer enforces what only the filesystem can: EEXIST, ENOTEMPTY, EISDIR, ENOTDIR,
ENOSPC for inodes; rename's rules are :mod:`fusefs.fs.rename`'s.

Coherence with the mount: stores through a writable PTE change pages without telling
anyone, so ``page_mkwrite``/``fault`` note the file when a page becomes writable
(:meth:`Namespace.note_mapped_writer`) and :meth:`Namespace.notify_mapped_stores`
(called by whoever drives simulated stores, and by the flusher every interval) reports
those files through ``on_invalidate``.
"""

from __future__ import annotations

import errno
import stat
from collections.abc import Awaitable, Callable, Iterable
from functools import partial

from fusefs.fs.directory import Directory, check_name, check_new_name
from fusefs.fs.errors import FsError
from fusefs.fs.filedata import FileData, VmCounters, WriteCap
from fusefs.fs.inode import ROOT_INO, UTIME_NOW, Attr, Ctx, Inode
from fusefs.fs.space import BlockPool
from fusefs.fs.store import Store
from fusefs.vm.cache import BackingCache
from fusefs.vm.policy import Policy
from fusefs.vm.throttle import DirtyThrottle

PATH_MAX = 4096


class Namespace:
    """Inodes, names and attributes of one filesystem (the ``super_block``'s tables).

    The state is set by ``Filesystem.__init__``; declared here is what this layer uses.
    """

    space: BlockPool
    store: Store  # memory only (fusefs.fs.store.MEMORY), or a persistent store
    policy: Policy
    clock: Callable[[], int]
    max_inodes: int
    inodes: dict[int, Inode]
    _inode_class: type[Inode]
    _next_ino: int
    # What new regular files are wired to: the vm totals, the writeback latency and
    # fault, the backing cache (``cache`` policy) and the dirty model, if on.
    vm_totals: VmCounters
    writeback_latency: float
    writeback_fault: tuple[int, int]  # (errno, pages): inject_writeback_error
    cache: BackingCache
    dirty: DirtyThrottle | None
    balance_dirty: Callable[[FileData], Awaitable[None]] | None
    # Files with writable shared mappings: stores may change them without a request.
    _mapped_writers: set[int]
    on_invalidate: Callable[[int], None] | None
    on_vm_event: Callable[[int, str, int, str], None] | None
    on_invalidate_entry: Callable[[int, bytes], None] | None

    # -- inode table --------------------------------------------------------------------
    def inode(self, ino: int) -> Inode:
        try:
            return self.inodes[ino]
        except KeyError:
            raise FsError(errno.ENOENT, f"no inode {ino}") from None

    def file_data(self, ino: int) -> FileData:
        inode = self.inode(ino)
        if inode.data is None:
            raise FsError(errno.EINVAL, f"inode {ino} is not a regular file")
        return inode.data

    def _dir(self, ino: int) -> tuple[Inode, Directory]:
        inode = self.inode(ino)
        if inode.dir is None:
            raise FsError(errno.ENOTDIR)
        return inode, inode.dir

    def _new_inode(self, parent: Inode, mode: int, ctx: Ctx) -> Inode:
        """``new_inode`` + ``inode_init_owner``: owner, umask, setgid directories."""
        if len(self.inodes) >= self.max_inodes:
            raise FsError(errno.ENOSPC, "no free inodes")
        perm = mode & 0o7777 & ~ctx.umask
        gid = ctx.gid
        if parent.mode & stat.S_ISGID:
            gid = parent.gid
            if stat.S_ISDIR(mode):
                perm |= stat.S_ISGID
        inode = self._inode_class(
            self._next_ino, stat.S_IFMT(mode) | perm, ctx.uid, gid, self.clock()
        )
        self._next_ino += 1
        if inode.is_reg:
            self._init_file_data(inode)
        self.inodes[inode.ino] = inode
        if self.store.persistent:
            self.store.dirty_inodes.add(inode.ino)
        return inode

    def _init_file_data(self, inode: Inode) -> None:
        """Give regular file ``inode`` its (empty) data, wired to this filesystem."""
        inode.data = FileData(self.space, host=inode.ino)
        inode.data.on_invalidate = partial(self._invalidate, inode.ino)
        inode.data.totals = self.vm_totals
        inode.data.io_latency = self.writeback_latency
        if self.writeback_fault[1]:  # a failing disk fails the new file's writes too
            inode.data.inject_writeback_error(*self.writeback_fault)
        inode.data.on_event = partial(self._vm_event, inode.ino)
        inode.data.get_balance = self._balance_for_write
        if self.dirty is not None:
            self.dirty.attach(inode.data)
        if self.store.persistent:
            self.store.hook_file(inode.ino, inode.data)

    def _new_directory(self, ino: int, parent: int) -> Directory:
        d = Directory(parent=parent)
        if self.store.persistent:
            self.store.hook_directory(ino, d)
        return d

    def _link_new(self, parent: Inode, name: bytes, inode: Inode) -> Attr:
        assert parent.dir is not None
        parent.dir.add(name, inode.ino)
        parent.touch_modified(inode.ctime_ns)
        inode.lookups += 1
        return inode.attr()

    def _maybe_evict(self, inode: Inode) -> None:
        if inode.ino != ROOT_INO and inode.freeable and self.inodes.get(inode.ino) is inode:
            if inode.data is not None:
                inode.data.evict()
                if self.dirty is not None:
                    self.dirty.detach(inode.data)
                self.cache.forget(inode.ino)
                self._mapped_writers.discard(inode.ino)
            del self.inodes[inode.ino]
            if self.store.persistent:
                self.store.inode_dropped(inode.ino)

    def _balance_for_write(self) -> Callable[[FileData], Awaitable[None]] | WriteCap | None:
        """What ``write(2)`` calls after each page copied (``generic_perform_write``);
        under the seed's placement, the throttle's hard cap, before each page."""
        if self.dirty is not None and self.dirty.placement == "before":
            return self.dirty
        return self.balance_dirty

    # -- telling the mount about changes made without a request -------------------------
    def _vm_event(self, ino: int, kind: str, index: int, detail: str) -> None:
        if self.on_vm_event is not None:
            self.on_vm_event(ino, kind, index, detail)

    def _invalidate(self, ino: int) -> None:
        if self.on_invalidate is not None:
            self.on_invalidate(ino)

    def invalidate(self, ino: int) -> None:
        """Tell the mount that ``ino``'s data or attributes changed without a request
        (a scenario calling the core directly, e.g. ``setattr`` to truncate)."""
        self._invalidate(ino)

    def note_mapped_writer(self, ino: int) -> None:
        """A page of ``ino`` became writable through a shared mapping: stores may follow
        without any further fault.  Cheap; :meth:`notify_mapped_stores` reports them."""
        self._mapped_writers.add(ino)

    def may_change_unseen(self, ino: int) -> bool:
        """True while stores through a writable shared mapping may change ``ino``'s data
        without any request: an open of it must not trust the kernel's cached pages."""
        return ino in self._mapped_writers

    def notify_mapped_stores(self) -> None:
        """Tell the mount (``on_invalidate``) that files with writable shared mappings
        may have changed by stores.  Call after simulated stores (the flusher also does,
        every interval).  A file stays on the list while a shared writable VMA maps it."""
        for ino in list(self._mapped_writers):
            inode = self.inodes.get(ino)
            if inode is None or inode.data is None:
                self._mapped_writers.discard(ino)
                continue
            self._invalidate(ino)
            if not any(
                getattr(v, "vm_shared", False) and getattr(v, "vm_write", False)
                for v in inode.data.mapping.i_mmap
            ):
                self._mapped_writers.discard(ino)

    # -- lookup references --------------------------------------------------------------
    def lookup(self, parent: int, name: bytes, ctx: Ctx) -> Attr:
        pinode, pdir = self._dir(parent)
        if name == b".":
            ino: int | None = parent
        elif name == b"..":
            ino = pdir.parent
        else:
            check_name(name)
            ino = pdir.lookup(name)
        if ino is None:
            raise FsError(errno.ENOENT)
        inode = self.inode(ino)
        inode.lookups += 1
        return inode.attr()

    def inc_lookup(self, ino: int) -> None:
        self.inode(ino).lookups += 1

    def forget(self, items: Iterable[tuple[int, int]]) -> None:
        for ino, nlookup in items:
            inode = self.inodes.get(ino)
            if inode is None or ino == ROOT_INO:
                continue
            inode.lookups = max(0, inode.lookups - nlookup)
            self._maybe_evict(inode)

    # -- attributes ---------------------------------------------------------------------
    def getattr(self, ino: int) -> Attr:
        return self.inode(ino).attr()

    async def setattr(
        self,
        ino: int,
        *,
        mode: int | None = None,
        uid: int | None = None,
        gid: int | None = None,
        size: int | None = None,
        atime_ns: int | None = None,
        mtime_ns: int | None = None,
        ctx: Ctx,
    ) -> Attr:
        inode = self.inode(ino)
        if size is not None:
            if inode.is_dir:
                raise FsError(errno.EISDIR)
            if inode.data is None:
                raise FsError(errno.EINVAL, "truncate of a special file")
            async with inode.data.i_rwsem:
                inode.data.truncate(size)
            inode.mtime_ns = self.clock()
        if mode is not None:
            inode.mode = stat.S_IFMT(inode.mode) | (mode & 0o7777)
        if uid is not None or gid is not None:
            if mode is None and not inode.is_dir:  # chown kills suid/sgid (setattr_copy)
                kill = stat.S_ISUID
                if inode.mode & stat.S_IXGRP:
                    kill |= stat.S_ISGID
                inode.mode &= ~kill
            if uid is not None:
                inode.uid = uid
            if gid is not None:
                inode.gid = gid
        now = self.clock()
        if atime_ns is not None:
            inode.atime_ns = now if atime_ns == UTIME_NOW else atime_ns
        if mtime_ns is not None:
            inode.mtime_ns = now if mtime_ns == UTIME_NOW else mtime_ns
        inode.touch_changed(now)
        return inode.attr()

    def readlink(self, ino: int) -> bytes:
        inode = self.inode(ino)
        if not inode.is_lnk:
            raise FsError(errno.EINVAL)
        inode.touch_accessed(self.clock())
        return inode.target

    # -- creating names -----------------------------------------------------------------
    def _prepare_create(self, parent: int, name: bytes) -> Inode:
        pinode, pdir = self._dir(parent)
        check_new_name(name)
        if pinode.nlink == 0:
            raise FsError(errno.ENOENT, "directory was removed")
        if pdir.lookup(name) is not None:
            raise FsError(errno.EEXIST)
        return pinode

    def mknod(self, parent: int, name: bytes, mode: int, rdev: int, ctx: Ctx) -> Attr:
        pinode = self._prepare_create(parent, name)
        kind = stat.S_IFMT(mode) or stat.S_IFREG
        if kind not in (stat.S_IFREG, stat.S_IFIFO, stat.S_IFSOCK, stat.S_IFCHR, stat.S_IFBLK):
            raise FsError(errno.EINVAL, "mknod of a directory or symlink")
        inode = self._new_inode(pinode, kind | (mode & 0o7777), ctx)
        if kind in (stat.S_IFCHR, stat.S_IFBLK):
            inode.rdev = rdev
        return self._link_new(pinode, name, inode)

    def mkdir(self, parent: int, name: bytes, mode: int, ctx: Ctx) -> Attr:
        pinode = self._prepare_create(parent, name)
        inode = self._new_inode(pinode, stat.S_IFDIR | (mode & 0o7777), ctx)
        inode.nlink = 2
        inode.dir = self._new_directory(inode.ino, parent)
        pinode.nlink += 1
        return self._link_new(pinode, name, inode)

    def symlink(self, parent: int, name: bytes, target: bytes, ctx: Ctx) -> Attr:
        if not target:
            raise FsError(errno.ENOENT, "empty symlink target")
        if len(target) >= PATH_MAX:
            raise FsError(errno.ENAMETOOLONG)
        pinode = self._prepare_create(parent, name)
        inode = self._new_inode(pinode, stat.S_IFLNK | 0o777, Ctx(ctx.uid, ctx.gid, ctx.pid))
        inode.target = bytes(target)
        return self._link_new(pinode, name, inode)

    def link(self, ino: int, new_parent: int, new_name: bytes, ctx: Ctx) -> Attr:
        inode = self.inode(ino)
        if inode.is_dir:
            raise FsError(errno.EPERM, "hard link to a directory")
        pinode = self._prepare_create(new_parent, new_name)
        if inode.nlink == 0:
            raise FsError(errno.ENOENT, "the file was unlinked")
        inode.nlink += 1
        inode.touch_changed(self.clock())
        return self._link_new(pinode, new_name, inode)

    # -- removing names -----------------------------------------------------------------
    def _drop_link(self, inode: Inode, now: int) -> None:
        """One name fewer for ``inode`` (a directory loses both of its links)."""
        inode.nlink = 0 if inode.is_dir else inode.nlink - 1
        inode.touch_changed(now)
        self._maybe_evict(inode)

    def _entry(self, parent: int, name: bytes) -> tuple[Inode, Directory, Inode]:
        pinode, pdir = self._dir(parent)
        check_name(name)
        ino = pdir.lookup(name)
        if ino is None:
            raise FsError(errno.ENOENT)
        return pinode, pdir, self.inode(ino)

    async def unlink(self, parent: int, name: bytes, ctx: Ctx) -> None:
        pinode, pdir, inode = self._entry(parent, name)
        if inode.is_dir:
            raise FsError(errno.EISDIR)
        pdir.remove(name)
        now = self.clock()
        pinode.touch_modified(now)
        self._drop_link(inode, now)

    async def rmdir(self, parent: int, name: bytes, ctx: Ctx) -> None:
        if name == b".":
            raise FsError(errno.EINVAL)
        if name == b"..":
            raise FsError(errno.ENOTEMPTY)
        pinode, pdir, inode = self._entry(parent, name)
        if inode.dir is None:
            raise FsError(errno.ENOTDIR)
        if len(inode.dir):
            raise FsError(errno.ENOTEMPTY)
        pdir.remove(name)
        pinode.nlink -= 1
        now = self.clock()
        pinode.touch_modified(now)
        self._drop_link(inode, now)
