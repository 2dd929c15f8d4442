"""The root's settings and the write-notification counters through a real mount."""

from __future__ import annotations

import errno
import os
import tempfile

import pytest

from tests.mount.conftest import start_server, stop_server

pytestmark = pytest.mark.mount

P = "user.mkwritefs."


def test_settings_and_counters_through_the_mount() -> None:
    mnt = tempfile.mkdtemp(prefix="mkwritefs-vm-")
    server = start_server(mnt, size="64K")  # 16 blocks
    try:
        assert os.getxattr(mnt, P + "policy") == b"reserve"
        for name in ("mkwrite_calls", "sigbus", "writeback_errors", "lost_bytes"):
            assert os.getxattr(mnt, P + name) == b"0"
        os.setxattr(mnt, P + "policy", b"fuse")
        assert os.getxattr(mnt, P + "policy") == b"fuse"
        with pytest.raises(OSError, match="Invalid argument") as exc:
            os.setxattr(mnt, P + "policy", b"bogus")
        assert exc.value.errno == errno.EINVAL
        assert os.getxattr(mnt, P + "policy") == b"fuse"
        path = os.path.join(mnt, "f")
        with open(path, "wb") as f:
            f.write(b"x" * 3 * 4096)
        with pytest.raises(OSError, match="Invalid argument") as exc:
            os.setxattr(mnt, P + "capacity_blocks", b"2")
        assert exc.value.errno == errno.EINVAL
        os.setxattr(mnt, P + "capacity_blocks", b"8")
        assert os.statvfs(mnt).f_blocks == 8
        os.setxattr(mnt, P + "writeback_interval", b"0.1")
        assert os.getxattr(mnt, P + "writeback_interval") == b"0.1"
        assert os.getxattr(path, P + "mkwrite_calls") == b"0"
        assert P + "policy" not in os.listxattr(mnt)
    finally:
        stop_server(server)
        os.rmdir(mnt)
