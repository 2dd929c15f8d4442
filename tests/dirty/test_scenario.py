"""``mkwritefs scenario run dirty-throttle``: the runner's JSON reports the dirty model's
peak and limit, and ``--plot FILE`` draws its time series (one PNG per policy)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest


def _mkwritefs(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fusefs", *args], capture_output=True,
                          text=True, check=False, timeout=300)  # fmt: skip


@pytest.mark.mount
def test_dirty_throttle_reports_peak_and_limit_and_plots(tmp_path: Path) -> None:
    out = tmp_path / "dirty.png"
    result = _mkwritefs("scenario", "run", "dirty-throttle", "--json", "--plot", str(out))
    assert result.returncode == 0, result.stderr
    policies = json.loads(result.stdout)["policies"]
    reserve, fuse = policies["reserve"]["counters"], policies["fuse"]["counters"]
    assert reserve["dirty_limit_pages"] == 1638
    assert 1228 < reserve["max_dirty_pages"] <= 1638  # throttled above freerun, held
    assert fuse["dirty_limit_pages"] == 16  # FUSE: 1 % of thresh, strictlimit
    assert fuse["max_dirty_pages"] <= 32  # its first 32 pages are dirtied before a look
    for policy in ("reserve", "fuse"):
        assert (tmp_path / f"dirty-{policy}.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.mount
def test_plot_of_a_scenario_without_the_model_is_a_usage_error(tmp_path: Path) -> None:
    out = tmp_path / "none.png"
    result = _mkwritefs("scenario", "run", "row01-full-fs-store-into-hole", "--policy",
                        "reserve", "--plot", str(out))  # fmt: skip
    assert result.returncode == 2
    assert "records no dirty-page series" in result.stderr
    assert not out.exists()


@pytest.mark.mount
def test_four_writers_before_the_page_is_writable_never_pass_the_limit(tmp_path: Path) -> None:
    out = tmp_path / "four.png"
    result = _mkwritefs("scenario", "run", "dirty-throttle-4-writers", "--json",
                        "--plot", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    policies = json.loads(result.stdout)["policies"]
    reserve, fuse = policies["reserve"]["counters"], policies["fuse"]["counters"]
    assert reserve["stores_acknowledged"] == fuse["stores_acknowledged"] == 3000
    assert reserve["dirty_limit_pages"] == 1638
    assert 1433 < reserve["max_dirty_pages"] <= 1638  # past the setpoint, never the limit
    assert fuse["dirty_limit_pages"] == 16  # the FUSE device's own share is the cap
    assert 12 < fuse["max_dirty_pages"] <= 16
    for policy in ("reserve", "fuse"):
        assert (tmp_path / f"four-{policy}.png").read_bytes()[:4] == b"\x89PNG"
        with open(tmp_path / f"four-{policy}.csv") as f:
            rows = list(csv.DictReader(f))
        for i in range(4):  # each writer's series under its process's name
            assert {f"writer{i}:rate", f"writer{i}:pause_ms"} <= set(rows[0])
        late = rows[len(rows) // 2 :]
        rates = [sum(float(r[f"writer{i}:rate"]) for r in late) for i in range(4)]
        assert sum(rates) ** 2 / (4 * sum(x * x for x in rates)) >= 0.9  # Jain: fair
        assert max(int(r["dirty"]) for r in rows) <= int(rows[0]["limit"])
