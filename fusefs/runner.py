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

import contextvars
import errno
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
from fusefs.filedata import FileData
from fusefs.handles import FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE
from fusefs.inode import ROOT_INO, Ctx
from fusefs.run_results import ExpectationResult, Outcome, PolicyResult, TraceEvent
from fusefs.scenario import MISSING, PAGE, Per, Proc, Scenario, Step
from fusefs.store import SqliteStore, mkfs
from fusefs.vm import SimFile
from sim_mmu import SIGBUS, MapFlags, Process, Prot, SigInfo, SimError, Simulation
from sim_mmu.bdi import CHARGED_TASK
from sim_mmu.check import check_simulation

ROOT = Ctx(uid=0, gid=0, pid=1)
XATTR = "user.mkwritefs."
FLUSHER = 0  # the trace track of the flusher (and of kernel work without a process)
_pid: contextvars.ContextVar[int] = contextvars.ContextVar("scenario_pid", default=FLUSHER)


class Run:
    """One play of a scenario under one policy."""

    def __init__(
        self, scenario: Scenario, policy: str, profile: str, mountpoint: str,
        store: str | None = None,
    ) -> None:  # fmt: skip
        self.scenario = scenario
        self.policy = policy
        self.profile = profile
        self.mountpoint = mountpoint
        # A store (fusefs.store, made empty by the caller): the verdicts are read back
        # from it after the unmount (read_back).
        self.store_path = store
        self.fs = Filesystem(
            capacity_blocks=scenario.capacity, uid=0, gid=0, policy=policy,
            store=SqliteStore(store) if store is not None else None,
            **scenario.fs_options,  # type: ignore[arg-type]
        )  # fmt: skip
        # What writers were told is stored, per file, in order: ("w", offset, data),
        # ("t", size) for a truncate, ("p", offset, length) for a punched hole.
        self.acked: dict[int, list[tuple[Any, ...]]] = {}
        self.shared_maps: set[int] = set()
        self.lost_read_back: int | None = None
        self.fs.on_vm_event = self._fs_event
        self._balance = self.fs.balance_dirty  # a dirty-throttling model, if one is set
        self.fs.balance_dirty = self._observe_dirty
        self.sim = Simulation(profile=profile)
        self.mount: Any = None  # fusefs.mount.Mount once mounted
        self.procs: dict[str, Process] = {}
        self.sigbus: dict[int, int] = {}
        self.files: dict[str, SimFile] = {}
        self.handles: dict[int, SimFile] = {}
        self.maps: dict[int, tuple[int, int, SimFile]] = {}  # id -> addr, length, file
        self.outcomes: dict[str, Outcome] = {}
        self.results: list[ExpectationResult] = []
        self.fs_events: list[TraceEvent] = []
        self.spans: list[TraceEvent] = []
        self.stores_acknowledged = 0
        self.max_dirty = 0
        self.aborted = False

    # -- observers ---------------------------------------------------------------------
    def _fs_event(self, ino: int, kind: str, index: int, detail: str) -> None:
        self.fs_events.append(
            TraceEvent(trio.current_time(), _pid.get(), kind, f"ino {ino} page {index}: {detail}",
                       page=index)  # fmt: skip
        )

    def _dirty_pages(self) -> int:
        return sum(
            i.data.nr_dirty for i in self.fs.inodes.values() if i.data is not None
        )

    async def _observe_dirty(self, data: FileData) -> None:
        """Where a dirty-throttling model plugs in (balance_dirty_pages_ratelimited): the
        peak of dirty pages is noted, then the model (if any) runs; a pause is traced."""
        self.max_dirty = max(self.max_dirty, self._dirty_pages())
        if self._balance is None:
            return
        start = trio.current_time()
        await self._balance(data)
        if trio.current_time() > start:
            self.fs_events.append(TraceEvent(start, _pid.get(), "throttle", "paused",
                                             trio.current_time() - start))  # fmt: skip

    # -- the play ----------------------------------------------------------------------
    async def play(self, clock: trio.testing.MockClock, serve: Callable[..., Any]) -> None:
        steps = list(self.scenario.steps)
        split = next((i for i, s in enumerate(steps) if s.kind == "mount"), len(steps))
        async with trio.open_nursery() as nursery:
            await nursery.start(_flusher, self.fs)  # the kernel's flusher, on virtual time
            try:
                for step in steps[:split]:
                    await self.step(step)
            except _Abort as exc:
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
            except _Abort as exc:
                self._fail_run(exc)
            await self.final_checks()
            await self.cleanup()
            self.max_dirty = max(self.max_dirty, self._dirty_pages())

    def _fail_run(self, exc: _Abort) -> None:
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
        except _Abort:
            raise
        except Exception as exc:  # a step the story did not expect to fail: reported
            raise _Abort(f"line {step.line}: {step.kind}: {exc!r}", step.line) from exc
        self.max_dirty = max(self.max_dirty, self._dirty_pages())

    async def _delayed(self, step: Step) -> None:
        await trio.sleep(step.delay)
        await self.step(step)

    # -- act steps -----------------------------------------------------------------------
    async def act(self, step: Step) -> None:
        a = step.args
        handler = getattr(self, f"_do_{step.kind}", None)
        if handler is None:
            raise _Abort(f"line {step.line}: no runner for step {step.kind!r}", step.line)
        proc = a.get("proc")
        pid = self.procs[proc.name].pid if isinstance(proc, Proc) and proc.name in self.procs else 0
        if "map" in a and not isinstance(proc, Proc):
            pid = self._map_proc_pid(a)
        token = _pid.set(pid)
        start = trio.current_time()
        try:
            result, value = await handler(a)
        finally:
            _pid.reset(token)
        end = trio.current_time()
        if step.name is not None:
            self.outcomes[step.name] = Outcome(result, start, end, value)
        if step.kind not in ("spawn", "create", "sleep"):
            label = step.name or step.kind
            self.spans.append(TraceEvent(start, pid, f"{step.kind}: {label}", result, end - start))

    def _map_proc_pid(self, a: dict[str, Any]) -> int:
        p = self.procs.get(a["map"].proc.name)
        return p.pid if p is not None else 0

    def _catch(self, proc: Process) -> None:
        def handler(info: SigInfo) -> bool:
            self.sigbus[proc.pid] = self.sigbus.get(proc.pid, 0) + 1
            return False  # abandon the access, like a handler that siglongjmps

        proc.sigaction(SIGBUS, handler)

    async def _do_spawn(self, a: dict[str, Any]) -> tuple[str, Any]:
        p = self.sim.spawn(a["proc"].name)
        self._catch(p)
        self.procs[a["proc"].name] = p
        return "ok", None

    async def _do_fork(self, a: dict[str, Any]) -> tuple[str, Any]:
        child = await self.procs[a["proc"].name].fork(a["child"].name)
        self._catch(child)
        self.procs[a["child"].name] = child
        return "ok", None

    async def _do_thread(self, a: dict[str, Any]) -> tuple[str, Any]:
        child = self.procs[a["proc"].name].clone_thread(a["child"].name)
        self._catch(child)
        self.procs[a["child"].name] = child
        return "ok", None

    async def _do_exit(self, a: dict[str, Any]) -> tuple[str, Any]:
        await self.procs[a["proc"].name].exit()
        return "ok", None

    async def _do_create(self, a: dict[str, Any]) -> tuple[str, Any]:
        f = self.fs.open_path(a["path"], os.O_RDWR | os.O_CREAT)
        if a["size"]:
            await self.fs.setattr(f.ino, size=a["size"], ctx=ROOT)
        self.files[a["path"]] = f
        self.handles[a["id"]] = f
        return "ok", None

    async def _do_reopen(self, a: dict[str, Any]) -> tuple[str, Any]:
        flags = os.O_RDONLY if a["read_only"] else os.O_RDWR
        self.handles[a["id"]] = self.fs.open_file(self.files[a["path"]].ino, flags)
        return "ok", None

    async def _do_fill(self, a: dict[str, Any]) -> tuple[str, Any]:
        n = self.fs.space.free if a["blocks"] is None else a["blocks"]
        f = self.fs.open_path("/filler", os.O_RDWR | os.O_CREAT)
        self.files.setdefault("/filler", f)
        if n:
            await self.fs.fallocate(f.fh, 0, f.i_size, n * PAGE)
        return "ok", None

    async def _do_mmap(self, a: dict[str, Any]) -> tuple[str, Any]:
        m = a["map"]
        f = self.handles[a["file_id"]] if a["file_id"] else self.files[m.path]
        pages = a["pages"] if a["pages"] is not None else max(1, -(-f.i_size // PAGE))
        prot = Prot.READ | Prot.WRITE if a["prot"] == "rw" else Prot.READ
        flags = MapFlags.SHARED if a["shared"] else MapFlags.PRIVATE
        try:
            addr = await self.procs[m.proc.name].mmap(pages * PAGE, prot, flags, f)
        except SimError as exc:
            return _errname(exc), None
        self.maps[m.id] = (addr, pages * PAGE, f)
        if a["shared"]:
            self.shared_maps.add(m.id)
        return "ok", None

    def _at(self, a: dict[str, Any]) -> tuple[Process, int]:
        addr = self.maps[a["map"].id][0] + a["page"] * PAGE + a.get("offset", 0)
        proc = a.get("proc") or a["map"].proc
        return self.procs[proc.name], addr

    async def _do_store(self, a: dict[str, Any]) -> tuple[str, Any]:
        proc, addr = self._at(a)
        before = self.sigbus.get(proc.pid, 0)
        token = CHARGED_TASK.set(proc)  # the dirty throttle charges the storing process
        try:
            n = await proc.store(addr, a["data"])
        finally:
            CHARGED_TASK.reset(token)
        if n == len(a["data"]):
            self.stores_acknowledged += 1
            self._ack_store(a, 0)
            return "ok", n
        return ("sigbus" if self.sigbus.get(proc.pid, 0) > before else "partial"), n

    async def _do_stores(self, a: dict[str, Any]) -> tuple[str, Any]:
        proc, addr = self._at(a)
        done = 0
        token = CHARGED_TASK.set(proc)  # one writer for the dirty throttle: the process
        try:
            for i in range(a["pages"]):
                before = self.sigbus.get(proc.pid, 0)
                if await proc.store(addr + i * PAGE, a["data"]) != len(a["data"]):
                    failed = self.sigbus.get(proc.pid, 0) > before
                    return ("sigbus" if failed else "partial"), done
                self.stores_acknowledged += 1
                self._ack_store(a, i)
                done += 1
        finally:
            CHARGED_TASK.reset(token)
        return "ok", done

    def _ack_store(self, a: dict[str, Any], i: int) -> None:
        """Note an acknowledged store through a mapping (of the file from offset 0)."""
        if a["map"].id not in self.shared_maps:
            return  # a private mapping's copy: never the file's data
        f = self.maps[a["map"].id][2]
        offset = (a["page"] + i) * PAGE + a.get("offset", 0)
        data = bytes(a["data"])[: max(0, f.i_size - offset)]  # past EOF is never data
        if data:
            self.acked.setdefault(f.ino, []).append(("w", offset, data))

    def _ack(self, path: str, *change: Any) -> None:
        f = self.files.get(path)
        if f is not None:
            self.acked.setdefault(f.ino, []).append(change)

    async def _do_load(self, a: dict[str, Any]) -> tuple[str, Any]:
        proc, addr = self._at(a)
        before = self.sigbus.get(proc.pid, 0)
        data = await proc.load(addr, a["length"])
        if len(data) == a["length"]:
            return "ok", data
        return ("sigbus" if self.sigbus.get(proc.pid, 0) > before else "partial"), data

    async def _do_poke(self, a: dict[str, Any]) -> tuple[str, Any]:
        proc, addr = self._at(a)
        n = await proc.access_process_vm(addr, a["data"], write=True)
        return ("ok" if n == len(a["data"]) else "EFAULT" if n == 0 else "partial"), n

    async def _do_copy_to_user(self, a: dict[str, Any]) -> tuple[str, Any]:
        proc, addr = self._at(a)
        left = await proc.copy_to_user(addr, a["data"])
        return ("ok" if left == 0 else "EFAULT" if left == len(a["data"]) else "partial"), left

    async def _do_msync(self, a: dict[str, Any]) -> tuple[str, Any]:
        addr, length, _ = self.maps[a["map"].id]
        return await _errno_of(self.procs[a["map"].proc.name].msync(addr, length))

    async def _do_munmap(self, a: dict[str, Any]) -> tuple[str, Any]:
        addr, length, _ = self.maps.pop(a["map"].id)
        return await _errno_of(self.procs[a["map"].proc.name].munmap(addr, length))

    async def _do_mprotect(self, a: dict[str, Any]) -> tuple[str, Any]:
        addr, length, _ = self.maps[a["map"].id]
        prot = Prot.READ | Prot.WRITE if a["prot"] == "rw" else Prot.READ
        return await _errno_of(self.procs[a["map"].proc.name].mprotect(addr, length, prot))

    async def _do_fsync(self, a: dict[str, Any]) -> tuple[str, Any]:
        return await _errno_of(self.handles[a["id"]].fsync())

    async def _do_write(self, a: dict[str, Any]) -> tuple[str, Any]:
        if self.mount is not None:  # write(2) through the mount, from a worker thread
            path = self.mount.path(a["path"].lstrip("/"))
            result = await self.mount.run_sync(_pwrite, path, a["offset"], a["data"])
        else:
            result = await _errno_of(
                self.fs.write(self.files[a["path"]].fh, a["offset"], a["data"]))
        if result[0] == "ok" and isinstance(result[1], int):  # what write(2) returned
            self._ack(a["path"], "w", a["offset"], bytes(a["data"][: result[1]]))
        return result

    async def _do_truncate(self, a: dict[str, Any]) -> tuple[str, Any]:
        self._ack(a["path"], "t", a["size"])
        if self.mount is not None:
            path = self.mount.path(a["path"].lstrip("/"))
            return await self.mount.run_sync(_os_call, os.truncate, path, a["size"])
        ino = self.files[a["path"]].ino
        return await _errno_of(self.fs.setattr(ino, size=a["size"], ctx=ROOT))

    async def _do_fallocate(self, a: dict[str, Any]) -> tuple[str, Any]:
        mode = (FALLOC_FL_KEEP_SIZE if a["keep_size"] or a["punch"] else 0) | (
            FALLOC_FL_PUNCH_HOLE if a["punch"] else 0
        )
        if a["punch"]:
            self._ack(a["path"], "p", a["offset"], a["length"])
        fh = self.files[a["path"]].fh
        return await _errno_of(self.fs.fallocate(fh, mode, a["offset"], a["length"]))

    async def _do_inject_error(self, a: dict[str, Any]) -> tuple[str, Any]:
        self.files[a["path"]].data.inject_writeback_error(getattr(errno, a["err"]), a["pages"])
        return "ok", None

    async def _do_writeback(self, a: dict[str, Any]) -> tuple[str, Any]:
        token = _pid.set(FLUSHER)
        try:
            await self.fs.writeback()
        finally:
            _pid.reset(token)
        return "ok", None

    async def _do_sleep(self, a: dict[str, Any]) -> tuple[str, Any]:
        await trio.sleep(a["seconds"])
        return "ok", None

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
            return await m.run_sync(_pread, path, a["offset"], a["length"])
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
            through = await m.run_sync(_pread, m.path(path.lstrip("/")), 0, size)
            if through != f.data.read(0, size):
                bad.append(path)
        self.results.append(ExpectationResult(
            "mount: read(2) agrees with the page cache", not bad,
            f"differ: {', '.join(bad)}" if bad else f"{len(self.files)} files",
        ))  # fmt: skip

    async def cleanup(self) -> None:
        for proc in self.procs.values():
            if proc.alive:
                try:
                    await proc.exit()
                except (SimError, ValueError):
                    pass
        for f in {id(f): f for f in [*self.files.values(), *self.handles.values()]}.values():
            try:
                await f.close()
            except (SimError, FsError):
                pass  # an error reported again at close is not news here

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
    token = _pid.set(FLUSHER)
    try:
        await fs.run_flusher(task_status=task_status)
    finally:
        _pid.reset(token)


class _Abort(Exception):
    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


def _sim_detail(e: Any) -> str:
    parts = [f"addr {e.addr:#x}"]
    if e.pgoff >= 0:
        parts.append(f"page {e.pgoff}")
    if e.detail:
        parts.append(e.detail)
    return " ".join(parts)


def _errname(exc: SimError | FsError | OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, str(exc.errno))


async def _errno_of(call: Any) -> tuple[str, Any]:
    try:
        value = await call
    except (SimError, FsError) as exc:
        return _errname(exc), None
    return "ok", value


def _os_call(fn: Callable[..., Any], *args: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(*args)
    except OSError as exc:
        return _errname(exc), None


def _pwrite(path: str, offset: int, data: bytes) -> tuple[str, Any]:
    try:
        fd = os.open(path, os.O_WRONLY)
    except OSError as exc:
        return _errname(exc), None
    try:
        return "ok", os.pwrite(fd, data, offset)
    except OSError as exc:
        return _errname(exc), None
    finally:
        os.close(fd)


def _pread(path: str, offset: int, length: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


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
