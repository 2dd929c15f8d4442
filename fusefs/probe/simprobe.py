"""The real-kernel probe (``fusefs.probe.realkernel``) played in the simulator, per policy.

``scripts/real_mmap_enospc.py`` measures what Linux does with stores through a
MAP_SHARED mapping of a full filesystem. This module runs the same cases, in the same
order, on a ``fusefs.fs.core.Filesystem`` driven by ``sim_mmu`` processes in this process,
under one write-notification policy (``fuse``: no ``page_mkwrite`` upcall, as Linux's
FUSE today; ``reserve``: the hook reserves a block or refuses with SIGBUS, as ext4's
``ext4_page_mkwrite`` does), and returns a ``realkernel.ProbeReport`` so the table's
cells are formatted by the same code as the real kernel's columns.

Set-up as the probe's: ``rk-partly`` (page 0 written, pages 1 and 2 holes),
``rk-fallocated`` (one page from fallocate), ``rk-write`` (a one-page hole), then a
filler until no block is free. Each case is one simulated process (a SIGBUS abandons the
access, like the probe's child that dies of it). Nothing is mounted: the rows only need
the simulation, and "the data in the filesystem" is read from the filesystem's page
cache, its only store - what read(2) through a mount returns (the scenario runner checks
that agreement at the end of every scenario). The three reads of the probe (cached,
durable, evicted) are one read here: where Linux's FUSE keeps a page whose writeback
failed in its cache (read(2) shows the lost store until eviction), the simulated
filesystem drops it at once (``FileData``: "page dropped, data lost"). Virtual time
(``MockClock``): instant.
"""

from __future__ import annotations

import errno
import os

import trio
import trio.testing

from fusefs.constants import PAGE_SIZE
from fusefs.fs.core import Filesystem
from fusefs.fs.errors import FsError
from fusefs.fs.inode import Ctx
from fusefs.probe.realkernel import (
    CASES,
    FALLOCATED,
    FILLER,
    OLD_DATA,
    PARTLY,
    WRITTEN,
    Case,
    CaseResult,
    Df,
    Fill,
    ProbeReport,
    pattern,
)
from fusefs.vm.file import SimFile
from sim_mmu import SIGBUS, MapFlags, Prot, SigInfo, SimError, Simulation

PAGE = PAGE_SIZE
ROOT = Ctx(uid=0, gid=0, pid=1)
DEFAULT_CAPACITY = 256  # blocks (1 MiB), the probe's default mkwritefs size


def simulate(policy: str, *, capacity_blocks: int = DEFAULT_CAPACITY) -> ProbeReport:
    """The probe's cases on a simulated filesystem of ``capacity_blocks`` under ``policy``."""
    clock = trio.testing.MockClock(autojump_threshold=0)
    return trio.run(_probe, policy, capacity_blocks, clock=clock)


async def _probe(policy: str, capacity: int) -> ProbeReport:
    fs = Filesystem(capacity_blocks=capacity, uid=0, gid=0, policy=policy)
    sim = Simulation()
    files = await _set_up(fs)
    fill = await _fill(fs)
    df_full = _df(fs)
    cases = []
    for case in CASES:  # each on a file opened afresh, as the probe's child opens its own
        before = _df(fs)
        f = fs.open_path(f"/{case.file}", os.O_RDWR)
        try:
            cases.append(await _case(fs, sim, f, case, before))
        finally:
            await _errno_of(f.close())
    for f in files.values():
        try:
            await f.close()
        except (SimError, FsError):
            pass  # an error reported again at close is not news here
    return ProbeReport(f"sim: {policy}", "(in process)", "mkwritefs (simulated)", True, fill,
                       df_full, False, True, tuple(cases))  # fmt: skip


async def _set_up(fs: Filesystem) -> dict[str, SimFile]:
    files = {name: fs.open_path(f"/{name}", os.O_RDWR | os.O_CREAT)
             for name in (PARTLY, FALLOCATED, WRITTEN)}  # fmt: skip
    await fs.write(files[PARTLY].fh, 0, OLD_DATA)
    await fs.setattr(files[PARTLY].ino, size=3 * PAGE, ctx=ROOT)
    await fs.fallocate(files[FALLOCATED].fh, 0, 0, PAGE)
    await fs.setattr(files[WRITTEN].ino, size=PAGE, ctx=ROOT)
    await fs.writeback()  # page 0 of rk-partly allocated, like the probe's fsync
    return files


