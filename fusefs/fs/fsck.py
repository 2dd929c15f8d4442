"""fsck: the filesystem's invariants, checked over the whole inode table.

Run at the end of tests (and by anyone who suspects a bug).  Checks, raising
AssertionError on the first violation:

* the block pool's own invariant (allocated + reserved <= capacity, none negative);
* per file (:meth:`FileData.check`): reserved pages are cached, dirty or locked, not
  also allocated; no page cached wholly past EOF;
* the pool's allocated and reserved counters equal the sums over live files, so no
  block is leaked or counted twice;
* every directory entry names a live inode; a directory has one name (none once
  removed), its ".." is the directory naming it, and its nlink is 2 + subdirectories;
  a non-directory's nlink is the number of entries naming it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fusefs.fs.inode import ROOT_INO

if TYPE_CHECKING:
    from fusefs.fs.core import Filesystem


def check_filesystem(fs: Filesystem) -> None:
    """Raise AssertionError when an invariant of the filesystem does not hold."""
    fs.space.check()
    allocated = reserved = 0
    names: dict[int, int] = {}
    for inode in fs.inodes.values():
        if inode.data is not None:
            inode.data.check()
            allocated += inode.data.nr_allocated
            reserved += inode.data.nr_reserved
        if inode.dir is not None:
            subdirs = 0
            for ino, _ in inode.dir.entries.values():
                child = fs.inodes.get(ino)
                if child is None:
                    raise AssertionError(f"{inode!r} names missing inode {ino}")
                names[ino] = names.get(ino, 0) + 1
                if child.dir is not None:
                    subdirs += 1
                    if child.dir.parent != inode.ino:
                        raise AssertionError(f"{child!r}'s '..' is not {inode!r}")
            want = 2 + subdirs if inode.nlink else 0
            if inode.nlink != want:
                raise AssertionError(f"{inode!r} should have nlink {want}")
    for inode in fs.inodes.values():
        named = names.get(inode.ino, 0)
        if inode.is_dir and inode.ino != ROOT_INO and named != (1 if inode.nlink else 0):
            raise AssertionError(f"directory {inode!r} has {named} names")
        if not inode.is_dir and inode.nlink != named:
            raise AssertionError(f"{inode!r} has {named} names")
    if (allocated, reserved) != (fs.space.allocated, fs.space.reserved):
        raise AssertionError(
            f"files hold {allocated} allocated + {reserved} reserved blocks, pool says {fs.space!r}"
        )
