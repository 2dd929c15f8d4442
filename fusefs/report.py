"""`mkwritefs scenario report NAME --html FILE`: one self-contained HTML page per scenario.

Owns the visual report of issue 5: the scenario is played under every policy it declares
(``fusefs.runner``: one policy after another in this process, each on its own temporary
mount), and the page shows the story, the side-by-side table (policy columns, expectation
rows, held/failed marks, the counters), per policy an SVG timeline of what the simulated
processes and the flusher did (faults, page_mkwrite and its result, SIGBUS, mkclean,
reservations, writeback, throttle pauses) with the number of dirty pages beneath it, a
plot of dirty pages after each step of the story for every policy, and the life of one
page's page-table entry (``--page N``): read-only, page_mkwrite, writable, cleaned by
``clear_page_dirty_for_io`` (``page_mkclean``), write-protected again.

How it watches a run (a ``Recorder``): it wraps hooks of one ``runner.Run`` without
changing it - the simulation's event log (every recorded MMU event is also a sample), the
filesystem's ``on_vm_event`` and ``balance_dirty``, and ``Run.step`` - so every event
lands in one list in the order it happened, with the dirty-page count and every mapped
page's PTE bits at that moment. Virtual time often stands still (a whole story can happen
at t=0), so the timeline's x axis is the order of events; time is written at the ticks.

Invariants: the page needs no server and no network (inline CSS and SVG only); nothing
here changes what a run does or what it reports.
"""

from __future__ import annotations

import html
import math
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio
import trio.testing

from fusefs.runner import PolicyResult, Run, _with_after
from fusefs.scenario import Scenario, Step
from fusefs.scenario_report import COUNTER_ROWS
from sim_mmu.pte import PteView
from sim_mmu.trace import Trace

PAGE = 4096
MAX_PAGES_SAMPLED = 64  # per mapping: the PTEs looked at after every event (and --page's)
PAGE_EVENTS = {"fault", "wp_fault", "mkwrite", "cow", "mkclean", "pte_changed", "sigbus"}
MAX_COLUMNS = 130  # a longer timeline is condensed: several events to a column


@dataclass(frozen=True)
class Item:
    """One thing that happened, in order: an MMU event, a filesystem event, a step."""

    seq: int
    time: float
    track: int
    kind: str  # fault, mkwrite, sigbus, mkclean, writeback, reserve, throttle, step, ...
    detail: str
    page: int = -1  # file page (pgoff); -1 none
    addr: int = 0  # MMU events: the virtual address
    ino: int = 0  # filesystem events: the inode
    dirty: int = 0  # dirty pages after it
    ptes: tuple[tuple[tuple[int, int], str], ...] = ()  # ((pid, vaddr), "PWD..") mapped pages
    end_seq: int = -1  # steps: the seq after the step's last event


@dataclass
class Recording:
    """One policy's run: the runner's result and what the recorder saw."""

    result: PolicyResult
    items: list[Item] = field(default_factory=list)
    dirty_after_step: dict[int, int] = field(default_factory=dict)  # id(Step) -> pages
    watch: int | None = None  # the page sampled beyond MAX_PAGES_SAMPLED, if any


class _SampledTrace(Trace):
    """The simulation's event log, also telling the recorder of every event."""

    def __init__(self, on_record: Callable[..., None]) -> None:
        super().__init__()
        self.on_record = on_record

    def record(self, kind: str, pid: int, addr: int = 0, pgoff: int = -1, detail: str = "") -> None:
        super().record(kind, pid, addr, pgoff, detail)
        self.on_record(kind, pid, addr, pgoff, detail)


