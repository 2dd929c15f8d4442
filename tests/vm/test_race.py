"""Row 4: many simulated processes racing for the last free blocks.

An instrument runs fsck after every step of every task, so ``allocated + reserved <=
capacity`` (and the per-file accounting) is checked after every event, mid-hook too.
"""

from __future__ import annotations

import errno
import os

import pytest
import trio
import trio.testing

from fusefs.fs.core import Filesystem
from fusefs.vm.policy import Policy
from sim_mmu import SIGBUS, MapFlags, Process, SigInfo, SimError, Simulation
from sim_mmu.check import check_simulation

from .conftest import ALL, PAGE, ROOT, RW, fill

PROCS = 12
FREE = 5


class FsckEveryStep(trio.abc.Instrument):
    def __init__(self, fs: Filesystem) -> None:
        self.fs = fs
        self.steps = 0

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps += 1
        self.fs.check()


@pytest.mark.parametrize("policy", ALL)
async def test_processes_race_for_last_blocks(
    policy: Policy, autojump_clock: trio.testing.MockClock
) -> None:
    fs = Filesystem(capacity_blocks=FREE + 3, uid=0, gid=0, policy=policy, mkwrite_latency=0.1)
    f = fs.open_path(b"/race", os.O_RDWR | os.O_CREAT)
    await fs.setattr(f.ino, size=PROCS * PAGE, ctx=ROOT)
    await fill(fs, 3)
    sim = Simulation()
    ok: list[int] = []
    refused: list[int] = []

    async def racer(i: int, proc: Process) -> None:
        def on_sigbus(info: SigInfo) -> bool:
            refused.append(i)
            return False

        proc.sigaction(SIGBUS, on_sigbus)
        addr = await proc.mmap(PROCS * PAGE, RW, MapFlags.SHARED, f)
        if await proc.store(addr + i * PAGE, bytes([i + 1]) * 64) == 64:
            ok.append(i)

    instrument = FsckEveryStep(fs)
    trio.lowlevel.add_instrument(instrument)
    try:
        async with trio.open_nursery() as nursery:
            for i in range(PROCS):
                nursery.start_soon(racer, i, sim.spawn())
    finally:
        trio.lowlevel.remove_instrument(instrument)
    assert instrument.steps > PROCS
    check_simulation(sim)
    if policy in (Policy.RESERVE, Policy.RESERVE_COW, Policy.SHMEM):
        assert len(ok) == FREE  # exactly one store per free block
        assert len(refused) == PROCS - FREE
        assert fs.space.free == 0
    else:  # overcommitted: every store acknowledged, writeback fails for the rest
        assert len(ok) == PROCS
        assert not refused
    for proc in sim.processes:
        await proc.exit()
    refuses = policy in (Policy.RESERVE, Policy.RESERVE_COW, Policy.SHMEM)
    if refuses:
        await f.close()
    else:
        with pytest.raises(SimError) as exc:  # close(2) reports the writeback error
            await f.close()
        assert exc.value.errno == errno.ENOSPC
    data = fs.file_data(f.ino)
    survived = [i for i in ok if data.read(i * PAGE, 64) == bytes([i + 1]) * 64]
    assert len(survived) == FREE
    assert data.writeback_errors == (0 if refuses else PROCS - FREE)
    assert data.lost_bytes == (0 if refuses else (PROCS - FREE) * PAGE)
    fs.check()
