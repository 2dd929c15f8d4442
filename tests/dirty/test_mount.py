"""The dirty model on a real mount (served by a separate process): the owner turns it on
and sets it through the root's user.mkwritefs.* xattrs, write(2) through the kernel is
counted, bad values change nothing; ``mkwritefs stat`` prints the simulated values beside
what the kernel set for the mount's backing device (/sys/class/bdi/<major:minor>)."""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from fusefs.probe.realbdi import SYSFS_BDI, device_of, read_real_bdi
from tests.mount.conftest import Server, served, start_server, stop_server
from tests.mount.support import cli

PAGE = 4096
X = "user.mkwritefs."


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with served(tmp_path / "mnt") as srv:
        yield srv


def _get(mnt: str, name: str) -> bytes:
    return os.getxattr(mnt, X + name)


def _errno(fn, *args) -> int:  # noqa: ANN001
    try:
        fn(*args)
    except OSError as exc:
        return exc.errno or 0
    raise AssertionError(f"{fn.__name__}{args} did not fail")


@pytest.mark.mount
def test_owner_turns_the_model_on_and_sets_it(server: Server) -> None:
    mnt = server.mountpoint
    assert _get(mnt, "dirty_throttle") == b"none"
    assert _errno(_get, mnt, "dirty_pages") == errno.ENODATA  # no model, no figures
    os.setxattr(mnt, X + "dirty_ratio", b"10")
    os.setxattr(mnt, X + "dirty_throttle", b"modern")
    assert _get(mnt, "dirty_limit_pages") == b"819"  # 10 % of 8192 simulated pages
    assert _errno(os.setxattr, mnt, X + "dirty_ratio", b"250") == errno.EINVAL
    assert _errno(os.setxattr, mnt, X + "strictlimit", b"yes") == errno.EINVAL
    assert _errno(os.setxattr, mnt, X + "dirty_pages", b"0") == errno.EPERM
    assert _get(mnt, "dirty_ratio") == b"10"  # unchanged by the refused values
    with open(os.path.join(mnt, "f"), "wb") as f:
        f.write(b"d" * (64 * PAGE))
        f.flush()
        dirty = int(_get(mnt, "dirty_pages"))
        assert 0 < dirty <= 64  # counted by the model (the flusher may have begun)
        os.fsync(f.fileno())
    assert int(_get(mnt, "dirty_pages")) == 0
    os.setxattr(mnt, X + "max_ratio", b"5")
    os.setxattr(mnt, X + "strictlimit", b"1")
    assert (_get(mnt, "max_ratio"), _get(mnt, "strictlimit")) == (b"5", b"1")
    assert _errno(os.setxattr, mnt, X + "dirty_throttle", b"none") == errno.EBUSY


@pytest.mark.mount
def test_stat_shows_the_kernel_bdi_beside_the_simulated(server: Server) -> None:
    mnt = server.mountpoint
    st = os.stat(mnt)
    device = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
    assert device_of(mnt) == device  # mountinfo names the mount's st_dev
    real = read_real_bdi(mnt)
    base = Path(SYSFS_BDI) / device
    assert real.max_ratio == int((base / "max_ratio").read_text())
    assert real.max_ratio == 1  # fuse_bdi_init
    if (base / "strict_limit").exists():
        assert real.strict_limit == int((base / "strict_limit").read_text())
    result = cli("stat", mnt, "--json")
    assert result.returncode == 0, result.stderr
    dirty = json.loads(result.stdout)["dirty"]
    assert dirty["kernel"]["max_ratio"] == 1
    assert dirty["simulated"]["dirty_throttle"] == "none"
    assert dirty["simulated"]["max_ratio"] == "100"  # the default policy models ext4's bdi
    text = cli("stat", mnt).stdout
    assert f"kernel bdi {device}" in text
    assert [line.split() for line in text.splitlines() if "max_ratio" in line] == [
        ["max_ratio", "100", "1"]
    ]


@pytest.mark.mount
def test_mount_option_turns_the_model_on_as_set_does(tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    extra = ("--dirty-throttle", "crude", "--dirty-placement", "before")
    srv = start_server(str(mnt), size="64M", extra=extra)
    try:
        m = srv.mountpoint
        assert (_get(m, "dirty_throttle"), _get(m, "dirty_placement")) == (b"crude", b"before")
        assert _get(m, "dirty_limit_pages") == b"1638"  # 20 % of 8192 simulated pages
        with open(os.path.join(m, "f"), "wb") as f:
            f.write(b"d" * (32 * PAGE))
            f.flush()
            assert 0 < int(_get(m, "dirty_pages")) <= 32  # counted from the first write
            os.fsync(f.fileno())
        assert int(_get(m, "dirty_pages")) == 0
        result = cli("set", m, "dirty_throttle=modern")  # and switched later, as ever
        assert result.returncode == 0, result.stderr
        assert _get(m, "dirty_throttle") == b"modern"
    finally:
        stop_server(srv)


@pytest.mark.mount
def test_mount_option_refuses_a_bad_model_and_mounts_nothing(tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    for bad in (("--dirty-throttle", "fast"), ("--dirty-placement", "during")):
        result = cli("mount", str(mnt), *bad)
        assert result.returncode == 2
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "invalid choice" in result.stderr
        assert not os.path.ismount(mnt)
