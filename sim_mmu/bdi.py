"""Dirty-page accounting and thresholds: the domain, the backing devices, the arithmetic.

Models the counting half of ``mm/page-writeback.c`` and ``struct backing_dev_info`` /
``struct bdi_writeback`` (KERNEL.md §4): the throttling loop that uses these numbers is
``sim_mmu.writeback``.

* ``DirtyDomain`` is the machine: a fixed amount of dirtyable memory (``avail`` pages),
  the sysctls (``dirty_ratio``... in ``DirtySettings``), the global counters (dirty =
  reclaimable, writeback) and the proportion of recent writeback completions per device
  (the kernel's ``fprop`` with ~3 s periods) that gives each device its share.
* ``Bdi`` is one backing device (one per mount): its counters (reclaimable, writeback,
  dirtied, written), its measured write bandwidth (an EWMA of completions per 200 ms
  window, further smoothed as ``avg_write_bw``), its ``dirty_ratelimit`` (re-estimated by
  the throttle), ``min_ratio``/``max_ratio``/``strictlimit`` and the list of its dirty
  inodes (``b_dirty``) that the flusher walks.
* The pure functions (``domain_dirty_limits``, ``pos_ratio_polynom``, ``wb_calc_thresh``,
  ``wb_position_ratio``, ``dirty_poll_interval``, ``wb_max_pause``, ``wb_min_pause``) are
  the arithmetic, on plain numbers, so tests check them against hand computation.

The hard cap (the seed's placement, ``sim_mmu.writeback.reserve_dirty``): pages a task
was allowed to dirty and has not dirtied yet are ``inflight`` (domain and device) and
count against the limit; ``has_room``, ``reserve``, ``release`` and ``grant_waiters``
(first come, first served) keep dirty + writeback + in flight under it.  ``listeners``
hear every change of the counters.

Units: pages (ints) for amounts, pages per second (floats) for rates, seconds (floats,
trio time) for durations.  Invariants (checked by ``DirtyDomain.check``): every counter
is >= 0; the global counters are the sums of the devices'; ``Bdi.reclaimable`` equals the
number of dirty pages in its attached mappings.

Accounting is driven by the page cache: an ``AddressSpace`` whose ``bdi`` is set reports
each page newly dirtied, cleaned for I/O, cancelled (truncate) and each writeback start
and end (``sim_mmu.page`` calls ``account_*``).  The task charged for a dirtied page is
the current trio task (the kernel's ``current``).
"""

from __future__ import annotations

import contextvars
import gc
import math
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio

from sim_mmu.page import PAGE_SIZE

if TYPE_CHECKING:
    from sim_mmu.page import AddressSpace

#: Initial bandwidth and rate limit of a new device: 100 MB/s (kernel INIT_BW).
INIT_BW = 100 * (1 << 20) / PAGE_SIZE
#: Bandwidth and rate-limit estimation window (kernel BANDWIDTH_INTERVAL, 200 ms).
BANDWIDTH_INTERVAL = 0.2
#: Period of the write-bandwidth EWMA: the kernel's ``roundup_pow_of_two(3 * HZ)``
#: jiffies, 4.096 s at HZ 250 or 1000 (each 200 ms update closes ~5 % of the gap).
BW_PERIOD = 4.096
#: Period of the completion proportions (fprop, ~3 s).
FPROP_PERIOD = 3.0
#: Longest throttling pause (kernel MAX_PAUSE, 200 ms).
MAX_PAUSE = 0.2
#: The pause a single dirtier aims at (10 ms).
TARGET_PAUSE = 0.01
#: Below this many pages between pauses, pause longer instead (DIRTY_POLL_THRESH).
DIRTY_POLL_THRESH = 32
#: A task's first ``nr_dirtied_pause`` (128 KB).
INITIAL_NR_DIRTIED_PAUSE = 32
#: Pages between checks while the device is over its share (32 KB).
DIRTY_EXCEEDED_RATELIMIT = 8
#: Strictlimit devices with fewer dirty pages than this run at twice the global rate.
STRICT_MIN_DIRTY = 8

