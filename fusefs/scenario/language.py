"""Scenarios: the declarative language of ``scripts/scenarios/*.py`` and its loader.

A scenario file is a short Python program that *describes* a story; it does not run it.
Executing the file (``load``) calls the functions below, which append steps to the
scenario being built; ``fusefs.scenario.runner`` then plays the steps once per policy::

    \"\"\"Row 1: a full filesystem, a store into a hole of a shared mapping.\"\"\"
    from fusefs.scenario import *

    setup(capacity=4)                      # blocks of 4096 bytes; every policy
    create("/f", pages=4)                  # a sparse file: four hole pages
    fill()                                 # another file takes every free block
    writer = spawn("writer")
    m = mmap(writer, "/f")                 # MAP_SHARED, PROT_READ|PROT_WRITE
    store(m, page=0, data=b"A" * 100, name="hole store")
    mount()                                # from here on, checks go through the mount
    expect("hole store", per({REFUSING: "sigbus"}, default="ok"))
    expect_df(free=0)

Three kinds of call: *setup* (``setup``, ``create``, ``fill``, ``spawn``...), *act* (one
system call or memory access of a simulated process, or of the filesystem's own
``write(2)``/``truncate``), *expect* (a check at that point of the story). Expected values
may differ per policy: ``per({("reserve", "shmem"): "sigbus"}, default="ok")``; a policy
without a value skips that expectation. A story told on several kernel profiles
(``setup(profiles=("modern", "2.6.18"))``, the first the default) may expect per profile
too: ``per_profile(modern="EFAULT", default="ok")``, either inside the other. Act steps
with ``name=`` record their outcome (``"ok"``, ``"sigbus"``, an errno name such as
``"ENOSPC"``) for ``expect``.

``together()`` runs the steps of its block concurrently, each after its own ``delay=``
seconds (virtual time): the races of KERNEL.md §6 (truncate while ``page_mkwrite``
sleeps). ``mount()`` ends the virtual-time part: what follows runs on real time with the
filesystem mounted, and expectations about ``df``, contents and attributes are then
checked through the mount (statvfs, read(2), getxattr from a worker thread).

Invariant: a file that loads has only known steps, names that exist and valid policies;
anything else is one ``ScenarioError`` naming the file and line.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fusefs.constants import PAGE_SIZE
from fusefs.fs.flusher import MIN_WRITEBACK_INTERVAL
from fusefs.vm.policy import Policy
from sim_mmu.profile import PROFILES
from sim_mmu.trace import Statistics

PAGE = PAGE_SIZE
ALL = tuple(p.value for p in Policy)
HOOKED = tuple(p.value for p in Policy if p.has_page_mkwrite)  # page_mkwrite exists
REFUSING = ("reserve", "reserve-cow", "shmem")  # refuse a store that needs a block
NOT_REFUSING = tuple(p for p in ALL if p not in REFUSING)
MISSING: Any = type("Missing", (), {"__repr__": lambda self: "-"})()
SCENARIO_DIR = Path(__file__).resolve().parents[2] / "scripts" / "scenarios"
MAX_CAPACITY = 2**51  # blocks: 2^63 bytes, as a mount's --size
MAX_FILE_SIZE = 1 << 30  # bytes of one file of a story (held in memory, read back whole)

__all__ = [
    "ALL", "HOOKED", "NOT_REFUSING", "PAGE", "REFUSING",
    "copy_to_user", "create", "exit", "expect", "expect_attr", "expect_cache", "expect_data",
    "expect_df", "expect_loaded", "expect_pte", "expect_sim", "expect_took", "fallocate",
    "fill", "fork", "fsync", "inject_error", "load", "mmap", "mount", "mprotect", "msync",
    "munmap", "per", "per_profile", "poke", "reopen", "setup", "sleep", "spawn", "store",
    "stores", "thread", "together", "truncate", "write", "writeback",
]  # fmt: skip


class ScenarioError(Exception):
    """A scenario that cannot be loaded: ``str()`` is one line with file and line."""


@dataclass(frozen=True)
class Per:
    """An expected value per policy (``per``) or per kernel profile (``per_profile``):
    ``table`` maps a name to its value (``MISSING``: not checked under that name)."""

    table: dict[str, Any]
    default: Any = MISSING
    of: str = "policy"  # or "profile": which of a run's two names looks the value up

    def resolve(self, *, policy: str, profile: str) -> Any:
        return self.table.get(policy if self.of == "policy" else profile, self.default)


def resolve(value: Any, *, policy: str, profile: str) -> Any:
    """An expected value as one run judges it: ``per(...)`` taken for ``policy`` and
    ``per_profile(...)`` for ``profile``, either inside the other; a tuple (the bounds of
    ``expect_took``) element by element. ``MISSING`` (or a tuple holding it): not checked."""
    while isinstance(value, Per):
        value = value.resolve(policy=policy, profile=profile)
    if isinstance(value, tuple):
        return tuple(resolve(v, policy=policy, profile=profile) for v in value)
    return value


def _leaves(value: Any) -> list[Any]:
    """Every value ``value`` may resolve to, under any policy and profile."""
    if isinstance(value, Per):
        return [x for v in (*value.table.values(), value.default) for x in _leaves(v)]
    return [value]


@dataclass(frozen=True)
class Proc:
    """A simulated process of the story (``spawn``, ``fork``, ``thread``)."""

    name: str


@dataclass(frozen=True)
class Map:
    """A mapping of the story (``mmap``): process, file, pages and protection."""

    id: int
    proc: Proc
    path: str


@dataclass(frozen=True)
class Handle:
    """An open file of the story (``create``, ``reopen``)."""

    id: int
    path: str


@dataclass
class Step:
    kind: str
    line: int
    args: dict[str, Any]
    name: str | None = None  # act steps: the outcome is recorded under this name
    delay: float = 0.0  # inside together(): seconds before the step starts
    children: list[Step] = field(default_factory=list)  # together()
    label: str = ""  # expectations: the row of the table

    @property
    def is_expectation(self) -> bool:
        return self.kind.startswith("expect")


@dataclass
class Scenario:
    name: str
    path: str
    story: str  # the docstring's first line
    text: str  # the whole docstring
    capacity: int = 16
    policies: tuple[str, ...] = ALL
    profile: str = "modern"  # the default: profiles[0]
    profiles: tuple[str, ...] = ("modern",)
    fs_options: dict[str, float] = field(default_factory=dict)
    steps: list[Step] = field(default_factory=list)

    def where(self, step: Step) -> str:
        return f"{self.path}:{step.line}"


class _Builder:
    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.stack: list[list[Step]] = [scenario.steps]
        self.names: set[str] = set()
        self.procs: set[str] = set()
        self.files: set[str] = set()
        self.ids = 0
        self.mounted = False
        self.setup_done = False


_current: _Builder | None = None


def _builder() -> _Builder:
    if _current is None:
        raise RuntimeError("scenario steps are only valid while a scenario file loads")
    return _current


def _line() -> int:
    b = _builder()
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename != b.scenario.path:
        frame = frame.f_back  # type: ignore[assignment]
    return frame.f_lineno if frame is not None else 0


def _fail(message: str) -> None:
    raise ScenarioError(message)


def _add(kind: str, name: str | None = None, delay: float = 0.0, **args: Any) -> Step:
    b = _builder()
    if name is not None:
        if name in b.names:
            _fail(f"the name {name!r} is used twice")
        b.names.add(name)
    if delay and len(b.stack) == 1:
        _fail("delay= is only meaningful inside together()")
    step = Step(kind, _line(), args, name, float(delay))
    b.stack[-1].append(step)
    return step


def _proc(p: Proc) -> Proc:
    if not isinstance(p, Proc) or p.name not in _builder().procs:
        _fail(f"{p!r} is not a process of this scenario (use spawn, fork or thread)")
    return p


def _map(m: Map) -> Map:
    if not isinstance(m, Map):
        _fail(f"{m!r} is not a mapping (use the value mmap returned)")
    return m


def _file(path: str | Handle) -> str:
    p = path.path if isinstance(path, Handle) else path
    if p != "/" and p not in _builder().files:
        _fail(f"no file {p!r} in this scenario (create it first)")
    return p


def _is_count(value: Any) -> bool:
    """A whole number, at least 0 (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_number(value: Any) -> bool:
    """An int or a finite float (not a bool, not a string)."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and value == value
        and abs(value) != float("inf")
    )


def _names(names: Any, known: tuple[str, ...], what: str, arg: str) -> tuple[str, ...]:
    """One name or a tuple (list) of them, each in ``known``; ``what``: "policy"..."""
    if not isinstance(names, str | tuple | list):
        _fail(f"{arg} must be a {what} name or a tuple of them, not {names!r}")
    names = (names,) if isinstance(names, str) else tuple(names)
    for n in names:
        if n not in known:
            _fail(f"unknown {what} {n!r} (known: {', '.join(known)})")
    return names


def _policies(names: tuple[str, ...] | list[str] | str) -> tuple[str, ...]:
    return _names(names, ALL, "policy", "policies")


def _profiles(names: tuple[str, ...] | list[str] | str) -> tuple[str, ...]:
    return _names(names, tuple(PROFILES), "kernel profile", "profiles")


# -- setup ---------------------------------------------------------------------------------


def setup(
    *,
    capacity: int = 16,
    policies: tuple[str, ...] | list[str] | str = ALL,
    profile: str | None = None,
    profiles: tuple[str, ...] | list[str] | None = None,
    **fs_options: float,
) -> None:
    """The filesystem's size in blocks, the policies the story is told under, the kernel
    profile (``profile=``, default modern) or profiles (``profiles=``: it is told on
    each, the first the default; ``per_profile`` tells them apart), and Filesystem
    options (mkwrite_latency=, writeback_latency=, ...)."""
    b = _builder()
    if b.setup_done or b.scenario.steps:
        _fail("setup() comes first, once")
    if profile is not None and profiles is not None:
        _fail("give profile= (one kernel profile) or profiles= (several), not both")
    told_on = _profiles("modern" if profile is None else profile) if profiles is None \
        else _profiles(profiles)  # fmt: skip
    if not told_on:
        _fail("profiles=() names no kernel profile to tell the story on")
    if len(set(told_on)) < len(told_on):
        _fail(f"profiles={told_on!r} names a profile twice")
    known = {"mkwrite_latency", "writeback_latency", "cache_write_latency",
             "writeback_interval", "dirty_expire", "dirty"}  # fmt: skip
    for key, value in fs_options.items():
        if key not in known:
            _fail(f"unknown filesystem option {key!r} (known: {', '.join(sorted(known))})")
        if key != "dirty" and not (_is_number(value) and value >= 0):
            _fail(f"{key} must be a number of seconds, at least 0, not {value!r}")
    if fs_options.get("writeback_interval", 1) < MIN_WRITEBACK_INTERVAL:
        _fail(f"writeback_interval must be at least {MIN_WRITEBACK_INTERVAL} s")
    if not _is_count(capacity) or capacity > MAX_CAPACITY:  # statfs counts blocks in a u64
        _fail(f"capacity must be a whole number of blocks, 0 to 2**51, not {capacity!r}")
    if not _policies(policies):
        _fail("policies=() names no policy to tell the story under")
    b.setup_done = True
    s = b.scenario
    s.capacity, s.policies = capacity, _policies(policies)
    s.profile, s.profiles = told_on[0], told_on
    s.fs_options = dict(fs_options)


def create(path: str, *, pages: int = 0, size: int | None = None) -> Handle:
    """A file of ``pages`` hole pages (or ``size`` bytes), opened read-write."""
    b = _builder()
    if not isinstance(path, str) or not path.startswith("/") or path in b.files:
        _fail(f"bad or duplicate file path {path!r}")
    nbytes = size if size is not None else pages * PAGE if _is_count(pages) else -1
    if not _is_count(nbytes) or nbytes > MAX_FILE_SIZE:  # the runner reads every file back
        _fail(f"a file is 0 to {MAX_FILE_SIZE} bytes: pages={pages!r}, size={size!r}")
    b.files.add(path)
    b.ids += 1
    _add("create", path=path, size=nbytes, id=b.ids)
    return Handle(b.ids, path)


def reopen(file: str | Handle, *, read_only: bool = False) -> Handle:
    """Another open file description of ``file`` (its own error reporting)."""
    b = _builder()
    b.ids += 1
    _add("reopen", path=_file(file), id=b.ids, read_only=read_only)
    return Handle(b.ids, _file(file))


def fill(blocks: int | None = None) -> None:
    """Another file (/filler) takes ``blocks`` blocks, every free one by default."""
    _builder().files.add("/filler")
    _add("fill", blocks=blocks)


def spawn(name: str) -> Proc:
    """A new simulated process (its SIGBUS handler abandons the access, as siglongjmp)."""
    b = _builder()
    if name in b.procs:
        _fail(f"two processes named {name!r}")
    b.procs.add(name)
    _add("spawn", proc=Proc(name))
    return Proc(name)


def fork(parent: Proc, name: str) -> Proc:
    """fork(2): the child shares the parent's shared mappings at the same addresses."""
    _proc(parent)
    b = _builder()
    b.procs.add(name)
    _add("fork", proc=parent, child=Proc(name))
    return Proc(name)


def thread(proc: Proc, name: str) -> Proc:
    """A second thread of ``proc`` (same address space)."""
    _proc(proc)
    _builder().procs.add(name)
    _add("thread", proc=proc, child=Proc(name))
    return Proc(name)


def mmap(
    proc: Proc, file: str | Handle, *, pages: int | None = None, prot: str = "rw",
    shared: bool = True, name: str | None = None,
) -> Map:  # fmt: skip
    """mmap(2) of ``pages`` pages (default: the whole file) of ``file``; prot "r" or "rw"."""
    if prot not in ("r", "rw"):
        _fail(f"prot must be 'r' or 'rw', not {prot!r}")
    b = _builder()
    b.ids += 1
    m = Map(b.ids, _proc(proc), _file(file))
    fid = file.id if isinstance(file, Handle) else None
    _add("mmap", name, map=m, pages=pages, prot=prot, shared=shared, file_id=fid)
    return m


# -- act -----------------------------------------------------------------------------------


def store(
    m: Map,
    page: int = 0,
    data: bytes = b"x",
    *,
    offset: int = 0,
    proc: Proc | None = None,
    name: str | None = None,
    delay: float = 0.0,
) -> None:
    """A store of ``data`` at ``offset`` in page ``page`` of mapping ``m``."""
    _add("store", name, delay, map=_map(m), page=page, offset=offset, data=bytes(data),
         proc=_proc(proc) if proc else m.proc)  # fmt: skip


def stores(
    m: Map,
    pages: int,
    data: bytes = b"x",
    *,
    first: int = 0,
    name: str | None = None,
    delay: float = 0.0,
) -> None:
    """One writer's ``dd`` through mapping ``m``: a store of ``data`` at the start of each
    of ``pages`` pages from ``first``, in order, by one task (the dirty throttle charges
    and paces it as one writer); stops at the first store that fails."""
    for what, value, low in (("pages", pages, 1), ("first", first, 0)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            _fail(f"stores: {what} must be an integer >= {low}, not {value!r}")
    _add("stores", name, delay, map=_map(m), page=first, pages=pages, data=bytes(data),
         proc=m.proc)  # fmt: skip


def load(
    m: Map,
    page: int = 0,
    length: int = 1,
    *,
    proc: Proc | None = None,
    name: str | None = None,
    delay: float = 0.0,
) -> None:
    """A load of ``length`` bytes at the start of page ``page``."""
    _add("load", name, delay, map=_map(m), page=page, length=length,
         proc=_proc(proc) if proc else m.proc)  # fmt: skip


def poke(m: Map, page: int = 0, data: bytes = b"x", *, name: str | None = None) -> None:
    """ptrace(PTRACE_POKEDATA) / write to /proc/PID/mem: a forced GUP write."""
    _add("poke", name, map=_map(m), page=page, data=bytes(data))


def copy_to_user(m: Map, page: int = 0, data: bytes = b"x", *, name: str | None = None) -> None:
    """read(2) into a mapped buffer: the kernel stores, a fault there is no signal."""
    _add("copy_to_user", name, map=_map(m), page=page, data=bytes(data))


def msync(m: Map, *, name: str | None = None, delay: float = 0.0) -> None:
    """msync(MS_SYNC) of the whole mapping."""
    _add("msync", name, delay, map=_map(m))


def munmap(m: Map, *, name: str | None = None) -> None:
    _add("munmap", name, map=_map(m))


def mprotect(m: Map, prot: str, *, name: str | None = None) -> None:
    if prot not in ("r", "rw"):
        _fail(f"prot must be 'r' or 'rw', not {prot!r}")
    _add("mprotect", name, map=_map(m), prot=prot)


def exit(proc: Proc) -> None:  # noqa: A001 - the system call's name
    _add("exit", proc=_proc(proc))


def write(
    file: str | Handle, offset: int, data: bytes, *, name: str | None = None, delay: float = 0.0
) -> None:
    """write(2): the filesystem's write; after mount(), pwrite through the mount."""
    _add("write", name, delay, path=_file(file), offset=offset, data=bytes(data))


def fsync(file: str | Handle, *, name: str | None = None) -> None:
    """fsync(2) of an open file (``create``/``reopen`` handle): its error, once."""
    if not isinstance(file, Handle):
        _fail("fsync needs the handle create() or reopen() returned")
    _add("fsync", name, id=file.id)


def truncate(file: str | Handle, size: int, *, name: str | None = None, delay: float = 0.0) -> None:
    """ftruncate(2) to ``size`` bytes; after mount(), truncate(2) through the mount."""
    _add("truncate", name, delay, path=_file(file), size=size)


def fallocate(
    file: str | Handle,
    offset: int,
    length: int,
    *,
    punch: bool = False,
    keep_size: bool = True,
    name: str | None = None,
    delay: float = 0.0,
) -> None:
    """fallocate(2): allocate, or punch a hole (``punch=True``)."""
    _add("fallocate", name, delay, path=_file(file), offset=offset, length=length,
         punch=punch, keep_size=keep_size)  # fmt: skip


def inject_error(file: str | Handle, err: str = "EIO", pages: int = 1) -> None:
    """The next ``pages`` page writes of ``file`` fail with ``err`` (a failing disk)."""
    _add("inject_error", path=_file(file), err=err, pages=pages)


def writeback(*, delay: float = 0.0, name: str | None = None) -> None:
    """The flusher writes back every dirty page (WB_SYNC_ALL)."""
    _add("writeback", name, delay)


def sleep(seconds: float) -> None:
    """Let ``seconds`` of virtual time pass (the flusher runs meanwhile)."""
    _virtual_time_only("sleep()")
    _add("sleep", seconds=seconds)


def _virtual_time_only(what: str) -> None:
    if _builder().mounted:
        _fail(f"{what} goes before mount(): after it, time is real")


@contextmanager
def together() -> Iterator[None]:
    """The steps of the block run concurrently, each after its ``delay=``."""
    b = _builder()
    if len(b.stack) > 1:
        _fail("together() blocks do not nest")
    _virtual_time_only("together()")
    step = _add("together")
    b.stack.append(step.children)
    try:
        yield
    finally:
        b.stack.pop()
    if any(c.is_expectation or c.kind == "mount" for c in step.children):
        _fail("expectations and mount() go after the together() block")


def mount() -> None:
    """Mount the filesystem: later steps run on real time, checks go through the mount."""
    b = _builder()
    if b.mounted or len(b.stack) > 1:
        _fail("mount() comes once, outside together()")
    b.mounted = True
    _add("mount")


# -- expect --------------------------------------------------------------------------------


def per(groups: dict[Any, Any] | None = None, /, *, default: Any = MISSING, **by: Any) -> Per:
    """Expected values per policy: ``per({REFUSING: "sigbus"}, default="ok", fuse="ok")``
    (keyword names spell ``-`` as ``_``)."""
    table: dict[str, Any] = {}
    for key, value in [*(groups or {}).items(), *((k.replace("_", "-"), v) for k, v in by.items())]:
        for policy in _policies(key):
            table[policy] = value
    return Per(table, default)


def per_profile(
    groups: dict[Any, Any] | None = None, /, *, default: Any = MISSING, **by: Any
) -> Per:
    """Expected values per kernel profile, of a story told on several
    (``setup(profiles=...)``): ``per_profile({("2.6.18", "legacy"): 1}, modern=0)``.
    A name with dots goes in the dict; a value may be ``per(...)`` of policies. Naming a
    profile the story is not told on is an error (a typo, or a missing profiles=)."""
    told_on = _builder().scenario.profiles
    table: dict[str, Any] = {}
    for key, value in [*(groups or {}).items(), *by.items()]:
        for profile in _profiles(key):
            if profile not in told_on:
                _fail(f"per_profile names {profile!r}, a kernel profile this story is not told "
                      f"on (it is told on {', '.join(told_on)}: see setup(profiles=))")  # fmt: skip
            table[profile] = value
    return Per(table, default, of="profile")


def _expect(kind: str, label: str, expected: Any, when: str = "", **args: Any) -> None:
    step = _add(kind, expected=expected, **args)
    step.label = ("mount: " if _builder().mounted and kind in _MOUNT_KINDS else "") + label
    if when:
        step.label += f", {when}"


_MOUNT_KINDS = {"expect_df", "expect_data", "expect_attr"}


def _named(name: str) -> str:
    if name not in _builder().names:
        _fail(f"no step named {name!r} before this expectation")
    return name


def expect(name: str, outcome: Any) -> None:
    """The outcome of the act step ``name``: "ok", "sigbus", "EFAULT", "ENOSPC"..."""
    _expect("expect", f"{_named(name)}: outcome", outcome, step=name)


def expect_loaded(name: str, data: Any) -> None:
    """The bytes the load step ``name`` returned."""
    _expect("expect_loaded", f"{_named(name)}: bytes loaded", data, step=name)


def expect_took(name: str, *, at_least: Any = 0.0, less_than: Any = float("inf")) -> None:
    """The virtual seconds the act step ``name`` took (each bound may be ``per(...)``)."""
    _expect("expect_took", f"{_named(name)}: time taken", (at_least, less_than), step=name)


def expect_df(*, free: Any = MISSING, reserved: Any = MISSING, allocated: Any = MISSING,
              when: str = "") -> None:  # fmt: skip
    """Free/reserved/allocated blocks (before mount(): the filesystem's figures; after:
    statvfs and the root's user.mkwritefs.* attributes)."""
    for figure, value in (("free", free), ("reserved", reserved), ("allocated", allocated)):
        if value is not MISSING:
            _expect("expect_df", f"df: {figure} blocks", value, when, figure=figure)


def expect_data(file: str | Handle, offset: int, data: Any, *, when: str = "") -> None:
    """What the file holds at ``offset`` (read(2) through the mount after mount())."""
    if not all(isinstance(v, bytes) for v in _leaves(data) if v is not MISSING):
        _fail("expect_data wants bytes (or per(...) or per_profile(...) of bytes)")
    what = "read(2) of" if _builder().mounted else "contents of"
    _expect("expect_data", f"{what} {_file(file)} at {offset}", data, when, path=_file(file),
            offset=offset)  # fmt: skip


def expect_attr(file: str | Handle, attr: str, value: Any, *, when: str = "") -> None:
    """A ``user.mkwritefs.<attr>`` attribute of ``file`` ("/": the filesystem's)."""
    _expect("expect_attr", f"{_file(file)} user.mkwritefs.{attr}", value, when,
            path=_file(file), attr=attr)  # fmt: skip


def expect_sim(counter: str, value: Any, *, when: str = "") -> None:
    """A counter of the simulated MMU (faults, wp_faults, cow_copies, sigbus, ...)."""
    known = [f.name for f in dataclasses.fields(Statistics)]
    if counter not in known:
        _fail(f"unknown mmu counter {counter!r} (known: {', '.join(known)})")
    _expect("expect_sim", f"mmu: {counter}", value, when, counter=counter)


def expect_pte(m: Map, page: int, *, writable: Any = MISSING, dirty: Any = MISSING,
               when: str = "") -> None:  # fmt: skip
    """The page-table entry of page ``page`` of ``m`` (None: not present)."""
    for bit, value in (("writable", writable), ("dirty", dirty)):
        if value is not MISSING:
            _expect("expect_pte", f"pte of page {page}: {bit}", value, when, map=_map(m),
                    page=page, bit=bit)  # fmt: skip


def expect_cache(*, captures: Any = MISSING, first: Any = MISSING) -> None:
    """The backing cache (``cache`` policy): how many page copies, the first's bytes."""
    if captures is not MISSING:
        _expect("expect_cache", "cache: page copies", captures, what="captures")
    if first is not MISSING:
        _expect("expect_cache", "cache: first copy holds", first, what="first")


# -- loading -------------------------------------------------------------------------------


def load_file(path: str | os.PathLike[str]) -> Scenario:
    """Load one scenario file; ScenarioError (one line: file, line, what) when bad."""
    global _current
    path = str(path)
    try:
        source = Path(path).read_text()
    except OSError as exc:
        raise ScenarioError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError as exc:  # Python source is UTF-8
        line = exc.object[: exc.start].count(b"\n") + 1
        raise ScenarioError(f"{path}:{line}: not UTF-8 text (byte {exc.start})") from None
    try:
        code = compile(source, path, "exec")
    except SyntaxError as exc:  # a NUL byte is one too, without a line number
        line = exc.lineno or source[: max(source.find("\0"), 0)].count("\n") + 1
        raise ScenarioError(f"{path}:{line}: syntax error: {exc.msg}") from None
    except (MemoryError, RecursionError):  # the parser's own stack overflowed
        raise ScenarioError(f"{path}:1: syntax error: too deeply nested to parse") from None
    story, text = _docstring(code)
    if not story:
        raise ScenarioError(f"{path}:1: a scenario starts with a docstring: its one-line story")
    scenario = Scenario(Path(path).stem, path, story, text)
    _current = _Builder(scenario)
    try:
        exec(code, {"__name__": "__scenario__", "__file__": path})
    except ScenarioError as exc:
        raise ScenarioError(f"{path}:{_error_line(exc, path)}: {exc}") from None
    except NameError as exc:
        raise ScenarioError(
            f"{path}:{_error_line(exc, path)}: unknown step or name {exc.name!r}"
        ) from None
    except (Exception, SystemExit) as exc:  # a bad argument, a type error, exit()...: one line
        raise ScenarioError(
            f"{path}:{_error_line(exc, path)}: {type(exc).__name__}: {exc}"
        ) from None
    finally:
        _current = None
    if not any(s.is_expectation for s in scenario.steps):
        raise ScenarioError(f"{path}:1: the scenario expects nothing (add expect... steps)")
    return scenario


def _docstring(code: Any) -> tuple[str, str]:
    doc = code.co_consts[0] if code.co_consts and isinstance(code.co_consts[0], str) else ""
    doc = doc.strip()
    return (doc.splitlines()[0].strip() if doc else ""), doc


def _error_line(exc: BaseException, path: str) -> int:
    line = 0
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == path:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def scenario_files(directory: Path = SCENARIO_DIR) -> list[Path]:
    """The scenario files of the library, by name."""
    return sorted(p for p in directory.glob("*.py") if not p.name.startswith("_"))


def find(name_or_file: str) -> Path:
    """A scenario by name (in the library) or by file path; ScenarioError if neither."""
    if name_or_file.endswith(".py") or os.sep in name_or_file:
        if not os.path.isfile(name_or_file):
            raise ScenarioError(f"{name_or_file}: no such scenario file")
        return Path(name_or_file)
    candidate = SCENARIO_DIR / f"{name_or_file}.py"
    if not candidate.is_file():
        raise ScenarioError(f"no scenario named {name_or_file!r} (see `mkwritefs scenario list`)")
    return candidate