class Recorder:
    """Watches one ``Run`` through its hooks (see the module docstring)."""

    def __init__(self, run: Run, watch: int | None = None) -> None:
        self.run = run
        self.watch = watch  # a page whose PTE is sampled even beyond MAX_PAGES_SAMPLED
        self.items: list[Item] = []
        self.dirty_after_step: dict[int, int] = {}
        self._current: dict[tuple[int, int], str] = {}
        self._snapshot: tuple[tuple[tuple[int, int], str], ...] = ()
        self._stale = True
        run.sim.trace = _SampledTrace(self._mmu_event)
        fs_hook = run.fs.on_vm_event
        run.fs.on_vm_event = lambda ino, kind, index, detail: self._fs_event(
            fs_hook, ino, kind, index, detail
        )
        balance = run.fs.balance_dirty
        run.fs.balance_dirty = lambda data: self._balance(balance, data)
        step = run.step
        run.step = lambda s: self._step(step, s)  # type: ignore[method-assign]

    def _dirty(self) -> int:
        return sum(i.data.nr_dirty for i in self.run.fs.inodes.values() if i.data is not None)

    def _sampled(self, length: int) -> list[int]:
        pages = list(range(min(length // PAGE, MAX_PAGES_SAMPLED)))
        if self.watch is not None and MAX_PAGES_SAMPLED <= self.watch < length // PAGE:
            pages.append(self.watch)
        return pages

    def _ptes(self) -> tuple[tuple[tuple[int, int], str], ...]:
        """Every sampled PTE now: all of them after a step or an mm-wide event (mmap,
        munmap, fork, exit...), else only the one page the last event was about."""
        if self._stale:
            self._current = {}
            for proc in self.run.procs.values():
                for addr, length, _f in self.run.maps.values():
                    for n in self._sampled(length):
                        self._look(proc, addr + n * PAGE)
            self._stale = False
            self._snapshot = tuple(self._current.items())
        return self._snapshot

    def _look(self, proc: Any, vaddr: int) -> bool:
        """Sample one PTE into ``_current``; True if it changed."""
        try:
            pte = proc.pte(vaddr)
        except Exception:  # an exited process: no page table to look at
            pte = None
        bits = _bits(pte) if pte is not None and pte.present else None
        key = (proc.pid, vaddr)
        if self._current.get(key) == bits:
            return False
        if bits is None:
            del self._current[key]
        else:
            self._current[key] = bits
        return True

    def _look_page(self, pid: int, addr: int) -> None:
        vaddr = addr - addr % PAGE
        proc = next((p for p in self.run.procs.values() if p.pid == pid), None)
        for start, length, _f in self.run.maps.values():
            if proc is not None and start <= vaddr < start + length:
                if (vaddr - start) // PAGE in self._sampled(length) and self._look(proc, vaddr):
                    self._snapshot = tuple(self._current.items())
                return

    def _add(self, track: int, kind: str, detail: str, **kw: Any) -> Item:
        item = Item(len(self.items), trio.current_time(), track, kind, detail,
                    dirty=self._dirty(), ptes=self._ptes(), **kw)  # fmt: skip
        self.items.append(item)
        return item

    def mounted(self) -> None:
        """The runner mounts: virtual time ends here, real time goes on."""
        self._add(0, "mount", "mounted: real time from here")

    def _mmu_event(self, kind: str, pid: int, addr: int, pgoff: int, detail: str) -> None:
        if kind in PAGE_EVENTS and addr and not self._stale:
            self._look_page(pid, addr)
        else:
            self._stale = True
        self._add(pid, kind, detail, page=pgoff, addr=addr)

    def _fs_event(self, hook: Any, ino: int, kind: str, index: int, detail: str) -> None:
        if hook is not None:
            hook(ino, kind, index, detail)
        track = self.run.fs_events[-1].track if self.run.fs_events else 0
        self._add(track, kind, detail, page=index, ino=ino)

    async def _balance(self, balance: Any, data: Any) -> None:
        start = trio.current_time()
        await balance(data)
        if trio.current_time() > start:
            track = self.run.fs_events[-1].track if self.run.fs_events else 0
            self._add(track, "throttle", f"paused {trio.current_time() - start:.3f} s")

    async def _step(self, step: Any, s: Step) -> None:
        if s.is_expectation or s.kind == "together":
            await step(s)
            return
        first = len(self.items)
        spans = len(self.run.spans)
        start = trio.current_time()
        await step(s)
        track, result = 0, "ok"
        if len(self.run.spans) > spans:
            span = self.run.spans[-1]
            track, result = span.track, span.detail
        label = s.name or s.kind
        self.items.insert(first, Item(first, start, track, "step", f"{s.kind}: {label} → {result}",
                                      end_seq=len(self.items) + 1))  # fmt: skip
        self.items[first + 1 :] = [
            _renumber(it, n) for n, it in enumerate(self.items[first + 1 :], start=first + 1)
        ]
        self.dirty_after_step[id(s)] = self._dirty()
        self._stale = True  # a step may change PTEs without an event (a store's D bit)


def _renumber(item: Item, n: int) -> Item:
    if item.seq == n:
        return item
    return Item(n, item.time, item.track, item.kind, item.detail, item.page, item.addr, item.ino,
                item.dirty, item.ptes, item.end_seq)  # fmt: skip


def _bits(pte: PteView) -> str:
    return "".join(c for c, b in zip("WDAZ", (pte.writable, pte.dirty, pte.anon, pte.zero),
                                     strict=True) if b)  # fmt: skip


# -- playing ---------------------------------------------------------------------------------


def record_policy(
    scenario: Scenario, policy: str, *, profile: str | None = None, watch: int | None = None
) -> Recording:
    """Play ``scenario`` under ``policy`` (its own trio run on the runner's virtual-then-real
    clock, its own temporary mount) and record it."""
    from fusefs.mount import serving

    clock = trio.testing.MockClock(rate=0.0, autojump_threshold=0)
    mountpoint = tempfile.mkdtemp(prefix="mkwritefs-report-")

    async def main() -> Recording:
        run = Run(scenario, policy, profile or scenario.profile, mountpoint)
        recorder = Recorder(run, watch)

        def serve(fs: Any, where: str) -> Any:
            recorder.mounted()
            return serving(fs, where, handle_signals=False)

        await run.play(clock, _with_after(serve, _nothing))
        return Recording(run.result(), recorder.items, recorder.dirty_after_step, watch)

    try:
        return trio.run(main, clock=clock)
    finally:
        import os

        os.rmdir(mountpoint)


async def _nothing(m: Any) -> None:
    return None


def act_steps(steps: list[Step]) -> list[Step]:
    """The story's act steps in order, together() children included."""
    out: list[Step] = []
    for s in steps:
        if s.kind == "together":
            out.extend(act_steps(s.children))
        elif not s.is_expectation and s.kind != "mount":
            out.append(s)
    return out


def default_page(recordings: list[Recording]) -> int:
    """The first page that got a page_mkwrite call (else the first that faulted, else 0)."""
    for kinds in (("mkwrite",), ("fault", "wp_fault")):
        for rec in recordings:
            for it in rec.items:
                if it.kind in kinds and it.page >= 0:
                    return it.page
    return 0


# -- the page ---------------------------------------------------------------------------------

GLYPHS: dict[str, tuple[str, str]] = {  # kind -> (shape, colour)
    "fault": ("circle", "#7a7a7a"),
    "wp_fault": ("circle", "#444"),
    "mkwrite": ("diamond", "#2a9d3a"),
    "mkwrite_refused": ("diamond", "#d62828"),
    "sigbus": ("cross", "#d62828"),
    "cow": ("triangle", "#c2185b"),
    "mkclean": ("square", "#1a8fa0"),
    "reserve": ("triangle", "#6c4ab6"),
    "writeback": ("square", "#1d4ed8"),
    "writeback_error": ("square", "#f08c00"),
    "throttle": ("bar", "#e9c46a"),
    "other": ("dot", "#aaa"),
}
LEGEND = (("fault", "fault"), ("wp_fault", "write-protect fault"), ("mkwrite", "page_mkwrite ok"),
          ("mkwrite_refused", "page_mkwrite refused"), ("sigbus", "SIGBUS"),
          ("cow", "COW copy"), ("mkclean", "mkclean (write-protect)"),
          ("reserve", "block reserved"), ("writeback", "writeback ok"),
          ("writeback_error", "writeback failed"), ("throttle", "throttle pause"))  # fmt: skip
POLICY_COLOURS = ("#d62828", "#1d4ed8", "#2a9d3a", "#f08c00", "#8e44ad", "#1a8fa0", "#6b7280")


def _glyph_kind(it: Item) -> str:
    text = it.detail.upper()
    if it.kind == "mkwrite":
        return "mkwrite" if text.endswith(("LOCKED", "OK", " 0")) else "mkwrite_refused"
    if it.kind == "writeback":
        return "writeback" if "WRITTEN" in text or "ok" in it.detail else "writeback_error"
    return it.kind if it.kind in GLYPHS else "other"


def _shape(kind: str, x: float, y: float, title: str) -> str:
    shape, colour = GLYPHS[kind]
    t = f"<title>{html.escape(title)}</title>"
    if shape == "circle":
        return f'<circle cx="{x:.1f}" cy="{y}" r="4.5" fill="{colour}">{t}</circle>'
    if shape == "diamond":
        pts = f"{x},{y - 7} {x + 6},{y} {x},{y + 7} {x - 6},{y}"
        return f'<polygon points="{pts}" fill="{colour}">{t}</polygon>'
    if shape == "triangle":
        pts = f"{x},{y - 6} {x + 6},{y + 5} {x - 6},{y + 5}"
        return f'<polygon points="{pts}" fill="{colour}">{t}</polygon>'
    if shape == "square":
        return (
            f'<rect x="{x - 5:.1f}" y="{y - 5}" width="10" height="10" fill="{colour}">{t}</rect>'
        )
    if shape == "cross":
        return (f'<g stroke="{colour}" stroke-width="3">{t}<line x1="{x - 6}" y1="{y - 6}" '
                f'x2="{x + 6}" y2="{y + 6}"/><line x1="{x - 6}" y1="{y + 6}" x2="{x + 6}" '
                f'y2="{y - 6}"/></g>')  # fmt: skip
    if shape == "bar":
        return f'<rect x="{x - 3:.1f}" y="{y - 9}" width="6" height="18" fill="{colour}">{t}</rect>'
    return f'<circle cx="{x:.1f}" cy="{y}" r="2.5" fill="{colour}">{t}</circle>'


def timeline_svg(rec: Recording, dirty_max: int, dirty_limit: int | None) -> str:
    """One policy's timeline: a row per simulated process and the flusher, the story's steps
    as bars, each event a glyph; dirty pages beneath on the same axis."""
    events = [it for it in rec.items if it.kind != "step"]
    tracks = sorted({it.track for it in rec.items} | {0}, key=lambda t: (t == 0, t))
    names = rec.result.tracks
    per = max(1, math.ceil(len(events) / MAX_COLUMNS))  # events per column (condensed)
    columns = math.ceil(len(events) / per)
    slot = max(7.0, min(40.0, 940.0 / max(1, columns)))
    left, row, top = 150, 38, 30
    xs: dict[int, float] = {}
    n = 0
    for it in rec.items:
        xs[it.seq] = left + slot * (n // per + 1)
        if it.kind != "step":
            n += 1
    x = left + slot * (columns + 1)
    width = int(x + slot + 10)
    rows_h = top + row * len(tracks)
    dirty_h = 70
    height = rows_h + dirty_h + 34
    y_of = {t: top + row * n + row // 2 for n, t in enumerate(tracks)}
    out = [f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}">']  # fmt: skip
    if per > 1:
        out.append(f'<text x="6" y="14" class="tick">condensed: {len(events)} events, up to {per} '
                   "a column (one mark per kind); only failed steps drawn</text>")  # fmt: skip
    for t in tracks:
        y = y_of[t]
        out.append(f'<line x1="{left}" y1="{y}" x2="{width - 5}" y2="{y}" stroke="#e5e5e5"/>')
        out.append(f'<text x="6" y="{y + 4}" class="track">'
                   f'{html.escape(names.get(t, f"pid {t}"))}</text>')  # fmt: skip
    for it in rec.items:  # the steps, behind the events
        if it.kind != "step" or it.track not in y_of:
            continue
        bad = not it.detail.endswith("→ ok")
        if per > 1 and not bad:
            continue  # condensed: only the steps that did not succeed
        x0 = xs[it.seq] - slot / 2
        x1 = xs.get(it.end_seq, x) - slot / 2
        x1 = max(x1, x0 + slot * 0.8)
        out.append(f'<rect x="{x0:.1f}" y="{y_of[it.track] - 12}" width="{x1 - x0:.1f}" '
                   f'height="24" rx="4" class="{"stepbad" if bad else "step"}">'
                   f"<title>{html.escape(it.detail)}</title></rect>")  # fmt: skip
        label = it.detail.split(": ", 1)[-1]
        if len(label) * 5.6 < x1 - x0 - 4:  # room for the label above the bar
            out.append(f'<text x="{x0 + 3:.1f}" y="{y_of[it.track] - 14}" class="steplabel">'
                       f"{html.escape(label)}</text>")  # fmt: skip
    last_time, last_x = None, -100.0
    counts: dict[tuple[float, int, str], int] = {}
    for it in events:
        key = (xs[it.seq], it.track, _glyph_kind(it))
        counts[key] = counts.get(key, 0) + 1
    for it in events:
        if it.kind == "mount":
            out.append(f'<line x1="{xs[it.seq]:.1f}" y1="{top - 8}" x2="{xs[it.seq]:.1f}" '
                       f'y2="{rows_h + dirty_h}" class="mount"/><text x="{xs[it.seq] - 3:.1f}" '
                       f'y="{top - 14}" class="tick" text-anchor="end">mounted: real time '
                       "from here</text>")  # fmt: skip
            continue
        key = (xs[it.seq], it.track, _glyph_kind(it))
        if it.track in y_of and key in counts:
            title = f"t={it.time:.6f}s {names.get(it.track, it.track)}: {it.kind} {it.detail}"
            if counts[key] > 1:
                title = f"{counts[key]} × {it.kind} from t={it.time:.3f}s, the first: {it.detail}"
            del counts[key]  # one glyph per column, track and kind
            out.append(_shape(key[2], xs[it.seq], y_of[it.track], title))
        if (last_time is None or it.time - last_time > 1e-4) and xs[it.seq] - last_x > 70:
            last_x = xs[it.seq]
            out.append(f'<text x="{xs[it.seq]:.1f}" y="{height - 4}" class="tick">'
                       f"t={it.time:.3g}s</text>")  # fmt: skip
            last_time = it.time
    out.append(_dirty_strip(rec, xs, left, width, rows_h, dirty_h, dirty_max, dirty_limit))
    out.append("</svg>")
    return "".join(out)


def _dirty_strip(rec: Recording, xs: dict[int, float], left: int, width: int, top: int,
                 h: int, dirty_max: int, limit: int | None) -> str:  # fmt: skip
    scale = max(1, dirty_max, limit or 0)
    base = top + h - 6

    def y(v: int) -> float:
        return base - (h - 18) * v / scale

    pts = [f"{left},{base}"]
    prev = 0
    for it in rec.items:
        if it.kind in ("step", "mount") or it.dirty == prev:
            continue
        pts.append(f"{xs[it.seq]:.1f},{y(prev):.1f}")
        pts.append(f"{xs[it.seq]:.1f},{y(it.dirty):.1f}")
        prev = it.dirty
    pts.append(f"{width - 5},{y(prev):.1f}")
    pts.append(f"{width - 5},{base}")
    out = [f'<text x="6" y="{top + h // 2 + 4}" class="track">dirty pages (max {dirty_max})</text>',
           f'<line x1="{left}" y1="{base}" x2="{width - 5}" y2="{base}" stroke="#999"/>',
           f'<polygon points="{" ".join(pts)}" class="dirty"/>']  # fmt: skip
    if limit is not None:
        out.append(f'<line x1="{left}" y1="{y(limit):.1f}" x2="{width - 5}" y2="{y(limit):.1f}" '
                   f'class="limit"/><text x="{left + 4}" y="{y(limit) - 3:.1f}" class="tick">'
                   f"dirty limit {limit}</text>")  # fmt: skip
    return "".join(out)


def dirty_plot_svg(scenario: Scenario, recordings: list[Recording]) -> str:
    """Dirty pages after each step of the story, a line per policy."""
    steps = act_steps(scenario.steps)
    if not steps:
        return "<p>The story has no act steps.</p>"
    top_v = max([1, *(v for r in recordings for v in r.dirty_after_step.values())])
    limits = [r.result.counters.get("dirty_limit_pages") for r in recordings]
    top_v = max([top_v, *(v for v in limits if isinstance(v, int))])
    left, w, h, top = 60, 1080, 240, 16
    dx = w / max(1, len(steps) - 1) if len(steps) > 1 else w
    out = [f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{left + w + 30}" '
           f'height="{h + top + 110}">']  # fmt: skip
    for v in sorted({0, top_v, math.ceil(top_v / 2)}):
        y = top + h - h * v / top_v
        out.append(
            f'<line x1="{left}" y1="{y:.1f}" x2="{left + w}" y2="{y:.1f}" stroke="#eee"/>'
            f'<text x="{left - 8}" y="{y + 4:.1f}" class="tick" text-anchor="end">{v}</text>'
        )
    every = max(1, math.ceil(len(steps) / 40))  # at most 40 labels
    for n, s in enumerate(steps):
        if n % every:
            continue
        x = left + n * dx
        label = html.escape(f"{s.kind} {s.name or ''}".strip())
        out.append(f'<text x="{x:.1f}" y="{top + h + 14}" class="tick" '
                   f'transform="rotate(40 {x:.1f} {top + h + 14})">{label}</text>')  # fmt: skip
    for k, rec in enumerate(recordings):
        colour = POLICY_COLOURS[k % len(POLICY_COLOURS)]
        pts = [(left + n * dx, top + h - h * rec.dirty_after_step[id(s)] / top_v)
               for n, s in enumerate(steps) if id(s) in rec.dirty_after_step]  # fmt: skip
        offset = (k - (len(recordings) - 1) / 2) * 1.5  # equal lines stay visible
        path = " ".join(f"{px:.1f},{py + offset:.1f}" for px, py in pts)
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2.5">'
                   f"<title>{html.escape(rec.result.policy)}</title></polyline>")  # fmt: skip
        out += [
            f'<circle cx="{px:.1f}" cy="{py + offset:.1f}" r="3" fill="{colour}"/>'
            for px, py in (pts if len(pts) <= 80 else [])
        ]
        out.append(
            f'<text x="{left + 10 + 130 * k}" y="{top + h + 100}" '
            f'fill="{colour}" class="legend">━ {html.escape(rec.result.policy)}</text>'
        )
    out.append(f'<text x="14" y="{top + h / 2}" class="tick" transform="rotate(-90 14 '
               f'{top + h / 2})">dirty pages</text></svg>')  # fmt: skip
    return "".join(out)


def dirty_time_svg(recordings: list[Recording]) -> str:
    """Dirty pages over simulated time before the mount (virtual time: where throttling
    pauses and sleeping hooks show), a step line per policy; "" when time stood still."""
    series = []
    for rec in recordings:
        pts, prev = [], 0
        for it in rec.items:
            if it.kind == "mount":
                break
            if it.kind != "step":
                pts += [(it.time, prev), (it.time, it.dirty)]
                prev = it.dirty
        series.append((rec, pts))
    t_max = max((t for _, pts in series for t, _ in pts), default=0.0)
    if t_max <= 0:
        return ""
    v_max = max([1, *(v for _, pts in series for _, v in pts)])
    limits = [r.result.counters.get("dirty_limit_pages") for r in recordings]
    v_max = max([v_max, *(v for v in limits if isinstance(v, int))])
    left, w, h, top = 60, 1080, 200, 16
    out = [f'<svg class="plot" id="dirty-time" xmlns="http://www.w3.org/2000/svg" '
           f'width="{left + w + 30}" height="{h + top + 60}">']  # fmt: skip
    for n in range(6):
        x, t = left + w * n / 5, t_max * n / 5
        out.append(f'<text x="{x:.1f}" y="{top + h + 14}" class="tick" text-anchor="middle">'
                   f"{t:.3g} s</text>")  # fmt: skip
    for v in sorted({0, v_max, math.ceil(v_max / 2)}):
        y = top + h - h * v / v_max
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + w}" y2="{y:.1f}" stroke="#eee"/>'
                   f'<text x="{left - 8}" y="{y + 4:.1f}" class="tick" text-anchor="end">{v}'
                   "</text>")  # fmt: skip
    for k, (rec, pts) in enumerate(series):
        colour = POLICY_COLOURS[k % len(POLICY_COLOURS)]
        pts = [*pts, (t_max, pts[-1][1])] if pts else pts
        off = (k - (len(series) - 1) / 2) * 2.0  # equal lines stay visible
        path = " ".join(f"{left + w * t / t_max:.1f},{top + h - h * v / v_max + off:.1f}"
                        for t, v in pts)  # fmt: skip
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2">'
                   f"<title>{html.escape(rec.result.policy)}</title></polyline>"
                   f'<text x="{left + 10 + 130 * k}" y="{top + h + 44}" fill="{colour}" '
                   f'class="legend">━ {html.escape(rec.result.policy)}</text>')  # fmt: skip
        limit = rec.result.counters.get("dirty_limit_pages")
        if isinstance(limit, int):
            y = top + h - h * limit / v_max
            out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + w}" y2="{y:.1f}" '
                       f'stroke="{colour}" class="limit"><title>dirty limit '
                       f"({html.escape(rec.result.policy)})</title></line>")  # fmt: skip
    out.append("</svg>")
    return "".join(out)


