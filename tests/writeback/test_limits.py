"""The threshold arithmetic of KERNEL.md §4, against numbers computed by hand."""

from __future__ import annotations

import pytest

from sim_mmu.bdi import (
    Bdi,
    DirtyDomain,
    DirtyLimits,
    DirtySettings,
    dirty_freerun_ceiling,
    dirty_poll_interval,
    domain_dirty_limits,
    pos_ratio_polynom,
    wb_calc_thresh,
    wb_max_pause,
    wb_min_pause,
    wb_position_ratio,
)

# avail 10000 pages, defaults 20 / 10: thresh 2000, bg 1000, freerun 1500,
# limit = thresh 2000, setpoint (1500 + 2000) / 2 = 1750.
LIM = DirtyLimits(thresh=2000, bg_thresh=1000, freerun=1500, limit=2000, setpoint=1750)


def test_global_thresholds_from_ratios() -> None:
    assert domain_dirty_limits(10000, DirtySettings()) == (2000, 1000)
    assert dirty_freerun_ceiling(2000, 1000) == 1500


def test_domain_limits_by_hand() -> None:
    dom = DirtyDomain(10000, clock=lambda: 0.0)
    assert dom.limits() == LIM


def test_background_at_or_above_thresh_is_halved() -> None:
    s = DirtySettings(dirty_ratio=10, dirty_background_ratio=20)
    assert domain_dirty_limits(10000, s) == (1000, 500)


def test_bytes_override_ratios_rounded_up_to_pages() -> None:
    s = DirtySettings(dirty_bytes=4 << 20, dirty_background_bytes=4097)
    assert domain_dirty_limits(10000, s) == (1024, 2)


@pytest.mark.parametrize(
    ("kwargs", "what"),
    [({"dirty_ratio": 101}, "dirty_ratio"), ({"dirty_bytes": -1}, "dirty_bytes")],
)
def test_bad_settings_are_refused(kwargs: dict[str, int], what: str) -> None:
    with pytest.raises(ValueError, match=what):
        DirtySettings(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("dirty", "pos"),
    [(1750, 1.0), (1500, 2.0), (1000, 2.0), (1875, 0.875), (2000, 0.0), (2100, 0.0)],
)
def test_cubic_position_ratio(dirty: int, pos: float) -> None:
    # 1 + ((1750 − dirty) / 250)³, clamped to [0, 2]
    assert pos_ratio_polynom(1750, dirty, 2000) == pytest.approx(pos)


def test_device_share() -> None:
    assert wb_calc_thresh(2000, 0.5) == 1000
    assert wb_calc_thresh(2000, 1.0, max_ratio=1) == 20  # FUSE: 1 % of thresh
    # (2000 × 95 % × ½) + 2000 × 5 % = 950 + 100
    assert wb_calc_thresh(2000, 0.5, min_ratio=5, sum_min_ratio=5) == 1050
    assert wb_calc_thresh(2000, 0.0, floor=15) == 15  # an idle device keeps some room


@pytest.mark.parametrize(
    ("wb_dirty", "pos"),
    [
        (5, 2.0),  # < 8 pages: min(2 × global, 2)
        (15, 1.0),  # at the device setpoint (20 + 10) / 2
        (17, 1 - 0.4**3),  # 1 + ((15 − 17) / 5)³
        (20, 0.0),  # at wb_thresh
    ],
)
def test_strictlimit_position_ratio(wb_dirty: int, pos: float) -> None:
    # global dirty 100 ≪ freerun: global pos is 2 (clamped); the device decides.
    got = wb_position_ratio(LIM, 100, wb_dirty, 20, 10, 256.0, strictlimit=True)
    assert got == pytest.approx(pos)


def test_global_over_limit_stops_everyone() -> None:
    assert wb_position_ratio(LIM, 2000, 5, 20, 10, 256.0, strictlimit=True) == 0.0
    assert wb_position_ratio(LIM, 2000, 1500, 2000, 1000, 256.0, strictlimit=False) == 0.0


