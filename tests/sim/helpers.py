"""Small builders shared by the sim_mmu tests."""

from __future__ import annotations

from sim_mmu import MapFlags, Process, Prot, Simulation
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
    """KERNEL.md §1 invariants over every live mm of ``sim``."""
    for proc in sim.processes:
        if not proc.alive:
            continue
        mm = proc.mm
        for a, b in zip(mm.vmas, mm.vmas[1:], strict=False):
            assert a.end <= b.start, (a, b)
        for vma in mm.vmas:
            assert vma.mm is mm
            if vma.mapping is not None:
                assert vma in vma.mapping.i_mmap
        for vpn, bits in mm.ptes.items():
            vma = mm.find_vma(vpn * PAGE)
            assert vma is not None, f"PTE {vpn:#x} outside every VMA"
            if bits & 0x10:  # ANON
                assert vpn in mm.anon
                continue
            if bits & 0x20 or vma.mapping is None:
                continue
            page = vma.mapping.pages.get(vma.pgoff_of(vpn * PAGE))
            assert page is not None, f"file PTE {vpn:#x} without a cached page"
            assert page.mapping is vma.mapping
            if bits & 0x2:  # writable
                assert vma.vm_write
                if vma.vm_shared and vma.writenotify and sim.profile.dirty_at_fault:
                    assert page.dirty, "writable PTE of a clean page"
                if not vma.vm_shared:
                    raise AssertionError("private VMA maps a file page writable")
        for vpn in mm.anon:
            assert vpn in mm.ptes
    for proc in sim.processes:
        for vma in proc.mm.vmas:
            if vma.mapping is not None:
                for page in vma.mapping.pages.values():
                    assert page.mapping is vma.mapping
                    assert (page.index in vma.mapping.dirty_tag) == page.dirty
                    assert not page.locked, f"{page!r} left locked"
