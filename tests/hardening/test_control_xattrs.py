"""Hostile control attributes on a real mount: the errno Linux tools expect, and a
rejected write changes nothing.

The root's `user.mkwritefs.*` names are figures (read-only) and settings (the owner's);
hypothesis throws names (known, unknown, other namespaces, too long, bytes that are not
UTF-8) and values (empty, NUL bytes, not ASCII, over 64 KiB, near-valid numbers) at
getxattr/setxattr/removexattr of the root, a file and a directory, and checks:

- too long a name: ERANGE; a value over 65536 bytes: E2BIG (the kernel's own checks);
- an unknown `user.mkwritefs.*` name: ENODATA to read, EPERM to set or remove (no setter);
- a figure: readable (ASCII), EPERM to set or remove;
- a setting with a value that cannot be valid (empty, NUL, non-ASCII): EINVAL;
- a namespace the filesystem lacks (system.*, none at all): EOPNOTSUPP;
- every figure and setting reads the same after a rejected call, and statfs too; an
  accepted setting reads back and is put back.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from fusefs.fs import introspect
from fusefs.fs.core import Filesystem  # noqa: F401 - registers the dirty model's names
from tests.mount.conftest import Server
from tests.mount.support import getxattr_into, raises_errno

from .conftest import fuzz, serve_module

pytestmark = pytest.mark.mount

PREFIX = b"user.mkwritefs."
ROOT_NAMES = sorted(introspect._ROOT)  # every name the server registers, as it does
SETTERS = sorted(set(introspect._ROOT_SETTERS) | set(introspect._BUILTIN_SETTERS))
FIGURES = [n for n in ROOT_NAMES if n not in SETTERS]
FILE_NAMES = sorted(introspect._FILE)
# Settings whose valid values the test may set and put back exactly.
SIMPLE = [b"policy", b"capacity_blocks", b"writeback_interval", b"dirty_expire",
          b"writeback_latency", b"inject_writeback_error"]  # fmt: skip
FUZZ = fuzz(150)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    for server in serve_module(tmp_path_factory, "xattrs"):
        with open(os.path.join(server.mountpoint, "file"), "wb") as f:
            f.write(b"f" * 5000)
            os.fsync(f.fileno())  # nothing dirty: no figure moves when the flusher runs
        os.mkdir(os.path.join(server.mountpoint, "dir"))
        yield server


def snapshot(mnt: str) -> dict[bytes, bytes | int]:
    """Every root figure and setting (an errno where one cannot be read now), and df."""
    seen: dict[bytes, bytes | int] = {}
    for name in ROOT_NAMES:
        try:
            seen[name] = os.getxattr(mnt, PREFIX + name)
        except OSError as exc:
            seen[name] = exc.errno
    st_ = os.statvfs(mnt)
    seen[b"statfs"] = repr((st_.f_blocks, st_.f_bfree, st_.f_files)).encode()
    return seen


def attempt(fn: object, *args: object) -> int:
    try:
        fn(*args)  # type: ignore[operator]
    except OSError as exc:
        return exc.errno
    return 0


NEVER_VALID = st.one_of(
    st.just(b""),
    st.binary(max_size=20).map(lambda b: b + b"\0"),
    st.binary(min_size=1, max_size=20).map(lambda b: b"\xff" + b),
    st.sampled_from([b"\x00", b"1\x00", b"reserve\x00", b"\xc3\xa9", b"\xff\xfe", b"\x80" * 64]),
)  # fmt: skip
MAYBE_VALID = st.one_of(
    st.sampled_from([b"0", b"1", b"16", b"256", b"-1", b"1e3", b"0.5", b"nan", b"inf", b"+3",
                     b" 7 ", b"1e309", b"legacy", b"Reserve", b"fuse", b"none", b"EIO",
                     b"EIO:2", b"ENOSPC:1", b"EBOGUS", b"EIO:", b":3", b"0x10"]),
    st.text("0123456789.-+e:EIOnoe ", max_size=8).map(str.encode),
)  # fmt: skip
OTHER_NAMES = st.sampled_from([
    b"user.mkwritefs.", b"user.mkwritefs", b"user.mkwritefs.bogus", b"user.mkwritefs.\xff",
    b"user.mkwritefs.policy\xff", b"user.mkwritefs.POLICY", b"user.mkwritefs. policy",
    b"system.bogus", b"bogus", b"mkwritefs.policy",
    b"trusted.mkwritefs.policy", b"user." + b"x" * 250, b"user." + b"x" * 251,
    PREFIX + b"p" * 300,
])  # fmt: skip


def expected_set_errno(name: bytes, value: bytes, *, root: bool) -> int | None:
    """What setxattr must answer, or None when it may succeed (a valid setting)."""
    if len(name) > 255:
        return errno.ERANGE
    if len(value) > 65536:
        return errno.E2BIG
    if not name.startswith((b"user.", b"trusted.", b"security.")):
        return errno.EOPNOTSUPP
    if not name.startswith(PREFIX):
        return None  # an ordinary attribute: the other test's business
    key = name[len(PREFIX) :]
    if not root or key not in SETTERS:
        return errno.EPERM
    if value == b"" or b"\0" in value or any(b >= 0x80 for b in value):
        return errno.EINVAL
    return None


@FUZZ
@given(
    name=st.one_of(st.sampled_from(ROOT_NAMES + FILE_NAMES).map(lambda n: PREFIX + n),
                   st.binary(max_size=20).map(lambda b: PREFIX + b), OTHER_NAMES),
    value=st.one_of(NEVER_VALID, MAYBE_VALID, st.just(b"1" * 65537)),
    where=st.sampled_from(["", "file", "dir"]),
)  # fmt: skip
def test_control_attributes(server: Server, name: bytes, value: bytes, where: str) -> None:
    mnt = server.mountpoint
    path = os.fsencode(os.path.join(mnt, where) if where else mnt)
    root = where == ""
    assume(b"\0" not in name)  # a C string: the kernel never sees past a NUL
    key = name[len(PREFIX) :]
    if root and key in SETTERS and key not in SIMPLE:
        value = value if value in (b"",) or b"\0" in value or b"\xff" in value else b"\xff"
    before = snapshot(mnt)
    expected = expected_set_errno(name, value, root=root)

    err = attempt(os.setxattr, path, name, value)
    if expected is not None:
        assert err == expected, (name, value[:40], errno.errorcode.get(err))
    else:
        assert err in (0, errno.EINVAL), (name, value[:40], errno.errorcode.get(err))
    if err:
        assert snapshot(mnt) == before, (name, value[:40])
    elif name.startswith(PREFIX):  # a setting changed: put every one back
        assert os.getxattr(path, name)  # and it reads back
        for k in SIMPLE:
            if before[k] != os.getxattr(mnt, PREFIX + k):
                os.setxattr(mnt, PREFIX + k, before[k])  # type: ignore[arg-type]
        assert snapshot(mnt) == before
    else:
        os.removexattr(path, name)

    if name.startswith(PREFIX) and len(name) <= 255:  # reading and removing
        known = ROOT_NAMES if root else FILE_NAMES if where == "file" else []
        got = attempt(os.getxattr, path, name)
        readable = key in known and not (root and isinstance(before[key], int))
        assert got == (0 if readable else errno.ENODATA), (name, where)  # dirty_pages: no
        if readable:  # model, no figure (ENODATA)
            assert os.getxattr(path, name).isascii()
        assert attempt(os.removexattr, path, name) == errno.EPERM
    assert snapshot(mnt) == before
    assert server.proc.poll() is None, server.log()


def test_buffer_too_small_is_erange(server: Server) -> None:
    """getxattr(2) with a buffer shorter than the figure: ERANGE, as for any attribute."""
    mnt = server.mountpoint
    size = len(os.getxattr(mnt, "user.mkwritefs.capacity_blocks"))
    assert getxattr_into(mnt, "user.mkwritefs.capacity_blocks", size) == size
    with raises_errno(errno.ERANGE):
        getxattr_into(mnt, "user.mkwritefs.capacity_blocks", size - 1)


def test_settings_are_never_listed(server: Server) -> None:
    mnt = server.mountpoint
    assert [n for n in os.listxattr(mnt) if n.startswith("user.mkwritefs.")] == []
    assert [n for n in os.listxattr(os.path.join(mnt, "file"))
            if n.startswith("user.mkwritefs.")] == []  # fmt: skip


@FUZZ
@given(suffix=st.binary(min_size=1, max_size=40).filter(lambda b: b"\0" not in b),
       value=st.binary(max_size=300))  # fmt: skip
def test_ordinary_attributes_round_trip_any_bytes(
    server: Server, suffix: bytes, value: bytes
) -> None:
    """user.* names and values of any bytes are stored as given; df does not move."""
    path = os.fsencode(os.path.join(server.mountpoint, "file"))
    name = b"user." + suffix
    assume(not name.startswith(PREFIX))
    before = os.statvfs(server.mountpoint)
    os.setxattr(path, name, value)
    try:
        assert os.getxattr(path, name) == value
        assert name in [os.fsencode(n) for n in os.listxattr(path)]
    finally:
        os.removexattr(path, name)
    assert attempt(os.getxattr, path, name) == errno.ENODATA
    after = os.statvfs(server.mountpoint)
    assert (after.f_bfree, after.f_blocks) == (before.f_bfree, before.f_blocks)