MODEL_LINES = [  # DirtyRecorder column -> (legend, colour, dashed)
    ("dirty", "dirty (all devices)", "#3182bd", False),
    ("thresh", "dirty thresh", "#d62828", True),
    ("setpoint", "setpoint", "#2a9d3a", True),
    ("freerun", "freerun", "#f08c00", True),
    ("bg_thresh", "background thresh", "#8e44ad", True),
]


def model_svg(rows: list[dict[str, float]]) -> str:
    """The dirty-throttling model's own samples (``DirtyRecorder``): global dirty pages and
    each device's, against the thresholds balance_dirty_pages steers by; and the devices
    alone, zoomed, when their share is a small part of the global limit (FUSE's 1 %)."""
    if not rows:
        return ""
    device = []
    for key in rows[0]:
        if key.endswith(":dirty"):
            device.append((key, key.replace(":dirty", " dirty"), "#1a8fa0", False))
        elif key.endswith(":wb_thresh"):
            device.append((key, key.replace(":wb_thresh", " wb_thresh"), "#c2185b", True))
    whole = _lines_svg(rows, [*MODEL_LINES, *device])
    small = max([0.0, *(r.get(k, 0.0) for r in rows for k, *_ in device)])
    if device and small < max(r.get("thresh", 0.0) for r in rows) / 10:
        return (
            whole
            + "<p>The device alone (its share is a small part of the limit):</p>"
            + (_lines_svg(rows, device))
        )
    return whole


