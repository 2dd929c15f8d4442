"""Running a scenario (``fusefs.scenario``) under one policy, with a real mount.

Time. One trio run per policy, on a ``MockClock`` that starts virtual (autojump: the
races of KERNEL.md §6 take no wall-clock time and always interleave the same way) and
turns into a real clock at the scenario's ``mount()`` step (``rate=1``, no autojump),
continuing from the virtual time reached. Before, the filesystem's flusher runs on
virtual time (every ``writeback_interval`` s it writes back what has been dirty for
``dirty_expire`` s), as it does while mounted after. Only then is the filesystem mounted
(``fusefs.mount.serving``): the kernel's requests need real time to be answered, and
a virtual clock would jump ahead while a worker thread waits on the mount. What follows
``mount()`` - more steps, write(2) through the mount, the checks - runs on real time,
and every look at the mount is a system call in a worker thread (``Mount.run_sync``),
never on the trio thread that serves it. A scenario without ``mount()`` gets one at the
end. The same ``Filesystem`` and page cache serve both parts.

Every run ends with checks of its own: every step ran, fsck of filesystem and
simulation, ``df`` through the mount agrees with the filesystem, and read(2) through the
mount of every file agrees with the page cache.

Results are plain data (``PolicyResult``, ``ExpectationResult``, ``TraceEvent``) for the
command line, JSON, traces and reports.
"""

from __future__ import annotations

import math
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable
from typing import Any

import trio
import trio.testing

from fusefs import store_fsck
from fusefs.core import Filesystem
from fusefs.errors import FsError
from fusefs.inode import ROOT_INO
from fusefs.run_results import ExpectationResult, PolicyResult, TraceEvent
from fusefs.run_steps import FLUSHER, ROOT, RunAborted, RunSteps, current_track, pread
from fusefs.scenario import MISSING, PAGE, Per, Scenario, Step
from fusefs.store import SqliteStore, mkfs
from sim_mmu.check import check_simulation

XATTR = "user.mkwritefs."


