"""Behaviour profiles: modern, 2.6.18, Howells' draft and legacy (KERNEL.md §2, §5, §6)."""

from __future__ import annotations

import pytest

from sim_mmu import PROFILES, Profile, SimError, Simulation, get_profile
from sim_mmu.memfile import MemInode

from .helpers import PAGE, PRIVATE, RO, RW, SHARED, check_invariants, mapped


def test_profiles_by_name() -> None:
    assert set(PROFILES) == {"modern", "2.6.18", "draft", "legacy"}
    assert get_profile("modern") is PROFILES["modern"]
    custom = Profile("mine", mkclean=False)
    assert get_profile(custom) is custom
    with pytest.raises(ValueError, match="unknown profile"):
        Simulation(profile="2.4")


async def test_legacy_first_touch_is_writable_without_notification() -> None:
    """Rows 5, 6 legacy column: no hook, no second fault."""
    sim, proc, inode, _, addr = await mapped(2, profile="legacy")
    await proc.load(addr, 1)
    assert proc.pte(addr).writable  # type: ignore[union-attr]
    await proc.store(addr, b"x")
    await proc.store(addr + PAGE, b"y")
    stats = sim.statistics()
    assert stats.mkwrite_calls == 0
    assert inode.mkwrite_calls == 0
    assert stats.faults == 2
    assert stats.wp_faults == 0


async def test_legacy_second_store_after_writeback_is_invisible() -> None:
    """Row 8 legacy: the PTE stays writable; dirt is only in PTEs until msync/munmap."""
    _, proc, inode, _, addr = await mapped(1, profile="legacy")
    await proc.store(addr, b"one")
    await proc.msync(addr, PAGE)  # pre-2.6.19 msync transfers PTE dirty bits, then writes
    assert inode.store[0][:3] == b"one"
    await proc.store(addr, b"two")  # no fault at all
    page = inode.mapping.find_page(0)
    assert page is not None
    assert not page.dirty
    assert await inode.writeback() == 0
    assert inode.store[0][:3] == b"one"
    await proc.munmap(addr, PAGE)  # zap transfers the dirty bit
    await inode.writeback()
    assert inode.store[0][:3] == b"two"


async def test_2_6_18_hook_once_then_never_again_after_writeback() -> None:
    """Row 8, 2.6.18: no write-protect after writeback: one hook call only."""
    sim, proc, inode, _, addr = await mapped(1, profile="2.6.18")
    await proc.load(addr, 1)
    await proc.store(addr, b"one")
    assert inode.mkwrite_calls == 1
    assert sim.statistics().wp_faults == 1
    await proc.msync(addr, PAGE)
    await proc.store(addr, b"two")
    assert inode.mkwrite_calls == 1
    assert proc.pte(addr).writable  # type: ignore[union-attr]


async def test_2_6_18_nopage_is_sigbus_and_modern_retries() -> None:
    from sim_mmu import SIGBUS, SimSignal, VmFault

    for profile, expect_sigbus in (("2.6.18", True), ("modern", False)):
        _, proc, inode, _, addr = await mapped(1, profile=profile)
        results = [VmFault.NOPAGE]
        hook = inode.vm_ops.page_mkwrite  # type: ignore[attr-defined]

        async def once_nopage(vmf: object, results: list = results, hook: object = hook) -> VmFault:
            return results.pop() if results else await hook(vmf)  # type: ignore[operator]

        inode.vm_ops.page_mkwrite = once_nopage  # type: ignore[attr-defined]
        if expect_sigbus:
            with pytest.raises(SimSignal) as info:
                await proc.store(addr, b"x")
            assert info.value.signo == SIGBUS
        else:
            await proc.store(addr, b"x")
            assert inode.read(0, 1) == b"x"


async def test_2_6_18_does_not_hold_the_page_lock_after_the_hook() -> None:
    """The hook returns LOCKED; the 2.6.18 core drops the lock at once."""
    sim, proc, inode, _, addr = await mapped(1, profile="2.6.18")
    await proc.store(addr, b"x")
    page = inode.mapping.find_page(0)
    assert page is not None
    assert not page.locked
    assert not page.dirty  # 2.6.18: no set_page_dirty in the fault path
    assert proc.pte(addr).dirty  # type: ignore[union-attr]
    check_invariants(sim)