def _lines_svg(rows: list[dict[str, float]], lines: list[tuple[str, str, str, bool]]) -> str:
    t0, t1 = rows[0]["time"], rows[-1]["time"]
    span = max(t1 - t0, 1e-9)
    v_max = max([1.0, *(r.get(k, 0.0) for r in rows for k, *_ in lines)])
    left, w, h, top = 60, 1080, 180, 12
    out = [f'<svg class="plot model" xmlns="http://www.w3.org/2000/svg" width="{left + w + 30}" '
           f'height="{h + top + 56}">']  # fmt: skip
    for n in range(6):
        out.append(f'<text x="{left + w * n / 5:.1f}" y="{top + h + 14}" class="tick" '
                   f'text-anchor="middle">{span * n / 5:.3g} s</text>')  # fmt: skip
    for v in (0, v_max / 2, v_max):
        y = top + h - h * v / v_max
        out.append(f'<line x1="{left}" y1="{y:.1f}" x2="{left + w}" y2="{y:.1f}" stroke="#eee"/>'
                   f'<text x="{left - 8}" y="{y + 4:.1f}" class="tick" text-anchor="end">'
                   f"{v:.0f}</text>")  # fmt: skip
    step = max(1, len(rows) // 600)  # at most ~600 points a line
    for k, (key, label, colour, dashed) in enumerate(lines):
        pts = " ".join(
            f"{left + w * (r['time'] - t0) / span:.1f},{top + h - h * r.get(key, 0.0) / v_max:.1f}"
            for r in rows[::step]
        )
        dash = ' stroke-dasharray="5 3"' if dashed else ""
        out.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"'
                   f"{dash}><title>{html.escape(label)}</title></polyline>"
                   f'<text x="{left + 10 + 150 * k}" y="{top + h + 40}" fill="{colour}" '
                   f'class="legend">━ {html.escape(label)}</text>')  # fmt: skip
    out.append("</svg>")
    return "".join(out)


