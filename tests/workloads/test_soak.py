"""scripts/soak: refuses bad arguments with one clear line (exit 2, nothing mounted); a
few seconds of it mount, run workloads, report and unmount. The hour-long run is not
part of any test run (see README, "Hardening")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SOAK = str(Path(__file__).resolve().parents[2] / "scripts" / "soak.py")

pytestmark = pytest.mark.mount


def _mounts_under(path: Path) -> list[str]:
    return [line for line in Path("/proc/mounts").read_text().splitlines() if f" {path}/" in line]


def _soak(tmp: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """scripts/soak.py ARGS with its temporary directory (and mount) under `tmp`."""
    return subprocess.run(
        [sys.executable, SOAK, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "TMPDIR": str(tmp)},
    )


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--duration", "-3"), "--duration: '-3' is not a positive number of seconds"),
        (("--duration", "soon"), "--duration: 'soon' is not a number of seconds"),
        (("--size", "12Q"), "soak: the mount failed: mkwritefs mount: invalid size '12Q'"),
    ],
)
def test_bad_arguments_are_refused_with_one_line(
    tmp_path: Path, args: tuple[str, ...], says: str
) -> None:
    ran = _soak(tmp_path, *args)
    assert ran.returncode == 2
    assert ran.stdout == ""
    assert says in ran.stderr.strip().splitlines()[-1]
    assert _mounts_under(tmp_path) == []
    assert os.listdir(tmp_path) == []  # its temporary directory removed too


def test_a_short_soak_runs_reports_and_unmounts(tmp_path: Path) -> None:
    ran = _soak(tmp_path, "--duration", "1", "--size", "16M", "--seed", "3", "--json")
    summary = json.loads(ran.stdout)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert summary["ok"] is True
    assert summary["bad_errors"] == {}
    assert summary["operations"] > 0
    assert summary["bytes_verified"] > 0
    assert summary["space_checks"] == sum(summary["workload_runs"].values()) >= 1
    assert summary["peak_rss_bytes"] >= summary["rss_end_bytes"] > 0
    assert "mounted on" in ran.stderr  # progress goes to stderr under --json
    assert _mounts_under(tmp_path) == []
    assert os.listdir(tmp_path) == []
