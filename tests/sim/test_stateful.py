"""Random mmap/munmap/mprotect/fork/load/store/msync/truncate sequences against a simple
reference model of what each process must read back, with the KERNEL.md §1 invariants
checked after every step.

The model: one file (bytes + size); per process, a map from virtual page to
(shared?, pgoff, prot) and the private COW copies it owns.  A load sees the private copy
if there is one, else the file; SIGSEGV for no mapping or no permission; SIGBUS for a
page wholly beyond end of file.  A shared store changes the file; a private one makes or
changes the private copy.  Truncation drops private copies wholly beyond the new EOF
(``unmap_mapping_range(..., even_cows=1)``); fork copies them.
"""

from __future__ import annotations

from typing import Any

import trio
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from sim_mmu import SIGBUS, SIGSEGV, MapFlags, MsFlags, Process, Prot, SigInfo, Simulation
from sim_mmu.memfile import MemInode

from .helpers import PAGE, check_invariants

SLOTS = 8
BASE = 0x40000000
PROTS = {"none": Prot.NONE, "ro": Prot.READ, "rw": Prot.READ | Prot.WRITE}


class ModelProc:
    def __init__(self) -> None:
        self.maps: dict[int, tuple[bool, int, str]] = {}  # slot -> (shared, pgoff, prot)
        self.copies: dict[int, bytearray] = {}  # slot -> private page

    def fork(self) -> ModelProc:
        child = ModelProc()
        child.maps = dict(self.maps)
        child.copies = {k: bytearray(v) for k, v in self.copies.items()}
        return child


