"""The mmap safety demonstration's numbers (fusefs.scenario.showcase), every policy through a
real in-process mount: under reserve nothing acknowledged is lost; under legacy, fuse
and cache the loss is shown by cat and counted by the filesystem."""

from __future__ import annotations

import pytest

from fusefs.scenario import showcase

from . import children

pytestmark = pytest.mark.mount
PAGE = 4096
FREE, HOLES = showcase.FREE, showcase.HOLES


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, showcase.Outcome]:
    import os

    from .conftest import run_in_child

    mnt = os.path.realpath(tmp_path_factory.mktemp("showcase"))
    got = run_in_child(children.showcase_outcomes, mnt, mountpoint=mnt)
    return {o.policy: o for o in got}


def test_every_policy_ran(outcomes: dict[str, showcase.Outcome]) -> None:
    assert list(outcomes) == ["legacy", "reserve", "reserve-cow", "fuse", "cache", "shmem"]
    for o in outcomes.values():
        assert o.holes == HOLES
        assert o.df_free_before == FREE


@pytest.mark.parametrize("policy", ["reserve", "reserve-cow", "shmem"])
def test_refusing_policies_lose_nothing(outcomes: dict[str, showcase.Outcome], policy: str) -> None:
    o = outcomes[policy]
    assert o.acknowledged == FREE
    assert o.sigbus == HOLES - FREE  # exactly the stores beyond the free blocks
    assert o.msync_error == ""
    assert o.read_back == o.acknowledged
    assert o.lost_bytes == o.lost_bytes_counted == 0
    assert o.df_free_after_stores == 0  # df told the truth as soon as the stores were made


@pytest.mark.parametrize("policy", ["legacy", "fuse", "cache"])
def test_writeback_policies_lose_acknowledged_data(
    outcomes: dict[str, showcase.Outcome], policy: str
) -> None:
    o = outcomes[policy]
    assert o.acknowledged == HOLES
    assert o.sigbus == 0
    assert o.df_free_after_stores == FREE  # df still showed free space after the stores
    assert o.msync_error == "ENOSPC"
    assert o.read_back == FREE
    assert o.lost_bytes == (HOLES - FREE) * PAGE
    assert o.lost_bytes_counted == o.lost_bytes


def test_hook_calls(outcomes: dict[str, showcase.Outcome]) -> None:
    assert outcomes["legacy"].mkwrite_calls == outcomes["shmem"].mkwrite_calls == 0
    assert outcomes["reserve"].mkwrite_calls >= HOLES


def test_table_has_a_column_per_policy(outcomes: dict[str, showcase.Outcome]) -> None:
    table = showcase.format_table(list(outcomes.values()))
    header, *rows = table.splitlines()
    assert header.split() == list(outcomes)
    lost = next(r for r in rows if r.startswith("bytes lost"))
    assert lost.split()[-6:] == ["16384", "0", "0", "16384", "16384", "0"]
