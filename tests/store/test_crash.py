"""Crash safety: the server SIGKILLed at random moments while a writer works.

Each round mounts the store, starts tests/store/crash_writer.py on the mount (writes,
fsyncs, stores through a real shared mmap, msyncs, new files, an unlinked-open file),
waits a random time, SIGKILLs the server, detaches the dead mount and then checks:

* fsck of the store finds nothing but orphans (files unlinked while open when the
  server died: the next mount removes them);
* after mounting it again: every byte a completed fsync/msync(MS_SYNC) covered is
  there, in every round so far; every page of the overwritten file is a whole version,
  never torn, at least the synced one; the space figures match the blocks stored;
* at the end, after a clean unmount, fsck finds the store clean.

The normal run kills the server at 20 points; `scripts/test --long` at 100.  The seed is
printed, so a failing run can be repeated (CRASH_SEED=...).
"""

from __future__ import annotations

import json
import os
import random
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fusefs.fs import store_fsck
from tests.mount.conftest import Server, start_server, stop_server, wait_mounted

from . import crash_writer as w

pytestmark = pytest.mark.mount

WRITER = str(Path(w.__file__))
READY_TIMEOUT = 30.0  # harness limits for a writer that never starts, not assertions
# The server as `mkwritefs mount DIR --store STORE --foreground` runs it (fusefs.fuse.mount's
# serve), without the command line's imports and re-exec: 20 starts cost half as much.
SERVE = (
    "import sys; from fusefs.fuse.mount import MountConfig, serve; "
    "serve(MountConfig(mountpoint=sys.argv[1], capacity_blocks=0, store=sys.argv[2]))"
)


def start_store_server(mnt: Path, store: Path, tmp_path: Path) -> Server:
    log_path = tmp_path / "server.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVE, str(mnt), str(store)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    return wait_mounted(Server(str(mnt), proc, str(log_path)))


@dataclass
class Expected:
    """What completed syncs guarantee, per round."""

    a: dict[int, int] = field(default_factory=dict)
    b: dict[int, dict[int, int]] = field(default_factory=dict)
    c: dict[int, int] = field(default_factory=dict)
    m: list[str] = field(default_factory=list)

    def read_log(self, round_: int, log: Path) -> int:
        lines = log.read_text().splitlines() if log.exists() else []
        for line in lines:
            if not line.endswith("}"):
                continue  # a line the killed writer did not finish: not acknowledged
            entry = json.loads(line)
            if "a" in entry:
                self.a[round_] = entry["a"]
            if "b" in entry:
                self.b[round_] = {int(k): v for k, v in entry["b"].items()}
            if "c" in entry:
                self.c[round_] = entry["c"]
            if "m" in entry:
                self.m.append(entry["m"])
        return len(lines)


def verify(root: Path, exp: Expected) -> int:
    """Check every guarantee on the mounted store; the number of synced bytes checked."""
    checked = 0
    for r, size in exp.a.items():
        with open(root / f"a{r}", "rb") as f:
            got = f.read(size)
        assert got == w.a_bytes(r, 0, size), f"a{r}: synced prefix of {size} bytes differs"
        checked += size
    for r, versions in exp.b.items():
        data = (root / f"b{r}").read_bytes()
        assert len(data) == w.B_PAGES * w.PAGE
        for i in range(w.B_PAGES):
            got = w.page_version("b", r, i, data[i * w.PAGE : (i + 1) * w.PAGE])
            assert got is not None, f"b{r} page {i} is torn"
            assert got >= versions.get(i, 0), f"b{r} page {i}: version {got} < synced"
            checked += w.PAGE if versions.get(i) else 0
    for r, pages in exp.c.items():
        data = (root / f"c{r}").read_bytes()
        for i in range(pages):
            assert w.page_version("c", r, i, data[i * w.PAGE : (i + 1) * w.PAGE]) == 1, (
                f"c{r} page {i} was msynced and is not there"
            )
            checked += w.PAGE
    for name in exp.m:
        assert (root / name).read_bytes() == name.encode() * 100, name
        checked += len(name) * 100
    return checked


def check_store(store: Path, *, orphans_allowed: bool) -> list[str]:
    conn = sqlite3.connect(store, isolation_level=None)
    try:
        problems = [p.message for p in store_fsck.check(conn)]
    finally:
        conn.close()
    if orphans_allowed:
        problems = [p for p in problems if not p.startswith("orphaned inode")]
    return problems


def space_matches(root: Path, store: Path) -> None:
    """statfs after a mount counts exactly the blocks stored (no reservation survives)."""
    used = os.statvfs(root)
    conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
    try:
        (stored,) = conn.execute("SELECT COUNT(*) FROM blocks").fetchone()
    finally:
        conn.close()
    assert used.f_blocks - used.f_bfree == stored


def crash_rounds(tmp_path: Path, new_store, rounds: int) -> None:
    seed = int(os.environ.get("CRASH_SEED", random.randrange(1 << 30)))
    print(f"crash test: seed {seed}, {rounds} rounds")
    rng = random.Random(seed)
    store = new_store("64M")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    exp = Expected()
    verified = final = 0
    killed_after_syncs = 0
    server: Server | None = None
    writer: subprocess.Popen[bytes] | None = None
    try:
        for r in range(rounds):
            server = start_store_server(mnt, store, tmp_path)
            if r:
                verified += verify(mnt, exp)
                space_matches(mnt, store)
            log = tmp_path / f"log{r}"
            writer = subprocess.Popen(
                [sys.executable, WRITER, str(mnt), str(log), str(r), str(rng.randrange(1 << 30))],
                stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + READY_TIMEOUT
            while not (log.exists() and log.read_text()):
                assert writer.poll() is None, "the writer died before it was ready"
                assert time.monotonic() < deadline, "the writer never got ready"
                time.sleep(0.005)
            time.sleep(rng.uniform(0.0, 0.5))
            server.proc.kill()  # SIGKILL: no unmount, no last commit
            server.proc.wait()
            stop_server(server)  # detaches the dead mount
            writer.kill()
            writer.wait()
            killed_after_syncs += exp.read_log(r, log) > 1
            assert check_store(store, orphans_allowed=True) == []
        server = start_server(str(mnt), size="64M", extra=("--store", str(store)))
        final = verify(mnt, exp)  # (the last mount through the command line)
        verified += final
        space_matches(mnt, store)
        stop_server(server)
        assert check_store(store, orphans_allowed=False) == []
    finally:
        if writer is not None and writer.poll() is None:
            writer.kill()
            writer.wait()
        if server is not None and not server.stopped:
            stop_server(server)
    print(
        f"crash test: {rounds} kills ({killed_after_syncs} after some sync); "
        f"{final} distinct synced bytes, {verified} checked over all remounts"
    )
    assert killed_after_syncs > rounds // 2  # the kills did land while the writer synced


def test_crash_loop(tmp_path: Path, new_store) -> None:
    crash_rounds(tmp_path, new_store, 20)


@pytest.mark.long
def test_crash_loop_long(tmp_path: Path, new_store) -> None:
    crash_rounds(tmp_path, new_store, 100)
