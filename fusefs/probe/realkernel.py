"""What the real kernel does with stores through a shared mapping on a full filesystem.

This module measures, on any mounted directory, what `sim_mmu` models: a process maps a
file with mmap(MAP_SHARED) and stores into it after the filesystem has filled up. The
kernel function in question is `->page_mkwrite` (`do_page_mkwrite` in mm/memory.c):

- ext4 (`ext4_page_mkwrite`) reserves or allocates a block for a hole at the first store
  and, when none is left, fails the fault with VM_FAULT_SIGBUS; an overwrite of an
  allocated block needs nothing and succeeds;
- tmpfs (`shmem_fault`) has no hook but allocates the page at fault time, so over its
  `size=` limit the first touch of a hole dies of SIGBUS;
- FUSE (`fuse_page_mkwrite`) only waits for writeback: there is no upcall, the server
  first hears of the store as a WRITE at writeback, and its ENOSPC lands on the mapping,
  seen at msync/fsync - the data is gone.

A probe (`probe_filesystem`) sets up three small files, fills the filesystem with a
filler file written until ENOSPC, and then runs each case in its own child process
(`python -m fusefs.probe.realkernel SPEC`): a store that SIGBUSes kills a Python process, so
one child per store keeps one SIGBUS from hiding the next, and the parent learns of it
from the exit status. The child reports each step as a JSON line the moment it is done.
Afterwards the parent reads every touched page back three times: with read(2) through the
page cache (what a reader sees now); past the cache (`O_DIRECT`, after the caller's
`remount` if it gave one) - what the filesystem really holds; and with read(2) again after
asking the kernel to drop the file's clean cached pages (POSIX_FADV_DONTNEED) - what a
reader sees once memory pressure has evicted them.

Invariants: the caller is never the process serving a mount under the directory (all
system calls here block on the filesystem); a filesystem larger than `max_fs_bytes` is
never filled (refused with `ProbeError`); every loop device and mount this module sets up
is torn down in `finally`. Nothing here imports pyfuse3, trio or the simulator.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import mmap
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

PAGE = mmap.PAGESIZE
MiB = 1 << 20
DEFAULT_MAX_FS_BYTES = 64 * MiB
CHILD_TIMEOUT = 60.0  # a harness limit for a child stuck on a dead mount, not a measurement
FILLER_CHUNK = 64 * 1024

PARTLY = "rk-partly"  # page 0 allocated, pages 1 and 2 holes
FALLOCATED = "rk-fallocated"  # one page from fallocate before the fill
WRITTEN = "rk-write"  # one hole page for write(2)
FILLER = "rk-filler"


class ProbeError(Exception):
    """The probe could not run as asked (bad directory, a child failed, setup failed)."""


@dataclass(frozen=True, slots=True)
class Df:
    """statvfs(2) of the filesystem, in bytes, as df(1) shows it."""

    size: int
    free: int
    avail: int

    @classmethod
    def of(cls, directory: str) -> Df:
        st = os.statvfs(directory)
        return cls(st.f_blocks * st.f_frsize, st.f_bfree * st.f_frsize, st.f_bavail * st.f_frsize)


@dataclass(frozen=True, slots=True)
class Fill:
    """How the filler file filled the filesystem."""

    bytes_acknowledged: int  # what write(2) accepted
    write_errno: int  # the error that stopped it (0: stopped at the size bound)
    fsync_errno: int  # fsync of the filler (the writeback cache fails only here)


@dataclass(frozen=True, slots=True)
class Case:
    """One access after the fill: `op` (load, store, write) of one page of `file`."""

    name: str
    op: str
    file: str
    offset: int


CASES = (
    Case("store_allocated", "store", PARTLY, 0),
    Case("load_hole", "load", PARTLY, 2 * PAGE),
    Case("store_hole", "store", PARTLY, PAGE),
    Case("store_fallocated", "store", FALLOCATED, 0),
    Case("write_hole", "write", WRITTEN, 0),
)


@dataclass(frozen=True, slots=True)
class CaseResult:
    """The outcome of one case, measured.

    `completed`: the load/store returned (no signal), or write(2) returned no error.
    `signal`: the signal that killed the child at the access ("SIGBUS"), else None.
    `write_errno`, `msync_errno`, `fsync_errno`: 0 for success, None when not reached or
    not part of the case. `acknowledged_bytes`: bytes the kernel accepted from the store
    or write(2). `cached_intact`: read(2) right after shows what was acknowledged (or the
    old contents). `data_intact`: the same, read past the page cache (O_DIRECT, after a
    remount when there is one). `evicted_intact`: the same, by read(2) after the clean
    cached pages were dropped. `bytes_lost`: acknowledged bytes the filesystem lacks.
    """

    name: str
    op: str
    completed: bool
    signal: str | None
    write_errno: int | None
    msync_errno: int | None
    fsync_errno: int | None
    acknowledged_bytes: int
    cached_intact: bool
    data_intact: bool
    evicted_intact: bool
    bytes_lost: int
    df_before: Df
    df_after: Df

    @property
    def sigbus(self) -> bool:
        return self.signal == "SIGBUS"


@dataclass(frozen=True, slots=True)
class ProbeReport:
    """Everything one probe measured on one filesystem."""

    label: str
    directory: str
    fstype: str | None
    fallocate_native: bool  # False: fallocate(2) said EOPNOTSUPP, glibc wrote zeros instead
    fill: Fill
    df_full: Df
    remounted: bool
    direct_read: bool  # False: O_DIRECT refused, the durable read went through the cache
    cases: tuple[CaseResult, ...]

    def case(self, name: str) -> CaseResult:
        for result in self.cases:
            if result.name == name:
                return result
        raise KeyError(name)


def pattern(tag: str) -> bytes:
    """One page of recognisable, zero-free bytes for the case `tag`."""
    unit = f"<{tag}>".encode()
    return (unit * (PAGE // len(unit) + 1))[:PAGE]


OLD_DATA = pattern("allocated-before-the-fill")


# -- the probe (parent side) ---------------------------------------------------------------


def probe_filesystem(
    directory: str,
    *,
    label: str,
    remount: Callable[[], None] | None = None,
    max_fs_bytes: int = DEFAULT_MAX_FS_BYTES,
) -> ProbeReport:
    """Fill the filesystem at `directory` and run every case of `CASES` in a child.

    `remount`, if given, is called after the cases and before the durable read-back
    (ext4 on a loop device: umount and mount again, so the read comes from the disk).
    Raises ProbeError for a directory that is missing, not empty of our files, or on a
    filesystem larger than `max_fs_bytes` (it would be filled).
    """
    _check_directory(directory, max_fs_bytes)
    fallocate_native = _set_up_files(directory)
    fill = fill_filesystem(directory, limit=Df.of(directory).size + 4 * FILLER_CHUNK)
    df_full = Df.of(directory)
    raw = [_run_case(directory, case) for case in CASES]
    if remount is not None:
        remount()
    direct = True
    results = []
    for case, (child, cached, df_before, df_after) in zip(CASES, raw, strict=True):
        path = os.path.join(directory, case.file)
        durable, was_direct = read_durable(path, case.offset)
        direct = direct and was_direct
        evicted = read_evicted(path, case.offset)
        results.append(_result(case, child, (cached, durable, evicted), df_before, df_after))
    return ProbeReport(
        label=label,
        directory=directory,
        fstype=_fstype(directory),
        fallocate_native=fallocate_native,
        fill=fill,
        df_full=df_full,
        remounted=remount is not None,
        direct_read=direct,
        cases=tuple(results),
    )


def _check_directory(directory: str, max_fs_bytes: int) -> None:
    if not os.path.isdir(directory):
        raise ProbeError(f"{directory} is not an existing directory")
    ours = [
        n
        for n in (PARTLY, FALLOCATED, WRITTEN, FILLER)
        if os.path.lexists(os.path.join(directory, n))
    ]
    if ours:
        raise ProbeError(f"{directory} already holds {', '.join(ours)}: use an empty directory")
    size = Df.of(directory).size
    if size > max_fs_bytes:
        raise ProbeError(
            f"refusing to fill {directory}: its filesystem holds {size // MiB} MiB, more than "
            f"the {max_fs_bytes // MiB} MiB limit (use a small mount, e.g. --size 1M)"
        )


def _set_up_files(directory: str) -> bool:
    """Create the three files; True when fallocate(2) itself worked (no glibc fallback)."""
    fd = os.open(os.path.join(directory, PARTLY), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
    try:
        os.pwrite(fd, OLD_DATA, 0)
        os.ftruncate(fd, 3 * PAGE)
        os.fsync(fd)
    finally:
        os.close(fd)
    fd = os.open(os.path.join(directory, FALLOCATED), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
    try:
        native = fallocate(fd, 0, PAGE)
        os.fsync(fd)  # glibc's fallback writes zeros, which a writeback cache only queues
    finally:
        os.close(fd)
    fd = os.open(os.path.join(directory, WRITTEN), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644)
    try:
        os.ftruncate(fd, PAGE)
    finally:
        os.close(fd)
    return native


_libc = ctypes.CDLL(None, use_errno=True)
_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]


def fallocate(fd: int, offset: int, length: int) -> bool:
    """Allocate [offset, offset+length) as posix_fallocate(3) does; True if fallocate(2)
    did it, False if the filesystem refused (EOPNOTSUPP) and glibc's fallback wrote zeros."""
    if _libc.fallocate(fd, 0, offset, length) == 0:
        return True
    err = ctypes.get_errno()
    if err != errno.EOPNOTSUPP:
        raise OSError(err, os.strerror(err))
    os.posix_fallocate(fd, offset, length)
    return False


