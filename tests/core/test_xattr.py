"""Extended attributes: Linux's limits and namespace rules, and the read-only
``user.mkwritefs.*`` introspection names."""

from __future__ import annotations

import errno

import pytest

from fusefs.fs.core import ROOT_INO, XATTR_CREATE, XATTR_REPLACE, Ctx, Filesystem, FsError
from fusefs.fs.xattrs import XATTR_SPACE_MAX

from .conftest import PAGE, ROOT, USER, create


def errno_of(call: object, *args: object) -> int:
    with pytest.raises(FsError) as exc:
        call(*args)  # type: ignore[operator]
    return exc.value.errno


def test_set_get_list_remove(fs: Filesystem) -> None:
    _, ino = create(fs, b"f")
    fs.setxattr(ino, b"user.colour", b"blue", 0, ROOT)
    fs.setxattr(ino, b"security.selinux", b"ctx", 0, ROOT)
    fs.setxattr(ino, b"trusted.t", b"", 0, ROOT)
    assert fs.getxattr(ino, b"user.colour", ROOT) == b"blue"
    assert fs.getxattr(ino, b"trusted.t", ROOT) == b""
    assert sorted(fs.listxattr(ino, ROOT)) == [b"security.selinux", b"trusted.t", b"user.colour"]
    fs.removexattr(ino, b"user.colour", ROOT)
    assert errno_of(fs.getxattr, ino, b"user.colour", ROOT) == errno.ENODATA
    assert errno_of(fs.removexattr, ino, b"user.colour", ROOT) == errno.ENODATA


def test_create_and_replace_flags(fs: Filesystem) -> None:
    _, ino = create(fs, b"f")
    assert errno_of(fs.setxattr, ino, b"user.a", b"1", XATTR_REPLACE, ROOT) == errno.ENODATA
    fs.setxattr(ino, b"user.a", b"1", XATTR_CREATE, ROOT)
    assert errno_of(fs.setxattr, ino, b"user.a", b"2", XATTR_CREATE, ROOT) == errno.EEXIST
    fs.setxattr(ino, b"user.a", b"3", XATTR_REPLACE, ROOT)
    assert fs.getxattr(ino, b"user.a", ROOT) == b"3"
    assert errno_of(fs.setxattr, ino, b"user.a", b"4", 4, ROOT) == errno.EINVAL


def test_name_and_value_limits(fs: Filesystem) -> None:
    _, ino = create(fs, b"f")
    name255 = b"user." + b"n" * 250
    fs.setxattr(ino, name255, b"v", 0, ROOT)
    assert errno_of(fs.setxattr, ino, name255 + b"x", b"v", 0, ROOT) == errno.ERANGE
    assert errno_of(fs.getxattr, ino, name255 + b"x", ROOT) == errno.ERANGE
    assert errno_of(fs.setxattr, ino, b"", b"v", 0, ROOT) == errno.ERANGE
    fs.setxattr(ino, b"user.big", b"b" * 65536, 0, ROOT)
    assert errno_of(fs.setxattr, ino, b"user.big2", b"b" * 65537, 0, ROOT) == errno.E2BIG
    assert errno_of(fs.setxattr, ino, b"user.", b"v", 0, ROOT) == errno.EINVAL


def test_total_per_inode_limit(fs: Filesystem) -> None:
    _, ino = create(fs, b"f")
    fs.setxattr(ino, b"user.a", b"a" * 65536, 0, ROOT)
    room = XATTR_SPACE_MAX - (6 + 65536) - 6
    fs.setxattr(ino, b"user.b", b"b" * room, 0, ROOT)  # exactly full
    assert errno_of(fs.setxattr, ino, b"user.c", b"", 0, ROOT) == errno.ENOSPC
    assert errno_of(fs.setxattr, ino, b"user.b", b"b" * (room + 1), 0, ROOT) == errno.ENOSPC
    fs.setxattr(ino, b"user.b", b"short", 0, ROOT)  # replacing frees the old value's room
    fs.setxattr(ino, b"user.c", b"c" * 1000, 0, ROOT)
    assert fs.getxattr(ino, b"user.b", ROOT) == b"short"


def test_name_list_limit(fs: Filesystem) -> None:
    _, ino = create(fs, b"f")
    for i in range(256):  # 256 names of 255 bytes + NUL: exactly XATTR_LIST_MAX
        fs.setxattr(ino, b"user.%0250d" % i, b"", 0, ROOT)
    assert sum(len(n) + 1 for n in fs.listxattr(ino, ROOT)) == 65536
    assert errno_of(fs.setxattr, ino, b"user.x", b"", 0, ROOT) == errno.ENOSPC