def _model_section(recordings: list[Recording]) -> str:
    parts = []
    for rec in recordings:
        series = getattr(rec.result, "dirty_series", None)
        rows = list(getattr(series, "rows", None) or [])
        if rows:
            parts.append(f"<h3>{html.escape(rec.result.policy)}</h3>{model_svg(rows)}")
    if not parts:
        return ""
    return ("<h2>The dirty-throttling model (balance_dirty_pages)</h2><p>Its own samples, "
            "in simulated time: dirty pages against the thresholds it steers by.</p>"
            + "".join(parts))  # fmt: skip


# -- the life of one page-table entry ---------------------------------------------------------


def pte_life(rec: Recording, page: int) -> list[tuple[str, str]]:
    """The chosen page's PTE in the first process that faulted it: a list of (class, text),
    states ("state") and the events between them ("event")."""
    first = next((it for it in rec.items if it.kind in ("mkwrite", "fault", "wp_fault")
                  and it.page == page and it.addr), None)  # fmt: skip
    if first is None:
        return [("none", f"page {page} was never faulted in under this policy")]
    key = (first.track, first.addr - first.addr % PAGE)
    vpn = first.addr // PAGE
    life: list[tuple[str, str]] = [("state-none", "no PTE")]
    if page >= MAX_PAGES_SAMPLED and page != rec.watch:
        life.append(("none", f"(the PTE of page {page} was not sampled: ask for it with --page)"))
    state, was_writable = "no PTE", False
    for it in rec.items:
        if it.kind in ("step", "mount"):
            continue
        mine = (it.kind not in ("step", "writeback", "reserve", "throttle") and it.track == key[0]
                and it.addr // PAGE == vpn) or (it.kind in ("writeback", "reserve")
                                                and it.page == page)  # fmt: skip
        if mine and it.kind not in ("mmap", "msync", "munmap", "mprotect"):
            life.append(("event", _event_text(it)))
        bits = dict(it.ptes).get(key)
        now = _state_text(bits, was_writable)
        if now != state:
            life.append((_state_class(bits), now))
            state = now
            if bits is not None:
                was_writable = was_writable or "W" in bits
    return life


