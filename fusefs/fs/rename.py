"""rename(2) and renameat2(2): moving, replacing and exchanging directory entries.

This module owns the rules of ``vfs_rename`` that only the filesystem can enforce
(the kernel has already checked permissions and that the names exist in its cache):

* RENAME_NOREPLACE: an existing target answers EEXIST; RENAME_EXCHANGE: both names must
  exist (ENOENT) and are swapped atomically; both flags together or unknown flags:
  EINVAL;
* a directory cannot move below itself (EINVAL); a directory may replace only an
  empty directory (ENOTEMPTY, ENOTDIR), a non-directory only a non-directory (EISDIR);
* renaming a name onto another name of the same inode does nothing (POSIX);
* link counts: a directory moved to another parent moves its ".." link; a replaced
  target loses a link and is freed when nothing else holds it;
* times: both parents get mtime and ctime, the moved inode(s) and a replaced target
  get ctime (as ext4 and tmpfs).

A replaced name keeps its readdir cookie; the old name's slot is removed.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from fusefs.fs.directory import check_name
from fusefs.fs.errors import FsError
from fusefs.fs.inode import ROOT_INO, Inode

if TYPE_CHECKING:
    from fusefs.fs.core import Filesystem

RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2


def is_ancestor(fs: Filesystem, ancestor: int, ino: int) -> bool:
    """True when ``ino`` is ``ancestor`` or lies below it."""
    while True:
        if ino == ancestor:
            return True
        if ino == ROOT_INO:
            return False
        d = fs.inodes[ino].dir
        assert d is not None
        ino = d.parent


def rename_entry(
    fs: Filesystem,
    old_parent: int,
    old_name: bytes,
    new_parent: int,
    new_name: bytes,
    flags: int,
) -> None:
    """Move, replace or exchange one directory entry (``vfs_rename``)."""
    if flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE) or flags == (
        RENAME_NOREPLACE | RENAME_EXCHANGE
    ):
        raise FsError(errno.EINVAL, f"bad rename flags {flags:#x}")
    for name in (old_name, new_name):
        if name in (b".", b".."):
            raise FsError(errno.EBUSY)
    opinode, odir, src = fs._entry(old_parent, old_name)
    npinode, ndir = fs._dir(new_parent)
    check_name(new_name)
    dst_ino = ndir.lookup(new_name)
    dst = None if dst_ino is None else fs.inode(dst_ino)
    if flags & RENAME_EXCHANGE:
        if dst is None:
            raise FsError(errno.ENOENT)
        _exchange(fs, opinode, old_name, src, npinode, new_name, dst)
        return
    if dst is not None and flags & RENAME_NOREPLACE:
        raise FsError(errno.EEXIST)
    if dst is src:
        return
    if src.is_dir and is_ancestor(fs, src.ino, new_parent):
        raise FsError(errno.EINVAL, "directory renamed into itself")
    if dst is not None:
        if src.is_dir and dst.dir is None:
            raise FsError(errno.ENOTDIR)
        if not src.is_dir and dst.is_dir:
            raise FsError(errno.EISDIR)
        if dst.dir is not None and len(dst.dir):
            raise FsError(errno.ENOTEMPTY)
    if npinode.nlink == 0:
        raise FsError(errno.ENOENT, "target directory was removed")
    odir.remove(old_name)
    now = fs.clock()
    if dst is None:
        ndir.add(new_name, src.ino)
    else:
        ndir.replace(new_name, src.ino)
        if dst.is_dir:
            npinode.nlink -= 1
    if src.dir is not None and old_parent != new_parent:
        opinode.nlink -= 1
        npinode.nlink += 1
        src.dir.parent = new_parent
    src.touch_changed(now)
    opinode.touch_modified(now)
    npinode.touch_modified(now)
    if dst is not None:
        fs._drop_link(dst, now)


def _exchange(
    fs: Filesystem,
    opinode: Inode,
    old_name: bytes,
    src: Inode,
    npinode: Inode,
    new_name: bytes,
    dst: Inode,
) -> None:
    """RENAME_EXCHANGE: swap two names atomically (both must exist)."""
    if src is dst:
        return
    if src.is_dir and is_ancestor(fs, src.ino, npinode.ino):
        raise FsError(errno.EINVAL, "directory exchanged into itself")
    if dst.is_dir and is_ancestor(fs, dst.ino, opinode.ino):
        raise FsError(errno.EINVAL, "directory exchanged into itself")
    assert opinode.dir is not None
    assert npinode.dir is not None
    opinode.dir.replace(old_name, dst.ino)
    npinode.dir.replace(new_name, src.ino)
    if opinode is not npinode:
        for moved, frm, to in ((src, opinode, npinode), (dst, npinode, opinode)):
            if moved.dir is not None:
                frm.nlink -= 1
                to.nlink += 1
                moved.dir.parent = to.ino
    now = fs.clock()
    src.touch_changed(now)
    dst.touch_changed(now)
    opinode.touch_modified(now)
    npinode.touch_modified(now)