def fill_filesystem(directory: str, *, limit: int) -> Fill:
    """Append to the filler file until write(2) fails (or `limit` bytes), then fsync it.

    Big writes first, then single pages for the last blocks. With a writeback cache
    write(2) never fails, so `limit` (a little over the capacity) bounds it and the fsync
    reports the ENOSPC. Repeated while fsync freed room for more (delalloc reservations).
    """
    fd = os.open(os.path.join(directory, FILLER), os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o644)
    total, write_errno, fsync_errno = 0, 0, 0
    try:
        for _ in range(3):
            for chunk in (FILLER_CHUNK, PAGE):
                written, write_errno = _append_until_error(fd, b"\xa5" * chunk, limit - total)
                total += written
            fsync_errno = _errno_of(lambda: os.fsync(fd))
            if Df.of(directory).avail < PAGE or total >= limit:
                break
    finally:
        os.close(fd)
    return Fill(total, write_errno, fsync_errno)


def _append_until_error(fd: int, chunk: bytes, budget: int) -> tuple[int, int]:
    written = 0
    while written < budget:
        try:
            n = os.write(fd, chunk)
        except OSError as exc:
            return written, exc.errno or 0
        written += n
    return written, 0


def _errno_of(call: Callable[[], object]) -> int:
    try:
        call()
    except OSError as exc:
        return exc.errno or 0
    return 0