class Run(RunSteps):
    """One play of a scenario under one policy."""

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

    # -- expectations --------------------------------------------------------------------
    async def check(self, step: Step) -> None:
        expected = step.args["expected"]
        if isinstance(expected, Per):
            expected = expected.resolve(self.policy)
        if isinstance(expected, tuple):
            expected = tuple(v.resolve(self.policy) if isinstance(v, Per) else v
                             for v in expected)  # fmt: skip
            if MISSING in expected:
                return
        if expected is MISSING:
            return
        try:
            actual = await self.observe(step, expected)
        except Exception as exc:  # reported as what was seen: the expectation fails
            actual = f"cannot observe: {exc!r}"
        if step.kind == "expect_took":
            held = isinstance(actual, float) and expected[0] <= actual < expected[1]
            took = f"{actual:.3f} s" if isinstance(actual, float) else str(actual)
            detail = f"took {took}, expected at least {expected[0]}, less than {expected[1]}"
        else:
            held = actual == expected
            detail = _show(actual) if held else f"expected {_show(expected)}, got {_show(actual)}"
        self.results.append(ExpectationResult(step.label, held, detail, step.line, _short(actual)))

    async def observe(self, step: Step, expected: Any) -> Any:
        a = dict(step.args)
        if step.kind == "expect_data":
            a["length"] = len(expected)
        kind = step.kind
        if kind in ("expect", "expect_loaded", "expect_took"):
            o = self.outcomes.get(a["step"])
            if o is None:
                return "the step did not run"
            return {"expect": o.result, "expect_loaded": o.value,
                    "expect_took": o.end - o.start}[kind]  # fmt: skip
        if kind == "expect_sim":
            if a["counter"] == "sigbus":
                return sum(self.sigbus.values())
            return getattr(self.sim.statistics(), a["counter"])
        if kind == "expect_pte":
            addr = self.maps[a["map"].id][0] + a["page"] * PAGE
            pte = self.procs[a["map"].proc.name].pte(addr)
            return None if pte is None else bool(getattr(pte, a["bit"]))
        if kind == "expect_cache":
            caps = self.fs.cache.captures
            if a["what"] == "captures":
                return len(caps)
            return bytes(caps[0].data[: len(expected)]) if caps else None
        if self.mount is not None:
            return await self._observe_mount(kind, a)
        return self._observe_fs(kind, a)

    def _observe_fs(self, kind: str, a: dict[str, Any]) -> Any:
        if kind == "expect_df":
            return getattr(self.fs.statistics(), f"{a['figure']}_blocks")
        if kind == "expect_data":
            return self.files[a["path"]].data.read(a["offset"], a["length"])
        ino = ROOT_INO if a["path"] == "/" else self.files[a["path"]].ino
        return _number(self.fs.getxattr(ino, (XATTR + a["attr"]).encode(), ROOT).decode())

    async def _observe_mount(self, kind: str, a: dict[str, Any]) -> Any:
        m = self.mount
        if kind == "expect_df" and a["figure"] == "free":
            return (await m.run_sync(os.statvfs, m.mountpoint)).f_bavail
        if kind == "expect_df":
            value = await m.run_sync(os.getxattr, m.mountpoint, f"{XATTR}{a['figure']}_blocks")
            return _number(value.decode())
        path = m.path(a["path"].lstrip("/"))
        if kind == "expect_data":
            return await m.run_sync(pread, path, a["offset"], a["length"])
        value = await m.run_sync(os.getxattr, path, XATTR + a["attr"])
        return _number(value.decode())

    async def final_checks(self) -> None:
        """What every scenario checks at the end, through the mount and in process."""
        if not any(r.name == "ran every step" for r in self.results):
            self.results.append(ExpectationResult("ran every step", True, ""))
        try:
            self.fs.check()
            check_simulation(self.sim)
            self.results.append(ExpectationResult("fsck: filesystem and simulation", True, ""))
        except AssertionError as exc:
            self.results.append(ExpectationResult("fsck: filesystem and simulation", False,
                                                  str(exc)))  # fmt: skip
        m = self.mount
        st = await m.run_sync(os.statvfs, m.mountpoint)
        stats = self.fs.statistics()
        got = (st.f_blocks, st.f_bavail)
        want = (stats.capacity_blocks, stats.free_blocks)
        self.results.append(ExpectationResult(
            "mount: df agrees with the filesystem", got == want,
            f"statvfs blocks/free {got[0]}/{got[1]}, filesystem {want[0]}/{want[1]}",
        ))  # fmt: skip
        bad = []
        for path, f in sorted(self.files.items()):
            if f.ino not in self.fs.inodes:
                continue
            size = self.fs.getattr(f.ino).size
            through = await m.run_sync(pread, m.path(path.lstrip("/")), 0, size)
            if through != f.data.read(0, size):
                bad.append(path)
        self.results.append(ExpectationResult(
            "mount: read(2) agrees with the page cache", not bad,
            f"differ: {', '.join(bad)}" if bad else f"{len(self.files)} files",
        ))  # fmt: skip

    # -- a store: the verdicts read back after the unmount ------------------------------
    async def read_back(self) -> None:
        """Commit and close the store (the unmount), open it again in a fresh filesystem
        and check there: every expect_data of the scenario, the bytes writers were told
        were stored (``lost_bytes_read_back``: those not there, which must be 0 exactly
        when the filesystem counted no loss), and fsck of the store and the filesystem."""
        assert self.store_path is not None
        try:
            await self.fs.close()
        except FsError as exc:
            self.results.append(ExpectationResult("store: last commit at unmount", False,
                                                  str(exc)))  # fmt: skip
            return
        store = SqliteStore(self.store_path)
        fresh = Filesystem(capacity_blocks=store.capacity_blocks, uid=0, gid=0, store=store)
        try:
            self._read_back(fresh)
        finally:
            await fresh.close()
        conn = sqlite3.connect(self.store_path)
        try:
            problems = [p.message for p in store_fsck.check(conn)]
        finally:
            conn.close()
        self.results.append(ExpectationResult(
            "store: fsck clean after unmount", not problems,
            "; ".join(problems[:3]) if problems else "clean"))  # fmt: skip

    def _read_back(self, fresh: Filesystem) -> None:
        def contents(path: str) -> bytes | None:
            try:
                f = fresh.open_path(path, os.O_RDONLY)
            except FsError:
                return None
            return f.data.read(0, f.i_size)

        for step in self.scenario.steps:
            if step.kind != "expect_data":
                continue
            expected = step.args["expected"]
            if isinstance(expected, Per):
                expected = expected.resolve(self.policy)
            if expected is MISSING:
                continue
            data = contents(step.args["path"])
            off = step.args["offset"]
            actual = None if data is None else data[off : off + len(expected)]
            held = actual == expected
            detail = _show(actual) if held else f"expected {_show(expected)}, got {_show(actual)}"
            f = self.files.get(step.args["path"])
            if not held and f is not None and f.data.counters.writeback_errors:
                held = True  # as on any disk: what writeback failed to write is not there
                detail = (f"{_show(actual)}: not there after the writeback error the file "
                          "reported (its cached copy never reached the store)")
            label = step.label.removeprefix("mount: ")
            self.results.append(ExpectationResult(f"after unmount and mount: {label}",
                                                  held, detail, step.line, _short(actual)))
        lost = 0
        paths = {f.ino: path for path, f in self.files.items()}
        for ino, changes in self.acked.items():
            if ino not in paths:
                continue
            image, known = _acknowledged(changes)
            data = contents(paths[ino]) or b""
            data = data[: len(image)].ljust(len(image), b"\0")
            lost += sum(1 for i in range(len(image)) if known[i] and data[i] != image[i])
        self.lost_read_back = lost
        vm = self.fs.vm_statistics()
        verdict = "nothing lost" if lost == 0 else f"lost {lost} bytes"
        self.results.append(ExpectationResult(  # a loss only where writeback reported one
            "store: read back after unmount and mount", lost == 0 or vm.writeback_errors > 0,
            f"{verdict} of what writers were told was stored (writeback reported "
            f"{vm.writeback_errors} error(s), counted {vm.lost_bytes} bytes lost)", 0,
            "none lost" if lost == 0 else f"lost {lost}"))  # fmt: skip
        try:
            fresh.check()
        except AssertionError as exc:
            self.results.append(ExpectationResult("store: fsck of the mounted store", False,
                                                  str(exc)))  # fmt: skip

    # -- results ---------------------------------------------------------------------------
    def result(self) -> PolicyResult:
        vm = self.fs.vm_statistics()
        sim = self.sim.statistics()
        dirty = self.fs.dirty  # the dirty model, when setup(dirty=DirtyConfig(...)) is on
        counters = {
            "stores_acknowledged": self.stores_acknowledged,
            "sigbus": sum(self.sigbus.values()),
            "mkwrite_calls": vm.mkwrite_calls,
            "writeback_errors": vm.writeback_errors,
            "lost_bytes": vm.lost_bytes,
            "lost_bytes_read_back": self.lost_read_back,  # None: no store
            "max_dirty_pages": dirty.domain.max_dirty if dirty else self.max_dirty,
            "dirty_limit_pages": dirty.limit_pages() if dirty else None,  # fusefs.throttle
            "faults": sim.faults,
            "wp_faults": sim.wp_faults,
            "cow_copies": sim.cow_copies,
            "free_blocks": self.fs.statistics().free_blocks,
        }
        tracks = {FLUSHER: "flusher"}
        for p in self.sim.processes:
            tracks[p.pid] = f"{p.name} (pid {p.pid})"
        events = [TraceEvent(e.time, e.pid, e.kind, _sim_detail(e), page=e.pgoff)
                  for e in self.sim.events()]  # fmt: skip
        events += self.fs_events + self.spans
        events.sort(key=lambda e: e.time)
        series = dirty.recorder if dirty else None
        return PolicyResult(self.policy, self.profile, counters, self.results, events, tracks,
                            series)  # fmt: skip


