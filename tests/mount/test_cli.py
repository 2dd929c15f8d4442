"""The mkwritefs command and the mount lifecycle, run as a user would run them.

Covers the background mount (returns once ready), umount (waits for the server; clears
a mount whose server was killed), SIGTERM, an unmount from outside, `stat`, and bad
input: one line on stderr, exit status 2, nothing mounted.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from fusefs.cli.main import main
from fusefs.cli.mount import find_mount, has_exited

from .conftest import Server, start_server, stop_server
from .support import BLOCK, cli

pytestmark = pytest.mark.mount


def _one_line_usage_error(result: subprocess.CompletedProcess[str], words: str) -> None:
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert words in lines[0]


def test_background_mount_and_umount(tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    result = cli("mount", str(mnt), "--size", "8M")
    try:
        assert result.returncode == 0, result.stderr
        assert os.path.ismount(mnt)  # ready when the command returned
        assert find_mount(str(mnt)) == "fuse.mkwritefs"
        assert os.statvfs(mnt).f_blocks == 8 * 2**20 // BLOCK
        (mnt / "f").write_bytes(b"data")
        assert (mnt / "f").read_bytes() == b"data"
        servers = _pids_with_cmdline(str(mnt))
        assert len(servers) == 1
        result = cli("umount", str(mnt))
        assert result.returncode == 0, result.stderr
        assert find_mount(str(mnt)) is None
        assert has_exited(servers[0])  # umount waited for it
    finally:
        if find_mount(str(mnt)) is not None:
            subprocess.run(["fusermount3", "-uz", str(mnt)], check=False)


def _pids_with_cmdline(mountpoint: str) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if b"mount" in argv and mountpoint.encode() in argv:
            pids.append(int(entry))
    return pids


def test_sigkill_leaves_a_dead_mount_that_cleanup_clears(tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    server = start_server(str(mnt))
    try:
        (mnt / "f").write_bytes(b"x")
        server.proc.kill()
        server.proc.wait(timeout=10)
        with pytest.raises(OSError, match="Transport endpoint is not connected"):
            os.stat(mnt / "f")
        assert find_mount(str(mnt)) == "fuse.mkwritefs"  # still mounted, but dead
        result = cli("umount", str(mnt))
        assert result.returncode == 0, result.stderr
        assert find_mount(str(mnt)) is None
        assert os.listdir(mnt) == []
    finally:
        stop_server(server)


def test_fixture_teardown_survives_a_killed_server(tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    server = start_server(str(mnt))
    fd = os.open(mnt / "busy", os.O_CREAT | os.O_RDWR, 0o644)  # makes plain -u fail
    try:
        os.kill(server.proc.pid, signal.SIGKILL)
        server.proc.wait(timeout=10)
        stop_server(server)  # what every fixture runs in `finally`
        assert server.stopped
        assert not server.is_mounted()
        assert server.proc.returncode == -signal.SIGKILL
    finally:
        try:
            os.close(fd)
        except OSError:  # ENOTCONN: the FLUSH for this close had no server to go to
            pass
        stop_server(server)


def test_sigterm_unmounts_cleanly(tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    server = start_server(str(mnt))
    try:
        (mnt / "f").write_bytes(b"x")
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(timeout=30) == 0, server.log()
        assert not server.is_mounted()
        assert "Traceback" not in server.log()
    finally:
        stop_server(server)


def test_unmount_from_outside_ends_the_server(mount_factory: Callable[..., Server]) -> None:
    server = mount_factory()
    subprocess.run(["fusermount3", "-u", server.mountpoint], check=True)
    assert server.proc.wait(timeout=30) == 0, server.log()
    assert "Traceback" not in server.log()


def test_stat_json_for_the_filesystem_and_a_file(mount_factory: Callable[..., Server]) -> None:
    mnt = Path(mount_factory(size="4M").mountpoint)
    (mnt / "f").write_bytes(b"x" * (3 * BLOCK))
    result = cli("stat", str(mnt), "--json")
    assert result.returncode == 0, result.stderr
    fs = json.loads(result.stdout)
    assert fs["kind"] == "filesystem"
    assert fs["capacity_blocks"] == 1024
    assert fs["free_blocks"] == os.statvfs(mnt).f_bfree
    assert fs["allocated_blocks"] + fs["reserved_blocks"] == 1024 - fs["free_blocks"]
    result = cli("stat", str(mnt / "f"), "--json")
    assert result.returncode == 0, result.stderr
    f = json.loads(result.stdout)
    assert f["kind"] == "file"
    assert f["allocated_blocks"] + f["reserved_blocks"] == 3
    assert set(f) == {
        "path",
        "kind",
        "allocated_blocks",
        "reserved_blocks",
        "dirty_pages",
        "mkwrite_calls",
        "sigbus",
        "writeback_errors",
        "lost_bytes",
    }
    assert fs["policy"] == "reserve"
    assert fs["lost_bytes"] == fs["sigbus"] == 0
    text = cli("stat", str(mnt))
    assert "capacity_blocks" in text.stdout
    assert "1024" in text.stdout


def test_stat_outside_mkwritefs_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"")
    _one_line_usage_error(cli("stat", str(tmp_path / "f")), "not on a mkwritefs")
    _one_line_usage_error(cli("stat", str(tmp_path / "missing")), "no such file")


@pytest.mark.parametrize(
    ("size", "words"),
    [("12Q", "invalid size"), ("0", "at least one block"), ("-5M", "invalid"), ("1.5G", "invalid")],
)
def test_bad_size(tmp_path: Path, size: str, words: str) -> None:
    _one_line_usage_error(cli("mount", str(tmp_path), f"--size={size}"), words)
    assert find_mount(str(tmp_path)) is None


def test_bad_mount_points(tmp_path: Path) -> None:
    _one_line_usage_error(cli("mount", str(tmp_path / "missing")), "not an existing directory")
    (tmp_path / "file").write_bytes(b"")
    _one_line_usage_error(cli("mount", str(tmp_path / "file")), "not an existing directory")
    _one_line_usage_error(cli("mount", str(tmp_path)), "not empty")
    assert find_mount(str(tmp_path)) is None


def test_mounting_twice_is_refused(mount_factory: Callable[..., Server]) -> None:
    server = mount_factory()
    _one_line_usage_error(cli("mount", server.mountpoint), "already a mount point")


def test_umount_of_something_else_is_refused(tmp_path: Path) -> None:
    _one_line_usage_error(cli("umount", str(tmp_path)), "not a mount point")
    _one_line_usage_error(cli("umount", "/proc"), "not mkwritefs")


@pytest.mark.skipif(
    os.getuid() != 0 or shutil.which("unshare") is None,
    reason="needs root and unshare(1) for a private mount namespace",
)
def test_missing_dev_fuse(tmp_path: Path) -> None:
    # In a private mount namespace, hide /dev behind an empty tmpfs.
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    script = (
        f"mount -t tmpfs none /dev && exec {shutil.which('env')} "
        f"{' '.join(_python_cli())} mount {mnt}"
    )
    result = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    _one_line_usage_error(result, "/dev/fuse is missing")


def _python_cli() -> list[str]:
    import sys

    return [sys.executable, "-m", "fusefs"]


def test_non_root_without_fusermount3(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # In-process: an unprivileged user (getuid faked) whose PATH has no fusermount3.
    monkeypatch.setattr(os, "getuid", lambda: 1000)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["mount", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "fusermount3 not found" in err
    assert find_mount(str(tmp_path)) is None


def test_umount_of_a_busy_mount_needs_lazy(tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    server = start_server(str(mnt))
    try:
        fd = os.open(mnt / "open", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            busy = cli("umount", str(mnt))
            assert busy.returncode == 1
            assert "busy" in busy.stderr
            assert "--lazy" in busy.stderr
            assert server.is_mounted()
            os.write(fd, b"still served")  # nothing was lost or detached
            assert os.pread(fd, 100, 0) == b"still served"
            assert cli("umount", "--lazy", str(mnt)).returncode == 0
            assert not server.is_mounted()
        finally:
            os.close(fd)
        assert server.proc.wait(timeout=30) == 0  # exits with the last close
    finally:
        stop_server(server)


def test_mount_point_with_a_space_in_its_name(tmp_path: Path) -> None:
    mnt = tmp_path / "my mount"
    mnt.mkdir()
    result = cli("mount", str(mnt), "--size", "1M")
    try:
        assert result.returncode == 0, result.stderr
        assert find_mount(str(mnt)) == "fuse.mkwritefs"
        stat_result = cli("stat", str(mnt), "--json")
        assert json.loads(stat_result.stdout)["capacity_blocks"] == 256
        assert cli("umount", str(mnt)).returncode == 0
        assert find_mount(str(mnt)) is None
    finally:
        if find_mount(str(mnt)) is not None:
            subprocess.run(["fusermount3", "-uz", str(mnt)], check=False)