class MmapMachine(RuleBasedStateMachine):
    @initialize(profile=st.sampled_from(["modern", "2.6.18", "legacy"]))
    def setup(self, profile: str) -> None:
        self.sim = Simulation(profile=profile, trace=False)
        self.inode = MemInode(size=6 * PAGE)
        self.file = self.inode.open()
        self.fdata = bytearray(6 * PAGE)
        # stores beyond EOF in the last partial page stay visible in the page (row 25)
        self._tail: dict[int, bytearray] = {}
        self.procs: list[Process] = [self.sim.spawn()]
        self.models = [ModelProc()]
        self.signals: list[list[SigInfo]] = [[]]
        self._install_handlers(0)
        # start from a mapping of every slot, shared RW (slots 6, 7 are beyond EOF)
        self.do_mmap(0, 0, SLOTS, 0, True, "rw")

    def _install_handlers(self, i: int) -> None:
        seen = self.signals[i]
        for signo in (SIGBUS, SIGSEGV):
            self.procs[i].sigaction(signo, seen.append)  # record and abandon the access

    def _run(self, fn: Any, *args: Any) -> Any:
        return trio.run(fn, *args)

    # -- model helpers --------------------------------------------------------------
    def _eof_pages(self) -> int:
        return (len(self.fdata) + PAGE - 1) // PAGE

    def _expect(self, m: ModelProc, slot: int, write: bool) -> str | None:
        """None if the access succeeds, else "SIGSEGV"/"SIGBUS"."""
        if slot not in m.maps:
            return "SIGSEGV"
        shared, pgoff, prot = m.maps[slot]
        if prot == "none" or (write and prot != "rw"):
            return "SIGSEGV"
        if not shared and slot in m.copies:
            return None
        if pgoff >= self._eof_pages():
            return "SIGBUS"
        return None

    def _file_page(self, pgoff: int) -> bytes:
        chunk = bytes(self.fdata[pgoff * PAGE : (pgoff + 1) * PAGE])
        return chunk + bytes(PAGE - len(chunk))

    # -- rules ------------------------------------------------------------------------
    @rule(
        p=st.integers(0, 2),
        slot=st.integers(0, SLOTS - 1),
        n=st.integers(1, 3),
        pgoff=st.integers(0, 5),
        shared=st.booleans(),
        prot=st.sampled_from(sorted(PROTS)),
    )
    def mmap(self, p: int, slot: int, n: int, pgoff: int, shared: bool, prot: str) -> None:
        p %= len(self.procs)
        n = min(n, SLOTS - slot)
        self.do_mmap(p, slot, n, pgoff, shared, prot)

    def do_mmap(self, p: int, slot: int, n: int, pgoff: int, shared: bool, prot: str) -> None:
        flags = (MapFlags.SHARED if shared else MapFlags.PRIVATE) | MapFlags.FIXED
        addr = BASE + slot * PAGE
        proc = self.procs[p]

        async def do_mmap() -> int:
            return await proc.mmap(n * PAGE, PROTS[prot], flags, self.file, pgoff * PAGE, addr=addr)

        assert self._run(do_mmap) == addr
        m = self.models[p]
        for i in range(n):
            m.maps[slot + i] = (shared, pgoff + i, prot)
            m.copies.pop(slot + i, None)

    @rule(p=st.integers(0, 2), slot=st.integers(0, SLOTS - 1), n=st.integers(1, 3))
    def munmap(self, p: int, slot: int, n: int) -> None:
        p %= len(self.procs)
        n = min(n, SLOTS - slot)
        self._run(self.procs[p].munmap, BASE + slot * PAGE, n * PAGE)
        m = self.models[p]
        for i in range(slot, slot + n):
            m.maps.pop(i, None)
            m.copies.pop(i, None)

    @rule(
        p=st.integers(0, 2),
        slot=st.integers(0, SLOTS - 1),
        n=st.integers(1, 3),
        prot=st.sampled_from(sorted(PROTS)),
    )
    def mprotect(self, p: int, slot: int, n: int, prot: str) -> None:
        from sim_mmu import SimError

        p %= len(self.procs)
        n = min(n, SLOTS - slot)
        m = self.models[p]
        try:
            self._run(self.procs[p].mprotect, BASE + slot * PAGE, n * PAGE, PROTS[prot])
        except SimError:
            # ENOMEM for a hole: VMAs before the hole were changed (as Linux does)
            for i in range(slot, slot + n):
                if i not in m.maps:
                    break
                shared, pgoff, _ = m.maps[i]
                m.maps[i] = (shared, pgoff, prot)
            assert any(i not in m.maps for i in range(slot, slot + n))
            return
        for i in range(slot, slot + n):
            shared, pgoff, _ = m.maps[i]
            m.maps[i] = (shared, pgoff, prot)

    @precondition(lambda self: len(self.procs) < 3)
    @rule(p=st.integers(0, 2))
    def fork(self, p: int) -> None:
        p %= len(self.procs)
        child = self._run(self.procs[p].fork)
        self.procs.append(child)
        self.models.append(self.models[p].fork())
        self.signals.append([])
        self._install_handlers(len(self.procs) - 1)

    @rule(
        p=st.integers(0, 2),
        slot=st.integers(0, SLOTS - 1),
        off=st.integers(0, PAGE - 1),
        data=st.binary(min_size=1, max_size=8),
    )
    def store(self, p: int, slot: int, off: int, data: bytes) -> None:
        p %= len(self.procs)
        data = data[: PAGE - off]
        m = self.models[p]
        expect = self._expect(m, slot, True)
        event(f"store {expect or 'ok'} {'shared' if m.maps.get(slot, (0,))[0] else 'private'}")
        stored = self._run(self.procs[p].store, BASE + slot * PAGE + off, data)
        self._check_signal(p, expect, slot)
        if expect is not None:
            assert stored == 0
            return
        assert stored == len(data)
        shared, pgoff, _ = m.maps[slot]
        if shared:
            pos = pgoff * PAGE + off
            end = min(pos + len(data), len(self.fdata))
            self.fdata[pos:end] = data[: max(end - pos, 0)]
            self._tail[pgoff] = self._tail_after_store(pgoff, off, data)
        else:
            page = m.copies.setdefault(slot, bytearray(self._page_view(pgoff)))
            page[off : off + len(data)] = data

    @rule(p=st.integers(0, 2), slot=st.integers(0, SLOTS - 1), off=st.integers(0, PAGE - 1))
    def load(self, p: int, slot: int, off: int) -> None:
        p %= len(self.procs)
        length = min(8, PAGE - off)
        m = self.models[p]
        expect = self._expect(m, slot, False)
        event(f"load {expect or 'ok'}")
        got = self._run(self.procs[p].load, BASE + slot * PAGE + off, length)
        self._check_signal(p, expect, slot)
        if expect is not None:
            assert got == b""
            return
        shared, pgoff, _ = m.maps[slot]
        page = m.copies.get(slot) if not shared else None
        want = bytes(page) if page is not None else self._page_view(pgoff)
        assert got == want[off : off + length]

    @rule(p=st.integers(0, 2), sync=st.booleans())
    def msync(self, p: int, sync: bool) -> None:
        from sim_mmu import SimError

        p %= len(self.procs)
        flags = MsFlags.SYNC if sync else MsFlags.ASYNC
        holes = len(self.models[p].maps) < SLOTS
        try:
            self._run(self.procs[p].msync, BASE, SLOTS * PAGE, flags)
            error = 0
        except SimError as e:
            error = e.errno
        assert error == (12 if holes else 0)  # ENOMEM when the range has unmapped pages

    @rule()
    def writeback(self) -> None:
        self._run(self.inode.writeback)

    @rule(size=st.integers(0, 8 * 4).map(lambda k: k * 1024))
    def truncate(self, size: int) -> None:
        self.inode.truncate(size)
        old = len(self.fdata)
        if size < old:
            del self.fdata[size:]
        else:
            self.fdata += bytes(size - old)
        eof = self._eof_pages()
        for m in self.models:
            for slot in [s for s in m.copies if m.maps[s][1] >= eof]:
                del m.copies[slot]
        self._tail.clear()  # truncation zeroes the part of the EOF page beyond EOF

    # -- checks ------------------------------------------------------------------------
    def _page_view(self, pgoff: int) -> bytes:
        """What a mapping shows for file page ``pgoff``: data, then the tail beyond EOF."""
        page = bytearray(self._file_page(pgoff))
        tail = self._tail.get(pgoff)
        if tail is not None:
            start = len(self.fdata) - pgoff * PAGE
            page[start:] = tail[start:]
        return bytes(page)

    def _tail_after_store(self, pgoff: int, off: int, data: bytes) -> bytearray:
        page = bytearray(self._page_view(pgoff))
        page[off : off + len(data)] = data
        return page

    def _check_signal(self, p: int, expect: str | None, slot: int) -> None:
        seen = self.signals[p]
        if expect is None:
            assert seen == [], seen
        else:
            assert len(seen) == 1, seen
            assert seen[0].signo == (SIGBUS if expect == "SIGBUS" else SIGSEGV)
            seen.clear()

    @invariant()
    def kernel_invariants(self) -> None:
        if hasattr(self, "sim"):
            check_invariants(self.sim)

    @invariant()
    def file_matches(self) -> None:
        if hasattr(self, "sim"):
            assert self.inode.size == len(self.fdata)
            assert self.inode.read(0, len(self.fdata)) == bytes(self.fdata)


TestMmapMachine = MmapMachine.TestCase
TestMmapMachine.settings = settings(
    max_examples=100,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
