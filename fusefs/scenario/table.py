"""Presenting scenario results: the side-by-side table, the JSON object, the traces.

Pure functions of ``fusefs.scenario.results.PolicyResult`` lists (no I/O but the file the caller
passes), so the command line, tests and a later HTML report share them.

Trace layout (Chrome trace-event JSON, opens in Perfetto and chrome://tracing): one
trace "process" per policy, named after it; in it one track (thread) per simulated
process plus one for the flusher (tid 0: writeback the flusher or the kernel did on no
process's behalf). Instant events for faults, page_mkwrite and its result, SIGBUS, COW,
mkclean, reservations and page writeback; complete events ("X") for every act step of
the story, spanning the time it took. Times are microseconds of the scenario's clock
(virtual until ``mount()``, real after).
"""

from __future__ import annotations

import json
from typing import Any, TextIO

from fusefs.scenario.results import PolicyResult

COUNTER_ROWS = ("stores_acknowledged", "sigbus", "mkwrite_calls", "writeback_errors",
                "lost_bytes", "max_dirty_pages", "dirty_limit_pages", "free_blocks")  # fmt: skip


def as_json(scenario: str, results: list[PolicyResult]) -> dict[str, Any]:
    return {"scenario": scenario, "policies": {r.policy: r.as_json() for r in results}}


def table(results: list[PolicyResult]) -> str:
    """A column per policy, a row per expectation, then the counters. A cell is what was
    seen, marked ✓ (as expected) or ✗ (not); "-": not checked under that policy."""
    names: list[str] = []
    for r in results:
        for e in r.expectations:
            if e.name not in names:
                names.append(e.name)
    width = max(13, *(len(r.policy) + 2 for r in results))
    label = max(len(n) for n in [*names, *COUNTER_ROWS]) + 2
    lines = ["".ljust(label) + "".join(r.policy.rjust(width) for r in results)]
    for name in names:
        cells = []
        for r in results:
            found = [e for e in r.expectations if e.name == name]
            cells.append(_cell(found).rjust(width))
        lines.append(name.ljust(label) + "".join(cells))
    lines.append("")
    for counter in COUNTER_ROWS:
        cells = [str(r.counters.get(counter)).replace("None", "n/a").rjust(width) for r in results]
        lines.append(counter.ljust(label) + "".join(cells))
    return "\n".join(lines)


def _cell(found: list[Any]) -> str:
    if not found:
        return "-"
    held = all(e.held for e in found)
    seen = found[-1].seen if len(found) == 1 else ""
    return f"{seen} {'✓' if held else '✗'}".strip()


def details(result: PolicyResult) -> str:
    """One policy's expectations, each with what was seen."""
    lines = [f"policy {result.policy} (kernel profile {result.profile}):"]
    for e in result.expectations:
        mark = "held  " if e.held else "FAILED"
        where = f" (line {e.line})" if e.line else ""
        lines.append(f"  {mark} {e.name}{where}: {e.detail}" if e.detail else
                     f"  {mark} {e.name}{where}")  # fmt: skip
    lines.append("  counters: " + ", ".join(f"{k}={v}" for k, v in result.counters.items()))
    return "\n".join(lines)


def failures(results: list[PolicyResult]) -> list[str]:
    return [
        f"{r.policy}: {e.name}: {e.detail}" for r in results for e in r.expectations if not e.held
    ]


def chrome_trace(scenario: str, results: list[PolicyResult]) -> dict[str, Any]:
    events: list[dict[str, Any]] = []
    for n, r in enumerate(results, start=1):
        events.append(
            {
                "name": "process_name",
                "ph": "M",
                "pid": n,
                "tid": 0,
                "args": {"name": f"{scenario}: policy {r.policy} ({r.profile})"},
            }
        )
        for tid, name in sorted(r.tracks.items()):
            events.append({"name": "thread_name", "ph": "M", "pid": n, "tid": tid,
                           "args": {"name": name}})  # fmt: skip
        for e in r.events:
            ev: dict[str, Any] = {"name": e.kind, "pid": n, "tid": e.track, "ts": e.time * 1e6,
                                  "args": {"detail": e.detail, "page": e.page}}  # fmt: skip
            if e.duration > 0 or e.kind.count(":"):
                ev.update(ph="X", dur=max(e.duration * 1e6, 1.0), cat="step")
            else:
                ev.update(ph="i", s="t", cat="mm" if e.kind not in ("reserve", "writeback")
                          else "fs")  # fmt: skip
            events.append(ev)
    return {"traceEvents": events, "displayTimeUnit": "ms"}


def write_trace(fp: TextIO, scenario: str, results: list[PolicyResult], *, jsonl: bool) -> int:
    """Write the trace; return the number of events."""
    if not jsonl:
        doc = chrome_trace(scenario, results)
        json.dump(doc, fp)
        return sum(1 for e in doc["traceEvents"] if e["ph"] != "M")
    n = 0
    for r in results:
        for e in r.events:
            fp.write(json.dumps({"policy": r.policy, "time": e.time, "track": e.track,
                                 "track_name": r.tracks.get(e.track, str(e.track)),
                                 "kind": e.kind, "detail": e.detail, "page": e.page,
                                 "duration": e.duration}) + "\n")  # fmt: skip
            n += 1
    return n
