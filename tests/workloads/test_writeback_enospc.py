"""A store through a real shared mapping that only partly fits: msync must say ENOSPC.

The kernel writes a mapping's dirty pages back in WRITE requests of many pages and
ignores the count the server answers (fuse_writepage_end looks only at the error), so a
server that wrote what fits and answered a short count lost the rest silently while
msync returned 0. The mount answers a writeback WRITE that does not wholly fit with
ENOSPC (pyfuse3's writepage, patched by scripts/setup), which msync reports.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from fusefs.probe import workloads
from tests.workloads.conftest import check_mount

pytestmark = pytest.mark.mount

STORE = r"""
import mmap, os, sys
path, pages = sys.argv[1], int(sys.argv[2])
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
os.ftruncate(fd, pages * 4096)
m = mmap.mmap(fd, pages * 4096, mmap.MAP_SHARED)
m[:] = b"\x5a" * (pages * 4096)
try:
    m.flush()
    print("msync 0")
except OSError as exc:
    print(f"msync {exc.errno}")
"""


def test_msync_says_enospc_when_the_writeback_only_partly_fits(mount_factory) -> None:
    server = mount_factory(size="12k")  # three blocks; the store dirties sixteen pages
    path = f"{server.mountpoint}/f"
    ran = subprocess.run(
        [sys.executable, "-c", STORE, path, "16"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert ran.stdout.split() == ["msync", "28"]
    check_mount(server, workloads.Outcome("store into a nearly full mount"))


def test_msync_says_0_when_it_all_fits_and_the_data_is_there(mount_factory) -> None:
    server = mount_factory(size="128k")
    path = f"{server.mountpoint}/f"
    ran = subprocess.run(
        [sys.executable, "-c", STORE, path, "16"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert ran.stdout.split() == ["msync", "0"]
    workloads.drop_cache(path)
    with open(path, "rb") as f:
        assert f.read() == b"\x5a" * 16 * 4096
    check_mount(server, workloads.Outcome("store into a roomy mount"))
