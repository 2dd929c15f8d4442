"""balance_dirty_pages against a slow device, on virtual time (KERNEL.md §4).

Writers are ``dd``s through shared mappings or ``write(2)``; the device writes 256
pages/s (1 MB/s); 32 MB of dirtyable memory ⇒ thresh 1638, bg 819, freerun 1228,
setpoint 1433 pages.  A fresh device's bandwidth estimate starts at the kernel's 100 MB/s
and takes ~20 s to learn 1 MB/s (each 200 ms update closes 0.2/4.1 of the gap): dirty
rides at the limit meanwhile; a measured one starts at 1 MB/s.

The limit is checked after every event (``LimitWatch``: each page dirtied, cleaned,
cancelled, each writeback start and end, each room reserved or given back):

* ``before`` (the seed's placement, throttling in ``page_mkwrite`` before the page can
  become writable): a hard cap.  The page's room is reserved at the check, so dirty +
  writeback + pages in flight never pass the limit, whatever the number of writers.
* ``after`` (where modern kernels call ``balance_dirty_pages_ratelimited``, after the
  fault dirtied the page): the kernel's guarantee only.  A writer is let go only by a
  look that saw dirty under the limit, and then dirties at most its ratelimit
  (``nr_dirtied_pause``) before it looks again, so dirty − limit ≤ the sum of the
  writers' ratelimits, checked after every event.  Measured: up to ~7 % over with 16
  writers on a fresh device.
"""

from __future__ import annotations

import pytest
import trio
from trio.testing import MockClock

from sim_mmu.bdi import DIRTY_POLL_THRESH, Bdi, DirtyDomain
from sim_mmu.writeback import run_flusher
from tests.writeback.helpers import Run, jain, run_writers, slow_inode, write_loop

BW = 256.0


def _report(what: str, n: int, run: Run) -> float:
    dom, w = run.domain, run.watch
    fairness = jain(list(run.dirtied.values()))
    print(
        f"{what} n={n} rate={run.total_rate:.1f}/{BW} jain={fairness:.3f}"
        f" max_dirty={dom.max_dirty} limit={dom.limits().limit} over={w.over}"
        f" over_allowance={w.over_allowance} events={w.events}"
    )
    return fairness


def _check_placement(placement: str, run: Run) -> None:
    w = run.watch
    assert w.events > 4 * sum(run.dirtied.values())  # dirtied, cleaned, wb start, end...
    if placement == "before":
        assert w.held_over <= 0  # dirty + writeback + in flight, after every event
        assert w.over <= 0
        assert run.domain.max_dirty <= run.domain.limits().limit
    else:
        assert w.over_allowance <= 0  # at most each writer's ratelimit past the limit
        assert w.over <= run.domain.limits().limit // 10  # in figures: under 10 % over
    run.domain.check()


# Jain's index the placements hold in every interleaving.  Trio runs ready tasks in a
# random order, so each run is another interleaving: before (the seed's placement, the
# issue's >= 0.9) measured 0.994-0.998 for 16 writers; after (the kernel's: each writer
# dirties its ratelimit between looks, so who looks first gets more) 0.92-0.98, and
# once 0.73 in a full-suite run.
FAIR = {"before": 0.9, "after": 0.7}


@pytest.mark.parametrize("placement", ["before", "after"])
@pytest.mark.parametrize("n", [1, 4, 16])
async def test_fresh_device_converges_to_bandwidth_under_the_limit(
    n: int, placement: str, autojump_clock: MockClock
) -> None:
    # the bandwidth estimate starts 100 × too high and takes ~20 s to come down
    run = await run_writers(n, seconds=20.0, settle=10.0, bandwidth=BW,
                            before=placement == "before")  # fmt: skip
    fairness = _report(f"fresh {placement}", n, run)
    _check_placement(placement, run)
    assert abs(run.total_rate - BW) <= 0.2 * BW
    assert fairness >= FAIR[placement]
    assert all(run.pauses[name] > 0 for name in run.dirtied)  # everyone was throttled


