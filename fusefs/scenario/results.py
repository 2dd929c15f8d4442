"""The results of playing a scenario: plain records, no behaviour of their own.

This module owns what a run hands to the command line, JSON, traces and reports
(:mod:`fusefs.scenario.table`, :mod:`fusefs.scenario.report`): the verdict of each expectation
(:class:`ExpectationResult`), the events of the trace (:class:`TraceEvent`), what an
act step did (:class:`Outcome`), and one policy's whole result (:class:`PolicyResult`:
``ok`` exactly when every expectation held).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ExpectationResult:
    name: str
    held: bool
    detail: str
    line: int = 0
    seen: str = ""  # what was observed, short (a table cell)


@dataclass(frozen=True)
class TraceEvent:
    time: float  # seconds: virtual until mount(), then real time continuing from there
    track: int  # simulated pid; 0 = flusher/kernel
    kind: str
    detail: str
    duration: float = 0.0  # > 0: a step that took time (a span in Perfetto)
    page: int = -1  # the file page (pgoff) the event is about, -1: none


@dataclass
class PolicyResult:
    policy: str
    profile: str
    counters: dict[str, Any]
    expectations: list[ExpectationResult]
    events: list[TraceEvent] = field(default_factory=list)
    tracks: dict[int, str] = field(default_factory=dict)  # track id -> name
    dirty_series: Any = None  # the dirty model's DirtyRecorder (record_interval set), or None

    @property
    def ok(self) -> bool:
        return all(e.held for e in self.expectations)

    def as_json(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "counters": self.counters,
            "expectations": [
                {"name": e.name, "held": e.held, "detail": e.detail} for e in self.expectations
            ],
        }


@dataclass
class Outcome:
    """What an act step did: "ok", "sigbus", "partial", or an errno name."""

    result: str
    start: float
    end: float
    value: Any = None
