"""The simulator beside the real kernel: the probe's cases played in process
(`fusefs.probe.simprobe`) under `fuse` and `reserve`, and the columns they add to
`scripts/real_mmap_enospc.py`'s table.

`fuse` must say what Linux's FUSE does today (the store into a hole is acknowledged, msync
reports ENOSPC, the data is not in the filesystem); `reserve` what ext4 does (SIGBUS at
the store, nothing acknowledged, nothing lost); both keep an overwrite of an allocated
page and a store into a page fallocated before the fill. No mount: virtual time, fast.
"""

from __future__ import annotations

import errno
import importlib.util
import sys
from pathlib import Path

import pytest

from fusefs.probe.realkernel import PAGE, ROWS, Df, Fill, ProbeReport, format_table
from fusefs.probe.simprobe import simulate

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "real_mmap_enospc.py"


@pytest.fixture(scope="module")
def fuse() -> ProbeReport:
    return simulate("fuse", capacity_blocks=64)


@pytest.fixture(scope="module")
def reserve() -> ProbeReport:
    return simulate("reserve", capacity_blocks=64)


def test_fuse_acknowledges_the_store_then_loses_it(fuse: ProbeReport) -> None:
    hole = fuse.case("store_hole")
    assert hole.completed
    assert hole.signal is None
    assert hole.acknowledged_bytes == PAGE
    assert hole.msync_errno == errno.ENOSPC
    assert not hole.data_intact
    assert hole.bytes_lost == PAGE


def test_reserve_refuses_the_store_with_sigbus(reserve: ProbeReport) -> None:
    hole = reserve.case("store_hole")
    assert hole.sigbus
    assert not hole.completed
    assert hole.acknowledged_bytes == 0
    assert hole.msync_errno is None  # never got there
    assert hole.data_intact  # still a hole: nothing acknowledged, nothing lost
    assert hole.df_after == hole.df_before


@pytest.mark.parametrize("policy", ["fuse", "reserve"])
def test_full_fs_overwrite_fallocated_store_and_write(
    policy: str, request: pytest.FixtureRequest
) -> None:
    report: ProbeReport = request.getfixturevalue(policy)
    assert report.df_full.avail == 0
    assert report.fill.write_errno == errno.ENOSPC
    for name in ("store_allocated", "store_fallocated"):
        case = report.case(name)
        assert case.completed
        assert (case.msync_errno, case.fsync_errno) == (0, 0)
        assert case.data_intact
    write = report.case("write_hole")
    assert write.write_errno == errno.ENOSPC  # write(2) reserves synchronously
    assert write.acknowledged_bytes == 0
    assert write.data_intact


@pytest.mark.parametrize("blocks", [8, 64])
def test_fill_takes_every_block_the_set_up_left(blocks: int) -> None:
    """The set-up allocates two blocks (page 0 of rk-partly, the fallocated page); the
    filler's write(2) gets the rest, then ENOSPC - the simulated size is the one asked."""
    report = simulate("reserve", capacity_blocks=blocks)
    assert report.df_full.size == blocks * PAGE
    assert report.fill.bytes_acknowledged == (blocks - 2) * PAGE
    assert report.case("store_allocated").data_intact


def _script() -> object:
    spec = importlib.util.spec_from_file_location("real_mmap_enospc", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("real_mmap_enospc", module)
    spec.loader.exec_module(module)
    return module


def test_script_adds_the_sim_fuse_and_reserve_columns(fuse: ProbeReport) -> None:
    script = _script()
    real = ProbeReport("mkwritefs (FUSE)", "/mnt", "fuse", True, Fill(0, errno.ENOSPC, 0),
                       Df(48 * PAGE, 0, 0), False, True, fuse.cases)  # fmt: skip
    columns = script.simulator_columns([real])  # type: ignore[attr-defined]
    assert [c.title for c in columns] == ["sim: fuse", "sim: reserve"]
    fuse_col, reserve_col = (dict(c.cells) for c in columns)
    assert set(fuse_col) == {key for key, _ in ROWS}
    assert (fuse_col["store_hole"], reserve_col["store_hole"]) == ("ok", "SIGBUS")
    assert (fuse_col["msync_hole"], reserve_col["msync_hole"]) == ("ENOSPC", "- (never got there)")
    assert fuse_col["data_hole"].startswith("LOST")
    assert reserve_col["data_hole"] == "unchanged (nothing stored)"
    assert fuse_col["store_allocated"] == reserve_col["store_allocated"] == "ok, kept"
    assert fuse_col["fallocated"] == "ok, msync 0 (ok), kept"
    assert fuse_col["write_hole"] == "ENOSPC at once"
    table = format_table(columns)
    assert "sim: reserve" in table.splitlines()[0]
