"""Simulated writers against files on a slow device, for the throttling tests.

``SlowFile`` is ``sim_mmu.memfile``'s in-memory file whose writeback goes through a
``FixedBandwidthDevice`` and whose open files call ``balance_dirty_pages_ratelimited``
after the fault path dirtied a page (modern placement) — or, with
``throttle_before=True``, inside ``page_mkwrite`` before the page becomes writable (the
seed's placement).  ``write_loop``/``store_loop`` are the writers: ``write(2)`` of one
page at a time, or stores through a shared mapping.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio

from sim_mmu import MapFlags, Process, Prot, Simulation
from sim_mmu.bdi import Bdi, DirtyDomain
from sim_mmu.memfile import MemFile, MemInode, MemVmOpsMkwrite
from sim_mmu.page import PAGE_SHIFT, PAGE_SIZE, Page
from sim_mmu.protocols import VmFault, VmFaultInfo
from sim_mmu.writeback import (
    DirtyRecorder,
    FixedBandwidthDevice,
    balance_dirty_pages_before,
    balance_dirty_pages_ratelimited,
    release_dirty,
    run_flusher,
)


class SlowAops:
    """``writepage`` through the device; the data is not kept (only counted)."""

    def __init__(self, inode: MemInode, device: FixedBandwidthDevice) -> None:
        self.inode = inode
        self.device = device

    async def readpage(self, page: Page) -> None:
        page.data[:] = bytes(PAGE_SIZE)
        page.uptodate = True

    async def writepage(self, page: Page) -> None:
        self.inode.writepage_calls += 1
        await self.device.transfer(1)


class ThrottlingVmOps(MemVmOpsMkwrite):
    """``page_mkwrite`` that throttles first, before the page can become writable."""

    def __init__(self, inode: MemInode, bdi: Bdi) -> None:
        super().__init__(inode)
        self.bdi = bdi

    async def page_mkwrite(self, vmf: VmFaultInfo) -> VmFault:
        await balance_dirty_pages_before(self.bdi)
        return await super().page_mkwrite(vmf)


class SlowFile(MemFile):
    """An open file of a device-backed inode: after the fault dirtied a page it
    throttles (``after``) or gives back the room ``page_mkwrite`` reserved and the
    fault did not use (before)."""

    def __init__(self, inode: MemInode, bdi: Bdi, *, after: bool) -> None:
        super().__init__(inode, readable=True, writable=True)
        self.bdi = bdi
        self.after = after

    async def balance_dirty_pages_ratelimited(self) -> None:
        if self.after:
            await balance_dirty_pages_ratelimited(self.bdi)
        else:
            release_dirty(self.bdi)


def slow_inode(
    bdi: Bdi, device: FixedBandwidthDevice, pages: int, *, name: str, throttle_before: bool
) -> MemInode:
    inode = MemInode(size=pages * PAGE_SIZE, name=name)
    inode.a_ops = SlowAops(inode, device)  # type: ignore[assignment]
    if throttle_before:
        inode.vm_ops = ThrottlingVmOps(inode, bdi)
    bdi.attach(inode.mapping, inode.a_ops)
    return inode


#: How fast a writer dirties pages when nothing holds it back (its CPU cost), pages/s.
WRITER_SPEED = 8192.0
_BATCH = 16  # pages between the writer's CPU-time sleeps


async def write_loop(inode: MemInode, bdi: Bdi, pages: int, until: float) -> int:
    """``dd``: ``write(2)`` of pages 0, 1, 2... of ``inode`` until ``pages`` or ``until``."""
    data = b"w" * PAGE_SIZE
    i = 0
    while i < pages and trio.current_time() < until:
        inode.write(i << PAGE_SHIFT, data)
        await balance_dirty_pages_ratelimited(bdi)
        i += 1
        if i % _BATCH == 0:
            await trio.sleep(_BATCH / WRITER_SPEED)
    return i


async def store_loop(proc: Process, addr: int, pages: int, until: float) -> int:
    """``dd`` through a shared mapping: one store per page, sequentially, once."""
    i = 0
    while i < pages and trio.current_time() < until:
        await proc.store(addr + i * PAGE_SIZE, b"s")
        i += 1
        if i % _BATCH == 0:
            await trio.sleep(_BATCH / WRITER_SPEED)
    return i


async def map_file(sim: Simulation, file: SlowFile, pages: int, name: str) -> tuple[Process, int]:
    proc = sim.spawn(name)
    addr = await proc.mmap(pages * PAGE_SIZE, Prot.READ | Prot.WRITE, MapFlags.SHARED, file, 0)
    return proc, addr


def jain(xs: list[float]) -> float:
    """Jain's fairness index: 1 = all equal, 1/n = one gets everything."""
    total = sum(xs)
    squares = sum(x * x for x in xs)
    return total * total / (len(xs) * squares) if squares else 1.0


