"""The steps of a scenario, acted out: the state of one run and every act step.

This module owns what a run does to the filesystem and the simulation before it judges
anything: the run's state (the filesystem, the simulated processes, their mappings and
open files), the observers that put filesystem events and throttle pauses on the trace,
one handler ``_do_<kind>`` per act step of :mod:`fusefs.scenario.language`, and the teardown of
processes and files at the end.  The verdicts are :mod:`fusefs.scenario.verdicts`'s; the play
(clock, mount, order) is :mod:`fusefs.scenario.runner`'s.

Invariants: every act step returns ``(result, value)``, ``result`` being "ok", "sigbus",
"partial" or an errno name; a step that raises instead ends the run (``Run.step`` turns
it into :class:`RunAborted`, reported as "ran every step" failing); ``acked`` holds,
per file and in order, exactly what writers were told is stored (a store through a
shared mapping, what write(2) returned, truncates and punched holes), which the
read-back after a store's unmount holds the filesystem to.
"""

from __future__ import annotations

import contextvars
import errno
import os
from collections.abc import Callable
from typing import Any

import trio

from fusefs.fs.core import Filesystem
from fusefs.fs.errors import FsError
from fusefs.fs.filedata import FileData
from fusefs.fs.handles import FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE
from fusefs.fs.inode import Ctx
from fusefs.fs.store import SqliteStore
from fusefs.scenario.language import PAGE, Proc, Scenario, Step
from fusefs.scenario.results import ExpectationResult, Outcome, TraceEvent
from fusefs.vm.file import SimFile
from sim_mmu import SIGBUS, MapFlags, Process, Prot, SigInfo, SimError, Simulation
from sim_mmu.bdi import CHARGED_TASK

ROOT = Ctx(uid=0, gid=0, pid=1)
FLUSHER = 0  # the trace track of the flusher (and of kernel work without a process)
# The trace track (simulated pid) of what runs now: events are put on it.
current_track: contextvars.ContextVar[int] = contextvars.ContextVar("scenario_pid", default=FLUSHER)


class RunAborted(Exception):
    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


class RunSteps:
    """The state of one play of a scenario under one policy, and its act steps."""

    def __init__(
        self, scenario: Scenario, policy: str, profile: str, mountpoint: str,
        store: str | None = None,
    ) -> None:  # fmt: skip
        self.scenario = scenario
        self.policy = policy
        self.profile = profile
        self.mountpoint = mountpoint
        # A store (fusefs.fs.store, made empty by the caller): the verdicts are read back
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
        self.mount: Any = None  # fusefs.fuse.mount.Mount once mounted
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
            TraceEvent(
                trio.current_time(),
                current_track.get(),
                kind,
                f"ino {ino} page {index}: {detail}",
                page=index,
            )
        )

    def _dirty_pages(self) -> int:
        return sum(i.data.nr_dirty for i in self.fs.inodes.values() if i.data is not None)

    async def _observe_dirty(self, data: FileData) -> None:
        """Where a dirty-throttling model plugs in (balance_dirty_pages_ratelimited): the
        peak of dirty pages is noted, then the model (if any) runs; a pause is traced."""
        self.max_dirty = max(self.max_dirty, self._dirty_pages())
        if self._balance is None:
            return
        start = trio.current_time()
        await self._balance(data)
        if trio.current_time() > start:
            self.fs_events.append(TraceEvent(start, current_track.get(), "throttle", "paused",
                                             trio.current_time() - start))  # fmt: skip

    # -- act steps -----------------------------------------------------------------------
    async def act(self, step: Step) -> None:
        a = step.args
        handler = getattr(self, f"_do_{step.kind}", None)
        if handler is None:
            raise RunAborted(f"line {step.line}: no runner for step {step.kind!r}", step.line)
        proc = a.get("proc")
        pid = self.procs[proc.name].pid if isinstance(proc, Proc) and proc.name in self.procs else 0
        if "map" in a and not isinstance(proc, Proc):
            pid = self._map_proc_pid(a)
        token = current_track.set(pid)
        start = trio.current_time()
        try:
            result, value = await handler(a)
        finally:
            current_track.reset(token)
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
                self.fs.write(self.files[a["path"]].fh, a["offset"], a["data"])
            )
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
        token = current_track.set(FLUSHER)
        try:
            await self.fs.writeback()
        finally:
            current_track.reset(token)
        return "ok", None

    async def _do_sleep(self, a: dict[str, Any]) -> tuple[str, Any]:
        await trio.sleep(a["seconds"])
        return "ok", None

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


def pread(path: str, offset: int, length: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)
