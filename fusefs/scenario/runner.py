"""Running a scenario (``fusefs.scenario.language``) under one policy, with a real mount.

This module owns the play: the clock, the order of the steps, the flusher beside them,
the mount, and the entry points (:func:`play`, :func:`run_policy`).  A :class:`Run` is
assembled from :mod:`fusefs.scenario.steps` (the run's state and its act steps) and
:mod:`fusefs.scenario.verdicts` (expectations, end-of-run checks, the result).

Time. One trio run per policy, on a ``MockClock`` that starts virtual (autojump: the
races of KERNEL.md §6 take no wall-clock time and always interleave the same way) and
turns into a real clock at the scenario's ``mount()`` step (``rate=1``, no autojump),
continuing from the virtual time reached. Before, the filesystem's flusher runs on
virtual time (every ``writeback_interval`` s it writes back what has been dirty for
``dirty_expire`` s), as it does while mounted after. Only then is the filesystem mounted
(``fusefs.fuse.mount.serving``): the kernel's requests need real time to be answered, and
a virtual clock would jump ahead while a worker thread waits on the mount. What follows
``mount()`` - more steps, write(2) through the mount, the checks - runs on real time,
and every look at the mount is a system call in a worker thread (``Mount.run_sync``),
never on the trio thread that serves it. A scenario without ``mount()`` gets one at the
end. The same ``Filesystem`` and page cache serve both parts.

Every run ends with checks of its own (:mod:`fusefs.scenario.verdicts`): every step ran,
fsck of filesystem and simulation, ``df`` through the mount agrees with the filesystem,
and read(2) through the mount of every file agrees with the page cache.

Results are plain data (:mod:`fusefs.scenario.results`: ``PolicyResult``,
``ExpectationResult``, ``TraceEvent``) for the command line, JSON, traces and reports.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

import trio
import trio.testing

from fusefs.fs.core import Filesystem
from fusefs.fs.store import mkfs
from fusefs.scenario.language import Scenario, Step
from fusefs.scenario.results import ExpectationResult, PolicyResult, TraceEvent
from fusefs.scenario.steps import FLUSHER, RunAborted, current_track
from fusefs.scenario.verdicts import Verdicts


class Run(Verdicts):
    """One play of a scenario under one policy, on a virtual-then-real clock: its steps
    (:class:`~fusefs.scenario.steps.RunSteps`) and verdicts
    (:class:`~fusefs.scenario.verdicts.Verdicts`)."""

    # -- the play ----------------------------------------------------------------------
    async def play(self, clock: trio.testing.MockClock, serve: Callable[..., Any]) -> None:
        steps = list(self.scenario.steps)
        split = next((i for i, s in enumerate(steps) if s.kind == "mount"), len(steps))
        async with trio.open_nursery() as nursery:
            await nursery.start(_flusher, self.fs)  # the kernel's flusher, on virtual time
            try:
                for step in steps[:split]:
                    await self.step(step)
            except RunAborted as exc:
                self._fail_run(exc)
            nursery.cancel_scope.cancel()
        clock.autojump_threshold = math.inf
        clock.rate = 1.0
        self.fs_events.append(TraceEvent(trio.current_time(), FLUSHER, "mount",
                                         "mounted: real time from here"))  # fmt: skip
        async with serve(self.fs, self.mountpoint) as m:
            self.mount = m
            try:
                if not self.aborted:
                    for step in steps[split + 1 :]:
                        await self.step(step)
            except RunAborted as exc:
                self._fail_run(exc)
            await self.final_checks()
            await self.cleanup()
            self.max_dirty = max(self.max_dirty, self._dirty_pages())

    def _fail_run(self, exc: RunAborted) -> None:
        self.aborted = True
        self.results.append(ExpectationResult("ran every step", False, str(exc), exc.line))

    async def step(self, step: Step) -> None:
        if step.is_expectation:
            await self.check(step)
            return
        if step.kind == "together":
            async with trio.open_nursery() as nursery:
                for child in step.children:
                    nursery.start_soon(self._delayed, child)
            return
        try:
            await self.act(step)
        except RunAborted:
            raise
        except Exception as exc:  # a step the story did not expect to fail: reported
            raise RunAborted(f"line {step.line}: {step.kind}: {exc!r}", step.line) from exc
        self.max_dirty = max(self.max_dirty, self._dirty_pages())

    async def _delayed(self, step: Step) -> None:
        await trio.sleep(step.delay)
        await self.step(step)


async def _flusher(fs: Filesystem, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    token = current_track.set(FLUSHER)
    try:
        await fs.run_flusher(task_status=task_status)
    finally:
        current_track.reset(token)


# -- playing a scenario ----------------------------------------------------------------------


async def run_policy(
    scenario: Scenario,
    policy: str,
    *,
    profile: str | None = None,
    mountpoint: str,
    clock: trio.testing.MockClock,
    after: Callable[[Any], Any] | None = None,
    store: str | None = None,
    observe: Callable[[Run], object] | None = None,
) -> PolicyResult:
    """Play ``scenario`` under ``policy`` on ``mountpoint`` (in the current trio run,
    whose clock must be ``clock``); ``after(mount)`` is awaited while still mounted.
    With ``store`` (a path that must not exist) the filesystem lives in a new store
    there, and the verdicts are read back from it after the unmount. ``observe(run)``
    is called with the assembled ``Run`` before it plays (``fusefs.scenario.report`` hooks its
    recorder there), so a watched run is played and judged exactly as any other."""
    from fusefs.fuse.mount import serving

    if store is not None:
        mkfs(store, scenario.capacity, uid=0, gid=0, now_ns=time.time_ns())
    run = Run(scenario, policy, profile or scenario.profile, mountpoint, store)
    if observe is not None:
        observe(run)

    def serve(fs: Filesystem, where: str) -> Any:
        return serving(fs, where, handle_signals=after is not None)

    if after is None:
        await run.play(clock, serve)
    else:
        await run.play(clock, _with_after(serve, after))
    if store is not None:
        await run.read_back()
    return run.result()


def _with_after(serve: Callable[..., Any], after: Callable[[Any], Any]) -> Callable[..., Any]:
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def wrapped(fs: Filesystem, where: str) -> Any:
        async with serve(fs, where) as m:
            yield m
            await after(m)

    return wrapped


def play(
    scenario: Scenario,
    policy: str,
    *,
    profile: str | None = None,
    mountpoint: str | None = None,
    keep: Callable[[Any], Any] | None = None,
    store: str | None = None,
    observe: Callable[[Run], object] | None = None,
) -> PolicyResult:
    """:func:`run_policy` in a trio run of its own on a virtual-then-real clock; a
    temporary mount point unless ``mountpoint`` is given."""
    clock = trio.testing.MockClock(rate=0.0, autojump_threshold=0)
    tmp = None
    if mountpoint is None:
        tmp = mountpoint = tempfile.mkdtemp(prefix="mkwritefs-scenario-")
    try:
        return trio.run(
            lambda: run_policy(
                scenario,
                policy,
                profile=profile,
                mountpoint=mountpoint,
                clock=clock,
                after=keep,
                store=store,
                observe=observe,
            ),
            clock=clock,
        )
    finally:
        if tmp is not None:
            os.rmdir(tmp)
