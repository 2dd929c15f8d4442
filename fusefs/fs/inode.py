"""Inodes: the metadata every file has, and the records the core hands out.

This module owns ``struct inode``'s part of the filesystem: type and mode, ownership,
link count, nanosecond timestamps, the lookup and open counts that decide when an
unlinked inode may be freed, and a pointer to the type-specific part (a
:class:`~fusefs.fs.directory.Directory`, a :class:`~fusefs.fs.filedata.FileData`, or a
symlink target).  ``Attr``, ``Ctx`` and ``StatFs`` are the frozen records of the
contract with the pyfuse3 adapter.

Invariants: a directory's ``nlink`` is 2 + its subdirectories (0 once removed); an
inode is freed (``evict``) only when ``nlink == 0``, no lookup reference and no open
file remain — the kernel's ``iput_final`` for FUSE, where forget drops the references.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass

from fusefs.constants import BLOCK_SIZE
from fusefs.fs.directory import Directory
from fusefs.fs.filedata import FileData
from fusefs.vm.policy import Policy

ROOT_INO = 1
# A directory's st_size: tmpfs's BOGO_DIRENT_SIZE per entry, "." and ".." included.
BOGO_DIRENT_SIZE = 20
# "now" for setattr's atime_ns / mtime_ns (the kernel's UTIME_NOW, as the contract uses).
UTIME_NOW = -1
# relatime: atime moves at most once a day unless it is older than mtime or ctime.
RELATIME_NS = 24 * 3600 * 10**9


@dataclass(frozen=True, slots=True)
class Ctx:
    """Who asks: the caller's credentials, as FUSE passes them."""

    uid: int
    gid: int
    pid: int
    umask: int = 0


@dataclass(frozen=True, slots=True)
class Attr:
    """``struct stat`` of one inode (``blocks`` in 512-byte units actually used)."""

    ino: int
    mode: int
    nlink: int
    uid: int
    gid: int
    rdev: int
    size: int
    blocks: int
    blksize: int
    atime_ns: int
    mtime_ns: int
    ctime_ns: int
    generation: int


@dataclass(frozen=True, slots=True)
class StatFs:
    """``struct statvfs`` of the filesystem."""

    bsize: int
    frsize: int
    blocks: int
    bfree: int
    bavail: int
    files: int
    ffree: int
    favail: int
    namemax: int


class Inode:
    """One file of any type."""

    __slots__ = (
        "atime_ns",
        "ctime_ns",
        "data",
        "dir",
        "gid",
        "ino",
        "lookups",
        "mode",
        "mtime_ns",
        "nlink",
        "opens",
        "policy",
        "rdev",
        "target",
        "uid",
        "xattrs",
    )

    def __init__(self, ino: int, mode: int, uid: int, gid: int, now_ns: int) -> None:
        self.ino = ino
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.rdev = 0
        self.nlink = 1
        self.atime_ns = self.mtime_ns = self.ctime_ns = now_ns
        self.lookups = 0
        self.opens = 0
        self.xattrs: dict[bytes, bytes] = {}
        self.dir: Directory | None = None
        self.data: FileData | None = None
        self.target = b""
        # The write-notification policy of this file (None: the filesystem's).
        self.policy: Policy | None = None

    def __repr__(self) -> str:
        return f"<Inode {self.ino} {stat.filemode(self.mode)} nlink={self.nlink}>"

    def xattrs_changed(self) -> None:
        """Called after ``xattrs`` changed (a persistent store's inodes note it)."""

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)

    @property
    def is_reg(self) -> bool:
        return stat.S_ISREG(self.mode)

    @property
    def is_lnk(self) -> bool:
        return stat.S_ISLNK(self.mode)

    @property
    def size(self) -> int:
        if self.data is not None:
            return self.data.size
        if self.dir is not None:
            return (len(self.dir) + 2) * BOGO_DIRENT_SIZE
        return len(self.target)

    def attr(self) -> Attr:
        blocks = 0
        if self.data is not None:
            blocks = (self.data.nr_allocated + self.data.nr_reserved) * (BLOCK_SIZE // 512)
        return Attr(
            ino=self.ino,
            mode=self.mode,
            nlink=self.nlink,
            uid=self.uid,
            gid=self.gid,
            rdev=self.rdev,
            size=self.size,
            blocks=blocks,
            blksize=BLOCK_SIZE,
            atime_ns=self.atime_ns,
            mtime_ns=self.mtime_ns,
            ctime_ns=self.ctime_ns,
            generation=0,
        )

    # -- timestamps (Linux's rules) ------------------------------------------------------
    def touch_modified(self, now_ns: int) -> None:
        """Contents changed: mtime and ctime (``file_update_time``, directory changes)."""
        self.mtime_ns = self.ctime_ns = now_ns

    def touch_changed(self, now_ns: int) -> None:
        """Metadata changed: ctime (chmod, link count, xattr, rename of the inode)."""
        self.ctime_ns = now_ns

    def touch_accessed(self, now_ns: int) -> None:
        """Read: atime under ``relatime`` (the Linux default, ``relatime_need_update``)."""
        atime = self.atime_ns
        if atime <= self.mtime_ns or atime <= self.ctime_ns or now_ns - atime >= RELATIME_NS:
            self.atime_ns = now_ns

    @property
    def freeable(self) -> bool:
        return self.nlink == 0 and self.lookups <= 0 and self.opens <= 0