def _event_text(it: Item) -> str:
    if it.kind == "mkwrite":
        return f"page_mkwrite: {it.detail.split()[-1]}"
    if it.kind == "mkclean":
        return "mkclean (cleaned for writeback)"
    if it.kind in ("writeback", "reserve"):
        return f"{it.kind}: {it.detail}"
    if it.kind in ("sigbus", "sigsegv"):
        return it.kind.upper()
    return it.kind


def _state_text(bits: str | None, was_writable: bool) -> str:
    if bits is None:
        return "no PTE"
    if "A" in bits:
        return "private copy, writable" if "W" in bits else "private copy, read-only"
    if "Z" in bits:
        return "zero page, read-only"
    if "W" in bits:
        return "writable, dirty" if "D" in bits else "writable, clean"
    return "write-protected again" if was_writable else "read-only"


def _state_class(bits: str | None) -> str:
    if bits is None:
        return "state-none"
    return "state-rw" if "W" in bits else "state-ro"


def life_html(rec: Recording, page: int) -> str:
    chips = []
    for cls, text in pte_life(rec, page):
        sep = '<span class="arrow">→</span>' if chips else ""
        chips.append(f'{sep}<span class="{cls}">{html.escape(text)}</span>')
    policy = html.escape(rec.result.policy)
    return f'<div class="life" data-policy="{policy}"><b>{policy}</b>{"".join(chips)}</div>'


