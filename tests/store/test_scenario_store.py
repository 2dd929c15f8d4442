"""Scenarios on a store: the ENOSPC verdicts read back after the unmount.

The headline story under reserve and legacy, each in a new store: after the unmount the
store is opened again and read: under reserve nothing a writer was told was stored is
missing; under legacy the 4 dropped pages' acknowledged bytes are (4 x 3584).  The CLI
refuses a --store directory where a store of the run exists already."""

from __future__ import annotations

from pathlib import Path

import pytest

from fusefs.scenario import runner
from fusefs.scenario.language import find, load_file
from tests.mount.support import cli

pytestmark = pytest.mark.mount


@pytest.mark.parametrize(("policy", "lost"), [("reserve", 0), ("legacy", 4 * 3584)])
def test_headline_verdict_read_back(tmp_path: Path, policy: str, lost: int) -> None:
    scenario = load_file(find("headline-stores-into-holes"))
    store = tmp_path / f"{policy}.db"
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    result = runner.play(scenario, policy, mountpoint=str(mnt), store=str(store))
    assert result.ok, [e for e in result.expectations if not e.held]
    assert result.counters["lost_bytes_read_back"] == lost
    verdicts = {e.name: e for e in result.expectations}
    read_back = verdicts["store: read back after unmount and mount"]
    assert read_back.seen == ("none lost" if lost == 0 else f"lost {lost}")
    assert verdicts["store: fsck clean after unmount"].held
    assert "after unmount and mount: read(2) of /sparse at 12288" in verdicts
    assert cli("fsck", str(store)).returncode == 0  # closed, unlocked, clean


def test_scenario_store_refuses_existing(tmp_path: Path) -> None:
    existing = tmp_path / "headline-stores-into-holes-reserve.db"
    existing.write_bytes(b"mine")
    result = cli(
        "scenario",
        "run",
        "headline-stores-into-holes",
        "--policy",
        "reserve",
        "--store",
        str(tmp_path),
    )
    assert result.returncode == 2
    assert "already exists" in result.stderr
    assert existing.read_bytes() == b"mine"
    result = cli(
        "scenario", "run", "headline-stores-into-holes", "--store", str(tmp_path / "nowhere")
    )
    assert result.returncode == 2
    assert "not a writable directory" in result.stderr
