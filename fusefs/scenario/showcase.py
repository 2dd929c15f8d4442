"""The mmap safety demonstration: stores into holes of a shared mapping on a nearly
full filesystem, under every write-notification policy, observed through a real mount.

This module owns the scenario and its measurements (the demo and the tests only call
:func:`measure` / :func:`run_policy` and print :func:`format_table`). For each policy in
turn it builds a new filesystem of ``capacity`` blocks, mounts it in this process in a
temporary directory (``fusefs.fuse.mount.serving``: the simulated process and the FUSE server
share one page cache and one trio loop), and then:

1. fills it through the mount with write(2) until only ``free`` blocks are left, and
   creates a sparse file of ``holes`` pages (more holes than free blocks);
2. a simulated process maps the file ``MAP_SHARED`` read-write and stores one page of a
   known pattern into each hole. A SIGBUS is caught and the store abandoned (as a
   program's handler would ``siglongjmp``); a store that completes is *acknowledged*:
   the program was told its data is in the file;
3. ``df`` (statvfs through the mount) is read, then the process calls ``msync(MS_SYNC)``
   - writeback, where ``legacy``, ``fuse`` and ``cache`` first look for the space - and
   ``df`` is read again;
4. ``cat``: the file is read back with read(2) through the mount and compared, page by
   page, with what was acknowledged. Bytes acknowledged but not read back are lost; the
   filesystem's own count (``user.mkwritefs.lost_bytes``) is read beside it.

Every look at the mount is a system call in a worker thread (``Mount.run_sync``, which
first tells the kernel's caches of the simulated stores): never from the trio thread.
Each mount is unmounted before the next policy's (pyfuse3 serves one mount per process).

Kernel functions modelled per policy: see :mod:`fusefs.vm.policy`.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass

import trio

from fusefs.constants import PAGE_SIZE, XATTR_PREFIX
from fusefs.fs.core import Filesystem
from fusefs.fuse.mount import serving
from fusefs.vm.policy import Policy, parse_policy
from sim_mmu import SIGBUS, MapFlags, Process, Prot, SigInfo, SimError, Simulation

PAGE = PAGE_SIZE
CAPACITY = 64  # blocks of the filesystem
FREE = 4  # blocks left free before the stores
HOLES = 8  # hole pages the process stores into (more than FREE)
FILLER = "filler"
SPARSE = "sparse"
XATTR = XATTR_PREFIX


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one policy did to the scenario (page and block counts are 4096 bytes)."""

    policy: str
    holes: int  # stores attempted, one page into each hole
    acknowledged: int  # stores that completed: the program believes them stored
    sigbus: int  # SIGBUS delivered to the program
    df_free_before: int  # free blocks df reported before the stores
    df_free_after_stores: int  # ... after the stores (before writeback)
    msync_error: str  # errno name msync(MS_SYNC) reported, "" for none
    df_free_after_msync: int  # ... after writeback
    read_back: int  # acknowledged pages cat read back intact
    lost_bytes: int  # acknowledged bytes cat did not read back
    lost_bytes_counted: int  # the filesystem's user.mkwritefs.lost_bytes
    mkwrite_calls: int  # user.mkwritefs.mkwrite_calls

    @property
    def acknowledged_bytes(self) -> int:
        return self.acknowledged * PAGE


