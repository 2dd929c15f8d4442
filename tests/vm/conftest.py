"""Builders for the vm tests: a Filesystem with a policy, a simulation, processes that
map a fusefs file shared and record the SIGBUS they get instead of dying."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from fusefs.fs.core import Ctx, Filesystem
from fusefs.vm.file import SimFile
from fusefs.vm.policy import Policy
from sim_mmu import SIGBUS, MapFlags, Process, Prot, SigInfo, Simulation
from sim_mmu.check import check_simulation

ROOT = Ctx(uid=0, gid=0, pid=1)
USER = Ctx(uid=1000, gid=1000, pid=2)
PAGE = 4096
RW = Prot.READ | Prot.WRITE
SHARED = MapFlags.SHARED
PRIVATE = MapFlags.PRIVATE
ALL = list(Policy)
HOOKED = [p for p in Policy if p.has_page_mkwrite]


@dataclass
class Rig:
    fs: Filesystem
    sim: Simulation
    f: SimFile
    proc: Process
    addr: int
    sigbus: list[SigInfo] = field(default_factory=list)

    def catch(self, proc: Process) -> None:
        """Record SIGBUS and abandon the access (like siglongjmp) instead of dying."""

        def handler(info: SigInfo) -> bool:
            self.sigbus.append(info)
            return False

        proc.sigaction(SIGBUS, handler)

    async def store(self, page: int, data: bytes, proc: Process | None = None) -> bool:
        """Store ``data`` at the start of file page ``page``; True when all of it landed."""
        p = proc or self.proc
        return await p.store(self.addr + page * PAGE, data) == len(data)

    def check(self) -> None:
        self.fs.check()
        check_simulation(self.sim)

    @property
    def data(self):  # noqa: ANN201
        return self.f.data


async def make_rig(
    policy: Policy | str,
    *,
    capacity: int = 16,
    pages: int = 4,
    profile: str = "modern",
    prot: Prot = RW,
    flags: MapFlags = SHARED,
    open_flags: int = os.O_RDWR,
    **fs_kw: object,
) -> Rig:
    """A filesystem of ``capacity`` blocks holding /f of ``pages`` hole pages, mapped
    by one process."""
    fs = Filesystem(capacity_blocks=capacity, uid=0, gid=0, policy=policy, **fs_kw)  # type: ignore[arg-type]
    f = fs.open_path(b"/f", os.O_RDWR | os.O_CREAT)
    await fs.setattr(f.ino, size=pages * PAGE, ctx=ROOT)
    if open_flags != os.O_RDWR:
        await f.close()
        f = fs.open_path(b"/f", open_flags)
    sim = Simulation(profile=profile)
    proc = sim.spawn()
    rig = Rig(fs, sim, f, proc, 0)
    rig.catch(proc)
    rig.addr = await proc.mmap(pages * PAGE, prot, flags, f)
    return rig


async def fill(fs: Filesystem, blocks: int | None = None) -> None:
    """Take ``blocks`` (default: every free) block with another file's fallocate."""
    n = fs.space.free if blocks is None else blocks
    if n:
        filler = fs.open_path(b"/filler", os.O_RDWR | os.O_CREAT)
        await fs.fallocate(filler.fh, 0, 0, n * PAGE)
        await filler.close()
