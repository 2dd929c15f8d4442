"""The store under the core, without FUSE: what a crash leaves, and what commits cover.

A "crash" here drops the Filesystem without closing it (no last writeback, no last
commit) and lets go of the store's lock, as the death of the server process does."""

from __future__ import annotations

import errno
import os
import sqlite3
import time
from pathlib import Path

import pytest

from fusefs.fs.core import Ctx, Filesystem
from fusefs.fs.errors import FsError
from fusefs.fs.store import MEMORY, SqliteStore, StoreError, mkfs

ROOT = Ctx(0, 0, 0)


def new(path: Path, blocks: int = 256) -> Filesystem:
    if not path.exists():
        mkfs(str(path), blocks, uid=0, gid=0, now_ns=time.time_ns())
    store = SqliteStore(str(path))
    return Filesystem(capacity_blocks=store.capacity_blocks, store=store)


def crash(fs: Filesystem) -> None:
    fs.store._release()  # type: ignore[attr-defined]  # the process died: fds closed


async def test_memory_is_the_default() -> None:
    fs = Filesystem(capacity_blocks=16)
    assert fs.store is MEMORY
    assert not fs.store.persistent
    await fs.close()  # nothing to do


async def test_crash_keeps_the_last_commit_only(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    fs = new(path)
    fh, attr = fs.create(1, b"f", 0o644, os.O_RDWR, ROOT)
    await fs.write(fh, 0, b"A" * 10000)
    await fs.fsync(fh, False)  # committed: 3 blocks
    await fs.write(fh, 10000, b"B" * 10000)  # not synced: reserved, dirty
    fs.mkdir(1, b"later", 0o755, ROOT)  # not committed either
    assert fs.space.reserved > 0
    crash(fs)

    fs = new(path)
    assert fs.space.reserved == 0  # reservations are never stored
    assert fs.space.allocated == 3
    attr = fs.lookup(1, b"f", ROOT)
    fh = fs.open(attr.ino, os.O_RDONLY, ROOT)
    assert fs.read(fh, 0, 10000) == b"A" * 10000
    with pytest.raises(FsError):
        fs.lookup(1, b"later", ROOT)
    fs.check()
    await fs.release(fh)
    await fs.close()


async def test_orphan_of_a_crash_is_removed_at_mount(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    fs = new(path)
    fh, attr = fs.create(1, b"tmp", 0o600, os.O_RDWR, ROOT)
    await fs.write(fh, 0, b"x" * 5 * 4096)
    await fs.unlink(1, b"tmp", ROOT)  # still open: kept, with its blocks
    await fs.fsync(fh, False)  # the commit stores it with nlink 0
    assert fs.space.allocated == 5
    crash(fs)

    fs = new(path)
    report = fs.store.load_report  # type: ignore[attr-defined]
    assert (report.orphans, report.orphan_blocks) == (1, 5)
    assert fs.space.allocated == 0
    assert fs.statfs().bfree == 256
    fs.check()
    await fs.close()


async def test_failed_commit_keeps_everything_for_the_next(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    fs = new(path)
    fh, attr = fs.create(1, b"f", 0o644, os.O_RDWR, ROOT)
    await fs.write(fh, 0, b"data" * 2048)
    store = fs.store
    real = store.conn  # type: ignore[attr-defined]

    class Full:  # the store's disk full at the commit
        def execute(self, sql: str, *args: object) -> object:
            if sql.startswith(("INSERT", "COMMIT")):
                raise sqlite3.OperationalError("database or disk is full")
            return real.execute(sql, *args)

        def executemany(self, sql: str, rows: object) -> object:
            return self.execute(sql, rows)

    store.conn = Full()  # type: ignore[attr-defined]
    with pytest.raises(FsError) as failed:
        await fs.fsync(fh, False)
    assert failed.value.errno == errno.ENOSPC
    store.conn = real  # type: ignore[attr-defined]
    await fs.fsync(fh, False)  # what the failed commit held is committed now
    crash(fs)
    fs = new(path)
    ino = fs.lookup(1, b"f", ROOT).ino
    fh = fs.open(ino, os.O_RDONLY, ROOT)
    assert fs.read(fh, 0, 8192) == b"data" * 2048
    await fs.release(fh)
    await fs.close()


def test_second_open_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    fs = new(path)
    with pytest.raises(StoreError, match="in use"):
        SqliteStore(str(path))
    crash(fs)
    SqliteStore(str(path)).close()


async def test_fsync_of_a_directory_commits_a_rename(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    fs = new(path)
    fh, attr = fs.create(1, b"tmp", 0o644, os.O_RDWR, ROOT)
    await fs.write(fh, 0, b"new contents")
    await fs.fsync(fh, False)
    await fs.rename(1, b"tmp", 1, b"final", 0, ROOT)
    dh = fs.opendir(1, ROOT)
    await fs.fsyncdir(dh)
    crash(fs)
    fs = new(path)
    ino = fs.lookup(1, b"final", ROOT).ino
    fh = fs.open(ino, os.O_RDONLY, ROOT)
    assert fs.read(fh, 0, 100) == b"new contents"
    with pytest.raises(FsError):
        fs.lookup(1, b"tmp", ROOT)
    await fs.release(fh)
    await fs.close()
