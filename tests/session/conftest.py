"""Harness for the session tests: in-process serving, run in a separate process.

The filesystem and the simulator must share one process (one page cache, one trio
loop), but a test must never serve a mount from the pytest process itself: a mistake
there (a blocking system call on the mount from the serving thread) would hang the
whole run. So each test hands a function of `children` to `in_child`, which runs it in
a fresh spawned Python process (where it mounts with `fusefs.fuse.mount.serving`, drives
simulated processes and checks the mount from worker threads) and returns what that
function returned, or fails with the child's traceback. Whatever happened, the mount
point is unmounted afterwards (fusermount3 -u, then -uz) and the child ended.

`mkwritefs_cli` mounts with the command line (`mkwritefs mount DIR --policy P`, a
background server) for the tests of `set` and `--policy`; teardown unmounts it.
"""

from __future__ import annotations

import faulthandler
import multiprocessing
import os
import shutil
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest

from fusefs import mountinfo

HARNESS_LIMIT = 120.0  # a child that never answers is a hang, not a slow test


def _child_main(conn: Connection, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
    # A hang (e.g. a system call on the mount from the serving thread) shows its stacks.
    faulthandler.dump_traceback_later(HARNESS_LIMIT - 10, exit=True)
    try:
        conn.send(("ok", fn(*args)))
    except BaseException as exc:  # report everything, the parent fails the test with it
        conn.send(("error", "".join(traceback.format_exception(exc))))
    finally:
        conn.close()


def _unmount(mountpoint: str) -> None:
    for flags in ("-u", "-uz"):
        if mountinfo.find(os.path.realpath(mountpoint)) is None:
            return
        subprocess.run(["fusermount3", flags, mountpoint], capture_output=True, check=False)


def _abort_connection(mountpoint: str) -> None:
    """Abort the FUSE connection (fusectl): a process that serves its own mount and dies
    with files open on it hangs in exit, flushing them to itself."""
    entry = mountinfo.find(mountpoint)
    if entry is None:
        return
    minor = entry.device.split(":")[1]
    if not os.path.isdir("/sys/fs/fuse/connections/" + minor):
        subprocess.run(
            ["mount", "-t", "fusectl", "none", "/sys/fs/fuse/connections"],
            capture_output=True,
            check=False,
        )
    try:
        with open(f"/sys/fs/fuse/connections/{minor}/abort", "w") as f:
            f.write("1")
    except OSError:
        pass


def _end(proc: multiprocessing.process.BaseProcess, mountpoint: str) -> None:
    proc.join(10)
    if proc.is_alive():
        proc.kill()
        proc.join(5)
    if proc.is_alive():
        _abort_connection(mountpoint)
        proc.join(10)
    _unmount(mountpoint)


def run_in_child(fn: Callable[..., Any], *args: Any, mountpoint: str) -> Any:
    """`fn(*args)` in a new process; unmount `mountpoint` afterwards whatever happened."""
    ctx = multiprocessing.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child_main, args=(send, fn, args))
    proc.start()
    send.close()
    try:
        if not receive.poll(HARNESS_LIMIT):
            pytest.fail(f"{fn.__name__} did not finish within {HARNESS_LIMIT} s")
        try:
            kind, value = receive.recv()
        except EOFError:
            pytest.fail(f"{fn.__name__}: the child died (exit status {proc.exitcode})")
    finally:
        _end(proc, mountpoint)
        receive.close()
    if kind == "error":
        pytest.fail(f"{fn.__name__} failed in the child:\n{value}", pytrace=False)
    return value


@pytest.fixture
def mountpoint(tmp_path: Path) -> Iterator[str]:
    """An empty directory to mount on; after the test nothing may be mounted on it."""
    path = tmp_path / "mnt"
    path.mkdir()
    real = os.path.realpath(path)  # as mountinfo shows it; children never resolve it
    yield real
    assert mountinfo.find(real) is None, "left mounted"


@pytest.fixture
def in_child(mountpoint: str) -> Callable[..., Any]:
    def run(fn: Callable[..., Any], *args: Any) -> Any:
        return run_in_child(fn, mountpoint, *args, mountpoint=mountpoint)

    return run


def cli(*args: str, user: int | None = None) -> subprocess.CompletedProcess[str]:
    """`mkwritefs ARGS` in a subprocess, optionally as another user (setuid in the child)."""
    return subprocess.run(
        [sys.executable, "-m", "fusefs", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        user=user,
        group=user,
        extra_groups=[] if user is not None else None,
    )


@pytest.fixture
def mkwritefs_cli(mountpoint: str) -> Iterator[Callable[..., subprocess.CompletedProcess[str]]]:
    """mount(*options) -> the result of `mkwritefs mount MOUNTPOINT OPTIONS`."""

    def mount(*options: str) -> subprocess.CompletedProcess[str]:
        return cli("mount", mountpoint, *options)

    try:
        yield mount
    finally:
        if mountinfo.find(os.path.realpath(mountpoint)) is not None:
            cli("umount", mountpoint)
        _unmount(mountpoint)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None:
        skip = pytest.mark.skip(reason="needs /dev/fuse and fusermount3")
        for item in items:
            if item.get_closest_marker("mount"):
                item.add_marker(skip)