def test_single_device_line_at_setpoint() -> None:
    # one device owning everything: wb_setpoint = setpoint, the line gives 1 there
    got = wb_position_ratio(LIM, 1750, 1750, 2000, 1000, 256.0, strictlimit=False)
    assert got == pytest.approx(1.0)


def test_poll_interval_is_root_of_headroom() -> None:
    assert dirty_poll_interval(0, 1024) == 32  # 2^(10 // 2)
    assert dirty_poll_interval(1000, 1024) == 4  # headroom 24: 2^(4 // 2)
    assert dirty_poll_interval(1024, 1024) == 1


def test_pause_bounds() -> None:
    assert wb_max_pause(256.0, 1024) == 0.2  # 1024 / (8 × 256) = 0.5 s, capped
    assert wb_max_pause(256.0, 100) == pytest.approx(100 / 2048 + 0.001)
    # one dirtier at 256 pages/s: 10 ms is only 2 pages, so 32 pages in 125 ms,
    # and half of that (+1 ms) is the shortest pause worth sleeping
    min_pause, pages = wb_min_pause(256.0, 256.0, 256.0, 0.2)
    assert pages == 32
    assert min_pause == pytest.approx(0.001 + 0.0625)


def test_fuse_device_share_of_a_big_machine() -> None:
    # 1 GiB dirtyable: thresh 52428; the FUSE device gets 1 % of it once it is the
    # only device completing writeback
    dom = DirtyDomain(262144, clock=lambda: 0.0)
    fuse = Bdi.fuse(dom)
    fuse.completions = 100.0
    assert dom.limits().thresh == 52428
    assert fuse.wb_thresh() == 524


def test_lowered_ratio_lowers_the_limit_slowly() -> None:
    dom = DirtyDomain(10000, clock=lambda: 0.0)
    dom.update_dirty_limit()
    assert dom.dirty_limit == 2000
    dom.settings.dirty_ratio = 10
    dom.update_dirty_limit()
    assert dom.dirty_limit == 2000 - (1000 >> 5)  # a 32nd of the gap per update
    assert dom.limits().limit == dom.dirty_limit


def test_min_ratio_sum_must_stay_below_100() -> None:
    dom = DirtyDomain(10000, clock=lambda: 0.0)
    Bdi(dom, "a", min_ratio=60)
    with pytest.raises(ValueError, match="sum of min_ratio"):
        Bdi(dom, "b", min_ratio=40)


async def test_hard_cap_serves_waiters_in_arrival_order(autojump_clock: object) -> None:
    # avail 100 ⇒ limit 20; 20 pages dirty: three writers wait, each completion lets
    # exactly one in, first come first served, its room counted at once (in flight)
    import trio

    from sim_mmu.writeback import release_dirty, reserve_dirty

    dom = DirtyDomain(100)
    bdi = Bdi(dom, "disk")
    mapping = type("M", (), {"dirty_tag": {0}})()  # a mapping that stays dirty
    for _ in range(20):
        bdi.account_page_dirtied(mapping, charge=False)  # type: ignore[arg-type]
    keys = [type("W", (), {"name": f"w{i}"})() for i in range(3)]
    granted: list[str] = []

    async def writer(i: int) -> None:
        await reserve_dirty(bdi, 1, keys[i])
        granted.append(keys[i].name)

    def complete_one() -> None:
        bdi.account_page_cleaned(mapping)  # type: ignore[arg-type]
        bdi.account_writeback_start()
        bdi.account_writeback_end()

    async with trio.open_nursery() as nursery:
        for i in range(3):
            nursery.start_soon(writer, i)
            await trio.sleep(0.001)  # arrival order w0, w1, w2
        assert (granted, len(dom.cap_waiters)) == ([], 3)
        for n in (1, 2, 3):
            complete_one()
            await trio.sleep(0.001)
            assert granted == [f"w{i}" for i in range(n)]
            assert dom.dirty + dom.inflight == 20  # the limit, never more
    assert (dom.inflight, bdi.inflight) == (3, 3)
    release_dirty(bdi, keys[2])  # a fault that did not dirty its page gives it back
    assert dom.inflight == 2
