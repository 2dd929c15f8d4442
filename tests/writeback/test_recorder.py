"""The time series: what it records, as CSV and as a PNG."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from trio.testing import MockClock

from tests.writeback.helpers import run_writers


async def test_series_has_thresholds_device_and_each_writer(
    tmp_path: Path, autojump_clock: MockClock
) -> None:
    run = await run_writers(4, seconds=12.0, settle=6.0)
    rec = run.recorder
    path = tmp_path / "dirty.csv"
    rows = list(csv.DictReader(io.StringIO(rec.to_csv(path))))
    assert path.read_text() == rec.to_csv()
    assert len(rows) == len(rec.rows) >= 40  # every 0.25 s for 12 s
    for col in ("time", "dirty", "thresh", "bg_thresh", "freerun", "setpoint", "limit"):
        assert col in rows[0]
    for i in range(4):
        assert f"w{i}:rate" in rows[-1]
        assert f"w{i}:pause_ms" in rows[-1]
    assert {int(r["limit"]) for r in rows} == {1638}
    assert max(int(r["dirty"]) for r in rows) <= run.domain.max_dirty
    late = [r for r in rows if float(r["time"]) - float(rows[0]["time"]) > 6.0]
    total = sum(float(r[f"w{i}:rate"]) for r in late for i in range(4)) / len(late)
    assert abs(total - 256.0) <= 0.2 * 256.0  # the series shows the convergence too
    assert any(float(r["w0:pause_ms"]) > 0 for r in late)


async def test_plot_writes_a_png(tmp_path: Path, autojump_clock: MockClock) -> None:
    pytest.importorskip("matplotlib")
    run = await run_writers(2, seconds=4.0, settle=2.0)
    out = tmp_path / "dirty.png"
    assert run.recorder.plot(out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