def pattern(index: int) -> bytes:
    """The page the program stores into hole ``index``: recognisable, never zeros."""
    line = f"page {index:3d} of the sparse file, stored through a shared mapping\n".encode()
    return (line * (PAGE // len(line) + 1))[:PAGE]


async def run_policy(
    policy: Policy | str,
    mountpoint: str,
    *,
    capacity: int = CAPACITY,
    free: int = FREE,
    holes: int = HOLES,
) -> Outcome:
    """Mount a new filesystem with ``policy`` on ``mountpoint``, run the scenario,
    unmount; return what was measured."""
    if not 0 <= free < capacity or holes <= 0:
        raise ValueError("need 0 <= free < capacity and at least one hole")
    policy = parse_policy(policy)
    fs = Filesystem(capacity_blocks=capacity, policy=policy)
    async with serving(fs, mountpoint) as m:
        await m.run_sync(
            _prepare, m.path(FILLER), (capacity - free) * PAGE, m.path(SPARSE), holes * PAGE
        )
        df_before = await m.run_sync(_df_free, m.mountpoint)
        sim = Simulation()
        proc = sim.spawn("writer")
        caught: list[SigInfo] = []
        proc.sigaction(SIGBUS, lambda info: caught.append(info) and False)
        file = fs.open_path("/" + SPARSE, os.O_RDWR)
        try:
            addr = await proc.mmap(holes * PAGE, Prot.READ | Prot.WRITE, MapFlags.SHARED, file)
            acked = await _store_holes(proc, addr, holes)
            df_stored = await m.run_sync(_df_free, m.mountpoint)
            msync_error = await _msync(proc, addr, holes * PAGE)
            df_synced = await m.run_sync(_df_free, m.mountpoint)
            await proc.munmap(addr, holes * PAGE)
        finally:
            await _close(file)
            await proc.exit()
        contents = await m.run_sync(_cat, m.path(SPARSE))
        lost_counted = int(await m.run_sync(os.getxattr, m.path(SPARSE), XATTR + "lost_bytes"))
        mkwrite_calls = int(await m.run_sync(os.getxattr, m.mountpoint, XATTR + "mkwrite_calls"))
    intact = [i for i in acked if contents[i * PAGE : (i + 1) * PAGE] == pattern(i)]
    return Outcome(
        policy=str(policy),
        holes=holes,
        acknowledged=len(acked),
        sigbus=len(caught),
        df_free_before=df_before,
        df_free_after_stores=df_stored,
        msync_error=msync_error,
        df_free_after_msync=df_synced,
        read_back=len(intact),
        lost_bytes=(len(acked) - len(intact)) * PAGE,
        lost_bytes_counted=lost_counted,
        mkwrite_calls=mkwrite_calls,
    )


async def _store_holes(proc: Process, addr: int, holes: int) -> list[int]:
    """Store a page into each hole; the indices of the stores that completed."""
    acked = []
    for index in range(holes):
        if await proc.store(addr + index * PAGE, pattern(index)) == PAGE:
            acked.append(index)
    return acked


async def _msync(proc: Process, addr: int, length: int) -> str:
    try:
        await proc.msync(addr, length)
    except SimError as exc:
        return errno.errorcode.get(exc.errno, str(exc.errno))
    return ""


async def _close(file: object) -> None:
    """close(2) of the simulated file; an error it reports again is not news here."""
    close = getattr(file, "close", None)
    if close is None:
        return
    try:
        await close()
    except SimError:
        pass


# -- what runs in worker threads, on the mount -------------------------------------------


def _prepare(filler: str, filler_size: int, sparse: str, sparse_size: int) -> None:
    """dd the filler (fsync'd, so its blocks are allocated), then a sparse file."""
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        chunk = b"\xa5" * (256 * PAGE)
        done = 0
        while done < filler_size:
            done += os.write(fd, chunk[: filler_size - done])
        os.fsync(fd)
    finally:
        os.close(fd)
    fd = os.open(sparse, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, sparse_size)
    finally:
        os.close(fd)


def _df_free(mountpoint: str) -> int:
    return os.statvfs(mountpoint).f_bavail


def _cat(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


# -- all policies, and the table -----------------------------------------------------------


async def run_all(
    policies: Iterable[Policy | str] = tuple(Policy),
    *,
    capacity: int = CAPACITY,
    free: int = FREE,
    holes: int = HOLES,
) -> list[Outcome]:
    """:func:`run_policy` for each policy in turn, each on its own temporary mount."""
    outcomes = []
    tmp = await trio.to_thread.run_sync(tempfile.mkdtemp, None, "mkwritefs-showcase-")
    try:
        for policy in policies:
            outcomes.append(
                await run_policy(policy, tmp, capacity=capacity, free=free, holes=holes)
            )
    finally:
        await trio.to_thread.run_sync(os.rmdir, tmp)
    return outcomes


def measure(
    policies: Iterable[Policy | str] = tuple(Policy),
    *,
    capacity: int = CAPACITY,
    free: int = FREE,
    holes: int = HOLES,
) -> list[Outcome]:
    """:func:`run_all` on a trio loop of its own (for scripts)."""
    return trio.run(lambda: run_all(policies, capacity=capacity, free=free, holes=holes))


_ROWS: tuple[tuple[str, str], ...] = (
    ("stores into holes", "holes"),
    ("stores acknowledged", "acknowledged"),
    ("SIGBUS delivered", "sigbus"),
    ("page_mkwrite calls", "mkwrite_calls"),
    ("df free blocks, before stores", "df_free_before"),
    ("df free blocks, after stores", "df_free_after_stores"),
    ("msync(MS_SYNC) error", "msync_error"),
    ("df free blocks, after msync", "df_free_after_msync"),
    ("cat: acknowledged pages intact", "read_back"),
    ("bytes lost (cat vs acknowledged)", "lost_bytes"),
    ("user.mkwritefs.lost_bytes", "lost_bytes_counted"),
)


def format_table(outcomes: list[Outcome]) -> str:
    """One row per measurement, one column per policy."""
    label_width = max(len(label) for label, _ in _ROWS)
    width = max(9, *(len(o.policy) + 1 for o in outcomes))
    lines = [" " * label_width + "".join(f"{o.policy:>{width}}" for o in outcomes)]
    for label, name in _ROWS:
        cells = "".join(f"{_cell(getattr(o, name)):>{width}}" for o in outcomes)
        lines.append(f"{label:<{label_width}}{cells}")
    return "\n".join(lines)


def _cell(value: object) -> str:
    return "-" if value == "" else str(value)
