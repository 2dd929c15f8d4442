"""The store's own disk fills up: fsync says ENOSPC, the mount goes on, nothing
acknowledged is lost.

The store lives on a 2 MiB tmpfs mounted for the test (root only), the filesystem in it
is 64 MiB: a write(2) succeeds (memory), the fsync that must put it in the store fails
with ENOSPC as Linux reports a full disk at fsync.  The mount is not stale: it reads,
lists and writes; once space is freed, fsync succeeds again; after an unmount and a
mount everything acknowledged is there and fsck finds the store clean.
"""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import pytest

from tests.mount.conftest import stop_server
from tests.mount.support import cli, raises_errno, wait_until

from .conftest import fsck

pytestmark = [
    pytest.mark.mount,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs: needs root"),
]


@pytest.fixture
def small_disk(tmp_path: Path):
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_store_disk_full(small_disk: Path, mount_store) -> None:
    store = small_disk / "store.db"
    assert cli("mkfs", str(store), "--size", "64M").returncode == 0
    server = mount_store(store, size="64M")
    root = Path(server.mountpoint)
    keep = b"acknowledged " * 8000  # ~100 KiB
    with open(root / "keep", "wb") as f:
        f.write(keep)
        os.fsync(f.fileno())

    big = os.urandom(3 << 20)  # more than the store's disk holds
    fd = os.open(root / "big", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        assert os.write(fd, big) == len(big)  # in memory: fine
        with raises_errno(errno.ENOSPC):
            os.fsync(fd)
        with raises_errno(errno.ENOSPC):  # still not in the store: still an error
            os.fsync(fd)
    finally:
        os.close(fd)

    # the mount goes on: reads, listings, writes
    assert (root / "keep").read_bytes() == keep
    assert (root / "big").read_bytes() == big
    assert sorted(os.listdir(root)) == ["big", "keep"]
    (root / "small").write_bytes(b"still writable")
    assert (root / "small").read_bytes() == b"still writable"

    # space freed: the next fsync commits
    free = os.statvfs(root).f_bfree
    os.unlink(root / "big")
    wait_until(lambda: os.statvfs(root).f_bfree > free, "big's blocks freed")
    with open(root / "after", "wb") as f:
        f.write(b"after the disk was full")
        os.fsync(f.fileno())

    stop_server(server)
    assert fsck(store) == (0, f"{store}: clean\n")
    root = Path(mount_store(store, size="64M").mountpoint)
    assert (root / "keep").read_bytes() == keep
    assert (root / "after").read_bytes() == b"after the disk was full"
    assert (root / "small").read_bytes() == b"still writable"
    assert not (root / "big").exists()
