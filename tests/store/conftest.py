"""Fixtures for store tests: a fresh store, and mounts of it served by another process.

`new_store(size)` runs `mkwritefs mkfs` and returns the path; `mount_store(store)` mounts
it (`mkwritefs mount DIR --store STORE --foreground`, through tests.mount.conftest's
start_server) and every server is stopped (unmounted) at teardown, whatever happened.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.mount.conftest import Server, mount_factory, start_server, stop_server
from tests.mount.support import cli

__all__ = ["mount_factory"]  # a fixture, re-exported for the tests here

STORE_SIZE = "16M"


@pytest.fixture
def new_store(tmp_path: Path) -> Callable[..., Path]:
    count = 0

    def make(size: str = STORE_SIZE) -> Path:
        nonlocal count
        count += 1
        path = tmp_path / f"store{count}.db"
        result = cli("mkfs", str(path), "--size", size)
        assert result.returncode == 0, result.stderr
        return path

    return make


@pytest.fixture
def mount_store(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """mount_store(store, size=STORE_SIZE) -> Server; stopped at teardown."""
    servers: list[Server] = []

    def start(store: Path, size: str = STORE_SIZE, extra: tuple[str, ...] = ()) -> Server:
        mountpoint = tmp_path / f"mnt{len(servers)}"
        mountpoint.mkdir()
        server = start_server(str(mountpoint), size=size, extra=("--store", str(store), *extra))
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            if not server.stopped:
                stop_server(server)


def fsck(store: Path, *args: str) -> tuple[int, str]:
    result = cli("fsck", str(store), *args)
    return result.returncode, result.stdout + result.stderr
