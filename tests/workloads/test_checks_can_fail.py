"""The workloads' checks catch a wrong byte: a corrupted block fails fio's verification
from the server, and xfs_io's dumps are read back exactly as it printed them."""

from __future__ import annotations

import os
import subprocess

import pytest

from fusefs.probe import workloads
from tests.mount.conftest import Server

pytestmark = pytest.mark.mount


def test_a_corrupted_block_fails_verification(mkwritefs: Server, workdir) -> None:
    out = workloads.fio(str(workdir), name="c", engine="psync", rw="write", size="256k", numjobs=1)
    assert not out.errors, str(out)
    path = os.path.join(str(workdir), "c.0.0")
    job = {"write": {"io_bytes": 256 * 1024}, "error": 0}
    good = workloads._fio_verify_prefix(path, job, bs="4k", batch=0, timeout=60)
    assert (good.bytes_verified, dict(good.errors)) == (256 * 1024, {})
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, b"\xff", 100_000)  # one byte in the 25th block
    finally:
        os.close(fd)
    bad = workloads._fio_verify_prefix(path, job, bs="4k", batch=0, timeout=60)
    assert dict(bad.errors) == {"verify": 1}, str(bad)


def test_pread_dumps_are_parsed_back(tmp_path) -> None:
    path = str(tmp_path / "f")
    ran = subprocess.run(
        [
            "xfs_io",
            "-f",
            "-c",
            "pwrite -S 0x41 0 100",
            "-c",
            "pwrite -S 0x42 100 50",
            "-c",
            "pread -v 90 30",
            "-c",
            "pread -v 0 5",
            path,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert workloads.parse_pread_dumps(ran.stdout) == [
        (90, b"A" * 10 + b"B" * 20),
        (0, b"AAAAA"),
    ]
