"""Fixtures for the in-process tests of the filesystem core: a small filesystem whose
invariants (fsck) are checked after every test that uses it."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from fusefs.fs.core import ROOT_INO, Ctx, Filesystem

ROOT = Ctx(uid=0, gid=0, pid=1)
USER = Ctx(uid=1000, gid=1000, pid=2, umask=0o022)
PAGE = 4096


@pytest.fixture
def fs() -> Iterator[Filesystem]:
    """A 16-block filesystem, fsck'ed when the test ends."""
    fs = Filesystem(capacity_blocks=16, uid=0, gid=0)
    yield fs
    fs.check()


def create(fs: Filesystem, name: bytes, parent: int = ROOT_INO, ctx: Ctx = ROOT) -> tuple[int, int]:
    """Create a regular file; return (fh, ino)."""
    fh, attr = fs.create(parent, name, 0o644, os.O_RDWR | os.O_CREAT, ctx)
    return fh, attr.ino


def used(fs: Filesystem) -> int:
    stats = fs.statistics()
    return stats.allocated_blocks + stats.reserved_blocks