# -- the table and the document ------------------------------------------------------------------


def table_html(recordings: list[Recording]) -> str:
    results = [r.result for r in recordings]
    names: list[str] = []
    for r in results:
        names += [e.name for e in r.expectations if e.name not in names]
    head = "".join(f"<th>{html.escape(r.policy)}<br><small>{html.escape(r.profile)}</small></th>"
                   for r in results)  # fmt: skip
    rows = [f"<tr><th></th>{head}</tr>"]
    for name in names:
        cells = []
        for r in results:
            found = [e for e in r.expectations if e.name == name]
            if not found:
                cells.append('<td class="na">-</td>')
                continue
            held = all(e.held for e in found)
            tip = html.escape("; ".join(e.detail for e in found if e.detail))
            seen = html.escape(found[-1].seen) if len(found) == 1 else ""
            mark = "✓ held" if held else "✗ FAILED"
            cells.append(f'<td class="{"held" if held else "failed"}" title="{tip}">{seen} '
                         f"<b>{mark}</b></td>")  # fmt: skip
        rows.append(f'<tr><th class="row">{html.escape(name)}</th>{"".join(cells)}</tr>')
    rows.append(f'<tr class="sep"><th colspan="{len(results) + 1}">counters</th></tr>')
    for counter in COUNTER_ROWS:
        cells = "".join(f"<td>{html.escape(str(r.counters.get(counter, 'n/a')))}</td>"
                        .replace(">None<", ">n/a<") for r in results)  # fmt: skip
        rows.append(f'<tr><th class="row">{counter}</th>{cells}</tr>')
    return f'<table class="side">{"".join(rows)}</table>'


CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;max-width:1240px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #ddd}
pre.story{background:#f6f6f2;padding:10px 14px;white-space:pre-wrap;border-left:4px solid #c9b458}
table.side{border-collapse:collapse;font-size:13px} table.side td,table.side th{border:1px solid
#ddd;padding:3px 8px;text-align:center} table.side th.row{text-align:left;font-weight:normal}
td.held{background:#e8f6ea} td.failed{background:#fde2e2;color:#9b1c1c} td.na{color:#aaa}
tr.sep th{background:#f2f2f2;text-align:left}
.timeline,.plot{background:#fff;border:1px solid #ddd;margin:4px 0 14px;display:block}
.scroll{overflow-x:auto} .track{font-size:12px;fill:#333} .tick{font-size:10px;fill:#666}
.legend{font-size:13px} .step{fill:#eef2f7;stroke:#c5cfdb} .stepbad{fill:#fdecec;stroke:#e8a0a0}
.steplabel{font-size:10px;fill:#555} .dirty{fill:#9ecae1;stroke:#3182bd}
.limit{stroke:#d62828;stroke-dasharray:4 3}
.mount{stroke:#888;stroke-dasharray:3 3}
.keys span{display:inline-block;margin-right:14px;font-size:12px}
.life{margin:6px 0;display:flex;flex-wrap:wrap;align-items:center;gap:4px}
.life b{width:110px} .life span{padding:2px 7px;border-radius:10px;font-size:12px}
.state-none{background:#eee;color:#555} .state-ro{background:#dbe8ff;color:#1d3f8a}
.state-rw{background:#ffe3c2;color:#8a4b00} .event{background:#fff;border:1px dashed #999}
.arrow{padding:0!important;color:#999} .none{color:#999}
.verdict{font-size:16px;margin:10px 0} .ok{color:#1b7a2e} .bad{color:#b91c1c}
"""


def _time_section(recordings: list[Recording]) -> str:
    plot = dirty_time_svg(recordings)
    if not plot:
        return ("<p>Simulated time stood still until the mount: every step above happened "
                "at t=0, so there is no plot over time.</p>")  # fmt: skip
    return f"<h2>Dirty pages over simulated time, until the mount</h2>{plot}"


def _legend_html() -> str:
    keys = []
    for kind, text in LEGEND:
        keys.append(f'<span><svg width="16" height="16">{_shape(kind, 8, 8, text)}</svg> '
                    f"{html.escape(text)}</span>")  # fmt: skip
    return (
        f'<div class="keys">{"".join(keys)} <span>▭ a step of the story (red: it did not '
        f"succeed)</span></div>"
    )


def render(scenario: Scenario, recordings: list[Recording], page: int) -> str:
    """The whole page as one string."""
    ok = all(r.result.ok for r in recordings)
    verdict = ('<p class="verdict ok">Every expectation held under every policy.</p>' if ok else
               '<p class="verdict bad">Some expectations FAILED (red cells).</p>')  # fmt: skip
    dirty_max = max([1, *(it.dirty for r in recordings for it in r.items)])
    timelines = []
    for rec in recordings:
        limit = rec.result.counters.get("dirty_limit_pages")
        limit = limit if isinstance(limit, int) else None
        timelines.append(
            f"<h3>{html.escape(rec.result.policy)} "
            f"<small>(kernel profile {html.escape(rec.result.profile)})</small></h3>"
            f'<div class="scroll">{timeline_svg(rec, dirty_max, limit)}</div>'
        )
    lives = "".join(life_html(r, page) for r in recordings)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>mkwritefs scenario {html.escape(scenario.name)}</title><style>{CSS}</style></head>
<body>
<h1>Scenario {html.escape(scenario.name)}</h1>
<pre class="story">{html.escape(scenario.text)}</pre>
{verdict}
<h2>Side by side</h2>
<p>A column per policy, a row per expectation: what was seen, held or failed (hover for the
detail). Then the run's counters.</p>
{table_html(recordings)}
<h2>Timeline</h2>
<p>Per policy, a row per simulated process and one for the flusher; left to right is the order
in which things happened (simulated time at the ticks: virtual time can stand still). Hover
a mark for its detail. Beneath: dirty pages in the page cache.</p>
{_legend_html()}
{"".join(timelines)}
<h2>Dirty pages after each step</h2>
{dirty_plot_svg(scenario, recordings)}
{_time_section(recordings)}
{_model_section(recordings)}
<h2>The life of page {page}'s page-table entry</h2>
<p>In the first process that faulted page {page} of a mapping: the PTE's state (blue:
read-only, orange: writable) and what changed it.</p>
{lives}
</body></html>
"""


def build(
    scenario: Scenario,
    *,
    page: int | None = None,
    profile: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> tuple[str, list[Recording]]:
    """Play ``scenario`` under every policy it declares and return the page."""
    recordings = []
    for n, policy in enumerate(scenario.policies, start=1):
        if progress is not None:
            progress(f"[{n}/{len(scenario.policies)}] {scenario.name}: policy {policy}...")
        recordings.append(record_policy(scenario, policy, profile=profile, watch=page))
    chosen = default_page(recordings) if page is None else page
    return render(scenario, recordings, chosen), recordings


def main(args: Any) -> int:
    """`mkwritefs scenario report NAME --html FILE [--page N] [--profile P]`."""
    import os

    from fusefs.cli import UsageError
    from fusefs.mount import MountError
    from fusefs.scenario import ScenarioError, find, load_file

    try:
        scenario = load_file(find(args.scenario))
    except ScenarioError as exc:
        raise UsageError(str(exc)) from None
    directory = os.path.dirname(os.path.abspath(args.html))
    if not os.path.isdir(directory) or not os.access(directory, os.W_OK):
        raise UsageError(f"cannot write the report to {args.html}: {directory} is not writable")
    if args.page is not None and args.page < 0:
        raise UsageError(f"--page must be a page number (0 or more), not {args.page}")
    try:
        text, recordings = build(
            scenario,
            page=args.page,
            profile=args.profile,
            progress=lambda t: print(t, file=sys.stderr, flush=True),
        )
    except MountError as exc:
        raise UsageError(str(exc)) from None
    with open(args.html, "w") as fp:
        fp.write(text)
    print(f"report: {args.html} ({len(recordings)} policies)", file=sys.stderr)
    return 0 if all(r.result.ok for r in recordings) else 1


def add_parser(sub: Any, profiles: list[str]) -> None:
    """The `report` action of `mkwritefs scenario`."""
    p = sub.add_parser("report", help="play a scenario under every policy it declares and "
                       "write one self-contained HTML page")  # fmt: skip
    p.add_argument("scenario", metavar="NAME|FILE")
    p.add_argument("--html", required=True, metavar="FILE", help="the page to write")
    p.add_argument("--page", type=int, metavar="N",
                   help="the page whose PTE life is shown (default: the first that got a "
                   "page_mkwrite call)")  # fmt: skip
    p.add_argument("--profile", choices=profiles, help="kernel profile (default: the scenario's)")