@dataclass(frozen=True, slots=True)
class _Child:
    events: dict[str, dict[str, int]]
    signal: str | None


def _run_case(directory: str, case: Case) -> tuple[_Child, bytes, Df, Df]:
    path = os.path.join(directory, case.file)
    df_before = Df.of(directory)
    child = run_child({"op": case.op, "path": path, "offset": case.offset, "tag": case.name})
    fd = os.open(path, os.O_RDONLY)
    try:
        cached = os.pread(fd, PAGE, case.offset)  # through the page cache, as a reader sees it
    finally:
        os.close(fd)
    return child, cached, df_before, Df.of(directory)


def run_child(spec: Mapping[str, object]) -> _Child:
    """Run one access in `python -m fusefs.probe.realkernel SPEC`; its events and fatal signal."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONFAULTHANDLER"}
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "fusefs.probe.realkernel", json.dumps(spec)],
            capture_output=True,
            text=True,
            env=env,
            timeout=CHILD_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ProbeError(f"probe child {spec} hung for {CHILD_TIMEOUT:.0f} s") from None
    events = {}
    for line in proc.stdout.splitlines():
        event = json.loads(line)
        events[event.pop("event")] = event
    if proc.returncode < 0:
        return _Child(events, signal.Signals(-proc.returncode).name)
    if proc.returncode != 0 or "done" not in events:
        raise ProbeError(f"probe child {spec} failed ({proc.returncode}): {proc.stderr.strip()}")
    return _Child(events, None)


def read_durable(path: str, offset: int) -> tuple[bytes, bool]:
    """One page as the filesystem holds it: O_DIRECT (past the page cache) when the
    filesystem allows it; (data, True). Otherwise read(2) through the cache; (data, False)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECT)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
        fd = os.open(path, os.O_RDONLY)
        try:
            return os.pread(fd, PAGE, offset), False
        finally:
            os.close(fd)
    try:
        with mmap.mmap(-1, PAGE) as buf:  # O_DIRECT wants an aligned buffer
            n = os.preadv(fd, [buf], offset)
            return bytes(buf[:n]), True
    finally:
        os.close(fd)


