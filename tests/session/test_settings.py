"""`mkwritefs mount --policy` and `mkwritefs set` through a real (background) mount:
the root's user.mkwritefs.* settings, one-line errors, and other users refused."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from collections.abc import Callable

import pytest

from fusefs.cli.main import main

from .conftest import cli

pytestmark = pytest.mark.mount
NOBODY = 65534
Mount = Callable[..., subprocess.CompletedProcess[str]]


def _stat(mnt: str) -> dict[str, object]:
    result = cli("stat", mnt, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _one_line_error(result: subprocess.CompletedProcess[str], words: str) -> None:
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1, result.stderr
    assert words in result.stderr
    assert result.stderr.startswith("mkwritefs set: ")


def test_policy_at_mount_and_set_changes_it(mkwritefs_cli: Mount, mountpoint: str) -> None:
    assert mkwritefs_cli("--size", "1M", "--policy", "legacy").returncode == 0
    assert _stat(mountpoint)["policy"] == "legacy"
    result = cli("set", mountpoint, "policy=fuse", "dirty_expire=2.5", "capacity_blocks=300")
    assert result.returncode == 0, result.stderr
    figures = _stat(mountpoint)
    assert (figures["policy"], figures["dirty_expire"]) == ("fuse", 2.5)
    assert figures["capacity_blocks"] == os.statvfs(mountpoint).f_blocks == 300
    assert os.getxattr(mountpoint, "user.mkwritefs.policy") == b"fuse"


def test_default_policy_is_reserve(mkwritefs_cli: Mount, mountpoint: str) -> None:
    assert mkwritefs_cli("--size", "1M").returncode == 0
    assert _stat(mountpoint)["policy"] == "reserve"


def test_bad_policy_at_mount_mounts_nothing(mkwritefs_cli: Mount, mountpoint: str) -> None:
    result = mkwritefs_cli("--policy", "careful")
    assert result.returncode == 2
    assert "invalid policy" in result.stderr
    assert result.stderr.count("\n") == 1
    assert not os.path.ismount(mountpoint)


def test_set_errors_change_nothing(mkwritefs_cli: Mount, mountpoint: str) -> None:
    assert mkwritefs_cli("--size", "1M").returncode == 0
    (open(os.path.join(mountpoint, "f"), "wb")).close()
    with open(os.path.join(mountpoint, "g"), "wb") as f:
        f.write(b"x" * 8 * 4096)
    before = _stat(mountpoint)
    _one_line_error(cli("set", mountpoint, "policy=careful"), "bad value")
    _one_line_error(cli("set", mountpoint, "capacity_blocks=4"), "bad value")  # < in use
    _one_line_error(cli("set", mountpoint, "colour=blue"), "unknown setting")
    _one_line_error(cli("set", mountpoint, "free_blocks=9"), "not a setting")
    _one_line_error(cli("set", mountpoint, "policy"), "expected KEY=VALUE")
    # An unknown key anywhere: nothing is set, not even the good one before it.
    _one_line_error(cli("set", mountpoint, "policy=legacy", "colour=blue"), "unknown setting")
    _one_line_error(cli("set", os.path.join(mountpoint, "f"), "policy=legacy"), "not a mount point")
    assert _stat(mountpoint) == before


def _as_nobody(cwd: str, fn: Callable[[], int]) -> tuple[int, str]:
    """fn() in a forked child, in `cwd`, after setuid(65534); its exit status and output.

    No exec (the interpreter lives under /root, which that user cannot enter), and the
    child starts in `cwd` because pytest's temporary directories are closed to others.
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 99
        try:
            os.close(r)
            os.dup2(w, 1)
            os.dup2(w, 2)
            sys.stdout = sys.stderr = open(1, "w", closefd=False)  # noqa: SIM115 (not pytest's capture)
            os.chdir(cwd)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            code = fn()
        except BaseException as exc:
            os.write(2, f"{exc!r}\n".encode())
        finally:
            sys.stdout.flush()
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as out:
        text = out.read().decode(errors="replace")
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), text


def _setxattr_errno(mnt: str) -> int:
    try:
        os.setxattr(mnt, "user.mkwritefs.policy", b"legacy")
    except OSError as exc:
        return exc.errno
    return 0


def test_only_the_owner_may_change_settings(mkwritefs_cli: Mount, mountpoint: str) -> None:
    assert mkwritefs_cli("--size", "1M").returncode == 0
    os.chmod(mountpoint, 0o777)  # so the request reaches the filesystem's own check
    code, out = _as_nobody(mountpoint, lambda: _setxattr_errno("."))
    assert code == errno.EPERM, out
    code, out = _as_nobody(mountpoint, lambda: main(["set", ".", "policy=legacy"]))
    assert code == 2
    assert out == "mkwritefs set: only the mount's owner may change settings\n"
    assert _stat(mountpoint)["policy"] == "reserve"
    code, out = _as_nobody(mountpoint, lambda: main(["stat", "."]))  # figures: readable by all
    assert code == 0, out
    assert "policy" in out
