"""The pyfuse3 adapter in-process, without a mount: its error boundary and translations.

These call the `Operations` handlers directly (as pyfuse3 would) over a real core
`Filesystem`. What they pin down is what the kernel would see: FsError keeps its errno,
a bug becomes EIO and is logged (the request loop survives), security.capability is
answered without touching the core, and the core's invalidations are queued, deduped
and delivered from a worker thread.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import threading
from types import SimpleNamespace

import pyfuse3
import pytest

from fusefs.fs.core import ROOT_INO, Filesystem
from fusefs.fuse.ops import ATTR_TIMEOUT, ENTRY_TIMEOUT, Operations


@pytest.fixture
def ops() -> Operations:
    return Operations(Filesystem(capacity_blocks=64))


CTX = pyfuse3.RequestContext()


async def test_fs_error_keeps_its_errno(ops: Operations) -> None:
    with pytest.raises(pyfuse3.FUSEError) as excinfo:
        await ops.lookup(ROOT_INO, b"missing", CTX)
    assert excinfo.value.errno == errno.ENOENT
    await ops.mkdir(ROOT_INO, b"d", stat.S_IFDIR | 0o755, CTX)
    with pytest.raises(pyfuse3.FUSEError) as excinfo:
        await ops.mkdir(ROOT_INO, b"d", stat.S_IFDIR | 0o755, CTX)
    assert excinfo.value.errno == errno.EEXIST


async def test_a_bug_is_logged_and_answered_eio(
    ops: Operations, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(ino: int) -> None:
        raise ZeroDivisionError("a bug in the core")

    monkeypatch.setattr(ops.fs, "getattr", broken)
    with (
        caplog.at_level(logging.ERROR, logger="fusefs.fuse.ops"),
        pytest.raises(pyfuse3.FUSEError) as excinfo,
    ):
        await ops.getattr(ROOT_INO, CTX)
    assert excinfo.value.errno == errno.EIO
    assert excinfo.value.__cause__ is None
    assert "BUG" in caplog.text
    assert "ZeroDivisionError" in caplog.text


async def test_forget_never_raises(
    ops: Operations, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(items: object) -> None:
        raise KeyError("a bug")

    monkeypatch.setattr(ops.fs, "forget", broken)
    with caplog.at_level(logging.ERROR, logger="fusefs.fuse.ops"):
        await ops.forget([(42, 1)])
    assert "BUG" in caplog.text


async def test_security_capability_is_answered_without_the_core(
    ops: Operations, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    monkeypatch.setattr(ops.fs, "getxattr", lambda *args: calls.append(args))
    with pytest.raises(pyfuse3.FUSEError) as excinfo:
        await ops.getxattr(ROOT_INO, b"security.capability", CTX)
    assert excinfo.value.errno == errno.ENODATA
    assert calls == []


async def test_entry_attributes_carry_timeouts_and_every_field(ops: Operations) -> None:
    fi, entry = await ops.create(ROOT_INO, b"f", stat.S_IFREG | 0o640, os.O_RDWR, CTX)
    assert not fi.direct_io  # MAP_SHARED must keep working
    assert await ops.write(fi.fh, 0, b"x" * 5000) == 5000
    attr = ops.fs.getattr(entry.st_ino)
    got = await ops.getattr(entry.st_ino, CTX)
    assert (got.attr_timeout, got.entry_timeout) == (ATTR_TIMEOUT, ENTRY_TIMEOUT)
    assert ATTR_TIMEOUT > 0
    assert ENTRY_TIMEOUT > 0
    assert (got.st_ino, got.st_mode, got.st_nlink) == (attr.ino, attr.mode, attr.nlink)
    assert (got.st_uid, got.st_gid, got.st_rdev) == (attr.uid, attr.gid, attr.rdev)
    assert (got.st_size, got.st_blocks, got.st_blksize) == (5000, 16, 4096)
    assert (got.st_atime_ns, got.st_mtime_ns, got.st_ctime_ns) == (
        attr.atime_ns,
        attr.mtime_ns,
        attr.ctime_ns,
    )
    assert got.generation == attr.generation
    await ops.release(fi.fh)


async def test_setattr_passes_only_the_fields_asked_for(ops: Operations) -> None:
    fi, entry = await ops.create(ROOT_INO, b"f", stat.S_IFREG | 0o644, os.O_RDWR, CTX)
    await ops.write(fi.fh, 0, b"y" * 100)
    new = pyfuse3.EntryAttributes()
    new.st_size = 10
    new.st_mode = 0  # garbage in a field not asked for: must be ignored
    # pyfuse3's SetattrFields is read-only from Python: a stand-in with the same flags.
    fields = SimpleNamespace(
        update_atime=False,
        update_mtime=False,
        update_ctime=False,
        update_mode=False,
        update_uid=False,
        update_gid=False,
        update_size=True,
    )
    got = await ops.setattr(entry.st_ino, new, fields, fi.fh, CTX)  # type: ignore[arg-type]
    assert got.st_size == 10
    assert stat.S_IMODE(got.st_mode) == 0o644
    await ops.release(fi.fh)


async def test_statfs_translates_every_field(ops: Operations) -> None:
    st = await ops.statfs(CTX)
    core = ops.fs.statfs()
    assert (st.f_bsize, st.f_frsize, st.f_blocks) == (core.bsize, core.frsize, 64)
    assert (st.f_bfree, st.f_bavail) == (core.bfree, core.bavail)
    assert (st.f_files, st.f_ffree, st.f_favail) == (core.files, core.ffree, core.favail)
    assert st.f_namemax == 255


async def test_invalidations_are_queued_deduped_and_sent_from_a_thread(
    ops: Operations, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[tuple[int, bool]] = []
    loop_thread = threading.get_ident()

    def fake_invalidate(ino: int, attr_only: bool = False) -> None:
        assert threading.get_ident() != loop_thread  # never inline in the request loop
        sent.append((ino, attr_only))

    monkeypatch.setattr(pyfuse3, "invalidate_inode", fake_invalidate)
    assert ops.fs.on_invalidate == ops.invalidator.notify
    for ino in (5, 5, 7, 5):
        ops.fs.on_invalidate(ino)  # the core calls this; it must not block or raise
    ops.invalidator.close()
    await ops.invalidator.run()  # drains the queue, then returns
    assert sent == [(5, False), (7, False)]