def read_evicted(path: str, offset: int) -> bytes:
    """One page by read(2) after dropping the file's clean pages from the page cache."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        return os.pread(fd, PAGE, offset)
    finally:
        os.close(fd)


def _result(
    case: Case, child: _Child, reads: tuple[bytes, bytes, bytes], df_before: Df, df_after: Df
) -> CaseResult:
    cached, durable, evicted = reads
    old = OLD_DATA if (case.file, case.offset) == (PARTLY, 0) else bytes(PAGE)
    new = pattern(case.name)
    events = child.events
    if case.op == "write":
        done = events.get("done", {})
        acknowledged = done.get("written", 0)
        completed = done.get("write_errno") == 0
    else:
        completed = "accessed" in events
        acknowledged = PAGE if completed and case.op == "store" else 0
    expected = new[:acknowledged] + old[acknowledged:]
    lost = sum(1 for i in range(acknowledged) if i >= len(durable) or durable[i] != new[i])
    done = events.get("done", {})
    return CaseResult(
        name=case.name,
        op=case.op,
        completed=completed,
        signal=child.signal,
        write_errno=done.get("write_errno") if case.op == "write" else None,
        msync_errno=done.get("msync_errno"),
        fsync_errno=done.get("fsync_errno"),
        acknowledged_bytes=acknowledged,
        cached_intact=cached == expected,
        data_intact=durable == expected,
        evicted_intact=evicted == expected,
        bytes_lost=lost,
        df_before=df_before,
        df_after=df_after,
    )


def _fstype(directory: str) -> str | None:
    """The type of the filesystem holding `directory` (the longest mount prefix)."""
    best, fstype = "", None
    real = os.path.realpath(directory)
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            fields = line.split()
            point = fields[4].replace("\\040", " ")
            inside = real == point or real.startswith(point.rstrip("/") + "/")
            if inside and len(point) >= len(best):
                best, fstype = point, fields[fields.index("-") + 1]
    return fstype


# -- the side-by-side table ---------------------------------------------------------------

ROWS: tuple[tuple[str, str], ...] = (
    ("store_hole", "store into a hole when full"),
    ("store_allocated", "overwrite an allocated page when full"),
    ("msync_hole", "msync after the store into the hole"),
    ("cache_hole", "read(2) of that page right after"),
    ("data_hole", "data in the fs (O_DIRECT/remount)"),
    ("evicted_hole", "read(2) once the cache dropped it"),
    ("load_hole", "load from a hole when full"),
    ("write_hole", "write(2) into a hole when full"),
    ("fsync_write", "fsync after that write(2)"),
    ("data_write", "write(2)'s data in the fs"),
    ("fallocated", "fallocate first, then store when full"),
    ("fallocate_native", "fallocate(2) itself"),
    ("df_full", "df when full: avail / free"),
)


@dataclass(frozen=True, slots=True)
class Column:
    """One column of the table: a title and a cell per row key of `ROWS` (missing: "")."""

    title: str
    cells: Mapping[str, str]


def errno_name(code: int | None) -> str:
    if code is None:
        return "-"
    return "0 (ok)" if code == 0 else errno.errorcode.get(code, str(code))


def _access(result: CaseResult) -> str:
    if result.signal is not None:
        return result.signal
    if result.op == "write":
        return "ok" if result.completed else f"{errno_name(result.write_errno)} at once"
    return "ok" if result.completed else "failed"


def _data(result: CaseResult, intact: bool) -> str:
    if result.acknowledged_bytes == 0:
        return "unchanged (nothing stored)" if intact else "CHANGED"
    return "kept" if intact else f"LOST ({result.bytes_lost} B)"


def _after_access(result: CaseResult, code: int | None) -> str:
    return "- (never got there)" if result.signal is not None else errno_name(code)


def report_cells(report: ProbeReport) -> dict[str, str]:
    """The table's cells for one probe: row key -> short text."""
    hole, alloc = report.case("store_hole"), report.case("store_allocated")
    write, falloc = report.case("write_hole"), report.case("store_fallocated")
    falloc_text = _access(falloc)
    if falloc.completed:
        msync = errno_name(falloc.msync_errno)
        falloc_text += f", msync {msync}, {_data(falloc, falloc.data_intact)}"
    full = report.df_full
    return {
        "store_hole": _access(hole),
        "store_allocated": f"{_access(alloc)}, {_data(alloc, alloc.data_intact)}",
        "msync_hole": _after_access(hole, hole.msync_errno),
        "cache_hole": _data(hole, hole.cached_intact).replace("kept", "shows the store"),
        "data_hole": _data(hole, hole.data_intact),
        "evicted_hole": _data(hole, hole.evicted_intact).replace("kept", "shows the store"),
        "load_hole": _access(report.case("load_hole")),
        "write_hole": _access(write),
        "fsync_write": errno_name(write.fsync_errno),
        "data_write": _data(write, write.data_intact),
        "fallocated": falloc_text,
        "fallocate_native": "yes" if report.fallocate_native else "EOPNOTSUPP: glibc wrote zeros",
        "df_full": f"{full.avail // 1024} KiB / {full.free // 1024} KiB",
    }


