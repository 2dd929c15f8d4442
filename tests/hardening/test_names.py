"""Hostile file names: at the core's own calls, and through a real mount.

The kernel splits paths at `/` and never passes a NUL, so a FUSE server should never see
either in a name; but the core is also called directly (simulated processes, scenarios,
`open_path`), so `Filesystem.lookup/create/mknod/mkdir/symlink/link/rename/unlink/rmdir`
must refuse them themselves: EINVAL for an empty name or one with `/` or NUL,
ENAMETOOLONG past 255 bytes, EEXIST for creating "." or ".."; any other bytes (not UTF-8
included) are a name. Each rejected call changes nothing: statfs, the listing, the inode
table and fsck (`Filesystem.check`) are as before.

Through the mount, with bytes names from hypothesis: 255 bytes is a name, 256 is
ENAMETOOLONG for every call that takes one; bytes that are not UTF-8 come back from
readdir exactly as given, and every name can be renamed, linked and removed.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import trio
from hypothesis import assume, given
from hypothesis import strategies as st

from fusefs.fs.core import ROOT_INO, Ctx, Filesystem, FsError
from tests.mount.conftest import Server
from tests.mount.support import raises_errno, wait_until

from .conftest import fuzz, serve_module

CTX = Ctx(uid=0, gid=0, pid=1)
FUZZ = fuzz(100)
NAMES = st.one_of(
    st.binary(max_size=300),
    st.binary(min_size=250, max_size=260),
    st.sampled_from([b"", b".", b"..", b"/", b"a/b", b"a\0b", b"\0", b"x" * 255, b"x" * 256,
                     b"\xff\xfe", b"caf\xe9", b" ", b"\n", b"-", b"...", b"\\"]),
)  # fmt: skip


def sync(fn: Callable[..., Any], *args: Any) -> Any:
    """Call a core operation, async or not (the async ones in a trio run of their own)."""
    result = fn(*args)
    if hasattr(result, "__await__"):

        async def wait() -> Any:
            return await result

        return trio.run(wait)
    return result


def expected_errno(name: bytes, *, creates: bool) -> int | None:
    if len(name) > 255:
        return errno.ENAMETOOLONG
    if not name or b"/" in name or b"\0" in name:
        return errno.EINVAL
    if creates and name in (b".", b".."):
        return errno.EEXIST
    return None


def core_state(fs: Filesystem) -> tuple[Any, ...]:
    fs.check()
    fh = fs.opendir(ROOT_INO, CTX)
    try:
        names = sorted(name for name, _, _ in fs.readdir(fh, 0))
    finally:
        fs.releasedir(fh)
    return fs.statfs(), names, sorted(fs.inodes), fs.statistics()


@pytest.fixture(scope="module")
def fs() -> Filesystem:
    fs = Filesystem(capacity_blocks=64)
    fh, attr = fs.create(ROOT_INO, b"file", 0o644, os.O_RDWR, CTX)
    sync(fs.write, fh, 0, b"data")
    sync(fs.release, fh)
    fs.mkdir(ROOT_INO, b"dir", 0o755, CTX)
    return fs


def _ino(fs: Filesystem, name: bytes) -> int:
    return fs.inode(ROOT_INO).dir.lookup(name)  # type: ignore[union-attr, return-value]


def core_calls(fs: Filesystem, name: bytes) -> list[tuple[str, bool, Callable[[], Any]]]:
    """(what, creates a name, the call) for every core call that takes a name."""
    file_ino = _ino(fs, b"file")
    return [
        ("lookup", False, lambda: fs.lookup(ROOT_INO, name, CTX)),
        ("create", True, lambda: fs.create(ROOT_INO, name, 0o644, os.O_RDWR | os.O_EXCL, CTX)),
        ("mknod", True, lambda: fs.mknod(ROOT_INO, name, stat.S_IFIFO | 0o644, 0, CTX)),
        ("mkdir", True, lambda: fs.mkdir(ROOT_INO, name, 0o755, CTX)),
        ("symlink", True, lambda: fs.symlink(ROOT_INO, name, b"target", CTX)),
        ("link", True, lambda: fs.link(file_ino, ROOT_INO, name, CTX)),
        ("rename to", True, lambda: sync(fs.rename, ROOT_INO, b"file", ROOT_INO, name, 1, CTX)),
        ("rename from", False, lambda: sync(fs.rename, ROOT_INO, name, ROOT_INO, b"new", 0, CTX)),
        ("unlink", False, lambda: sync(fs.unlink, ROOT_INO, name, CTX)),
        ("rmdir", False, lambda: sync(fs.rmdir, ROOT_INO, name, CTX)),
    ]


@FUZZ
@given(name=NAMES)
def test_core_refuses_bad_names_and_changes_nothing(fs: Filesystem, name: bytes) -> None:
    for what, creates, call in core_calls(fs, name):
        expected = expected_errno(name, creates=creates)
        if what.startswith("rename") and name in (b".", b".."):
            expected = errno.EBUSY  # do_renameat2: "." or ".." on either side
        if expected is None:
            continue  # a good name: the round trip below
        before = core_state(fs)
        with pytest.raises(FsError) as info:
            call()
        assert info.value.errno == expected, (what, name, info.value)
        assert core_state(fs) == before, (what, name)


@FUZZ
@given(name=NAMES)
def test_core_takes_any_other_bytes_as_a_name(fs: Filesystem, name: bytes) -> None:
    assume(expected_errno(name, creates=True) is None)
    assume(name not in (b"file", b"dir", b"new"))
    before = core_state(fs)
    fh, attr = fs.create(ROOT_INO, name, 0o644, os.O_RDWR | os.O_EXCL, CTX)
    sync(fs.release, fh)
    assert name in core_state(fs)[1]
    assert fs.lookup(ROOT_INO, name, CTX).ino == attr.ino
    sync(fs.rename, ROOT_INO, name, ROOT_INO, b"new", 0, CTX)
    sync(fs.rename, ROOT_INO, b"new", ROOT_INO, name, 0, CTX)
    sync(fs.unlink, ROOT_INO, name, CTX)
    fs.forget([(attr.ino, 2)])  # the kernel's references: create and lookup
    assert core_state(fs) == before


# -- through the mount ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    for server in serve_module(tmp_path_factory, "names"):
        with open(os.path.join(server.mountpoint, "file"), "wb") as f:
            f.write(b"data")
        yield server


def mount_state(mnt: bytes) -> tuple[Any, ...]:
    st_ = os.statvfs(mnt)
    return sorted(os.listdir(mnt)), st_.f_bfree, st_.f_ffree


MOUNT_CALLS: list[tuple[str, Callable[[bytes, bytes], Any]]] = [
    ("open(O_CREAT)", lambda d, p: os.close(os.open(p, os.O_CREAT | os.O_EXCL | os.O_RDWR))),
    ("mkdir", lambda d, p: os.mkdir(p)),
    ("mkfifo", lambda d, p: os.mkfifo(p)),
    ("symlink", lambda d, p: os.symlink(b"target", p)),
    ("link", lambda d, p: os.link(d + b"/file", p)),
    ("rename to", lambda d, p: os.rename(d + b"/file", p)),
    ("stat", lambda d, p: os.lstat(p)),
    ("unlink", lambda d, p: os.unlink(p)),
]


@pytest.mark.mount
@pytest.mark.parametrize(("what", "call"), MOUNT_CALLS, ids=[w for w, _ in MOUNT_CALLS])
def test_mount_name_of_256_bytes_is_enametoolong(
    server: Server, what: str, call: Callable[[bytes, bytes], Any]
) -> None:
    mnt = os.fsencode(server.mountpoint)
    before = mount_state(mnt)
    for length in (256, 1000, 1025, 4000):
        with raises_errno(errno.ENAMETOOLONG):
            call(mnt, mnt + b"/" + b"n" * length)
    assert mount_state(mnt) == before


@pytest.mark.mount
@FUZZ
@given(
    name=st.one_of(
        st.binary(min_size=1, max_size=255),
        st.binary(min_size=250, max_size=255),
        st.sampled_from([b"x" * 255, b"\xff" * 255, b"\xe9t\xe9", b"\x01\x7f"]),
    )
)
def test_mount_any_bytes_round_trip(server: Server, name: bytes) -> None:
    name = name.replace(b"/", b"_").replace(b"\0", b"_")
    assume(name not in (b".", b"..", b"file", b"d"))  # "d" is the directory used below
    mnt = os.fsencode(server.mountpoint)
    path, dirpath = mnt + b"/" + name, mnt + b"/d"
    before = mount_state(mnt)
    try:
        _round_trip(name, path, dirpath)
    finally:  # a failing example must not leave names behind for the next one
        for leftover in (dirpath + b"/" + name, path):
            if os.path.lexists(leftover):
                os.unlink(leftover)
        if os.path.isdir(dirpath) and not os.path.islink(dirpath):
            os.rmdir(dirpath)
        elif os.path.lexists(dirpath):
            os.unlink(dirpath)
    # The blocks and the inode come back once the kernel forgets it (FORGET, queued).
    wait_until(lambda: mount_state(mnt) == before, "space and inode returned")


def _round_trip(name: bytes, path: bytes, dirpath: bytes) -> None:
    mnt = os.path.dirname(path)
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    try:
        os.write(fd, name)
    finally:
        os.close(fd)
    assert name in os.listdir(mnt)
    os.mkdir(dirpath)
    os.rename(path, dirpath + b"/" + name)
    assert os.listdir(dirpath) == [name]
    os.link(dirpath + b"/" + name, path)
    with open(path, "rb") as f:
        assert f.read() == name
    os.unlink(dirpath + b"/" + name)
    os.rmdir(dirpath)
    os.symlink(name, dirpath)
    assert os.readlink(dirpath) == name
    os.unlink(dirpath)
    os.unlink(path)


@pytest.mark.mount
def test_mount_slash_and_nul_never_make_a_name(server: Server) -> None:
    """`/` separates path components (a missing directory: ENOENT); NUL cannot be passed."""
    mnt = os.fsencode(server.mountpoint)
    before = mount_state(mnt)
    with raises_errno(errno.ENOENT):
        os.open(mnt + b"/no-such-dir/x", os.O_CREAT | os.O_WRONLY)
    with raises_errno(errno.ENOTDIR):
        os.open(mnt + b"/file/x", os.O_CREAT | os.O_WRONLY)
    with pytest.raises(ValueError, match="null"):
        os.open(mnt + b"/a\0b", os.O_CREAT | os.O_WRONLY)
    assert mount_state(mnt) == before
