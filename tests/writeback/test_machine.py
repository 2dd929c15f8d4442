"""One machine, several devices: the global dirty pool (KERNEL.md §4).

Every device's dirty and writeback pages count in the domain's global numbers, which
are held against one global threshold; each device gets a share of it in proportion to
its recent writeback completions.  Two devices of 128 pages/s each, one ``dd`` on each,
32 MB dirtyable ⇒ thresh 1638, freerun 1228.
"""

from __future__ import annotations

import pytest
import trio
from trio.testing import MockClock

from sim_mmu.bdi import Bdi, DirtyDomain
from sim_mmu.writeback import FixedBandwidthDevice, run_flusher
from tests.writeback.helpers import LimitWatch, slow_inode, write_loop

Shares = dict[str, tuple[int, float]]  # device: (wb_thresh, fraction of completions)


async def _two_devices(
    pages: int, seconds: float
) -> tuple[DirtyDomain, list[Bdi], LimitWatch, list[int], Shares]:
    dom = DirtyDomain(8192)
    bdis = [Bdi(dom, "sda"), Bdi(dom, "sdb")]
    watch = LimitWatch(dom)
    written: list[int] = [0, 0]
    shares: Shares = {}
    sums: list[bool] = []

    def sum_of_devices(event: str, bdi: Bdi) -> None:  # after every event
        sums.append(dom.dirty == sum(b.wb_dirty for b in bdis))

    dom.listeners.append(sum_of_devices)

    async def dd(i: int) -> None:
        inode = slow_inode(bdis[i], FixedBandwidthDevice(128.0), pages, name=f"f{i}",
                           throttle_before=False)  # fmt: skip
        written[i] = await write_loop(inode, bdis[i], pages, until=seconds)

    async with trio.open_nursery() as nursery:
        for b in bdis:
            await nursery.start(run_flusher, b)
        async with trio.open_nursery() as writers:
            for i in range(2):
                writers.start_soon(dd, i, name=f"dd{i}")
        lim = dom.limits()
        shares = {b.name: (b.wb_thresh(lim), dom.wb_fraction(b)) for b in bdis}
        nursery.cancel_scope.cancel()
    assert sums  # the global count is the devices' sum, after every event
    assert all(sums)
    return dom, bdis, watch, written, shares


async def test_two_devices_are_held_against_one_global_threshold(
    autojump_clock: MockClock,
) -> None:
    # 1000 pages each: either alone would run free (< freerun 1228); together they pass
    # it, and both writers are throttled by the global numbers
    dom, bdis, watch, written, shares = await _two_devices(1000, seconds=60.0)
    lim = dom.limits()
    print(f"max global {dom.max_dirty}, per device {[b.max_wb_dirty for b in bdis]},"
          f" shares {shares}")  # fmt: skip
    assert written == [1000, 1000]
    assert all(b.max_wb_dirty < lim.freerun for b in bdis)  # neither alone near it
    assert dom.max_dirty > lim.freerun  # the sum was
    assert watch.over_allowance <= 0  # and the limit held for the sum
    assert all(t.pauses > 0 for t in dom.tasks.values())
    dom.check()


async def test_each_device_gets_a_share_by_its_completions(autojump_clock: MockClock) -> None:
    dom, bdis, _, _, shares = await _two_devices(20000, seconds=20.0)
    lim = dom.limits()
    # equal bandwidths: about half the completions each, so about half of thresh each
    for name, (wb_thresh, fraction) in shares.items():
        assert fraction == pytest.approx(0.5, abs=0.1), name
        assert wb_thresh == pytest.approx(lim.thresh / 2, rel=0.2), name
