"""BlockPool: the three block counters and their invariant."""

from __future__ import annotations

import errno

import pytest

from fusefs.fs.errors import FsError
from fusefs.fs.space import BlockPool, SpaceStats


def test_reserve_claim_release_cycle() -> None:
    pool = BlockPool(4)
    assert pool.reserve(3)
    assert pool.statistics() == SpaceStats(4, 1, 3, 0)
    pool.claim_reserved(2)
    assert pool.statistics() == SpaceStats(4, 1, 1, 2)
    pool.unreserve(1)
    pool.release(2)
    assert pool.statistics() == SpaceStats(4, 4, 0, 0)
    pool.check()


def test_refuses_rather_than_overcommits() -> None:
    pool = BlockPool(2)
    assert pool.allocate(1)
    assert not pool.reserve(2)  # all or nothing
    assert pool.reserve(1)
    assert not pool.allocate(1)
    assert not pool.reserve(1)
    assert pool.statistics() == SpaceStats(2, 0, 1, 1)
    pool.check()


def test_releasing_what_is_not_held_is_a_bug() -> None:
    pool = BlockPool(2)
    with pytest.raises(AssertionError):
        pool.unreserve(1)
    with pytest.raises(AssertionError):
        pool.release(1)
    with pytest.raises(AssertionError):
        pool.claim_reserved(1)


def test_capacity_changes_but_never_below_use() -> None:
    pool = BlockPool(8)
    assert pool.allocate(3)
    assert pool.reserve(2)
    pool.set_capacity(5)
    assert pool.free == 0
    with pytest.raises(FsError) as exc:
        pool.set_capacity(4)
    assert exc.value.errno == errno.EINVAL
    assert pool.capacity == 5
    pool.set_capacity(100)
    assert pool.free == 95
    pool.check()


def test_statistics_is_a_frozen_snapshot() -> None:
    pool = BlockPool(3)
    snap = pool.statistics()
    assert pool.allocate(1)
    assert snap.free_blocks == 3
    with pytest.raises(AttributeError):
        snap.free_blocks = 0  # type: ignore[misc]


def test_fs_error_reads_well() -> None:
    err = FsError(errno.ENOSPC, "no room")
    assert err.errno == errno.ENOSPC
    assert str(err) == "[ENOSPC] No space left on device: no room"