def report_column(report: ProbeReport) -> Column:
    return Column(report.label, report_cells(report))


def format_table(columns: Sequence[Column], rows: Sequence[tuple[str, str]] = ROWS) -> str:
    """A plain-text table: one row per `rows` entry, one column per `columns` entry."""
    header = ["", *(c.title for c in columns)]
    lines = [[label, *(c.cells.get(key, "") for c in columns)] for key, label in rows]
    widths = [max(len(line[i]) for line in [header, *lines]) for i in range(len(header))]

    def render(cells: Sequence[str]) -> str:
        return " | ".join(cell.ljust(w) for cell, w in zip(cells, widths, strict=True)).rstrip()

    rule = "-+-".join("-" * w for w in widths)
    return "\n".join([render(header), rule, *(render(line) for line in lines)])


# -- the child ---------------------------------------------------------------------------


def _emit(event: str, **figures: int) -> None:
    sys.stdout.write(json.dumps({"event": event, **figures}) + "\n")
    sys.stdout.flush()  # before the next step, which may kill this process


def _child_main(spec: dict[str, object]) -> int:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a SIGBUS is expected: no core file
    op, path, offset = str(spec["op"]), str(spec["path"]), int(str(spec["offset"]))
    data = pattern(str(spec["tag"]))
    fd = os.open(path, os.O_RDWR)
    try:
        if op == "write":
            try:
                written, write_errno = os.pwrite(fd, data, offset), 0
            except OSError as exc:
                written, write_errno = 0, exc.errno or 0
            fsync_errno = _errno_of(lambda: os.fsync(fd))
            _emit("done", written=written, write_errno=write_errno, fsync_errno=fsync_errno)
            return 0
        size = os.fstat(fd).st_size
        with mmap.mmap(
            fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE
        ) as mapping:
            _emit("mapped")
            if op == "store":
                mapping[offset : offset + PAGE] = data  # may die of SIGBUS here
            else:
                mapping[offset]  # noqa: B018 - a load is the point
            _emit("accessed")
            msync_errno = _errno_of(lambda: mapping.flush(offset, PAGE))  # msync(MS_SYNC)
        fsync_errno = _errno_of(lambda: os.fsync(fd))
        _emit("done", msync_errno=msync_errno, fsync_errno=fsync_errno)
        return 0
    finally:
        os.close(fd)