async def _fill(fs: Filesystem) -> Fill:
    """write(2) a filler page by page until ENOSPC, then fsync it (the probe's fill)."""
    f = fs.open_path(f"/{FILLER}", os.O_RDWR | os.O_CREAT)
    written, code = 0, 0
    while True:
        try:
            await fs.write(f.fh, written, b"\xff" * PAGE)
        except FsError as exc:
            code = exc.errno
            break
        written += PAGE
    fsync = await _errno_of(f.fsync())
    await f.close()
    return Fill(written, code, fsync)


async def _case(fs: Filesystem, sim: Simulation, f: SimFile, case: Case, before: Df) -> CaseResult:
    new = pattern(case.name)
    old = OLD_DATA if (case.file, case.offset) == (PARTLY, 0) else bytes(PAGE)
    if case.op == "write":
        return await _write_case(fs, f, case, new, old, before)
    proc = sim.spawn(case.name)
    signals: list[int] = []

    def on_sigbus(info: SigInfo) -> bool:
        signals.append(SIGBUS)
        return False  # abandon the access, as the probe's child dies of it

    proc.sigaction(SIGBUS, on_sigbus)
    length = max(f.i_size, case.offset + PAGE)
    addr = await proc.mmap(length, Prot.READ | Prot.WRITE, MapFlags.SHARED, f)
    if case.op == "store":
        completed = await proc.store(addr + case.offset, new) == PAGE
    else:
        completed = len(await proc.load(addr + case.offset, PAGE)) == PAGE
    msync = fsync = None
    if completed:  # the probe's child: msync(MS_SYNC) of the page, munmap, fsync
        msync = await _errno_of(proc.msync(addr + case.offset, PAGE))
    await proc.exit()
    if completed:
        fsync = await _errno_of(f.fsync())
    acknowledged = PAGE if completed and case.op == "store" else 0
    return _result(fs, f, case, completed, signals, (None, msync, fsync), acknowledged, new, old,
                   before)  # fmt: skip


async def _write_case(fs: Filesystem, f: SimFile, case: Case, new: bytes, old: bytes,
                      before: Df) -> CaseResult:  # fmt: skip
    try:
        acknowledged = await fs.write(f.fh, case.offset, new)
        code = 0
    except FsError as exc:
        acknowledged, code = 0, exc.errno
    fsync = await _errno_of(f.fsync())  # the probe's child fsyncs whatever write(2) said
    return _result(fs, f, case, code == 0, [], (code, None, fsync), acknowledged, new, old, before)


def _result(fs: Filesystem, f: SimFile, case: Case, completed: bool, signals: list[int],
            codes: tuple[int | None, int | None, int | None], acknowledged: int, new: bytes,
            old: bytes, before: Df) -> CaseResult:  # fmt: skip
    held = f.data.read(case.offset, PAGE).ljust(PAGE, b"\0")
    expected = new[:acknowledged] + old[acknowledged:]
    lost = sum(1 for i in range(acknowledged) if held[i] != new[i])
    return CaseResult(
        name=case.name, op=case.op, completed=completed,
        signal="SIGBUS" if signals else None,
        write_errno=codes[0], msync_errno=codes[1], fsync_errno=codes[2],
        acknowledged_bytes=acknowledged, cached_intact=held == expected,
        data_intact=held == expected, evicted_intact=held == expected, bytes_lost=lost,
        df_before=before, df_after=_df(fs),
    )  # fmt: skip


def _df(fs: Filesystem) -> Df:
    st = fs.statistics()
    return Df(st.capacity_blocks * PAGE, st.free_blocks * PAGE, st.free_blocks * PAGE)


async def _errno_of(call: object) -> int:
    try:
        await call  # type: ignore[misc]
    except (SimError, FsError) as exc:
        return exc.errno or errno.EIO
    return 0
