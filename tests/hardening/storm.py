"""The concurrency storm, run in a child process (tests.session.conftest.run_in_child):
one trio loop serves the mount and runs simulated processes, while real processes and
worker threads use the mount at once.

- real processes (`workers.py fs`): namespace and I/O work, each verifying its own data;
- real processes (`workers.py mmap`): stores through a real MAP_SHARED mapping of
  /mapped, msync, pread;
- worker threads of this process (`workers.fs_worker`): the same as the first kind,
  their blocking system calls made outside the serving thread;
- simulated processes (sim_mmu) mapping the same /mapped inside the server, storing into
  pages of their own, loading them back, msyncing;
- a checker running `Filesystem.check()` (fsck: pool counters equal the files' blocks,
  names, links) between every few steps of everyone else.

/mapped is preallocated (fallocate), so stores into it never need a block: ENOSPC, which
a small capacity makes likely, can only hit the workers' write(2)s, as a clean errno.
A watchdog (`trio.fail_after`, real time) turns a deadlock into a failure. At the end,
quiescent: fsck again, statfs through the mount equals the root's figures and the core's
counters, and every simulated store reads back through the mount.
"""

from __future__ import annotations

import errno
import json
import os
import sys
from typing import Any

import trio

from fusefs.fs.core import Filesystem
from fusefs.fuse.mount import Mount, serving
from sim_mmu import MapFlags, Process, Prot, SimError, Simulation

from . import workers

PAGE = 4096
RW = Prot.READ | Prot.WRITE
PER = 4  # pages of /mapped each simulated or real mapper owns
WORKERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "workers.py")


async def _real(kind: str, *args: object) -> dict[str, int]:
    argv = [sys.executable, WORKERS, kind, *map(str, args)]
    done = await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False)
    if done.returncode != 0:
        raise AssertionError(f"worker {kind} {args} failed:\n{done.stderr.decode()}")
    return dict(json.loads(done.stdout))


async def _thread(*args: Any) -> dict[str, int]:
    return await trio.to_thread.run_sync(workers.fs_worker, *args, abandon_on_cancel=True)


async def _sim(fs: Filesystem, proc: Process, addr: int, first: int, rounds: int,
               faults: int) -> dict[str, int]:  # fmt: skip
    counts = {"sim_stores": 0, "sim_bytes_verified": 0, "sim_msync_eio": 0}
    for r in range(rounds):
        for p in range(first, first + PER):
            data = f"sim {first} r{r} p{p}".encode()
            await proc.store(addr + p * PAGE, data)
            assert await proc.load(addr + p * PAGE, len(data)) == data
            counts["sim_stores"] += 1
            counts["sim_bytes_verified"] += len(data)
        if r % 4 == 3:
            try:
                await proc.msync(addr + first * PAGE, PER * PAGE)
            except SimError as exc:  # only from a failing disk
                if not (faults and exc.errno == errno.EIO):
                    raise
                counts["sim_msync_eio"] += 1
        fs.notify_mapped_stores()  # tell the kernel's cache, as a store loop would
        await trio.sleep(0.001)
    return counts


async def _checker(fs: Filesystem, stop: trio.Event, counts: dict[str, int]) -> None:
    while not stop.is_set():
        fs.check()
        counts["fsck_runs"] += 1
        await trio.sleep(0.002)


async def _failing_disk(fs: Filesystem, stop: trio.Event) -> None:
    """A slow disk that fails a page write of every file every few milliseconds."""
    fs.set_writeback_latency(0.002)
    while not stop.is_set():
        fs.inject_writeback_error(errno.EIO, 1)
        await trio.sleep(0.01)
    fs.inject_writeback_error(0, 0)
    fs.set_writeback_latency(0)


def _figures(mnt: str) -> dict[str, int]:
    st = os.statvfs(mnt)
    names = ("capacity_blocks", "free_blocks", "reserved_blocks", "allocated_blocks")
    figures = {n: int(os.getxattr(mnt, "user.mkwritefs." + n)) for n in names}
    figures["statfs_blocks"], figures["statfs_free"] = st.f_blocks, st.f_bfree
    return figures


