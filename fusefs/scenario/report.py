"""`mkwritefs scenario report NAME --html FILE`: one self-contained HTML page per scenario.

Owns the visual report of issue 5: the scenario is played under every policy it declares
(``fusefs.scenario.runner.play``: one policy after another in this process, each on its own
temporary mount; with ``--store DIR`` each on a new store whose verdicts are read back
after the unmount, exactly as ``scenario run --store``), and the page shows the story,
the side-by-side table (policy columns, expectation rows, held/failed marks, the
counters), per policy an SVG timeline of what the simulated processes and the flusher
did (faults, page_mkwrite and its result, SIGBUS, mkclean, reservations, writeback,
throttle pauses) with the number of dirty pages beneath it, a plot of dirty pages after
each step of the story for every policy, and the life of one page's page-table entry
(``--page N``): read-only, page_mkwrite, writable, cleaned by ``clear_page_dirty_for_io``
(``page_mkclean``), write-protected again.
Where the story runs on a dirty-throttling model with a recorder, its own samples are
plotted against its thresholds. The drawings are ``fusefs.scenario.report_svg``'s.

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
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from fusefs.constants import PAGE_SIZE
from fusefs.scenario import runner
from fusefs.scenario.language import Scenario, Step
from fusefs.scenario.report_svg import (
    LEGEND,
    dirty_plot_svg,
    dirty_time_svg,
    model_section,
    shape,
    timeline_svg,
)
from fusefs.scenario.results import PolicyResult
from fusefs.scenario.runner import Run
from fusefs.scenario.table import COUNTER_ROWS
from sim_mmu.pte import PteView
from sim_mmu.trace import Trace

PAGE = PAGE_SIZE
MAX_PAGES_SAMPLED = 64  # per mapping: the PTEs looked at after every event (and --page's)
PAGE_EVENTS = {"fault", "wp_fault", "mkwrite", "cow", "mkclean", "pte_changed", "sigbus"}


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
        play = run.play
        run.play = lambda clock, serve: play(clock, self._serving(serve))  # type: ignore[method-assign]

    def _serving(self, serve: Callable[..., Any]) -> Callable[..., Any]:
        def mount(fs: Any, where: str) -> Any:
            self.mounted()
            return serve(fs, where)

        return mount

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
    scenario: Scenario,
    policy: str,
    *,
    profile: str | None = None,
    watch: int | None = None,
    store: str | None = None,
) -> Recording:
    """Play ``scenario`` under ``policy`` as ``runner.play`` does (its own trio run on
    the virtual-then-real clock, its own temporary mount; with ``store`` a new store
    there whose verdicts are read back after the unmount) and record it."""
    recorders: list[Recorder] = []
    result = runner.play(scenario, policy, profile=profile, store=store,
                         observe=lambda run: recorders.append(Recorder(run, watch)))  # fmt: skip
    recorder = recorders[0]
    return Recording(result, recorder.items, recorder.dirty_after_step, watch)


def default_page(recordings: list[Recording]) -> int:
    """The first page that got a page_mkwrite call (else the first that faulted, else 0)."""
    for kinds in (("mkwrite",), ("fault", "wp_fault")):
        for rec in recordings:
            for it in rec.items:
                if it.kind in kinds and it.page >= 0:
                    return it.page
    return 0


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
        keys.append(f'<span><svg width="16" height="16">{shape(kind, 8, 8, text)}</svg> '
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
{model_section(recordings)}
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
    stores: dict[str, str] | None = None,
) -> tuple[str, list[Recording]]:
    """Play ``scenario`` under every policy it declares and return the page; a policy
    with a path in ``stores`` plays on a new store there (``runner.play``'s ``store``)."""
    recordings = []
    for n, policy in enumerate(scenario.policies, start=1):
        if progress is not None:
            progress(f"[{n}/{len(scenario.policies)}] {scenario.name}: policy {policy}...")
        store = (stores or {}).get(policy)
        recordings.append(record_policy(scenario, policy, profile=profile, watch=page, store=store))
    chosen = default_page(recordings) if page is None else page
    return render(scenario, recordings, chosen), recordings