def _acknowledged(changes: list[tuple[Any, ...]]) -> tuple[bytearray, bytearray]:
    """A file's acknowledged bytes: (image, known mask), replaying writes, truncates and
    punched holes in order."""
    image = bytearray()
    known = bytearray()
    for change in changes:
        if change[0] == "w":
            _, off, data = change
            end = off + len(data)
            if end > len(image):
                image.extend(bytes(end - len(image)))
                known.extend(bytes(end - len(known)))
            image[off:end] = data
            known[off:end] = b"\1" * len(data)
        elif change[0] == "t":
            del image[change[1] :]
            del known[change[1] :]
        else:
            _, off, length = change
            end = min(off + length, len(known))
            if off < end:
                known[off:end] = bytes(end - off)
    return image, known


async def _flusher(fs: Filesystem, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    token = current_track.set(FLUSHER)
    try:
        await fs.run_flusher(task_status=task_status)
    finally:
        current_track.reset(token)


def _sim_detail(e: Any) -> str:
    parts = [f"addr {e.addr:#x}"]
    if e.pgoff >= 0:
        parts.append(f"page {e.pgoff}")
    if e.detail:
        parts.append(e.detail)
    return " ".join(parts)


def _number(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        return text


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}s"
    text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
    text = text.replace("\0", ".")
    return text if len(text) <= 9 else text[:8] + "…"


def _show(value: Any) -> str:
    if isinstance(value, bytes) and len(value) > 1 and len(set(value)) == 1:
        return f"{value[:1]!r} * {len(value)}"
    if isinstance(value, bytes) and len(value) > 24:
        return repr(value[:24]) + f"...({len(value)} bytes)"
    return repr(value) if isinstance(value, bytes | str) else str(value)


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
) -> PolicyResult:
    """Play ``scenario`` under ``policy`` on ``mountpoint`` (in the current trio run,
    whose clock must be ``clock``); ``after(mount)`` is awaited while still mounted.
    With ``store`` (a path that must not exist) the filesystem lives in a new store
    there, and the verdicts are read back from it after the unmount."""
    from fusefs.mount import serving

    if store is not None:
        mkfs(store, scenario.capacity, uid=0, gid=0, now_ns=time.time_ns())
    run = Run(scenario, policy, profile or scenario.profile, mountpoint, store)

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
) -> PolicyResult:
    """:func:`run_policy` in a trio run of its own on a virtual-then-real clock; a
    temporary mount point unless ``mountpoint`` is given."""
    clock = trio.testing.MockClock(rate=0.0, autojump_threshold=0)
    tmp = None
    if mountpoint is None:
        tmp = mountpoint = tempfile.mkdtemp(prefix="mkwritefs-scenario-")
    try:
        return trio.run(
            lambda: run_policy(scenario, policy, profile=profile, mountpoint=mountpoint,
                               clock=clock, after=keep, store=store),  # fmt: skip
            clock=clock,
        )
    finally:
        if tmp is not None:
            os.rmdir(tmp)
