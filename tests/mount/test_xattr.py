"""Extended attributes through a real mount: user.* attributes and the introspection ones.

The user.mkwritefs.* figures are read by name and never listed (so `cp -a` and
`tar --xattrs` do not copy them), read-only, and agree with stat(2)'s st_blocks.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from .support import BLOCK, getxattr_into, raises_errno

pytestmark = pytest.mark.mount


def test_user_xattr_round_trip(workdir: Path) -> None:
    f = workdir / "f"
    f.write_bytes(b"")
    os.setxattr(f, "user.colour", b"blue")
    os.setxattr(f, "user.empty", b"")
    os.setxattr(f, "user.binary", bytes(range(256)))
    assert os.getxattr(f, "user.colour") == b"blue"
    assert os.getxattr(f, "user.empty") == b""
    assert os.getxattr(f, "user.binary") == bytes(range(256))
    assert sorted(os.listxattr(f)) == ["user.binary", "user.colour", "user.empty"]
    os.setxattr(f, "user.colour", b"red")
    assert os.getxattr(f, "user.colour") == b"red"
    os.removexattr(f, "user.colour")
    with raises_errno(errno.ENODATA):
        os.getxattr(f, "user.colour")
    with raises_errno(errno.ENODATA):
        os.removexattr(f, "user.colour")
    assert sorted(os.listxattr(f)) == ["user.binary", "user.empty"]


def test_xattr_create_and_replace_flags(workdir: Path) -> None:
    f = workdir / "f"
    f.write_bytes(b"")
    os.setxattr(f, "user.a", b"1", os.XATTR_CREATE)
    with raises_errno(errno.EEXIST):
        os.setxattr(f, "user.a", b"2", os.XATTR_CREATE)
    with raises_errno(errno.ENODATA):
        os.setxattr(f, "user.b", b"2", os.XATTR_REPLACE)
    os.setxattr(f, "user.a", b"3", os.XATTR_REPLACE)
    assert os.getxattr(f, "user.a") == b"3"


def test_xattr_limits(workdir: Path) -> None:
    f = workdir / "f"
    f.write_bytes(b"")
    os.setxattr(f, "user." + "n" * 250, b"v")  # 255 bytes: the longest name
    with raises_errno(errno.ERANGE):
        os.setxattr(f, "user." + "n" * 251, b"v")
    with raises_errno(errno.E2BIG):
        os.setxattr(f, "user.big", b"v" * (65536 + 1))
    os.setxattr(f, "user.value", b"0123456789")
    assert getxattr_into(f, "user.value", 0) == 10  # size query
    with raises_errno(errno.ERANGE):
        getxattr_into(f, "user.value", 4)
    assert getxattr_into(f, "user.value", 10) == 10


def test_xattrs_on_directories_and_symlinks(workdir: Path) -> None:
    d = workdir / "d"
    d.mkdir()
    os.setxattr(d, "user.tag", b"dir")
    assert os.getxattr(d, "user.tag") == b"dir"
    link = workdir / "link"
    link.symlink_to("d")
    with raises_errno(errno.EPERM):  # Linux allows user.* only on files and directories
        os.setxattr(link, "user.tag", b"x", follow_symlinks=False)


def test_root_figures_agree_with_statvfs(mkwritefs: object, workdir: Path) -> None:
    root = Path(workdir).parent
    figures = _figures(
        root, ("capacity_blocks", "free_blocks", "reserved_blocks", "allocated_blocks")
    )
    st = os.statvfs(root)
    assert figures["capacity_blocks"] == st.f_blocks == 64 * 2**20 // BLOCK
    assert figures["free_blocks"] == st.f_bfree
    assert (
        figures["free_blocks"] + figures["reserved_blocks"] + figures["allocated_blocks"]
        == figures["capacity_blocks"]
    )
    assert not [n for n in os.listxattr(root) if n.startswith("user.mkwritefs.")]


def test_file_figures_agree_with_st_blocks(workdir: Path) -> None:
    f = workdir / "f"
    with f.open("wb") as out:
        out.write(b"x" * (3 * BLOCK))
        out.seek(20 * BLOCK)
        out.write(b"y")
    figures = _figures(f, ("allocated_blocks", "reserved_blocks", "dirty_pages"))
    assert figures["allocated_blocks"] + figures["reserved_blocks"] == 4
    assert f.stat().st_blocks == 4 * BLOCK // 512
    assert figures["dirty_pages"] <= 4
    assert os.listxattr(f) == []


def test_introspection_xattrs_are_read_only(workdir: Path) -> None:
    root = workdir.parent
    f = workdir / "f"
    f.write_bytes(b"")
    with raises_errno(errno.EPERM):
        os.setxattr(root, "user.mkwritefs.free_blocks", b"999999")
    with raises_errno(errno.EPERM):
        os.removexattr(f, "user.mkwritefs.allocated_blocks")
    with raises_errno(errno.ENODATA):
        os.getxattr(f, "user.mkwritefs.no_such_figure")


def _figures(path: Path, names: tuple[str, ...]) -> dict[str, int]:
    return {name: int(os.getxattr(path, f"user.mkwritefs.{name}")) for name in names}


def test_xattr_space_per_inode_runs_out_with_enospc(workdir: Path) -> None:
    f = workdir / "f"
    f.write_bytes(b"")
    free = os.statvfs(workdir).f_bfree
    os.setxattr(f, "user.a", b"a" * 60000)
    os.setxattr(f, "user.b", b"b" * 60000)
    with raises_errno(errno.ENOSPC):
        os.setxattr(f, "user.c", b"c" * 60000)
    os.setxattr(f, "user.b", b"B" * 60000)  # replacing in place still fits
    assert sorted(os.listxattr(f)) == ["user.a", "user.b"]
    assert os.getxattr(f, "user.b") == b"B" * 60000
    assert os.statvfs(workdir).f_bfree == free  # attributes use no data blocks


def test_unsupported_namespaces(workdir: Path) -> None:
    f = workdir / "f"
    f.write_bytes(b"")
    with raises_errno(errno.EOPNOTSUPP):
        os.setxattr(f, "system.posix_acl_access", b"\x02\x00\x00\x00")
    with raises_errno(errno.EOPNOTSUPP):
        os.setxattr(f, "other.name", b"x")
