"""The root's ``user.mkwritefs.fsck``: the filesystem's invariant checks run on demand, so
tests and soaks on a real mount can ask the server itself whether its books balance."""

from __future__ import annotations

import os

from fusefs.fs.core import ROOT_INO, Ctx, Filesystem

ROOT = Ctx(uid=0, gid=0, pid=1)
FSCK = b"user.mkwritefs.fsck"


async def test_fsck_says_clean_then_names_a_broken_invariant() -> None:
    fs = Filesystem(capacity_blocks=16, uid=0, gid=0)
    fh, attr = fs.create(ROOT_INO, b"f", 0o644, os.O_RDWR | os.O_CREAT, ROOT)
    await fs.write(fh, 0, b"x" * 5000)
    assert fs.getxattr(ROOT_INO, FSCK, ROOT) == b"clean"
    fs.space._allocated += 1  # a bug: a block the pool counts but no file holds
    verdict = fs.getxattr(ROOT_INO, FSCK, ROOT)
    assert verdict.startswith(b"corrupt: ")
    assert b"pool says" in verdict
    fs.space._allocated -= 1
    assert fs.getxattr(ROOT_INO, FSCK, ROOT) == b"clean"