def _prepare(path: str, pages: int) -> None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.posix_fallocate(fd, 0, pages * PAGE)
    finally:
        os.close(fd)


def _pread(path: str, size: int) -> bytes:
    with open(path, "rb") as f:
        return f.read(size)


async def _storm(mountpoint: str, plan: dict[str, int]) -> dict[str, int]:
    fs = Filesystem(capacity_blocks=plan["capacity"], policy="reserve")
    sims, mmappers = plan["sims"], plan["mmappers"]
    pages = (sims + mmappers) * PER
    totals: dict[str, int] = {"fsck_runs": 0}
    async with serving(fs, mountpoint) as m:
        await m.run_sync(_prepare, m.path("mapped"), pages)
        file = fs.open_path("/mapped")
        sim = Simulation()
        mapped: list[tuple[Process, int]] = []
        for i in range(sims):
            proc = sim.spawn(f"sim{i}")
            mapped.append((proc, await proc.mmap(pages * PAGE, RW, MapFlags.SHARED, file)))
        stop = trio.Event()
        results: list[dict[str, int]] = []

        async def collect(fn: Any, *args: Any) -> None:
            results.append(await fn(*args))

        with trio.fail_after(plan["watchdog"]):  # real time: a deadlock fails here
            async with trio.open_nursery() as outer:
                outer.start_soon(_checker, fs, stop, totals)
                faults = plan.get("faults", 0)
                if faults:
                    outer.start_soon(_failing_disk, fs, stop)
                async with trio.open_nursery() as n:
                    seed = plan["seed"]
                    for i in range(plan["procs"]):
                        n.start_soon(collect, _real, "fs", mountpoint, f"p{i}", seed + i,
                                     plan["ops"], faults)  # fmt: skip
                    for i in range(mmappers):
                        first = (sims + i) * PER  # real mappers' pages follow the sims'
                        n.start_soon(collect, _real, "mmap", m.path("mapped"), first, PER,
                                     seed + 100 + i, plan["rounds"], faults)  # fmt: skip
                    for i in range(plan["threads"]):
                        n.start_soon(collect, _thread, mountpoint, f"t{i}", seed + 200 + i,
                                     plan["ops"], faults)  # fmt: skip
                    for i, (proc, addr) in enumerate(mapped):
                        n.start_soon(collect, _sim, fs, proc, addr, i * PER, plan["rounds"],
                                     faults)  # fmt: skip
                stop.set()
        await _quiescent_checks(fs, m, mapped, plan["rounds"])
        for proc, _ in mapped:
            await proc.exit()
        try:
            await file.close()
        except SimError as exc:  # the simulated close reports a failing disk's error left
            if not (plan.get("faults") and exc.errno == errno.EIO):
                raise
    fs.check()
    for result in results:
        for key, value in result.items():
            totals[key] = totals.get(key, 0) + value
    return totals


async def _quiescent_checks(fs: Filesystem, m: Mount, mapped: list[tuple[Process, int]],
                            rounds: int) -> None:  # fmt: skip
    fs.check()
    figures = await m.run_sync(_figures, m.mountpoint)
    space = fs.statistics()
    assert figures["statfs_blocks"] == figures["capacity_blocks"] == space.capacity_blocks
    assert figures["statfs_free"] == figures["free_blocks"] == space.free_blocks
    assert (
        figures["free_blocks"] + figures["reserved_blocks"] + figures["allocated_blocks"]
        == (figures["capacity_blocks"])
    )
    data = await m.run_sync(_pread, m.path("mapped"), len(mapped) * PER * PAGE)
    for i in range(len(mapped)):
        for p in range(i * PER, (i + 1) * PER):
            want = f"sim {i * PER} r{rounds - 1} p{p}".encode()
            got = data[p * PAGE : p * PAGE + len(want)]
            assert got == want, (p, got)


def storm(mountpoint: str, plan: dict[str, int]) -> dict[str, int]:
    """Run the storm on `mountpoint` (in a child process); the summed counts."""
    return trio.run(_storm, mountpoint, plan)
