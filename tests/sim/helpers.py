"""Small builders shared by the sim_mmu tests."""

from __future__ import annotations

from sim_mmu import MapFlags, Process, Prot, Simulation
from sim_mmu.check import check_simulation
from sim_mmu.memfile import MemFile, MemInode
from sim_mmu.page import PAGE_SIZE

RW = Prot.READ | Prot.WRITE
RO = Prot.READ
SHARED = MapFlags.SHARED
PRIVATE = MapFlags.PRIVATE
PAGE = PAGE_SIZE


async def mapped(
    pages: int = 4,
    *,
    profile: str = "modern",
    prot: Prot = RW,
    flags: MapFlags = SHARED,
    write: bool = True,
    **inode_kw: object,
) -> tuple[Simulation, Process, MemInode, MemFile, int]:
    """A simulation with one process mapping a ``pages``-page memfile."""
    sim = Simulation(profile=profile)
    inode = MemInode(size=pages * PAGE, **inode_kw)  # type: ignore[arg-type]
    f = inode.open(write=write)
    proc = sim.spawn()
    addr = await proc.mmap(pages * PAGE, prot, flags, f)
    return sim, proc, inode, f, addr


def check_invariants(sim: Simulation) -> None:
    """KERNEL.md §1 invariants over every live mm of ``sim`` (sim_mmu.check)."""
    check_simulation(sim)
