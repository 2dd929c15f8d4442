"""The verdicts of a run: its expectations, the checks every run ends with, and its result.

This module owns how a run is judged once its steps have acted
(:mod:`fusefs.scenario.steps`): each expectation of the scenario against what is observed
(in process before the mount, through the mount after it), the checks of every run
(every step ran, fsck of filesystem and simulation, ``df`` and read(2) through the
mount agree with the filesystem), with a store the verdicts read back after the
unmount, and the :class:`~fusefs.scenario.results.PolicyResult` with counters and trace.

Invariants: an expectation that cannot be observed fails with what was seen, it does
not end the run; bytes writers were told were stored may be missing after a store's
unmount only when writeback reported an error.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any

from fusefs.constants import XATTR_PREFIX
from fusefs.fs import store_fsck
from fusefs.fs.core import Filesystem
from fusefs.fs.errors import FsError
from fusefs.fs.inode import ROOT_INO
from fusefs.fs.store import SqliteStore
from fusefs.scenario.language import MISSING, PAGE, Step, resolve
from fusefs.scenario.results import ExpectationResult, PolicyResult, TraceEvent
from fusefs.scenario.steps import FLUSHER, ROOT, RunSteps, pread
from sim_mmu.check import check_simulation

XATTR = XATTR_PREFIX


class Verdicts(RunSteps):
    """Judging one run, over the state its steps built (:class:`RunSteps`)."""

    # -- expectations --------------------------------------------------------------------
    async def check(self, step: Step) -> None:
        expected = resolve(step.args["expected"], policy=self.policy, profile=self.profile)
        if expected is MISSING or (isinstance(expected, tuple) and MISSING in expected):
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
            expected = resolve(step.args["expected"], policy=self.policy, profile=self.profile)
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
                detail = (
                    f"{_show(actual)}: not there after the writeback error the file "
                    "reported (its cached copy never reached the store)"
                )
            label = step.label.removeprefix("mount: ")
            self.results.append(
                ExpectationResult(
                    f"after unmount and mount: {label}", held, detail, step.line, _short(actual)
                )
            )
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
            "dirty_limit_pages": dirty.limit_pages() if dirty else None,  # fusefs.vm.throttle
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