def test_namespaces(fs: Filesystem) -> None:
    _, ino = create(fs, b"f")
    for name in (b"system.posix_acl_access", b"os2.x", b"foo"):
        assert errno_of(fs.setxattr, ino, name, b"v", 0, ROOT) == errno.EOPNOTSUPP
        assert errno_of(fs.getxattr, ino, name, ROOT) == errno.EOPNOTSUPP
    # trusted.* is for privileged callers only, and hidden from the others.
    fs.setxattr(ino, b"trusted.t", b"1", 0, ROOT)
    assert errno_of(fs.setxattr, ino, b"trusted.u", b"1", 0, USER) == errno.EPERM
    assert errno_of(fs.getxattr, ino, b"trusted.t", USER) == errno.ENODATA
    assert fs.listxattr(ino, USER) == []
    # user.* only on regular files and directories.
    s = fs.symlink(ROOT_INO, b"s", b"f", ROOT)
    assert errno_of(fs.setxattr, s.ino, b"user.a", b"1", 0, ROOT) == errno.EPERM
    assert errno_of(fs.getxattr, s.ino, b"user.a", ROOT) == errno.ENODATA
    fs.setxattr(s.ino, b"security.selinux", b"ctx", 0, ROOT)
    fs.setxattr(ROOT_INO, b"user.on_dir", b"ok", 0, ROOT)


def test_security_capability_is_answered_first(fs: Filesystem) -> None:
    assert errno_of(fs.getxattr, 424242, b"security.capability", ROOT) == errno.ENODATA
    _, ino = create(fs, b"f")
    assert errno_of(fs.setxattr, ino, b"security.capability", b"\1", 0, ROOT) == errno.EOPNOTSUPP


async def test_introspection_names(fs: Filesystem) -> None:
    fh, ino = create(fs, b"f")
    await fs.write(fh, 0, b"x" * (3 * PAGE))
    await fs.fsync(fh, False)
    await fs.write(fh, 3 * PAGE, b"y")

    def get(i: int, key: str) -> bytes:
        return fs.getxattr(i, b"user.mkwritefs." + key.encode(), ROOT)

    assert get(ROOT_INO, "capacity_blocks") == b"16"
    assert get(ROOT_INO, "free_blocks") == b"12"
    assert get(ROOT_INO, "reserved_blocks") == b"1"
    assert get(ROOT_INO, "allocated_blocks") == b"3"
    assert (get(ino, "allocated_blocks"), get(ino, "reserved_blocks")) == (b"3", b"1")
    assert get(ino, "dirty_pages") == b"1"
    for i, key in ((ino, "capacity_blocks"), (ROOT_INO, "dirty_pages"), (ino, "nonsense")):
        assert errno_of(get, i, key) == errno.ENODATA
    assert errno_of(fs.setxattr, ROOT_INO, b"user.mkwritefs.free_blocks", b"1", 0, ROOT) == (
        errno.EPERM
    )
    assert errno_of(fs.setxattr, ino, b"user.mkwritefs.new", b"1", 0, ROOT) == errno.EPERM
    assert errno_of(fs.removexattr, ino, b"user.mkwritefs.dirty_pages", ROOT) == errno.EPERM
    assert fs.listxattr(ino, ROOT) == []
    assert fs.listxattr(ROOT_INO, ROOT) == []


def test_registered_root_setting(fs: Filesystem) -> None:
    from fusefs.fs import introspect

    def set_capacity(fs: Filesystem, value: bytes, ctx: Ctx) -> None:
        introspect.require_owner(fs, ctx)
        if not value.isdigit():
            raise FsError(errno.EINVAL, "not a number")
        fs.set_capacity(int(value))

    introspect.register_root_setter(b"capacity_blocks", set_capacity)
    try:
        name = b"user.mkwritefs.capacity_blocks"
        fs.setxattr(ROOT_INO, name, b"32", 0, ROOT)
        assert fs.statfs().blocks == 32
        assert errno_of(fs.setxattr, ROOT_INO, name, b"x", 0, ROOT) == errno.EINVAL
        assert errno_of(fs.setxattr, ROOT_INO, name, b"64", 0, USER) == errno.EPERM
        _, ino = create(fs, b"f")
        assert errno_of(fs.setxattr, ino, name, b"64", 0, ROOT) == errno.EPERM  # root only
        assert fs.statfs().blocks == 32
    finally:
        del introspect._ROOT_SETTERS[b"capacity_blocks"]
