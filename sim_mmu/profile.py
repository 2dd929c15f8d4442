"""Behaviour profiles: which kernel era the simulator reproduces.

One ``Profile`` is chosen per ``Simulation``.  Each field is one behavioural difference
that KERNEL.md §1, §2 and §5 document between eras, so the fault handler reads as the
modern kernel with a few explicit ``if profile.x`` branches instead of four copies.

* ``modern`` (default): ``vm_fault_t page_mkwrite(vmf)``, page lock held from the hook
  until the page is dirty (b827e496c893), NOPAGE clean retry (56a76f8275c3),
  ``vma_wants_writenotify`` including dirty-accounting devices, ``folio_mkclean`` at
  writeback, GUP force write on a read-only shared mapping fails with EFAULT
  (cda540ace6a1, 3.15).
* ``2.6.18``: the seed commit 9637a5ef.  ``int`` result (any failure, NOPAGE included, is
  SIGBUS), no page lock across the hook, write notification only when the hook exists,
  no write-protect after writeback, dirtiness lives in PTEs until msync/munmap transfer
  it, GUP force write COWs inside the shared VMA (Zijlstra's amendment).
* ``draft``: as 2.6.18 but with Howells' unfixed draft: ``do_wp_page`` tests only
  VM_SHARED, so a GUP force write to a read-only shared mapping calls ``page_mkwrite``
  and lands in the file.
* ``legacy``: before the hook: no notification at all, shared writable pages writable at
  first touch, dirtiness only in PTEs.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass


class GupForce(enum.Enum):
    """What a forced GUP write to a non-writable shared mapping does (KERNEL.md §5)."""

    EFAULT = "efault"  # 3.15+: refuse
    COW = "cow"  # 2.6.18 .. 3.14: anon copy inside the shared VMA, file untouched
    DRAFT = "draft"  # Howells' draft: page_mkwrite + write into the file page


@dataclass(frozen=True)
class Profile:
    name: str
    #: the core calls ``page_mkwrite`` at all (False: before 9637a5ef)
    notify: bool = True
    #: 2.6.18 ``int page_mkwrite(vma, page)``: any failure or NOPAGE ⇒ SIGBUS
    int_result: bool = False
    #: the page lock is held from the hook's return until the page is dirty
    page_lock: bool = True
    #: writeback write-protects and cleans the PTEs of a page it cleans (page_mkclean)
    mkclean: bool = True
    #: ``vma_wants_writenotify`` also for devices that account dirty pages (2.6.19+)
    notify_dirty_accounting: bool = True
    #: the fault path sets PG_dirty and throttles (2.6.19+); else dirt stays in PTEs
    dirty_at_fault: bool = True
    #: msync walks the PTEs and transfers dirty bits to pages (before 2.6.19)
    msync_transfers_dirty: bool = False
    #: forced GUP write to a non-writable shared VMA
    gup_force: GupForce = GupForce.EFAULT


MODERN = Profile("modern")
V2_6_18 = Profile(
    "2.6.18",
    int_result=True,
    page_lock=False,
    mkclean=False,
    notify_dirty_accounting=False,
    dirty_at_fault=False,
    msync_transfers_dirty=True,
    gup_force=GupForce.COW,
)
# Howells' draft: 2.6.18's fault path, but a forced write to a read-only shared
# mapping went through the notify path (Zijlstra's note, KERNEL.md §5).
DRAFT = dataclasses.replace(V2_6_18, name="draft", gup_force=GupForce.DRAFT)
# Before 9637a5ef: the same era without the hook at all.
LEGACY = dataclasses.replace(V2_6_18, name="legacy", notify=False)

PROFILES: dict[str, Profile] = {p.name: p for p in (MODERN, V2_6_18, DRAFT, LEGACY)}


def get_profile(profile: str | Profile) -> Profile:
    """Look a profile up by name (or pass a ``Profile`` through)."""
    if isinstance(profile, Profile):
        return profile
    try:
        return PROFILES[profile]
    except KeyError:
        names = ", ".join(PROFILES)
        raise ValueError(f"unknown profile {profile!r} (known: {names})") from None
