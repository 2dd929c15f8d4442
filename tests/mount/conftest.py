"""Fixtures that mount a real mkwritefs, served by a separate process.

The server is `python -m fusefs.cli.main mount DIR --foreground`, started with subprocess, and
the fixture polls until DIR is a mount point (or the server died: then the test fails
with the server's log). Teardown ALWAYS runs, whatever the test did to the server:
`fusermount3 -u`, then `-uz` (a busy or dead mount), then terminate -> kill the process.

`mkwritefs` (module scope) is one 64 MiB mount shared by the tests of a module that do
not interfere; `workdir` gives each test a fresh directory inside it. `mount_factory`
makes fresh mounts (any size, extra options) for tests that need one of their own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fusefs.cli.mount import find_mount

READY_TIMEOUT = 30.0  # a harness limit for a server that never comes up, not an assertion


@dataclass
class Server:
    """A running mount server: its mount point, process and log."""

    mountpoint: str
    proc: subprocess.Popen[bytes]
    log_path: str
    stopped: bool = field(default=False)

    def log(self) -> str:
        return Path(self.log_path).read_text(errors="replace")

    def is_mounted(self) -> bool:
        return find_mount(self.mountpoint) is not None


def start_server(mountpoint: str, *, size: str = "16M", extra: tuple[str, ...] = ()) -> Server:
    log_fd, log_path = tempfile.mkstemp(prefix="mkwritefs-server-", suffix=".log")
    cmd = [
        sys.executable,
        "-m",
        "fusefs",
        "mount",
        mountpoint,
        "--foreground",
        "--size",
        size,
        *extra,
    ]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log_fd, stderr=log_fd)
    os.close(log_fd)
    return wait_mounted(Server(mountpoint, proc, log_path))


def wait_mounted(server: Server) -> Server:
    """Poll until the server's mount point is mounted; fail (server stopped) if it died."""
    deadline = time.monotonic() + READY_TIMEOUT
    while not os.path.ismount(server.mountpoint):
        if server.proc.poll() is not None or time.monotonic() > deadline:
            stop_server(server)
            pytest.fail(f"mkwritefs server did not come up:\n{server.log()}")
        time.sleep(0.01)
    return server


@contextmanager
def served(mountpoint: Path, *, size: str = "64M") -> Iterator[Server]:
    """A server on `mountpoint` (made here) for the block, stopped whatever happens."""
    mountpoint.mkdir()
    server = start_server(str(mountpoint), size=size)
    try:
        yield server
    finally:
        stop_server(server)


def stop_server(server: Server) -> None:
    """Unmount and end the server, escalating; safe to call twice and on a dead server."""
    try:
        for flags in ("-u", "-uz"):
            if not server.is_mounted():
                break
            subprocess.run(
                ["fusermount3", flags, server.mountpoint], capture_output=True, check=False
            )
    finally:
        for stop in (None, server.proc.terminate, server.proc.kill):
            if stop is not None:
                stop()
            try:
                server.proc.wait(timeout=10)
                break
            except subprocess.TimeoutExpired:
                continue
        server.stopped = True


@pytest.fixture
def mount_factory(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """start(size="16M", extra=()) -> Server; every server is stopped at teardown."""
    servers: list[Server] = []

    def start(size: str = "16M", extra: tuple[str, ...] = ()) -> Server:
        mountpoint = tmp_path / f"mnt{len(servers)}"
        mountpoint.mkdir()
        server = start_server(str(mountpoint), size=size, extra=extra)
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            stop_server(server)


@pytest.fixture(scope="module")
def mkwritefs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One 64 MiB mount shared by a module's tests."""
    with served(tmp_path_factory.mktemp("shared") / "mnt") as server:
        yield server


@pytest.fixture
def workdir(mkwritefs: Server, request: pytest.FixtureRequest) -> Iterator[Path]:
    """A fresh directory in the shared mount, removed after the test."""
    path = Path(mkwritefs.mountpoint) / request.node.name.replace("/", "_")[:200]
    path.mkdir()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None:
        skip = pytest.mark.skip(reason="needs /dev/fuse and fusermount3")
        for item in items:
            if item.get_closest_marker("mount"):
                item.add_marker(skip)
