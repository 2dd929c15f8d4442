"""Statistics and the event trace of one simulation.

Counters are plain integers on one mutable object that the fault path bumps
(``Counters``); ``statistics()`` hands out a frozen snapshot (``Statistics``), the trio
habit of one ``statistics()`` method instead of attributes scattered on objects.

Events are immutable ``Event`` records (a ``NamedTuple``: cheap to build, frozen) with the
virtual time of ``trio.current_time()``.  Recording can be switched off for benchmarks,
and ``limit`` keeps only the most recent events so a long run cannot grow without bound.
"""

from __future__ import annotations

import collections
import dataclasses
import json
from collections.abc import Iterator
from typing import Any, NamedTuple, TextIO

import trio


class Event(NamedTuple):
    """One thing that happened, at virtual time ``time``."""

    time: float
    kind: str  # fault, wp_fault, mkwrite, cow, sigbus, sigsegv, mkclean, mmap, ...
    pid: int
    addr: int
    pgoff: int
    detail: str


@dataclasses.dataclass(frozen=True)
class Statistics:
    """A snapshot of a simulation's counters."""

    faults: int
    minor_faults: int
    major_faults: int
    wp_faults: int
    mkwrite_calls: int
    mkwrite_ok: int
    mkwrite_sigbus: int
    mkwrite_nopage: int
    mkwrite_oom: int
    mkwrite_retry: int
    pte_changed: int  # the pte_same / mapping re-check after page_mkwrite failed
    cow_copies: int
    sigbus: int
    sigsegv: int
    oom_kills: int
    mkclean: int
    gup_calls: int


class Counters:
    """The live counters (one per simulation); see ``Statistics`` for meanings."""

    __slots__ = (
        "cow_copies",
        "faults",
        "gup_calls",
        "major_faults",
        "minor_faults",
        "mkclean",
        "mkwrite_calls",
        "mkwrite_nopage",
        "mkwrite_ok",
        "mkwrite_oom",
        "mkwrite_retry",
        "mkwrite_sigbus",
        "oom_kills",
        "pte_changed",
        "sigbus",
        "sigsegv",
        "wp_faults",
    )

    def __init__(self) -> None:
        self.faults = 0
        self.minor_faults = 0
        self.major_faults = 0
        self.wp_faults = 0
        self.mkwrite_calls = 0
        self.mkwrite_ok = 0
        self.mkwrite_sigbus = 0
        self.mkwrite_nopage = 0
        self.mkwrite_oom = 0
        self.mkwrite_retry = 0
        self.pte_changed = 0
        self.cow_copies = 0
        self.sigbus = 0
        self.sigsegv = 0
        self.oom_kills = 0
        self.mkclean = 0
        self.gup_calls = 0

    def snapshot(self) -> Statistics:
        return Statistics(**{name: getattr(self, name) for name in self.__slots__})


class Trace:
    """The event log.  ``record`` is a no-op when ``enabled`` is False."""

    __slots__ = ("_events", "enabled")

    def __init__(self, *, enabled: bool = True, limit: int | None = None) -> None:
        self.enabled = enabled
        self._events: collections.deque[Event] = collections.deque(maxlen=limit)

    def record(self, kind: str, pid: int, addr: int = 0, pgoff: int = -1, detail: str = "") -> None:
        if self.enabled:
            self._events.append(Event(trio.current_time(), kind, pid, addr, pgoff, detail))

    def events(self, kind: str | None = None) -> list[Event]:
        """The recorded events, oldest first, optionally only those of ``kind``."""
        if kind is None:
            return list(self._events)
        return [e for e in self._events if e.kind == kind]

    def __iter__(self) -> Iterator[Event]:
        return iter(tuple(self._events))

    def __len__(self) -> int:
        return len(self._events)

    def clear(self) -> None:
        self._events.clear()

    def write_jsonl(self, fp: TextIO) -> int:
        """Write one JSON object per event; return how many."""
        n = 0
        for e in tuple(self._events):
            fp.write(json.dumps(e._asdict()) + "\n")
            n += 1
        return n

    def chrome_trace(self) -> dict[str, Any]:
        """The events as a Chrome trace-event document (opens in Perfetto)."""
        events = [
            {
                "name": e.kind,
                "ph": "i",
                "s": "t",
                "ts": e.time * 1e6,
                "pid": e.pid,
                "tid": e.pid,
                "args": {"addr": hex(e.addr), "pgoff": e.pgoff, "detail": e.detail},
            }
            for e in tuple(self._events)
        ]
        return {"traceEvents": events, "displayTimeUnit": "ms"}
