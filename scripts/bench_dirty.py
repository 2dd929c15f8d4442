#!/usr/bin/env python3
"""The dirty-throttling figures of issue 6, in one run, on virtual time.

N writers (N = 1, 4, 16), each a ``dd`` through a shared mapping of its own fusefs
file (one store per page, at most 8192 pages/s of CPU each), against a store of 256
pages/s (1 MiB/s); 32 MiB of simulated dirtyable memory (thresh and limit 1638 pages,
freerun 1228).  The device is fresh: its bandwidth estimate starts at the kernel's
100 MB/s guess.  For each throttle model and placement it prints:

* ``rate``: all writers' dirtying rate between ``--settle`` and ``--seconds``, and its
  ratio to the store's bandwidth (the issue: within 20 %);
* ``jain``: Jain's fairness index of the writers' pages in that window (>= 0.9);
* ``max_dirty``: the peak of dirty + writeback pages, checked after every event of the
  model (each page dirtied, cleaned, each writeback start and end), against ``limit``;
  ``over``: by how much it passed the limit (``before``: never; ``after``: at most the
  writers' ratelimits; ``off``, the legacy kernel's missing throttle: far);
* ``done_s``: when the last writer stopped (``--seconds``, or earlier when it wrote its
  whole file: unthrottled writers finish at once, so ``off`` has no rate to show).

Usage: ``scripts/bench_dirty.py [--seconds S] [--settle S] [--writers 1,4,16] [--json]``
(about a minute of real time for the defaults; the numbers do not depend on the
machine's load, only on trio's scheduling order, which varies a little from run to run).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import trio
import trio.testing

from fusefs.fs.core import Filesystem
from fusefs.fs.inode import Ctx
from fusefs.vm.throttle import DirtyConfig
from sim_mmu import MapFlags, Prot, Simulation
from sim_mmu.bdi import CHARGED_TASK

PAGE = 4096
BW = 256.0
SPEED = 8192.0  # pages/s a writer stores when nothing holds it back
BATCH = 16
ROOT = Ctx(uid=0, gid=0, pid=1)

CASES = [("modern", "before"), ("modern", "after"), ("crude", "before"), ("crude", "after"),
         ("off", "before")]  # fmt: skip


def jain(xs: list[float]) -> float:
    squares = sum(x * x for x in xs)
    return sum(xs) ** 2 / (len(xs) * squares) if squares else 1.0


async def one_run(n: int, throttle: str, placement: str, seconds: float, settle: float
                  ) -> dict[str, Any]:  # fmt: skip
    config = DirtyConfig(memory_pages=8192, throttle=throttle, placement=placement,
                         device="disk", write_bandwidth=BW)  # fmt: skip
    fs = Filesystem(capacity_blocks=1 << 20, dirty=config)
    assert fs.dirty is not None
    dom = fs.dirty.domain
    peak = [0, -(1 << 30)]  # max dirty, max (dirty - limit), after every event

    def watch(event: str, bdi: object) -> None:
        dirty = dom.dirty
        if dirty > peak[0]:
            peak[0] = dirty
        over = dirty - dom.limits().limit
        if over > peak[1]:
            peak[1] = over

    dom.listeners.append(watch)
    sim = Simulation(trace=False)
    pages = int(BW * seconds * 2 / n) + 2000  # the same workload for every model
    start = trio.current_time()
    counts: dict[str, list[int]] = {}
    ended: list[float] = []

    async def writer(i: int) -> None:
        f = fs.open_path(f"/w{i}".encode(), os.O_RDWR | os.O_CREAT)
        await fs.setattr(f.ino, size=pages * PAGE, ctx=ROOT)
        proc = sim.spawn(f"writer{i}")
        addr = await proc.mmap(pages * PAGE, Prot.READ | Prot.WRITE, MapFlags.SHARED, f)
        token = CHARGED_TASK.set(proc)
        state = dom.task_state(proc)
        try:
            p = 0
            while p < pages and trio.current_time() < start + seconds:
                await proc.store(addr + p * PAGE, b"w")
                p += 1
                if p % BATCH == 0:
                    await trio.sleep(BATCH / SPEED)
        finally:
            CHARGED_TASK.reset(token)
        counts.setdefault(proc.name, [0]).append(state.dirtied_total)  # [settle, end]
        ended.append(trio.current_time() - start)

    async def snapshot() -> None:
        await trio.sleep_until(start + settle)
        for t in list(dom.tasks.values()):
            counts[t.name] = [t.dirtied_total]

    async with trio.open_nursery() as nursery:
        await nursery.start(fs.run_flusher)
        async with trio.open_nursery() as writers:
            writers.start_soon(snapshot)
            for i in range(n):
                writers.start_soon(writer, i)
        nursery.cancel_scope.cancel()
    window = seconds - settle
    dirtied = [c[-1] - c[0] for c in counts.values()]
    rate = sum(dirtied) / window
    return {"writers": n, "throttle": throttle, "placement": placement,
            "rate": round(rate, 1), "rate_per_bw": round(rate / BW, 3),
            "jain": round(jain([float(d) for d in dirtied]), 3), "max_dirty": peak[0],
            "limit": dom.limits().limit, "over": peak[1],
            "last_writer_done_s": round(max(ended), 2)}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--settle", type=float, default=10.0)
    parser.add_argument("--writers", default="1,4,16")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    try:
        ns = [int(x) for x in args.writers.split(",")]
    except ValueError:
        parser.error(f"--writers: a comma-separated list of counts, not {args.writers!r}")
    if not 0 <= args.settle < args.seconds or any(n < 1 for n in ns):
        parser.error("need 0 <= --settle < --seconds and writer counts >= 1")
    rows = []
    for throttle, placement in CASES:
        for n in ns:
            clock = trio.testing.MockClock(autojump_threshold=0)
            rows.append(trio.run(one_run, n, throttle, placement, args.seconds, args.settle,
                                 clock=clock))  # fmt: skip
            if not args.json:
                r = rows[-1]
                if len(rows) == 1:
                    print(f"{'model':8} {'place':7} {'N':>3} {'rate':>7} {'/bw':>6} {'jain':>6}"
                          f" {'max_dirty':>9} {'limit':>6} {'over':>6} {'done_s':>7}")  # fmt: skip
                print(f"{throttle:8} {placement:7} {n:>3} {r['rate']:>7} {r['rate_per_bw']:>6}"
                      f" {r['jain']:>6} {r['max_dirty']:>9} {r['limit']:>6} {r['over']:>6}"
                      f" {r['last_writer_done_s']:>7}",
                      flush=True)  # fmt: skip
    if args.json:
        print(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
