"""Dirty throttling and the flusher: ``balance_dirty_pages`` and ``wb_writeback``.

Models ``mm/page-writeback.c`` (the throttle) and ``fs/fs-writeback.c`` (the flusher) on
trio time, over the counters and thresholds of ``sim_mmu.bdi`` (KERNEL.md §4).

* ``balance_dirty_pages_ratelimited(bdi)`` is what a writer calls after dirtying pages
  (``write(2)`` after each page copied; the fault path after ``page_mkwrite`` — or, the
  seed's placement, inside ``page_mkwrite`` before the page becomes writable).  It is
  cheap until the task has dirtied ``nr_dirtied_pause`` pages, then it runs the domain's
  model:

  - ``modern`` (IO-less, 3.2+): below the freerun ceiling no pause; above it the task is
    paused so that it dirties at ``task_rate = dirty_ratelimit × pos_ratio`` pages/s,
    the pause computed per page with carried debt (a pause shorter than ``min_pause`` is
    not slept, the debt moves forward), capped at ``max_pause`` (≤ 200 ms);
    ``pos_ratio`` 0 (over the limit) ⇒ sleep ``max_pause`` and look again.
  - ``crude`` (2.6.2x): over its device's share and the freerun ceiling, the writer
    writes back 1.5 × ratelimit pages itself, then naps 1, 2, 4… ≤ 100 ms until under.
  - ``off``: no throttling (the flusher is still kicked above the background threshold).

  A writer let go by a look under the limit dirties at most its ratelimit before the
  next look, so called after dirtying (the kernel's placement) dirty may pass the limit
  by the sum of the writers' ratelimits (``DirtyTask.granted``).

* ``balance_dirty_pages_before(bdi)`` is the seed's placement, in ``page_mkwrite``
  before the page can become writable: the model above, then ``reserve_dirty`` — room
  for the page under the hard limit, counted as in flight in the same step as the check
  (``DirtyDomain.reserve``) until the page is dirty or ``release_dirty`` gives it back;
  a writer without room waits in arrival order.  Dirty + writeback never pass the limit
  (nor a strictlimit device's share).

* ``run_flusher(bdi)`` is the device's flusher task (``wb_workfn``): kicked above the
  background threshold it writes the oldest dirty inodes until under it; every
  ``dirty_writeback_interval`` it writes inodes dirty longer than
  ``dirty_expire_interval``.
* ``FixedBandwidthDevice``: a store that moves a page per 1/bandwidth seconds, one
  transfer at a time, for tests and scenarios.
* ``DirtyRecorder``: a time series (global and device dirty, thresholds, each writer's
  rate and pause) as CSV and, when matplotlib is importable, a PNG.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import trio

from sim_mmu.bdi import (
    DIRTY_EXCEEDED_RATELIMIT,
    MAX_PAUSE,
    Bdi,
    CapWaiter,
    DirtyDomain,
    DirtyTask,
    dirty_freerun_ceiling,
    dirty_poll_interval,
    wb_max_pause,
    wb_min_pause,
    wb_position_ratio,
)
from sim_mmu.filemap import write_one_page
from sim_mmu.page import AddressSpace

#: Pages a task may leave unaccounted at most (per-CPU slack of the counters).
WB_STAT_ERROR = 8
#: Longest nap of the crude model (100 ms).
CRUDE_MAX_NAP = 0.1
#: Pages the flusher writes of one inode before it moves to the next.
WRITEBACK_CHUNK = 1024


def ratelimit_pages(domain: DirtyDomain) -> int:
    """Pages all tasks together may dirty between two checks (one simulated CPU)."""
    return max(domain.limits().thresh // 32, 16)


def kick_flusher(bdi: Bdi) -> None:
    """Start background writeback (``wb_start_background_writeback``)."""
    if bdi.kick is not None and not bdi.writeback_in_progress:
        bdi.kick()


# -- the entry point ---------------------------------------------------------------------
async def balance_dirty_pages_ratelimited(
    bdi: Bdi, task: Any = None, *, capped: bool = False
) -> None:
    """Throttle the current task if it dirtied enough pages (the kernel function).

    ``capped``: ``reserve_dirty`` follows (the seed's placement), so at the limit the
    modern loop leaves the waiting to it instead of polling every ``max_pause``.
    """
    dom = bdi.domain
    t = dom.task_state(task)
    if dom.throttle == "crude":
        await _crude_ratelimited(bdi, t)
        return
    if dom.throttle == "off":
        if dom.nr_dirty > dom.limits().bg_thresh:
            kick_flusher(bdi)
        return
    ratelimit = t.nr_dirtied_pause
    if bdi.dirty_exceeded:
        ratelimit = min(ratelimit, DIRTY_EXCEEDED_RATELIMIT)
    if t.nr_dirtied >= ratelimit:
        dom.bdp_ratelimits = 0
    elif dom.bdp_ratelimits >= ratelimit_pages(dom):
        dom.bdp_ratelimits = 0
        ratelimit = 0
    if t.nr_dirtied >= ratelimit:
        await balance_dirty_pages(bdi, t, capped=capped)
        t.granted = max(t.nr_dirtied_pause, 1)  # it looks after a page at the soonest


# -- the hard cap (the seed's placement) ---------------------------------------------------
async def balance_dirty_pages_before(bdi: Bdi, pages: int = 1, task: Any = None) -> None:
    """The seed's placement: throttle *before* the page can become writable.

    First the domain's model, as ``balance_dirty_pages_ratelimited`` (the smooth pauses
    below the limit), then ``reserve_dirty``: room for ``pages`` under the hard limit,
    held for the task until its pages are dirty.  Call ``release_dirty`` when the fault
    is over (a page already dirty, or a failed fault, does not use its room).
    """
    await balance_dirty_pages_ratelimited(bdi, task, capped=True)
    await reserve_dirty(bdi, pages, task)


async def reserve_dirty(bdi: Bdi, pages: int = 1, task: Any = None) -> None:
    """Wait until ``pages`` more dirty pages fit under the hard limit, then count them
    in flight for the task (``DirtyDomain.reserve``) in the same step, so that writers
    passing the check together cannot all pass the limit.

    The kernel's loop sleeps ``max_pause`` while dirty is over the limit (pos_ratio 0)
    and looks again; here a waiter is queued and served in arrival order by the
    completion that makes room (and looks again at least every ``MAX_PAUSE``), so no
    writeback time is lost and no writer is starved.  The limit is the domain's
    ``limit`` on dirty + writeback + in flight, and a strictlimit device's own share
    (``wb_thresh``).  Throttling ``off`` (legacy) reserves nothing.
    """
    await _reserve(bdi, bdi.domain.task_state(task), pages)


async def _reserve(bdi: Bdi, t: DirtyTask, pages: int) -> None:
    dom = bdi.domain
    if t.reserved_bdi is bdi and t.reserved >= pages:
        return  # room kept from an earlier look (it waited at the limit)
    dom.release(t)
    if dom.throttle == "off":
        return
    if not dom.cap_waiters and dom.has_room(bdi, pages):
        dom.reserve(t, bdi, pages)
        return
    waiter = CapWaiter(t, bdi, pages)
    dom.cap_waiters.append(waiter)
    start = dom.clock()
    t.cap_waits += 1
    try:
        while not waiter.granted:
            kick_flusher(bdi)
            with trio.move_on_after(MAX_PAUSE):
                await waiter.event.wait()
            if not waiter.granted:
                dom.grant_waiters()  # the limit may have moved (settings, aging)
    finally:
        if not waiter.granted and waiter in dom.cap_waiters:
            dom.cap_waiters.remove(waiter)  # cancelled while waiting
        waited = dom.clock() - start
        t.cap_waited += waited
        t.pauses += 1
        t.paused_time += waited
        t.last_pause = waited


def release_dirty(bdi: Bdi, task: Any = None) -> None:
    """The fault is over: give back the room the task reserved and did not dirty."""
    dom = bdi.domain
    dom.release(dom.task_state(task))


@dataclass
class _Sample:
    """One look at the numbers inside the loop (a ``dirty_throttle_control``)."""

    gdirty: int
    wb_dirty: int
    wb_thresh: int
    wb_bg_thresh: int
    dirty: int  # the numbers the freerun test uses: global, or the device's if strict
    thresh: int
    bg_thresh: int


def _look(bdi: Bdi) -> tuple[_Sample, Any]:
    dom = bdi.domain
    lim = dom.limits()
    wb_thresh = bdi.wb_thresh(lim)
    wb_bg = bdi.wb_bg_thresh(wb_thresh, lim)
    gdirty, wb_dirty = dom.dirty, bdi.wb_dirty
    if bdi.strictlimit:
        s = _Sample(gdirty, wb_dirty, wb_thresh, wb_bg, wb_dirty, wb_thresh, wb_bg)
    else:
        s = _Sample(gdirty, wb_dirty, wb_thresh, wb_bg, gdirty, lim.thresh, lim.bg_thresh)
    return s, lim


async def balance_dirty_pages(bdi: Bdi, t: DirtyTask, *, capped: bool = False) -> None:
    """The IO-less throttle (3.2+): pause the task in proportion to its dirtying.

    ``capped`` (the seed's placement, the hard cap follows): at the limit
    (``task_rate`` 0) the task does not nap ``max_pause`` and poll, it waits for room
    for its next page in arrival order (``reserve_dirty``), then looks again, so that
    the writers released at the limit are released in turn.
    """
    dom = bdi.domain
    pages_dirtied = t.nr_dirtied
    while True:
        now = dom.clock()
        s, lim = _look(bdi)
        if dom.nr_dirty > lim.bg_thresh:
            kick_flusher(bdi)
        if s.dirty <= dirty_freerun_ceiling(s.thresh, s.bg_thresh):
            t.dirty_paused_when = now
            t.nr_dirtied = 0
            t.nr_dirtied_pause = dirty_poll_interval(s.dirty, s.thresh)
            return
        kick_flusher(bdi)
        bdi.dirty_exceeded = s.wb_dirty > s.wb_thresh and (s.gdirty > lim.thresh or bdi.strictlimit)
        pos = wb_position_ratio(
            lim,
            s.gdirty,
            s.wb_dirty,
            s.wb_thresh,
            s.wb_bg_thresh,
            bdi.avg_write_bw,
            strictlimit=bdi.strictlimit,
        )
        if bdi.strictlimit:
            sp = s.wb_dirty + 1 if s.wb_dirty < 8 else (s.wb_thresh + s.wb_bg_thresh) // 2
            bdi.update_bandwidth(pos=pos, dirty=s.wb_dirty, setpoint=sp)
        else:
            bdi.update_bandwidth(pos=pos, dirty=s.gdirty, setpoint=lim.setpoint)
        task_rate = bdi.dirty_ratelimit * pos
        max_pause = wb_max_pause(bdi.avg_write_bw, s.wb_dirty)
        min_pause, nr_pause = wb_min_pause(
            bdi.avg_write_bw, bdi.dirty_ratelimit, task_rate, max_pause
        )
        t.last_task_rate = task_rate
        if task_rate <= 0 and capped:  # wait for room in turn (for the kernel's
            await _reserve(bdi, t, 1)  # max_pause nap), then look again; still 0 with
            capped = False  # the room held (a limit of 0): the kernel's naps from here
            continue
        if task_rate <= 0:
            pause = max_pause
        else:
            period = pages_dirtied / task_rate
            pause = period
            if t.dirty_paused_when:
                pause -= now - t.dirty_paused_when
            if pause < min_pause:  # too short to sleep: carry the debt forward
                if pause < -1.0:
                    t.dirty_paused_when = now
                    t.nr_dirtied = 0
                elif period:
                    t.dirty_paused_when += period
                    t.nr_dirtied = 0
                elif t.nr_dirtied_pause <= pages_dirtied:
                    t.nr_dirtied_pause += pages_dirtied
                return
            if pause > max_pause:
                now += min(pause - max_pause, max_pause)
                pause = max_pause
        await _pause(t, pause)
        t.dirty_paused_when = now + pause
        t.nr_dirtied = 0
        t.nr_dirtied_pause = nr_pause
        if task_rate > 0 or s.wb_dirty <= WB_STAT_ERROR:
            return


async def _pause(t: DirtyTask, seconds: float) -> None:
    t.pauses += 1
    t.paused_time += seconds
    t.last_pause = seconds
    await trio.sleep(seconds)


# -- the 2.6.2x model --------------------------------------------------------------------
def _crude_ratelimit(dom: DirtyDomain) -> int:
    return min(max(dom.avail // 32, 16), 1024)


async def _crude_ratelimited(bdi: Bdi, t: DirtyTask) -> None:
    dom = bdi.domain
    ratelimit = _crude_ratelimit(dom)
    if bdi.dirty_exceeded:
        ratelimit = DIRTY_EXCEEDED_RATELIMIT
    if dom.bdp_ratelimits >= ratelimit:
        dirtied = max(dom.bdp_ratelimits, _crude_ratelimit(dom))
        dom.bdp_ratelimits = 0
        t.nr_dirtied = 0
        await balance_dirty_pages_crude(bdi, t, dirtied + dirtied // 2)


async def balance_dirty_pages_crude(bdi: Bdi, t: DirtyTask, write_chunk: int) -> None:
    """2.6.2x: write back ``write_chunk`` pages yourself, nap, until under the limit."""
    dom = bdi.domain
    written = 0
    nap = 0.001
    while True:
        lim = dom.limits()
        wb_thresh = bdi.wb_thresh(lim)
        if bdi.wb_dirty <= wb_thresh or dom.dirty < lim.freerun:
            break
        bdi.dirty_exceeded = True
        if bdi.reclaimable > wb_thresh:
            n = await writeback_pages(bdi, write_chunk - written)
            written += n
            t.written_by_self += n
            if bdi.wb_dirty <= bdi.wb_thresh() or written >= write_chunk:
                break
        await _pause(t, nap)
        nap = min(nap * 2, CRUDE_MAX_NAP)
    lim = dom.limits()
    if bdi.wb_dirty <= bdi.wb_thresh(lim) or dom.dirty < lim.freerun:
        bdi.dirty_exceeded = False
    if dom.nr_dirty > lim.bg_thresh:
        kick_flusher(bdi)


# -- writeback -----------------------------------------------------------------------------
async def writeback_pages(
    bdi: Bdi,
    nr_pages: int,
    *,
    older_than: float | None = None,
    keep_going: Callable[[], bool] | None = None,
) -> int:
    """Write up to ``nr_pages`` dirty pages of the device's dirty inodes, oldest inode
    first, ``WRITEBACK_CHUNK`` pages of one before the next (``writeback_sb_inodes``).

    ``older_than``: only inodes dirtied at or before that time (periodic writeback).
    ``keep_going``: checked before each page (background writeback stops under bg).
    """
    written = 0
    for mapping, dirtied_when in list(bdi.b_dirty.items()):
        if older_than is not None and dirtied_when > older_than:
            continue
        a_ops = bdi.a_ops[mapping]
        chunk = 0
        for index in mapping.dirty_indices():
            if written >= nr_pages or chunk >= WRITEBACK_CHUNK:
                break
            if keep_going is not None and not keep_going():
                return written
            page = mapping.pages.get(index)
            if page is not None and await write_one_page(mapping, a_ops, page):
                written += 1
                chunk += 1
                _update_idle_bandwidth(bdi)
        _requeue(bdi, mapping, dirtied_when)
        if written >= nr_pages:
            break
    return written


def _requeue(bdi: Bdi, mapping: AddressSpace, dirtied_when: float) -> None:
    """Still dirty: to the back of the list, keeping its age (``requeue_io``)."""
    if mapping in bdi.b_dirty:
        del bdi.b_dirty[mapping]
        if mapping.dirty_tag:
            bdi.b_dirty[mapping] = dirtied_when


def _update_idle_bandwidth(bdi: Bdi) -> None:
    """Measure bandwidth from the writeback side when no throttled task did for 1 s."""
    if bdi.domain.clock() - bdi.bw_time_stamp >= 1.0:
        bdi.update_bandwidth()


async def run_flusher(bdi: Bdi, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """The device's flusher task (``wb_workfn``); run it in a nursery for the mount's life."""
    dom = bdi.domain
    wake = [trio.Event()]

    def kick() -> None:
        wake[0].set()

    bdi.kick = kick
    last_periodic = dom.clock()
    task_status.started()
    try:
        while True:
            with trio.move_on_at(last_periodic + dom.settings.dirty_writeback_interval):
                await wake[0].wait()
            wake[0] = trio.Event()
            bdi.writeback_in_progress = True
            bdi.flusher_runs += 1
            bdi.bandwidth_estimate_start()
            try:
                while bdi.reclaimable and bdi.over_bg_thresh():
                    if not await writeback_pages(bdi, 1 << 30, keep_going=bdi.over_bg_thresh):
                        break
                now = dom.clock()
                if now >= last_periodic + dom.settings.dirty_writeback_interval:
                    cutoff = now - dom.settings.dirty_expire_interval
                    await writeback_pages(bdi, 1 << 30, older_than=cutoff)
                    last_periodic = now
            finally:
                bdi.writeback_in_progress = False
    finally:
        bdi.kick = None


class FixedBandwidthDevice:
    """A store that transfers one page per ``1/bandwidth`` s, one transfer at a time."""

    def __init__(self, bandwidth: float) -> None:
        if bandwidth <= 0:
            raise ValueError(f"bandwidth must be > 0 pages/s, not {bandwidth}")
        self.bandwidth = bandwidth
        self.pages = 0
        self._lock = trio.Lock()

    async def transfer(self, pages: int = 1) -> None:
        async with self._lock:
            await trio.sleep(pages / self.bandwidth)
            self.pages += pages


# -- observing it ---------------------------------------------------------------------------
class DirtyRecorder:
    """Samples the domain every ``interval`` s of trio time into ``rows``.

    Columns: time, global dirty and writeback, thresholds (thresh, bg_thresh, freerun,
    setpoint, limit), for each device its dirty pages, ``wb_thresh``, bandwidth and rate
    limit, and for each writer its dirtying rate (pages/s over the interval) and mean
    pause (ms) in the interval.
    """

    def __init__(self, domain: DirtyDomain, *, interval: float = 0.1) -> None:
        self.domain = domain
        self.interval = interval
        self.rows: list[dict[str, float]] = []
        self._last: dict[str, tuple[int, int, float]] = {}
        # every writer seen, by name: one that has ended still has its columns (rate 0)
        self._seen: dict[str, DirtyTask] = {}
        self._last_time = 0.0

    def sample(self) -> dict[str, float]:
        dom = self.domain
        now = dom.clock()
        lim = dom.limits()
        row: dict[str, float] = {
            "time": round(now, 6),
            "dirty": dom.dirty,
            "writeback": dom.nr_writeback,
            "thresh": lim.thresh,
            "bg_thresh": lim.bg_thresh,
            "freerun": lim.freerun,
            "setpoint": lim.setpoint,
            "limit": lim.limit,
        }
        for bdi in dom.bdis:
            row[f"{bdi.name}:dirty"] = bdi.wb_dirty
            row[f"{bdi.name}:wb_thresh"] = bdi.wb_thresh(lim)
            row[f"{bdi.name}:write_bw"] = round(bdi.avg_write_bw, 1)
            row[f"{bdi.name}:dirty_ratelimit"] = round(bdi.dirty_ratelimit, 1)
        dt = now - self._last_time
        for t in list(dom.tasks.values()):
            if self._seen.get(t.name) is not t:  # new, or a new writer of that name
                self._seen[t.name] = t
                self._last.pop(t.name, None)
        for t in self._seen.values():
            dirtied, pauses, paused = self._last.get(t.name, (0, 0, 0.0))
            if dt > 0:
                row[f"{t.name}:rate"] = round((t.dirtied_total - dirtied) / dt, 1)
                n = t.pauses - pauses
                mean = (t.paused_time - paused) / n * 1000 if n else 0.0
                row[f"{t.name}:pause_ms"] = round(mean, 2)
            self._last[t.name] = (t.dirtied_total, t.pauses, t.paused_time)
        self._last_time = now
        self.rows.append(row)
        return row

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        self._last_time = self.domain.clock()
        task_status.started()
        while True:
            await trio.sleep(self.interval)
            self.sample()

    def columns(self) -> list[str]:
        cols: dict[str, None] = {}
        for row in self.rows:
            cols.update(dict.fromkeys(row))
        return list(cols)

    def to_csv(self, path: str | Path | None = None) -> str:
        """The series as CSV text (written to ``path`` too when given)."""
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=self.columns(), restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        text = out.getvalue()
        if path is not None:
            Path(path).write_text(text)
        return text

    def writers(self) -> list[str]:
        """The writers' names, in the order they first dirtied a page."""
        return [c[: -len(":rate")] for c in self.columns() if c.endswith(":rate")]

    def plot(self, path: str | Path, *, title: str = "dirty throttling") -> bool:
        """Draw the series as a PNG; False (nothing written) without matplotlib.

        Three panels on one time axis: dirty pages against the thresholds (and each
        device's own count and share); each writer's dirtying rate (1 s moving
        average), their total and the devices' measured write bandwidth; each writer's
        mean pause in the intervals where it paused.  Series are labelled by the
        writers' names.
        """
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return False
        nan = float("nan")
        cols = self.columns()
        rows = self.rows
        t0 = rows[0]["time"] if rows else 0.0
        t = [r["time"] - t0 for r in rows]
        writers = self.writers()
        fig, (ax1, ax2, ax3) = plt.subplots(3, 1, sharex=True, figsize=(10, 10))
        styles = {"thresh": ":", "limit": "-", "setpoint": "-.", "freerun": "--",
                  "bg_thresh": (0, (1, 3))}  # fmt: skip
        ax1.plot(t, [r["dirty"] for r in rows], "k-", lw=2, label="dirty + writeback")
        for name, style in styles.items():
            ax1.plot(t, [r[name] for r in rows], linestyle=style, lw=1, label=name)
        devices = [c[: -len(":dirty")] for c in cols if c.endswith(":dirty")]
        shares = [r.get(f"{d}:wb_thresh", nan) for d in devices for r in rows]
        small = max(shares, default=0.0) < 0.1 * max(r["thresh"] for r in rows)
        dev_ax = ax1.twinx() if small else ax1  # a device with a small share: zoomed
        if len(devices) > 1 or small:
            for d in devices:
                dev_ax.plot(t, [r.get(f"{d}:dirty", nan) for r in rows], lw=1.5,
                            label=f"{d}: dirty + writeback")  # fmt: skip
                dev_ax.plot(t, [r.get(f"{d}:wb_thresh", nan) for r in rows], "--", lw=1.5,
                            label=f"{d}: its share (wb_thresh)")  # fmt: skip
        ax1.set_ylabel("pages (machine)")
        ax1.set_ylim(bottom=0)
        ax1.set_title(
            "dirty pages and the thresholds"
            + (" (the device's own pages on the right axis)" if small else ""),
            fontsize="medium",
        )
        handles, labels = ax1.get_legend_handles_labels()
        if small:
            dev_ax.set_ylabel("pages (device)")
            dev_ax.set_ylim(0, 1.3 * max(max(shares), 1.0))
            more = dev_ax.get_legend_handles_labels()
            handles, labels = handles + more[0], labels + more[1]
        ax1.legend(handles, labels, fontsize="small", ncol=3, loc="lower right")
        span = max(1, round(1.0 / self.interval))  # samples in a 1 s moving average
        total = [0.0] * len(rows)
        for w in writers:
            raw = [r.get(f"{w}:rate", nan) for r in rows]
            smooth = [_mean(raw[max(0, i - span + 1) : i + 1]) for i in range(len(raw))]
            total = [a + (0.0 if b != b else b) for a, b in zip(total, smooth, strict=True)]
            ax2.plot(t, smooth, lw=1, label=w)
            paused = [(x, r.get(f"{w}:pause_ms", 0.0)) for x, r in zip(t, rows, strict=True)]
            paused = [(x, p) for x, p in paused if p > 0]
            if paused:
                ax3.plot(*zip(*paused, strict=True), ".-", lw=0.6, ms=3, label=w)
        bw = [sum(r.get(f"{d}:write_bw", 0.0) for d in devices) for r in rows]
        if len(writers) > 1:
            ax2.plot(t, total, "k-", lw=1.5, label="all writers")
        ax2.plot(t, bw, "k:", lw=1.5, label="write bandwidth (measured)")
        top = 2.5 * max(bw[len(bw) // 2 :] or [1.0])
        if max(total, default=0.0) > top:
            ax2.set_ylim(0, top)
            ax2.set_title("dirtying rate per writer, 1 s moving average "
                          "(free-run burst clipped)", fontsize="medium")  # fmt: skip
        else:
            ax2.set_title("dirtying rate per writer, 1 s moving average", fontsize="medium")
        ax2.set_ylabel("pages/s dirtied")
        ax3.set_ylabel("mean pause (ms)")
        ax3.set_title("throttling pauses per writer (intervals with a pause)", fontsize="medium")
        ax3.set_xlabel("virtual time since the first sample (s)")
        if len(writers) <= 20:
            ax2.legend(fontsize="small", ncol=min(len(writers) + 2, 6), loc="upper right")
            if ax3.lines:
                ax3.legend(fontsize="small", ncol=min(len(writers), 6), loc="upper right")
        fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(path, dpi=90)
        plt.close(fig)
        return True


def _mean(xs: list[float]) -> float:
    vals = [x for x in xs if x == x]
    return sum(vals) / len(vals) if vals else float("nan")
