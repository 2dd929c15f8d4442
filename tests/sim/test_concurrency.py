"""Many tasks at once: stores and loads from threads and forked processes, hooks that
sleep, a flusher writing back, truncation racing it all, on virtual time.  The workload is
seeded; trio shuffles the order of runnable tasks, so the interleavings vary from run to
run (more coverage, same assertions).  Checks that nothing deadlocks, nothing is left locked, the
KERNEL.md §1 invariants hold at every flush, and every byte acknowledged by a shared
store that no truncation touched afterwards is in the file."""

from __future__ import annotations

import random

import pytest
import trio
import trio.testing

from sim_mmu import SIGBUS, Process, SigInfo, Simulation
from sim_mmu.check import check_simulation
from sim_mmu.memfile import MemInode

from .helpers import PAGE, RW, SHARED

PAGES = 6


@pytest.mark.parametrize("profile", ["modern", "2.6.18", "legacy"])
@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_concurrent_stores_hooks_writeback_truncate(
    profile: str, seed: int, autojump_clock: trio.testing.MockClock
) -> None:
    rng = random.Random(seed)
    sim = Simulation(profile=profile, trace=False)
    inode = MemInode(size=PAGES * PAGE, wait_stable=seed % 2 == 0)
    inode.writepage_sleep = 0.05
    parent = sim.spawn()
    addr = await parent.mmap(PAGES * PAGE, RW, SHARED, inode.open())
    child = await parent.fork()
    tasks: list[Process] = [parent, parent.clone_thread(), child, child.clone_thread()]
    acked: dict[int, tuple[int, float]] = {}  # file offset -> (byte, time acknowledged)
    truncated_at: list[float] = []
    sigbus: list[SigInfo] = []
    for t in tasks:
        t.sigaction(SIGBUS, sigbus.append)

    async def writer(task: Process, n: int) -> None:
        for _ in range(n):
            off = rng.randrange(PAGES * PAGE)
            value = rng.randrange(1, 256)
            inode.mkwrite_sleep = rng.choice([0, 0, 0.01, 0.1])
            if await task.store(addr + off, bytes([value])) == 1:
                acked[off] = (value, trio.current_time())
            elif rng.random() < 0.5:
                await task.load(addr + off, 1)
            await trio.sleep(rng.choice([0, 0.01, 0.02]))

    async def flusher() -> None:
        for _ in range(20):
            await trio.sleep(0.1)
            await inode.writeback()

    async def truncater() -> None:
        for _ in range(3):
            await trio.sleep(rng.uniform(0.1, 0.6))
            inode.truncate(rng.randrange(1, PAGES) * PAGE)
            truncated_at.append(trio.current_time())
            await trio.sleep(0.05)
            inode.truncate(PAGES * PAGE)

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            for t in tasks:
                nursery.start_soon(writer, t, 40)
            nursery.start_soon(flusher)
            nursery.start_soon(truncater)
    await inode.writeback()
    check_simulation(sim)
    stats = sim.statistics()
    assert len(acked) > 50
    assert stats.faults > 10
    last_truncate = max(truncated_at, default=-1.0)
    survivors = {off: v for off, (v, when) in acked.items() if when > last_truncate}
    content = inode.read(0, PAGES * PAGE)
    if profile != "legacy" and profile != "2.6.18":
        for off, value in survivors.items():
            # a later store to the same byte may have changed it; the last one wins
            assert content[off] == value, (off, value, content[off])
    for t in tasks:
        await t.exit()
    await inode.writeback()
    content = inode.read(0, PAGES * PAGE)
    for off, value in survivors.items():  # after exit every era has the data
        assert content[off] == value
    assert not any(p.locked for p in inode.mapping.pages.values())
