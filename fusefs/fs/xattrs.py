"""Extended attributes of one inode, with Linux's limits and namespace rules.

This module owns the stored ``trusted.``/``security.``/``user.`` attributes of an
inode (``inode.xattrs``) and the checks the kernel's ``setxattr``/``getxattr`` path
makes (``fs/xattr.c``: ``setxattr``, ``xattr_permission``, ``xattr_resolve_name``;
``mm/shmem.c`` for what tmpfs answers):

* name longer than 255 bytes (XATTR_NAME_MAX) or empty: ERANGE;
  a known prefix with nothing after it: EINVAL;
* value longer than 65536 bytes (XATTR_SIZE_MAX): E2BIG;
* a namespace other than ``user.``/``trusted.``/``security.`` (``system.`` ACLs
  included, which this filesystem does not support): EOPNOTSUPP, as tmpfs;
* ``user.`` on anything but a regular file or directory: EPERM to set, ENODATA to get;
  ``trusted.`` without privilege (uid 0 here): EPERM to set, ENODATA to get, not listed;
* XATTR_CREATE on an existing name: EEXIST; XATTR_REPLACE on a missing one: ENODATA;
* per inode, names plus values at most ``XATTR_SPACE_MAX`` bytes and a name list that
  ``listxattr`` can return (XATTR_LIST_MAX): ENOSPC beyond, as ext4 when the
  attribute block is full.  Attributes do not use data blocks.

``security.capability`` is never stored: ``getxattr`` answers ENODATA for it before any
other work (the kernel asks for it on every ``write(2)``), so storing one would make a
value that cannot be read back; ``setxattr`` refuses it with EOPNOTSUPP.
"""

from __future__ import annotations

import errno
import stat

from fusefs.fs.errors import FsError
from fusefs.fs.inode import Ctx, Inode

XATTR_CREATE = 1
XATTR_REPLACE = 2
XATTR_NAME_MAX = 255
XATTR_SIZE_MAX = 65536
XATTR_LIST_MAX = 65536
XATTR_SPACE_MAX = 128 * 1024

SECURITY_CAPABILITY = b"security.capability"
_PREFIXES = (b"user.", b"trusted.", b"security.")


def check_name(name: bytes) -> bytes:
    """Validate a name; return its namespace prefix."""
    if not name or len(name) > XATTR_NAME_MAX:
        raise FsError(errno.ERANGE, "xattr name empty or longer than 255 bytes")
    for prefix in _PREFIXES:
        if name.startswith(prefix):
            if len(name) == len(prefix):
                raise FsError(errno.EINVAL, "xattr name without a suffix")
            return prefix
    raise FsError(errno.EOPNOTSUPP, f"xattr namespace of {name!r} not supported")


def _permission(inode: Inode, prefix: bytes, ctx: Ctx, *, write: bool) -> None:
    """``xattr_permission``: the namespace rules the VFS applies before the fs."""
    denied = errno.EPERM if write else errno.ENODATA
    if prefix == b"trusted." and ctx.uid != 0:
        raise FsError(denied, "trusted.* needs privilege")
    if prefix == b"user." and not (stat.S_ISREG(inode.mode) or stat.S_ISDIR(inode.mode)):
        raise FsError(denied, "user.* only on regular files and directories")


def get(inode: Inode, name: bytes, ctx: Ctx) -> bytes:
    prefix = check_name(name)
    _permission(inode, prefix, ctx, write=False)
    try:
        return inode.xattrs[name]
    except KeyError:
        raise FsError(errno.ENODATA) from None


def set_(inode: Inode, name: bytes, value: bytes, flags: int, ctx: Ctx) -> None:
    if flags & ~(XATTR_CREATE | XATTR_REPLACE):
        raise FsError(errno.EINVAL, f"bad setxattr flags {flags:#x}")
    prefix = check_name(name)
    if len(value) > XATTR_SIZE_MAX:
        raise FsError(errno.E2BIG, "xattr value longer than 65536 bytes")
    if name == SECURITY_CAPABILITY:
        raise FsError(errno.EOPNOTSUPP, "file capabilities are not supported")
    _permission(inode, prefix, ctx, write=True)
    old = inode.xattrs.get(name)
    if old is not None and flags & XATTR_CREATE:
        raise FsError(errno.EEXIST)
    if old is None and flags & XATTR_REPLACE:
        raise FsError(errno.ENODATA)
    space = sum(len(n) + len(v) for n, v in inode.xattrs.items())
    space += len(value) - (0 if old is None else len(old)) + (0 if old is not None else len(name))
    if space > XATTR_SPACE_MAX:
        raise FsError(errno.ENOSPC, "no room for more extended attributes on this inode")
    if old is None and sum(len(n) + 1 for n in inode.xattrs) + len(name) + 1 > XATTR_LIST_MAX:
        raise FsError(errno.ENOSPC, "extended attribute name list full")
    inode.xattrs[name] = bytes(value)
    inode.xattrs_changed()


def names(inode: Inode, ctx: Ctx) -> list[bytes]:
    privileged = ctx.uid == 0
    return [n for n in inode.xattrs if privileged or not n.startswith(b"trusted.")]


def remove(inode: Inode, name: bytes, ctx: Ctx) -> None:
    prefix = check_name(name)
    _permission(inode, prefix, ctx, write=True)
    try:
        del inode.xattrs[name]
    except KeyError:
        raise FsError(errno.ENODATA) from None
    inode.xattrs_changed()