async def _forced_write_setup(profile: str) -> tuple:
    sim = Simulation(profile=profile)
    inode = MemInode(size=2 * PAGE)
    inode.write(0, b"file")
    await inode.writeback()
    victim = sim.spawn()
    addr = await victim.mmap(2 * PAGE, RO, SHARED, inode.open(write=True))
    return sim, inode, victim, addr


async def test_gup_force_write_to_ro_shared_modern_is_efault() -> None:
    """Row 27, >= 3.15."""
    sim, inode, victim, addr = await _forced_write_setup("modern")
    assert await victim.access_process_vm(addr, b"POKE", write=True) == 0
    assert inode.read(0, 4) == b"file"
    assert inode.mkwrite_calls == 0


@pytest.mark.parametrize("touch_first", [True, False])
async def test_gup_force_write_to_ro_shared_2_6_18_cows(touch_first: bool) -> None:
    """Row 27, 2.6.18 .. 3.14: private COW copy inside the shared VMA, file unchanged."""
    sim, inode, victim, addr = await _forced_write_setup("2.6.18")
    if touch_first:
        await victim.load(addr, 1)
    assert await victim.access_process_vm(addr, b"POKE", write=True) == 4
    assert inode.read(0, 4) == b"file"
    assert await victim.load(addr, 4) == b"POKE"  # the process sees its private copy
    assert victim.pte(addr).anon  # type: ignore[union-attr]
    # a present page never reaches the hook; a not-present one went through do_no_page,
    # which in 2.6.18 called page_mkwrite for any VM_SHARED VMA
    assert inode.mkwrite_calls == (0 if touch_first else 1)


async def test_gup_force_write_under_howells_draft_lands_in_the_file() -> None:
    """Row 27, unfixed draft: hook called for a VMA the user cannot write; file modified."""
    sim, inode, victim, addr = await _forced_write_setup("draft")
    await victim.load(addr, 1)
    assert await victim.access_process_vm(addr, b"POKE", write=True) == 4
    assert inode.mkwrite_calls == 1
    assert inode.read(0, 4) == b"POKE"
    assert not victim.pte(addr).writable  # type: ignore[union-attr]


@pytest.mark.parametrize("profile", ["modern", "2.6.18", "draft", "legacy"])
async def test_gup_force_write_to_ro_private_cows_in_every_era(profile: str) -> None:
    """Row 28."""
    sim = Simulation(profile=profile)
    inode = MemInode(size=PAGE)
    inode.write(0, b"file")
    victim = sim.spawn()
    addr = await victim.mmap(PAGE, RO, PRIVATE, inode.open(write=False))
    assert await victim.access_process_vm(addr, b"POKE", write=True) == 4
    assert inode.read(0, 4) == b"file"
    assert await victim.load(addr, 4) == b"POKE"
    assert inode.mkwrite_calls == 0


async def test_gup_read_and_unforced_write() -> None:
    """Row 29's kernel side: an unforced GUP write is an ordinary write fault."""
    from sim_mmu import VmFault

    sim, proc, inode, _, addr = await mapped(2)
    inode.write(0, b"peek")
    assert await proc.access_process_vm(addr, 4, write=False) == b"peek"
    assert await proc.access_process_vm(addr, b"POKE", write=True, force=False) == 4
    assert inode.mkwrite_calls == 1
    inode.mkwrite_result = VmFault.SIGBUS
    assert await proc.access_process_vm(addr + PAGE, b"x", write=True, force=False) == 0
    assert proc.alive  # GUP turns SIGBUS into -EFAULT, no signal


async def test_gup_unforced_write_to_readonly_mapping_fails() -> None:
    _, proc, _, _, addr = await mapped(1, prot=RO)
    assert await proc.access_process_vm(addr, b"x", write=True, force=False) == 0


async def test_mprotect_write_on_readonly_fd_is_eacces_in_every_era() -> None:
    """Row 24."""
    import errno

    for profile in PROFILES:
        sim = Simulation(profile=profile)
        proc = sim.spawn()
        f = MemInode(size=PAGE).open(write=False)
        with pytest.raises(SimError) as info:
            await proc.mmap(PAGE, RW, SHARED, f)
        assert info.value.errno == errno.EACCES