@pytest.mark.parametrize("placement", ["before", "after"])
@pytest.mark.parametrize("n", [1, 4, 16])
async def test_measured_device_writers_are_fair(
    n: int, placement: str, autojump_clock: MockClock
) -> None:
    run = await run_writers(n, seconds=15.0, settle=5.0, bandwidth=BW, measured=True,
                            before=placement == "before")  # fmt: skip
    fairness = _report(f"measured {placement}", n, run)
    _check_placement(placement, run)
    assert len(run.dirtied) == n
    assert fairness >= FAIR[placement]
    assert abs(run.total_rate - BW) <= 0.2 * BW
    # the smooth pauses hold dirty under the limit, the cap is only the backstop
    late = [r for r in run.recorder.rows if r["time"] > 10.0]
    assert max(r["dirty"] for r in late) < run.domain.limits().limit


@pytest.mark.parametrize("n", [4, 16])
async def test_without_throttling_the_same_workload_blows_the_limit(
    n: int, autojump_clock: MockClock
) -> None:
    # legacy: the same dd's as above, seed placement, throttle off: nothing holds them
    run = await run_writers(n, throttle="off", seconds=5.0, settle=1.0, bandwidth=BW,
                            before=True, pages=3 * 1638 // n)  # fmt: skip
    dom = run.domain
    print(f"off n={n}: max_dirty={dom.max_dirty} limit={dom.limits().limit}")
    assert run.watch.over > dom.limits().limit  # more than twice the limit
    assert not any(run.pauses.values())
    assert dom.inflight == 0  # no room is reserved when nothing is limited


async def test_write_syscalls_are_throttled_by_the_same_model(autojump_clock: MockClock) -> None:
    # write(2) throttles after each page copied (generic_perform_write): the after bound
    run = await run_writers(4, via="write", seconds=12.0, settle=6.0, bandwidth=BW)
    _check_placement("after", run)
    assert abs(run.total_rate - BW) <= 0.2 * BW
    assert jain(list(run.dirtied.values())) >= 0.9


async def test_crude_model_writes_back_itself_and_naps(autojump_clock: MockClock) -> None:
    run = await run_writers(4, throttle="crude", seconds=10.0, settle=5.0, bandwidth=BW)
    dom = run.domain
    print(
        f"crude: rate={run.total_rate:.1f} jain={jain(list(run.dirtied.values())):.3f}"
        f" max_dirty={dom.max_dirty} limit={dom.limits().limit}"
    )
    assert any(run.self_written.values())  # throttled writers did writeback themselves
    assert dom.max_dirty < 2 * dom.limits().limit  # bounded, unlike "off"
    dom.check()


async def test_crude_model_before_the_page_becomes_writable_is_capped(
    autojump_clock: MockClock,
) -> None:
    run = await run_writers(16, throttle="crude", seconds=10.0, settle=5.0, bandwidth=BW,
                            before=True)  # fmt: skip
    _report("crude before", 16, run)
    _check_placement("before", run)
    assert abs(run.total_rate - BW) <= 0.2 * BW


@pytest.mark.parametrize(("n", "placement"), [(1, "after"), (4, "before"), (4, "after")])
async def test_fuse_strictlimit_throttles_at_its_own_share(
    n: int, placement: str, autojump_clock: MockClock
) -> None:
    # 1 GiB dirtyable: global thresh 52428, bg 26214; the FUSE device's share is 1 %.
    run = await run_writers(n, fuse=True, avail=262144, seconds=20.0, settle=10.0, bandwidth=BW,
                            before=placement == "before")  # fmt: skip
    dom, bdi = run.domain, run.bdi
    lim = dom.limits()
    wb_thresh = bdi.wb_thresh(lim)
    print(f"fuse {placement} n={n}: wb_thresh={wb_thresh} max_wb_dirty={bdi.max_wb_dirty}"
          f" wb_over={run.watch.wb_over} global max={dom.max_dirty}")  # fmt: skip
    assert wb_thresh == 524
    if placement == "before":  # its own share is a hard cap too, after every event
        assert run.watch.wb_over <= 0
    else:
        assert bdi.max_wb_dirty <= wb_thresh + n * DIRTY_POLL_THRESH
    assert bdi.max_wb_dirty > wb_thresh * 0.9  # it ran up to its share: throttled there
    assert dom.max_dirty < lim.bg_thresh // 20  # globally far below any threshold
    assert all(p > 0 for p in run.pauses.values())
    assert abs(run.total_rate - BW) <= 0.2 * BW
    assert jain(list(run.dirtied.values())) >= 0.9


async def test_between_bg_and_freerun_the_flusher_runs_and_nobody_waits(
    autojump_clock: MockClock,
) -> None:
    dom = DirtyDomain(8192)  # bg 819, freerun 1228
    bdi = Bdi(dom, "disk")
    from sim_mmu.writeback import FixedBandwidthDevice

    device = FixedBandwidthDevice(BW)
    inode = slow_inode(bdi, device, 1100, name="f", throttle_before=False)
    async with trio.open_nursery() as nursery:
        await nursery.start(run_flusher, bdi)
        written = await write_loop(inode, bdi, 1100, until=trio.current_time() + 60.0)
        state = dom.task_state()
        assert written == 1100
        assert dom.limits().bg_thresh < dom.max_dirty <= dom.limits().freerun
        assert (state.pauses, state.paused_time) == (0, 0.0)
        assert bdi.flusher_runs == 1
        await trio.sleep(2.0)
        assert bdi.written > 0
        nursery.cancel_scope.cancel()
    assert dom.nr_dirty <= dom.limits().bg_thresh  # the flusher stopped under bg


@pytest.mark.parametrize("n", [1, 4])
async def test_measured_device_settles_between_setpoint_and_limit(
    n: int, autojump_clock: MockClock
) -> None:
    # pos_ratio and the rate estimate hold dirty near the setpoint: dirty_ratelimit
    # ends within the kernel's dead band above write_bw / N (the step is shifted by
    # ratelimit / (2·step + 1) and rounds to 0 within ~15 %), so dirty sits where
    # pos_ratio = (write_bw / N) / dirty_ratelimit: at or above the setpoint, under the limit.
    run = await run_writers(n, seconds=30.0, settle=15.0, bandwidth=BW, measured=True)
    lim = run.domain.limits()
    late = [r for r in run.recorder.rows if r["time"] > 15.0]
    mean_dirty = sum(r["dirty"] for r in late) / len(late)
    print(f"n={n} mean dirty {mean_dirty:.0f} setpoint {lim.setpoint} limit {lim.limit}"
          f" ratelimit {run.bdi.dirty_ratelimit} bw/N {BW / n}")  # fmt: skip
    halfway = lim.setpoint + (lim.limit - lim.setpoint) / 2
    assert lim.setpoint - 0.05 * lim.thresh <= mean_dirty < halfway
    assert BW / n * 0.95 <= run.bdi.dirty_ratelimit <= BW / n * 1.2
    assert max(r["dirty"] for r in late) <= lim.limit + n * lim.limit // 32


async def test_a_limit_of_zero_lets_one_page_at_a_time_through(autojump_clock: MockClock) -> None:
    # dirty_ratio 0: nothing may stay dirty, yet with nothing dirty there is room for a
    # page (else every writer would wait for good): the writer goes at the store's pace
    from sim_mmu import Simulation
    from sim_mmu.bdi import DirtySettings
    from sim_mmu.writeback import FixedBandwidthDevice
    from tests.writeback.helpers import SlowFile, map_file, store_loop

    dom = DirtyDomain(8192, DirtySettings(dirty_ratio=0, dirty_background_ratio=0))
    bdi = Bdi(dom, "disk")
    async with trio.open_nursery() as nursery:
        await nursery.start(run_flusher, bdi)
        inode = slow_inode(bdi, FixedBandwidthDevice(BW), 100, name="f", throttle_before=True)
        proc, addr = await map_file(Simulation(trace=False), SlowFile(inode, bdi, after=False),
                                    100, "w")  # fmt: skip
        start = trio.current_time()
        assert await store_loop(proc, addr, 100, until=start + 60.0) == 100
        assert trio.current_time() - start >= 99 / BW  # one page per transfer
        nursery.cancel_scope.cancel()
    assert dom.limits().limit == 0
    assert dom.max_dirty == 1
