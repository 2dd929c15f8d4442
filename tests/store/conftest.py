"""Fixtures for store tests: a fresh store, and mounts of it served by another process.

`new_store(size)` runs `mkwritefs mkfs` and returns the path; `mount_store(store)` mounts
it (`mkwritefs mount DIR --store STORE --foreground`, through tests.mount.conftest's
start_server, via mount_factory) and every server is stopped at teardown, whatever happened.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.mount.conftest import Server, mount_factory
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
def mount_store(mount_factory: Callable[..., Server]) -> Callable[..., Server]:
    """mount_store(store, size=STORE_SIZE) -> Server; stopped at teardown (mount_factory)."""

    def start(store: Path, size: str = STORE_SIZE, extra: tuple[str, ...] = ()) -> Server:
        return mount_factory(size=size, extra=("--store", str(store), *extra))

    return start


def fsck(store: Path, *args: str) -> tuple[int, str]:
    result = cli("fsck", str(store), *args)
    return result.returncode, result.stdout + result.stderr