# -- filesystems to probe: mkwritefs through its command, and the kernel's own ----------


def ground_truth_unavailable(kind: str) -> str | None:
    """Why the ground-truth filesystem `kind` ("ext4" or "tmpfs") cannot be set up here,
    or None when it can."""
    if os.geteuid() != 0:
        return f"not root: a {kind} ground truth needs mount(2) (run as root to compare)"
    tools = ("mkfs.ext4", "losetup", "mount", "umount") if kind == "ext4" else ("mount", "umount")
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        return f"{', '.join(missing)} not found (e2fsprogs/util-linux; scripts/setup installs them)"
    return None


def _run(*argv: str) -> str:
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise ProbeError(f"{' '.join(argv)} failed: {proc.stderr.strip() or proc.returncode}")
    return proc.stdout.strip()


@contextlib.contextmanager
def mkwritefs_mounted(size: str = "1M", *, writeback_cache: bool = False) -> Iterator[str]:
    """A fresh mkwritefs of `size` on a temporary directory, mounted with the `mkwritefs`
    command (in a server process of its own) and always unmounted afterwards."""
    mountpoint = tempfile.mkdtemp(prefix="mkwritefs-probe-")
    cli = [sys.executable, "-m", "fusefs"]
    try:
        extra = ("--writeback-cache",) if writeback_cache else ()
        _run(*cli, "mount", mountpoint, "--size", size, *extra)
        try:
            yield mountpoint
        finally:
            if (
                subprocess.run(
                    [*cli, "umount", mountpoint], capture_output=True, check=False
                ).returncode
                != 0
            ):
                subprocess.run(["fusermount3", "-uz", mountpoint], capture_output=True, check=False)
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(mountpoint)


@contextlib.contextmanager
def tmpfs_mounted(size: str = "1m") -> Iterator[str]:
    """A size-limited tmpfs on a temporary directory (root only), unmounted afterwards."""
    reason = ground_truth_unavailable("tmpfs")
    if reason is not None:
        raise ProbeError(reason)
    mountpoint = tempfile.mkdtemp(prefix="mkwritefs-tmpfs-")
    try:
        _run("mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", mountpoint)
        try:
            yield mountpoint
        finally:
            _run("umount", mountpoint)
    finally:
        os.rmdir(mountpoint)


class Ext4Loop:
    """A small ext4 image on a loop device, mounted on `directory`; `remount()` unmounts
    and mounts it again so what is read next comes from the disk, not the page cache."""

    def __init__(self, device: str, directory: str) -> None:
        self.device = device
        self.directory = directory
        self.mounted = False

    def mount(self) -> None:
        _run("mount", "-t", "ext4", self.device, self.directory)
        self.mounted = True

    def umount(self) -> None:
        _run("umount", self.directory)
        self.mounted = False

    def remount(self) -> None:
        self.umount()
        self.mount()


@contextlib.contextmanager
def ext4_loop(size: int = 4 * MiB) -> Iterator[Ext4Loop]:
    """`mkfs.ext4 -q -m 0` on a `size`-byte image, attached to a loop device and mounted
    (root only); unmounted, detached and deleted afterwards, whatever happened."""
    reason = ground_truth_unavailable("ext4")
    if reason is not None:
        raise ProbeError(reason)
    workdir = tempfile.mkdtemp(prefix="mkwritefs-ext4-")
    image, mountpoint = os.path.join(workdir, "ext4.img"), os.path.join(workdir, "mnt")
    try:
        os.mkdir(mountpoint)
        with open(image, "wb") as f:
            f.truncate(size)
        _run("mkfs.ext4", "-q", "-F", "-m", "0", "-b", str(PAGE), image)
        device = _run("losetup", "--find", "--show", image)
        loop = Ext4Loop(device, mountpoint)
        try:
            loop.mount()
            yield loop
        finally:
            try:
                if loop.mounted:
                    loop.umount()
            finally:
                _run("losetup", "-d", device)
    finally:
        shutil.rmtree(workdir)


if __name__ == "__main__":
    sys.exit(_child_main(json.loads(sys.argv[1])))