class LimitWatch:
    """Checks the dirty count against the limit after every event of the domain
    (each page dirtied, cleaned, cancelled, each writeback start and end, each room
    reserved and given back) and keeps the worst of each measure:

    * ``over``: dirty + writeback − limit (the issue's "dirty count");
    * ``held_over``: dirty + writeback + pages in flight under the hard cap − limit;
    * ``over_allowance``: dirty − limit − the writers' ratelimits as their last look
      let them go (``DirtyTask.granted``): the bound of the ``after`` placement;
    * ``wb_over``: the device's dirty + writeback − its share (``wb_thresh``).
    """

    def __init__(self, domain: DirtyDomain) -> None:
        self.domain = domain
        self.events = 0
        self.over = self.held_over = self.over_allowance = self.wb_over = -(1 << 62)
        domain.listeners.append(self)

    def __call__(self, event: str, bdi: Bdi) -> None:
        dom = self.domain
        self.events += 1
        lim = dom.limits()
        over = dom.dirty - lim.limit
        self.over = max(self.over, over)
        self.held_over = max(self.held_over, over + dom.inflight)
        allowance = sum(t.granted for t in list(dom.tasks.values()))
        self.over_allowance = max(self.over_allowance, over - allowance)
        self.wb_over = max(self.wb_over, bdi.wb_dirty - bdi.wb_thresh(lim))


@dataclass
class Run:
    """What one simulated run measured."""

    domain: DirtyDomain
    bdi: Bdi
    device: FixedBandwidthDevice
    recorder: DirtyRecorder
    window: float  # seconds between the two snapshots
    dirtied: dict[str, int]  # pages newly dirtied per writer inside the window
    pauses: dict[str, int]  # throttling pauses per writer over the whole run
    self_written: dict[str, int]  # pages each writer wrote back itself (crude model)
    watch: LimitWatch  # the limit, checked after every event

    @property
    def total_rate(self) -> float:
        return sum(self.dirtied.values()) / self.window


async def run_writers(
    n: int,
    *,
    throttle: str = "modern",
    seconds: float = 20.0,
    settle: float = 10.0,
    bandwidth: float = 256.0,
    avail: int = 8192,
    fuse: bool = False,
    before: bool = False,
    via: str = "mmap",
    pages: int | None = None,
    measured: bool = False,
) -> Run:
    """``n`` writers (``dd``) on one device until ``seconds`` of virtual time.

    Each writer has its own file, big enough never to wrap (``pages``: how many pages a
    writer dirties at most).  ``via``: ``"mmap"`` (stores through a shared mapping) or
    ``"write"`` (``write(2)``).  Dirtying is counted per writer between ``settle`` and
    ``seconds``.  ``measured``: the device's bandwidth was already measured (as after
    an earlier run of one writer) instead of starting at the kernel's 100 MB/s guess.
    """
    domain = DirtyDomain(avail, throttle=throttle)
    bdi = Bdi.fuse(domain) if fuse else Bdi(domain, "disk")
    device = FixedBandwidthDevice(bandwidth)
    if measured:
        bdi.write_bw = bdi.avg_write_bw = bandwidth
        bdi.dirty_ratelimit = bdi.balanced_dirty_ratelimit = bandwidth
    sim = Simulation(trace=False)
    watch = LimitWatch(domain)
    recorder = DirtyRecorder(domain, interval=0.25)
    if pages is None:
        pages = int(bandwidth * seconds * 2 / n) + domain.limits().thresh
    snaps: list[dict[str, int]] = []
    start = trio.current_time()
    settle += start
    seconds += start

    async def snapshot(at: float) -> None:
        await trio.sleep_until(at)
        snaps.append({t.name: t.dirtied_total for t in list(domain.tasks.values())})

    async with trio.open_nursery() as nursery:
        await nursery.start(run_flusher, bdi)
        await nursery.start(recorder.run)
        async with trio.open_nursery() as writers:
            writers.start_soon(snapshot, settle)
            writers.start_soon(snapshot, seconds - 1e-6)
            for i in range(n):
                name = f"w{i}"
                inode = slow_inode(bdi, device, pages, name=f"f{i}", throttle_before=before)
                if via == "write":
                    writers.start_soon(write_loop, inode, bdi, pages, seconds, name=name)
                    continue
                file = SlowFile(inode, bdi, after=not before)
                proc, addr = await map_file(sim, file, pages, name)
                writers.start_soon(store_loop, proc, addr, pages, seconds, name=name)
            await trio.sleep_until(seconds - 1e-6)
            tasks = list(domain.tasks.values())
            pauses = {t.name: t.pauses for t in tasks}
            self_written = {t.name: t.written_by_self for t in tasks}
        nursery.cancel_scope.cancel()
    first, last = snaps
    dirtied = {name: last[name] - first.get(name, 0) for name in last}
    window = seconds - 1e-6 - settle
    return Run(domain, bdi, device, recorder, window, dirtied, pauses, self_written, watch)
