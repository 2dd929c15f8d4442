"""Many real processes and threads on the mount while simulated processes map the same
file inside the server: no deadlock, no wrong byte, fsck clean throughout.

The storm itself is in `storm.py` (it runs in a child process that serves the mount, as
the session tests do); this module chooses its size, and whether the disk is slow and
fails now and then (EIO must then reach fsync and msync callers, and no other call). The
normal run is a short storm on a small filesystem (ENOSPC likely for the writers, a clean
errno); `--long` runs bigger ones with several seeds. A hang fails twice over: the storm's
own watchdog (`trio.fail_after` on real time) and the harness's limit on the child.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fusefs import mountinfo
from tests.session.conftest import run_in_child

from .storm import storm

pytestmark = pytest.mark.mount

SHORT = {"capacity": 512, "procs": 3, "mmappers": 2, "threads": 3, "sims": 3, "ops": 120,
         "rounds": 12, "seed": 1, "watchdog": 90}  # fmt: skip


@pytest.fixture
def run_storm(tmp_path: Path) -> Iterator[Callable[[dict[str, int]], dict[str, int]]]:
    """run(plan): the storm in a child serving a fresh mount point; the child's totals."""
    (tmp_path / "mnt").mkdir()
    mountpoint = os.path.realpath(tmp_path / "mnt")

    def run(plan: dict[str, int]) -> dict[str, int]:
        result: dict[str, int] = run_in_child(storm, mountpoint, plan, mountpoint=mountpoint)
        return result

    yield run
    assert mountinfo.find(mountpoint) is None, "left mounted"


def _check(totals: dict[str, Any], plan: dict[str, int]) -> None:
    fs_workers = plan["procs"] + plan["threads"]
    assert totals["ops"] == fs_workers * plan["ops"]
    assert totals["stores"] == plan["mmappers"] * plan["rounds"] * 4
    assert totals["msyncs"] == plan["mmappers"] * plan["rounds"]
    assert totals["sim_stores"] == plan["sims"] * plan["rounds"] * 4
    assert totals["bytes_verified"] > 0
    assert totals["fsck_runs"] > 0  # the checker ran while the others worked
    eio = totals["fsync_eio"] + totals["msync_eio"] + totals["sim_msync_eio"]
    if plan.get("faults"):  # the failing disk reached callers, at fsync/msync only
        assert eio > 0
    else:
        assert eio == 0


def test_storm_on_a_small_filesystem(run_storm: Callable[[dict[str, int]], dict[str, int]]) -> None:
    _check(run_storm(SHORT), SHORT)


def test_storm_with_a_slow_failing_disk(
    run_storm: Callable[[dict[str, int]], dict[str, int]],
) -> None:
    """Every 10 ms the next page write of every file fails (EIO), each batch of writeback
    takes 2 ms: EIO reaches fsync and msync callers and nothing else, no byte is wrong."""
    plan = {**SHORT, "seed": 7, "faults": 1}
    _check(run_storm(plan), plan)


@pytest.mark.long
def test_long_storm_with_a_slow_failing_disk(
    run_storm: Callable[[dict[str, int]], dict[str, int]],
) -> None:
    plan = {**SHORT, "capacity": 2048, "procs": 5, "threads": 4, "ops": 1500, "rounds": 100,
            "seed": 11, "faults": 1, "watchdog": 100}  # fmt: skip
    _check(run_storm(plan), plan)


@pytest.mark.long
@pytest.mark.parametrize("seed", [2, 3, 4])
def test_long_storm(run_storm: Callable[[dict[str, int]], dict[str, int]], seed: int) -> None:
    plan = {**SHORT, "capacity": 4096, "procs": 5, "threads": 4, "sims": 4, "ops": 1500,
            "rounds": 120, "seed": seed, "watchdog": 100}  # fmt: skip
    _check(run_storm(plan), plan)


@pytest.mark.long
def test_long_storm_full_filesystem(run_storm: Callable[[dict[str, int]], dict[str, int]]) -> None:
    plan = {**SHORT, "capacity": 300, "procs": 5, "threads": 4, "ops": 1500, "rounds": 100,
            "seed": 9, "watchdog": 100}  # fmt: skip
    _check(run_storm(plan), plan)