#: The task charged for pages dirtied and throttled (the kernel's ``current``): by default
#: the current trio task; a server that handles one writer's requests in many trio tasks
#: (FUSE) sets a longer-lived object here (weakly referenced, named by ``.name``).
CHARGED_TASK: contextvars.ContextVar[Any] = contextvars.ContextVar("charged_task", default=None)


# -- the arithmetic ---------------------------------------------------------------------
@dataclass
class DirtySettings:
    """The vm sysctls (``/proc/sys/vm/dirty_*``).  ``*_bytes`` override the ratios when
    non-zero, as in the kernel (where writing one zeroes the other)."""

    dirty_ratio: float = 20.0
    dirty_background_ratio: float = 10.0
    dirty_bytes: int = 0
    dirty_background_bytes: int = 0
    dirty_writeback_interval: float = 5.0
    dirty_expire_interval: float = 30.0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        for name in ("dirty_ratio", "dirty_background_ratio"):
            value = getattr(self, name)
            if not 0 <= value <= 100:
                raise ValueError(f"{name} must be 0..100, not {value}")
        for name in ("dirty_bytes", "dirty_background_bytes"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        if self.dirty_writeback_interval <= 0 or self.dirty_expire_interval < 0:
            raise ValueError("writeback and expire intervals must be positive")


@dataclass(frozen=True)
class DirtyLimits:
    """The global thresholds at one instant, in pages."""

    thresh: int
    bg_thresh: int
    freerun: int
    limit: int
    setpoint: int


def domain_dirty_limits(avail: int, s: DirtySettings) -> tuple[int, int]:
    """(thresh, bg_thresh) of ``avail`` dirtyable pages (kernel ``domain_dirty_limits``)."""
    if s.dirty_bytes:
        thresh = -(-s.dirty_bytes // PAGE_SIZE)
    else:
        thresh = int(s.dirty_ratio * avail / 100)
    if s.dirty_background_bytes:
        bg = -(-s.dirty_background_bytes // PAGE_SIZE)
    else:
        bg = int(s.dirty_background_ratio * avail / 100)
    if bg >= thresh:
        bg = thresh // 2
    return thresh, bg


def dirty_freerun_ceiling(thresh: int, bg_thresh: int) -> int:
    return (thresh + bg_thresh) // 2


def pos_ratio_polynom(setpoint: float, dirty: float, limit: float) -> float:
    """1 + ((setpoint − dirty)/(limit − setpoint))³, clamped to [0, 2]."""
    x = (setpoint - dirty) / max(limit - setpoint, 1)
    return min(max(1.0 + x * x * x, 0.0), 2.0)


def dirty_poll_interval(dirty: int, thresh: int) -> int:
    """Pages a free-running task may dirty before it looks again: √(headroom), rounded
    down to a power of two (kernel ``dirty_poll_interval``)."""
    if thresh > dirty:
        return 1 << ((thresh - dirty).bit_length() - 1 >> 1)
    return 1


def wb_calc_thresh(
    thresh: int,
    fraction: float,
    *,
    min_ratio: float = 0.0,
    max_ratio: float = 100.0,
    sum_min_ratio: float = 0.0,
    floor: int = 0,
) -> int:
    """A device's share of ``thresh`` (kernel ``__wb_calc_thresh``).

    ``fraction`` of the completions, of what the other devices' ``min_ratio`` leave, plus
    its own ``min_ratio``; at least ``floor`` (6.10+: a little headroom for an idle
    device), capped at ``max_ratio``.
    """
    wb_thresh = thresh * (100 - sum_min_ratio) / 100 * fraction
    wb_thresh += thresh * min_ratio / 100
    wb_thresh = max(wb_thresh, floor)
    return int(min(wb_thresh, thresh * max_ratio / 100))


def wb_position_ratio(
    lim: DirtyLimits,
    dirty: int,
    wb_dirty: int,
    wb_thresh: int,
    wb_bg_thresh: int,
    write_bw: float,
    *,
    strictlimit: bool,
) -> float:
    """How far to scale the device's rate limit: 0 (stop) .. ≈2 (kernel
    ``wb_position_ratio``): the global cubic, then the device's line or, for strictlimit
    devices, the cubic on the device's own numbers."""
    if dirty >= lim.limit:
        return 0.0
    pos = pos_ratio_polynom(lim.setpoint, dirty, lim.limit)
    if strictlimit:
        if wb_dirty < STRICT_MIN_DIRTY:
            return min(pos * 2, 2.0)
        if wb_dirty >= wb_thresh:
            return 0.0
        wb_setpoint = dirty_freerun_ceiling(wb_thresh, wb_bg_thresh)
        if wb_setpoint in (0, wb_thresh):
            return 0.0
        return min(pos, pos_ratio_polynom(wb_setpoint, wb_dirty, wb_thresh))
    wb_thresh = min(wb_thresh, lim.thresh)
    wb_thresh = max(wb_thresh, (lim.limit - dirty) // 8)
    x = wb_thresh / max(lim.thresh, 1)
    wb_setpoint = lim.setpoint * x
    span = (lim.thresh - wb_thresh + 8 * write_bw) * x
    x_intercept = wb_setpoint + span
    if wb_dirty < x_intercept - span / 4:
        pos = pos * (x_intercept - wb_dirty) / max(x_intercept - wb_setpoint, 1)
    else:
        pos /= 4
    reserve = wb_thresh / 2  # safeguard against the device's pool running dry
    if wb_dirty < reserve:
        pos = pos * reserve / wb_dirty if wb_dirty > reserve / 8 else pos * 8
    return pos


def wb_max_pause(write_bw: float, wb_dirty: int) -> float:
    """Longest pause: enough to drain an eighth of the device's dirty pages, ≤ 200 ms."""
    return min(wb_dirty / (8 * max(write_bw, 1.0)) + 0.001, MAX_PAUSE)


def wb_min_pause(
    write_bw: float, dirty_ratelimit: float, task_rate: float, max_pause: float
) -> tuple[float, int]:
    """(min_pause, nr_dirtied_pause) for the next round (kernel ``wb_min_pause``).

    Aims at a 10 ms pause for one dirtier, +10 ms per doubling of the number of dirtiers
    (write_bw / dirty_ratelimit), at most max_pause/2; at least 32 pages between pauses
    when that fits in ``max_pause``.
    """
    t = TARGET_PAUSE
    hi = int(math.log2(max(write_bw, 1.0)))
    lo = int(math.log2(max(dirty_ratelimit, 1.0)))
    if hi > lo:
        t += (hi - lo) * 10 / 1024
    t = min(t, 0.001 + max_pause / 2)
    pages = int(dirty_ratelimit * t)
    if pages < DIRTY_POLL_THRESH:
        t = max_pause
        pages = int(dirty_ratelimit * t)
        if pages > DIRTY_POLL_THRESH:
            pages = DIRTY_POLL_THRESH
            t = DIRTY_POLL_THRESH / dirty_ratelimit
    if pages / (task_rate + 1) > max_pause:
        t = max_pause
        pages = int(task_rate * t)
    return (0.001 + t / 2 if pages >= DIRTY_POLL_THRESH else t), pages


# -- per-task state ---------------------------------------------------------------------
@dataclass
class DirtyTask:
    """What the kernel keeps in ``task_struct`` for throttling, plus statistics."""

    name: str
    nr_dirtied: int = 0
    nr_dirtied_pause: int = INITIAL_NR_DIRTIED_PAUSE
    # pages it may dirty before it looks again, as its last look let it go (the
    # ``after`` placement's bound: dirty − limit ≤ the sum over the writers)
    granted: int = INITIAL_NR_DIRTIED_PAUSE
    dirty_paused_when: float = 0.0
    dirtied_total: int = 0
    pauses: int = 0
    paused_time: float = 0.0
    last_pause: float = 0.0
    last_task_rate: float = 0.0
    written_by_self: int = 0  # crude model: pages this task wrote back itself
    # The hard cap (``sim_mmu.writeback.reserve_dirty``): pages this task may dirty on
    # ``reserved_bdi`` that are counted as in flight until they are dirty (or given back).
    reserved: int = 0
    reserved_bdi: Bdi | None = None
    cap_waits: int = 0  # times it waited at the hard limit
    cap_waited: float = 0.0  # seconds it waited there


# -- the domain -------------------------------------------------------------------------
class DirtyDomain:
    """The machine's dirty memory (kernel ``global_wb_domain`` + global vmstat counters).

    ``throttle`` selects the ``balance_dirty_pages`` model: ``"modern"`` (IO-less, 3.2+),
    ``"crude"`` (2.6.2x: the writer writes back itself, then naps) or ``"off"`` (no
    throttling; the flusher is still kicked above the background threshold).
    """

    THROTTLES = ("modern", "crude", "off")

    def __init__(
        self,
        avail: int,
        settings: DirtySettings | None = None,
        *,
        throttle: str = "modern",
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        if avail <= 0:
            raise ValueError(f"avail must be > 0 pages, not {avail}")
        self.avail = avail
        self.settings = settings or DirtySettings()
        self.throttle = throttle
        self.clock = clock
        self.bdis: list[Bdi] = []
        self.nr_dirty = 0
        self.nr_writeback = 0
        self.dirty_limit = 0  # the smoothed hard limit (dom->dirty_limit)
        self.dirty_limit_tstamp = 0.0
        self.max_dirty = 0  # peak of nr_dirty + nr_writeback, checked at every dirtying
        self.max_over_limit = -(1 << 62)  # peak of (dirty − limit) at every dirtying
        self.bdp_ratelimits = 0  # pages dirtied since a task last balanced (one CPU)
        self.tasks: weakref.WeakKeyDictionary[Any, DirtyTask] = weakref.WeakKeyDictionary()
        # Called after every change of the counters (``"dirtied"``, ``"cleaned"``,
        # ``"cancelled"``, ``"writeback_start"``, ``"writeback_end"``, ``"reserved"``,
        # ``"released"``) with the device: tests check the limit after every event.
        self.listeners: list[Callable[[str, Bdi], None]] = []
        # The hard cap: pages between a passed check and becoming dirty (``reserve_dirty``)
        # and the writers waiting for room, first come first served.
        self.inflight = 0
        self.cap_waiters: deque[CapWaiter] = deque()
        self._completions_period = int(self.now_or_zero() / FPROP_PERIOD)

    def now_or_zero(self) -> float:
        """The clock, or 0 when created outside a trio run."""
        try:
            return self.clock()
        except RuntimeError:
            return 0.0

    @property
    def throttle(self) -> str:
        return self._throttle

    @throttle.setter
    def throttle(self, value: str) -> None:
        if value not in self.THROTTLES:
            raise ValueError(f"throttle must be one of {self.THROTTLES}, not {value!r}")
        self._throttle = value

    def __repr__(self) -> str:
        return f"<DirtyDomain avail={self.avail} dirty={self.nr_dirty} wb={self.nr_writeback}>"

    @property
    def dirty(self) -> int:
        """Global dirty: reclaimable + under writeback (``gdtc->dirty``)."""
        return self.nr_dirty + self.nr_writeback

    def limits(self) -> DirtyLimits:
        thresh, bg = domain_dirty_limits(self.avail, self.settings)
        freerun = dirty_freerun_ceiling(thresh, bg)
        limit = max(thresh, self.dirty_limit)
        return DirtyLimits(thresh, bg, freerun, limit, (freerun + limit) // 2)

    def update_dirty_limit(self) -> None:
        """Follow a raised threshold at once, a lowered one slowly (``update_dirty_limit``)."""
        thresh = self.limits().thresh
        limit = self.dirty_limit
        if limit < thresh:
            limit = thresh
        elif limit > thresh:
            floor = max(thresh, self.dirty)
            if limit > floor:
                limit -= (limit - floor) >> 5
        self.dirty_limit = limit
        self.dirty_limit_tstamp = self.clock()

    def sum_min_ratio(self) -> float:
        return sum(b.min_ratio for b in self.bdis)

    def task_state(self, task: Any = None) -> DirtyTask:
        """The throttle state of ``task`` (default: ``CHARGED_TASK``, else the current
        trio task)."""
        if task is None:
            task = CHARGED_TASK.get() or trio.lowlevel.current_task()
        state = self.tasks.get(task)
        if state is None:
            state = DirtyTask(getattr(task, "name", repr(task)))
            self.tasks[task] = state
            # a task that ends holding room gives it back (counters only: no wake-ups
            # from a finalizer; waiters look again at least every MAX_PAUSE)
            weakref.finalize(task, _forget_reservation, state)
        return state

    # -- the hard cap -----------------------------------------------------------------
    def has_room(self, bdi: Bdi, pages: int) -> bool:
        """May ``pages`` more pages be dirtied on ``bdi`` without passing the hard limit:
        global dirty + writeback + in flight, and for a strictlimit device its own share?
        With nothing dirty, under writeback or in flight there is always room (a limit
        below one page must not stop every writer for good)."""
        lim = self.limits()
        held = self.dirty + self.inflight
        if held and held + pages > lim.limit:
            return False
        if bdi.strictlimit:
            own = bdi.wb_dirty + bdi.inflight
            if own and own + pages > bdi.wb_thresh(lim):
                return False
        return True

    def reserve(self, t: DirtyTask, bdi: Bdi, pages: int) -> None:
        """Count ``pages`` as in flight for ``t`` on ``bdi`` (the check passed)."""
        if t.reserved:
            self.release(t)
        t.reserved, t.reserved_bdi = pages, bdi
        self.inflight += pages
        bdi.inflight += pages
        self._event("reserved", bdi)

    def release(self, t: DirtyTask) -> None:
        """Give back what ``t`` reserved and did not dirty, and let waiters in."""
        bdi = t.reserved_bdi
        if bdi is None:
            return
        if t.reserved:
            _forget_reservation(t)
            self._event("released", bdi)
            self.grant_waiters()
        t.reserved_bdi = None

    def grant_waiters(self) -> None:
        """Room was made: reserve for the waiters in arrival order while it lasts.  A
        waiter held back only by its own device's share does not block the others; one
        held back by the global limit stops the round (first come, first served)."""
        if not self.cap_waiters:
            return
        kept: deque[CapWaiter] = deque()
        while self.cap_waiters:
            w = self.cap_waiters.popleft()
            if self.has_room(w.bdi, w.pages):
                self.reserve(w.task, w.bdi, w.pages)
                w.granted = True
                w.event.set()
                continue
            kept.append(w)
            held = self.dirty + self.inflight
            if held and held + w.pages > self.limits().limit:
                break
        kept.extend(self.cap_waiters)
        self.cap_waiters = kept

    def _room_made(self, event: str, bdi: Bdi) -> None:
        self._event(event, bdi)
        if self.cap_waiters:
            self.grant_waiters()

    def _event(self, event: str, bdi: Bdi) -> None:
        for listener in self.listeners:
            listener(event, bdi)

    # -- completion proportions (fprop, ~3 s periods) -------------------------------
    def _age_completions(self) -> None:
        period = int(self.now_or_zero() / FPROP_PERIOD)  # readable outside a trio run
        shift = period - self._completions_period
        if shift > 0:
            for bdi in self.bdis:
                bdi.completions = bdi.completions / 2.0**shift if shift < 64 else 0.0
            self._completions_period = period

    def wb_fraction(self, bdi: Bdi) -> float:
        """The device's share of recent writeback completions (0..1)."""
        self._age_completions()
        total = sum(b.completions for b in self.bdis)
        return bdi.completions / total if total else 0.0

    def _note_dirtied(self) -> None:
        dirty = self.dirty
        if dirty > self.max_dirty:
            self.max_dirty = dirty
        over = dirty - self.limits().limit
        if over > self.max_over_limit:
            self.max_over_limit = over

    def check(self) -> None:
        """Assert the counters' invariants (raises AssertionError with the difference)."""
        assert self.nr_dirty == sum(b.reclaimable for b in self.bdis), self
        assert self.nr_writeback == sum(b.writeback for b in self.bdis), self
        assert self.inflight == sum(b.inflight for b in self.bdis) >= 0, self
        was_enabled = gc.isenabled()
        gc.disable()  # no task may die (and give its room back) between the two reads
        try:
            inflight = self.inflight
            reserved = sum(t.reserved for t in list(self.tasks.values()))
        finally:
            if was_enabled:
                gc.enable()
        assert inflight == reserved, (self, reserved)  # dead tasks' room is given back
        for b in self.bdis:
            b.check()


@dataclass(eq=False)
class CapWaiter:
    """A writer waiting at the hard limit for room for ``pages`` pages on ``bdi``."""

    task: DirtyTask
    bdi: Bdi
    pages: int
    event: trio.Event = field(default_factory=trio.Event)
    granted: bool = False


def _forget_reservation(t: DirtyTask) -> None:
    """Take ``t``'s in-flight pages off the counters (no wake-ups)."""
    bdi = t.reserved_bdi
    if bdi is not None and t.reserved:
        bdi.inflight -= t.reserved
        bdi.domain.inflight -= t.reserved
    t.reserved = 0


@dataclass(frozen=True)
class BdiStatistics:
    reclaimable: int
    writeback: int
    dirtied: int
    written: int
    cancelled: int
    write_bw: float
    avg_write_bw: float
    dirty_ratelimit: float
    wb_thresh: int
    wb_bg_thresh: int
    dirty_exceeded: bool
    flusher_runs: int
    max_wb_dirty: int


@dataclass(eq=False)
class Bdi:
    """One backing device (kernel ``backing_dev_info`` + its ``bdi_writeback``).

    A filesystem creates one per mount and attaches each inode's page cache with
    ``attach(mapping, a_ops)``; the page cache then reports to it.  FUSE-like devices:
    ``Bdi.fuse(domain)`` (``max_ratio`` 1 % and ``strictlimit``).
    """

    domain: DirtyDomain
    name: str = "bdi"
    min_ratio: float = 0.0
    max_ratio: float = 100.0
    strictlimit: bool = False
    reclaimable: int = 0
    writeback: int = 0
    dirtied: int = 0
    written: int = 0
    cancelled: int = 0
    inflight: int = 0  # pages reserved under the hard cap, not dirty yet
    completions: float = 0.0
    write_bw: float = INIT_BW
    avg_write_bw: float = INIT_BW
    dirty_ratelimit: float = INIT_BW
    balanced_dirty_ratelimit: float = INIT_BW
    bw_time_stamp: float = 0.0
    written_stamp: int = 0
    dirtied_stamp: int = 0
    dirty_exceeded: bool = False
    writeback_in_progress: bool = False
    flusher_runs: int = 0
    max_wb_dirty: int = 0
    b_dirty: dict[AddressSpace, float] = field(default_factory=dict)
    a_ops: dict[AddressSpace, Any] = field(default_factory=dict)
    kick: Callable[[], None] | None = None  # set by the running flusher

    def __post_init__(self) -> None:
        self.set_ratios(self.min_ratio, self.max_ratio)
        self.bw_time_stamp = self.domain.now_or_zero()
        self.domain.bdis.append(self)

    @classmethod
    def fuse(cls, domain: DirtyDomain, name: str = "fuse") -> Bdi:
        """A FUSE mount's device: ``max_ratio`` 1 %, ``strictlimit`` (``fuse_bdi_init``)."""
        return cls(domain, name, max_ratio=1.0, strictlimit=True)

    def __repr__(self) -> str:
        return f"<Bdi {self.name} dirty={self.reclaimable} wb={self.writeback}>"

    def set_ratios(self, min_ratio: float, max_ratio: float) -> None:
        """Set ``min_ratio``/``max_ratio`` (sysfs), refusing what the kernel refuses."""
        if not 0 <= min_ratio <= max_ratio <= 100:
            raise ValueError(f"need 0 <= min_ratio <= max_ratio <= 100: {min_ratio}, {max_ratio}")
        others = sum(b.min_ratio for b in self.domain.bdis if b is not self)
        if others + min_ratio >= 100:
            raise ValueError("the sum of min_ratio over all devices must stay below 100")
        self.min_ratio, self.max_ratio = min_ratio, max_ratio

    def close(self) -> None:
        """Unregister (unmount): its pages must be clean and written."""
        if self.reclaimable or self.writeback:
            raise RuntimeError(f"{self!r} still has dirty or writeback pages")
        self.domain.bdis.remove(self)

    # -- the page cache's side --------------------------------------------------------
    def attach(self, mapping: AddressSpace, a_ops: Any) -> None:
        """Account ``mapping``'s pages to this device; the flusher writes them with
        ``a_ops.writepage``.  Pages already dirty are counted now."""
        if mapping.bdi is not None and mapping.bdi is not self:
            raise ValueError(f"{mapping!r} is already attached to {mapping.bdi!r}")
        self.a_ops[mapping] = a_ops
        if mapping.bdi is None:
            mapping.bdi = self
            for _ in mapping.dirty_tag:
                self.account_page_dirtied(mapping, charge=False)
            self.domain.nr_writeback += len(mapping.writeback_tag)
            self.writeback += len(mapping.writeback_tag)

    def detach(self, mapping: AddressSpace) -> None:
        """Inode eviction: the mapping must be clean."""
        if mapping.dirty_tag or mapping.writeback_tag:
            raise RuntimeError(f"detach of {mapping!r} with dirty or writeback pages")
        self.a_ops.pop(mapping, None)
        self.b_dirty.pop(mapping, None)
        mapping.bdi = None

    def account_page_dirtied(self, mapping: AddressSpace, *, charge: bool = True) -> None:
        """A page became dirty (``folio_account_dirtied`` + ``__mark_inode_dirty``)."""
        self.reclaimable += 1
        self.dirtied += 1
        dom = self.domain
        dom.nr_dirty += 1
        dom.bdp_ratelimits += 1
        if mapping not in self.b_dirty:
            self.b_dirty[mapping] = dom.clock()
        if charge:
            task = dom.task_state()
            task.nr_dirtied += 1
            task.dirtied_total += 1
            if task.reserved and task.reserved_bdi is self:  # in flight no more: dirty
                task.reserved -= 1
                self.inflight -= 1
                dom.inflight -= 1
        wb_dirty = self.reclaimable + self.writeback
        if wb_dirty > self.max_wb_dirty:
            self.max_wb_dirty = wb_dirty
        dom._note_dirtied()
        if dom.listeners:
            dom._event("dirtied", self)

    def account_page_cleaned(self, mapping: AddressSpace, *, cancelled: bool = False) -> None:
        """A dirty page was cleaned for I/O or dropped (``folio_account_cleaned``); a
        mapping left clean leaves the dirty-inode list."""
        if not mapping.dirty_tag:
            self.b_dirty.pop(mapping, None)
        self.reclaimable -= 1
        self.domain.nr_dirty -= 1
        if cancelled:
            self.cancelled += 1
            self.domain._room_made("cancelled", self)
        elif self.domain.listeners:
            self.domain._event("cleaned", self)

    def account_writeback_start(self) -> None:
        self.writeback += 1
        self.domain.nr_writeback += 1
        if self.domain.listeners:
            self.domain._event("writeback_start", self)

    def account_writeback_end(self, *, completed: bool = True) -> None:
        """I/O done (``folio_end_writeback`` → ``__wb_writeout_add``): a completion."""
        self.writeback -= 1
        self.domain.nr_writeback -= 1
        if completed:
            self.written += 1
            self.domain._age_completions()
            self.completions += 1
        self.domain._room_made("writeback_end", self)

    # -- thresholds -------------------------------------------------------------------
    def wb_thresh(self, lim: DirtyLimits | None = None) -> int:
        lim = lim or self.domain.limits()
        dom = self.domain
        thresh_headroom = max(lim.thresh - dom.dirty, 0)
        return wb_calc_thresh(
            lim.thresh,
            dom.wb_fraction(self),
            min_ratio=self.min_ratio,
            max_ratio=self.max_ratio,
            sum_min_ratio=dom.sum_min_ratio(),
            floor=thresh_headroom // (100 if self.strictlimit else 8),
        )

    def wb_bg_thresh(self, wb_thresh: int, lim: DirtyLimits) -> int:
        return wb_thresh * lim.bg_thresh // max(lim.thresh, 1)

    @property
    def wb_dirty(self) -> int:
        return self.reclaimable + self.writeback

    def over_bg_thresh(self) -> bool:
        """Background writeback should run (kernel ``wb_over_bg_thresh``)."""
        lim = self.domain.limits()
        if self.domain.nr_dirty > lim.bg_thresh:
            return True
        bg_share = wb_calc_thresh(
            lim.bg_thresh,
            self.domain.wb_fraction(self),
            min_ratio=self.min_ratio,
            max_ratio=self.max_ratio,
            sum_min_ratio=self.domain.sum_min_ratio(),
        )
        return self.reclaimable > bg_share

    # -- bandwidth estimation ---------------------------------------------------------
    def bandwidth_estimate_start(self) -> None:
        """Writeback starts after idling: do not count the idle time (6.x)."""
        now = self.domain.clock()
        if now - self.bw_time_stamp > 1.0 and not self.writeback:
            self.bw_time_stamp = now
            self.written_stamp = self.written
            self.dirtied_stamp = self.dirtied

    def update_write_bandwidth(self, elapsed: float) -> None:
        """EWMA of completions over ``BW_PERIOD``, then the spike filter."""
        bw = (self.written - self.written_stamp) / elapsed
        if elapsed > BW_PERIOD:
            self.write_bw = self.avg_write_bw = max(bw, 1.0)
            return
        old, avg = self.write_bw, self.avg_write_bw
        bw = (bw * elapsed + old * (BW_PERIOD - elapsed)) / BW_PERIOD
        if avg > old >= bw:
            avg -= (avg - old) / 8
        if avg < old <= bw:
            avg += (old - avg) / 8
        self.write_bw = bw
        self.avg_write_bw = max(avg, 1.0)

    def update_dirty_ratelimit(self, elapsed: float, pos: float, dirty: int, setpoint: int) -> None:
        """Re-estimate ``dirty_ratelimit`` toward write_bw / N (``wb_update_dirty_ratelimit``).

        ``dirty``/``setpoint`` are the device's own for strictlimit devices.
        """
        dirty_rate = (self.dirtied - self.dirtied_stamp) / elapsed
        ratelimit = self.dirty_ratelimit
        task_rate = ratelimit * pos + 1
        balanced = min(task_rate * self.avg_write_bw / max(dirty_rate, 1.0), self.avg_write_bw)
        step = 0.0
        if dirty < setpoint:
            x = min(self.balanced_dirty_ratelimit, balanced, task_rate)
            if ratelimit < x:
                step = x - ratelimit
        else:
            x = max(self.balanced_dirty_ratelimit, balanced, task_rate)
            if ratelimit > x:
                step = ratelimit - x
        shift = int(ratelimit / (2 * step + 1))  # slow down near the target
        step = float(-(-(int(step) >> shift) // 8)) if shift < 64 else 0.0
        ratelimit = ratelimit + step if dirty < setpoint else ratelimit - step
        self.dirty_ratelimit = max(ratelimit, 1.0)
        self.balanced_dirty_ratelimit = balanced

    def update_bandwidth(
        self, *, pos: float | None = None, dirty: int = 0, setpoint: int = 0
    ) -> None:
        """Every ≥ 200 ms: write bandwidth, and with ``pos`` (from a throttled task) the
        domain's smoothed limit and the rate limit (kernel ``__wb_update_bandwidth``)."""
        now = self.domain.clock()
        elapsed = now - self.bw_time_stamp
        if elapsed < BANDWIDTH_INTERVAL:
            return
        if pos is not None:
            self.domain.update_dirty_limit()
            self.update_dirty_ratelimit(elapsed, pos, dirty, setpoint)
        self.update_write_bandwidth(elapsed)
        self.dirtied_stamp = self.dirtied
        self.written_stamp = self.written
        self.bw_time_stamp = now

    def check(self) -> None:
        assert self.reclaimable >= 0, self
        assert self.writeback >= 0, self
        dirty_pages = sum(len(m.dirty_tag) for m in self.a_ops)
        assert self.reclaimable == dirty_pages, (self, dirty_pages)

    def statistics(self) -> BdiStatistics:
        lim = self.domain.limits()
        wb_thresh = self.wb_thresh(lim)
        return BdiStatistics(
            self.reclaimable,
            self.writeback,
            self.dirtied,
            self.written,
            self.cancelled,
            self.write_bw,
            self.avg_write_bw,
            self.dirty_ratelimit,
            wb_thresh,
            self.wb_bg_thresh(wb_thresh, lim),
            self.dirty_exceeded,
            self.flusher_runs,
            self.max_wb_dirty,
        )
