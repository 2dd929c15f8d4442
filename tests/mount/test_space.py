"""Space through a real mount: ENOSPC from write(2), and df, statvfs and xattrs agreeing.

Without the kernel's writeback cache every write(2) reaches the server before it
returns, so the filesystem can refuse it: a write that needs more blocks than are free
writes what fits (short count), the next one fails with ENOSPC, and every byte that was
acknowledged reads back. Freed space returns at once.
"""

from __future__ import annotations

import errno
import mmap
import os
import subprocess
from collections.abc import Callable
from pathlib import Path

import pyfuse3
import pytest

from .conftest import Server
from .support import BLOCK, FALLOC_FL_KEEP_SIZE, fallocate, wait_until

pytestmark = pytest.mark.mount

ROOT_NAMES = ("capacity_blocks", "free_blocks", "reserved_blocks", "allocated_blocks")


def figures(path: Path | str, names: tuple[str, ...] = ROOT_NAMES) -> dict[str, int]:
    return {n: int(os.getxattr(path, f"user.mkwritefs.{n}")) for n in names}


def df_blocks(path: Path) -> tuple[int, int, int]:
    """(size, used, avail) in 4096-byte blocks, as df(1) prints them."""
    out = subprocess.run(
        ["df", "-B4096", "--output=size,used,avail", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")[1]
    size, used, avail = (int(x) for x in out.split())
    return size, used, avail


def fill(fd: int, chunk: bytes) -> tuple[bytes, OSError]:
    """write(2) `chunk` until it fails; returns what was acknowledged, and the error."""
    acknowledged = bytearray()
    while True:
        try:
            n = os.write(fd, chunk)
        except OSError as exc:
            return bytes(acknowledged), exc
        acknowledged += chunk[:n]


def test_enospc_through_write(mount_factory: Callable[..., Server]) -> None:
    mnt = Path(mount_factory(size="1M").mountpoint)
    before = os.statvfs(mnt)
    assert before.f_blocks == 256
    free = before.f_bfree
    chunk = os.urandom(7 * BLOCK + 123)  # not block aligned: the last write is short
    fd = os.open(mnt / "fill", os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        acknowledged, error = fill(fd, chunk)
    finally:
        os.close(fd)
    assert error.errno == errno.ENOSPC
    assert len(acknowledged) == free * BLOCK  # every free block used, none over-committed
    after = os.statvfs(mnt)
    assert (after.f_bfree, after.f_bavail) == (0, 0)
    assert (mnt / "fill").read_bytes() == acknowledged
    assert (mnt / "fill").stat().st_blocks == free * BLOCK // 512

    # df and the xattr figures agree with each other and with the file's block use.
    fig = figures(mnt)
    assert fig["free_blocks"] == 0
    assert fig["allocated_blocks"] + fig["reserved_blocks"] == fig["capacity_blocks"]
    assert df_blocks(mnt) == (fig["capacity_blocks"], fig["capacity_blocks"], 0)

    # Overwriting blocks already allocated needs no space, even on a full filesystem.
    with (mnt / "fill").open("r+b") as f:
        f.write(b"overwritten")
    assert (mnt / "fill").read_bytes()[:11] == b"overwritten"

    # Unlink returns the space.
    (mnt / "fill").unlink()
    wait_until(lambda: os.statvfs(mnt).f_bfree == free, "freed blocks back in statvfs")
    assert df_blocks(mnt) == (256, 256 - free, free)


def test_short_write_then_enospc(mount_factory: Callable[..., Server]) -> None:
    mnt = Path(mount_factory(size="64k").mountpoint)  # 16 blocks
    free = os.statvfs(mnt).f_bfree
    fd = os.open(mnt / "f", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        head = b"h" * ((free - 1) * BLOCK + 100)
        assert os.write(fd, head) == len(head)
        # Needs the rest of the last free block and two more: only the first part fits.
        assert os.write(fd, b"t" * (2 * BLOCK)) == BLOCK - 100
        with pytest.raises(OSError, match=r"^\[Errno 28\] "):
            os.write(fd, b"t")
        assert os.pread(fd, free * BLOCK + 10, 0) == head + b"t" * (BLOCK - 100)
        # A hole elsewhere cannot be filled either, but the failure changed nothing.
        with pytest.raises(OSError, match=r"^\[Errno 28\] "):
            os.pwrite(fd, b"x", 100 * BLOCK)
        assert os.fstat(fd).st_size == free * BLOCK
    finally:
        os.close(fd)
    assert os.statvfs(mnt).f_bfree == 0
    os.truncate(mnt / "f", BLOCK)  # truncate returns space at once
    assert os.statvfs(mnt).f_bfree == free - 1


def test_many_files_until_enospc_then_free_one(mount_factory: Callable[..., Server]) -> None:
    mnt = Path(mount_factory(size="256k").mountpoint)  # 64 blocks
    free = os.statvfs(mnt).f_bfree
    written: dict[str, bytes] = {}
    for i in range(free):
        written[f"f{i}"] = os.urandom(BLOCK)
        (mnt / f"f{i}").write_bytes(written[f"f{i}"])
    with pytest.raises(OSError, match=r"^\[Errno 28\] "):
        (mnt / "one-too-many").write_bytes(b"x")
    assert (mnt / "one-too-many").stat().st_size == 0
    for name, data in written.items():
        assert (mnt / name).read_bytes() == data
    fig = figures(mnt)
    used = sum((mnt / name).stat().st_blocks // 8 for name in written)
    assert fig["allocated_blocks"] + fig["reserved_blocks"] == used == free
    (mnt / "f0").unlink()
    wait_until(lambda: os.statvfs(mnt).f_bfree == 1, "one block free again")
    (mnt / "again").write_bytes(b"fits now")
    assert (mnt / "again").read_bytes() == b"fits now"


def test_writeback_cache_acknowledges_first_and_fails_at_fsync(
    mount_factory: Callable[..., Server],
) -> None:
    # --writeback-cache: the kernel's page cache takes write(2) before we see the data,
    # so a write past the capacity "succeeds" and ENOSPC surfaces only at fsync.
    mnt = Path(mount_factory(size="1M", extra=("--writeback-cache",)).mountpoint)
    capacity = os.statvfs(mnt).f_blocks
    fd = os.open(mnt / "f", os.O_CREAT | os.O_WRONLY, 0o644)
    try:
        acknowledged = sum(os.write(fd, b"w" * 65536) for _ in range(32))  # 2 MiB
        assert acknowledged == 2 * capacity * BLOCK
        with pytest.raises(OSError, match=r"^\[Errno 28\] "):
            os.fsync(fd)
    finally:
        os.close(fd)
    fig = figures(mnt)
    assert fig["free_blocks"] == 0
    assert fig["allocated_blocks"] + fig["reserved_blocks"] == capacity  # never over-committed


def test_fallocated_space_survives_a_full_filesystem(
    mount_factory: Callable[..., Server],
) -> None:
    # The point of fallocate: once it succeeded, writes and mapped stores into the
    # range cannot fail for space, however full the filesystem gets meanwhile.
    assert hasattr(pyfuse3.Operations, "fallocate"), "run scripts/setup (pyfuse3 patch)"
    mnt = Path(mount_factory(size="64k").mountpoint)  # 16 blocks
    keep = os.open(mnt / "kept", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fallocate(keep, FALLOC_FL_KEEP_SIZE, 0, 4 * BLOCK)
        os.posix_fallocate(keep, 4 * BLOCK, 2 * BLOCK)  # mode 0: the size grows
        assert os.fstat(keep).st_size == 6 * BLOCK
        fd = os.open(mnt / "filler", os.O_CREAT | os.O_WRONLY, 0o644)
        try:
            _acknowledged, error = fill(fd, b"f" * BLOCK)
        finally:
            os.close(fd)
        assert error.errno == errno.ENOSPC
        assert os.statvfs(mnt).f_bfree == 0
        assert os.pwrite(keep, b"k" * (3 * BLOCK), 0) == 3 * BLOCK
        with mmap.mmap(keep, 6 * BLOCK, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE) as m:
            m[5 * BLOCK : 5 * BLOCK + 4] = b"mmap"
            m.flush()  # writeback finds the blocks fallocate promised
        os.posix_fadvise(keep, 0, 0, os.POSIX_FADV_DONTNEED)
        assert os.pread(keep, 3 * BLOCK, 0) == b"k" * (3 * BLOCK)
        assert os.pread(keep, 4, 5 * BLOCK) == b"mmap"
    finally:
        os.close(keep)
