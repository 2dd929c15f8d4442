"""Simulations and simulated processes: the "hardware" and the system-call surface.

A ``Simulation`` holds what is global to one run: the behaviour ``Profile``, the
counters (``statistics()``) and the event ``Trace``.  A ``Process`` is a task with an
``MM``: it issues system calls (``mmap``, ``munmap``, ``mprotect``, ``msync``, ``fork``,
``exit``) and touches memory with ``load``/``store``.

``load``/``store`` play the MMU: for each page they look at the PTE; a present PTE that
allows the access is used directly (setting young, and dirty on a store, as hardware
does) and costs no fault; otherwise the fault handler runs and the access is retried,
exactly as the CPU re-executes a faulting instruction.  A fault that cannot be resolved
delivers a signal: with a handler installed (``sigaction``), the handler gets the
``SigInfo`` and either asks for the access to be restarted (returns True: the kernel's
return-from-handler re-executes the instruction) or abandons it (like ``siglongjmp``:
``store`` returns the bytes stored so far, ``load`` the bytes loaded so far).  Without a
handler the default action kills the process: its mm is torn down and ``SimSignal`` is
raised.
"""

from __future__ import annotations

import errno
import inspect
from collections.abc import Awaitable, Callable

import trio

from sim_mmu import gup
from sim_mmu import pte as P
from sim_mmu.errors import SIGKILL, ProcessExited, SigInfo, SimError, SimSignal
from sim_mmu.fault import do_user_addr_fault
from sim_mmu.mm import MM
from sim_mmu.page import PAGE_MASK, PAGE_SHIFT, PAGE_SIZE, zero_page
from sim_mmu.page import REMOVALS as _REMOVALS
from sim_mmu.profile import Profile, get_profile
from sim_mmu.protocols import MapFlags, MappedFile, MsFlags, Prot
from sim_mmu.trace import Counters, Event, Statistics, Trace
from sim_mmu.vma import Vma
from sim_mmu.xarray import XA_CHUNK_MASK, XA_CHUNK_SHIFT

SignalHandler = Callable[[SigInfo], "bool | None | Awaitable[bool | None]"]

_PRESENT, _WRITE, _DIRTY, _YOUNG, _ANON, _ZERO = (
    P.PRESENT,
    P.WRITE,
    P.DIRTY,
    P.YOUNG,
    P.ANON,
    P.ZERO,
)
_WRITE_HIT = _PRESENT | _WRITE
_LEAF_SHIFT, _LEAF_MASK = P.LEAF_SHIFT, P.LEAF_MASK
_XA_SHIFT, _XA_MASK = XA_CHUNK_SHIFT, XA_CHUNK_MASK
_DY = _DIRTY | _YOUNG
_LIVELOCK = 10_000  # faults on one address without progress before we call it a bug
_RESCHED = 64  # faults between trio checkpoints (cond_resched)
_RESCHED_MASK = _RESCHED - 1


class Simulation:
    """One simulated machine: profile, counters, trace, process ids."""

    def __init__(
        self,
        *,
        profile: str | Profile = "modern",
        trace: bool = True,
        trace_limit: int | None = None,
    ) -> None:
        self.profile = get_profile(profile)
        self.counters = Counters()
        self.trace = Trace(enabled=trace, limit=trace_limit)
        self._next_pid = 1
        self.processes: list[Process] = []

    def __repr__(self) -> str:
        return f"<Simulation {self.profile.name} {len(self.processes)} processes>"

    def statistics(self) -> Statistics:
        return self.counters.snapshot()

    def events(self, kind: str | None = None) -> list[Event]:
        return self.trace.events(kind)

    def _pid(self) -> int:
        pid = self._next_pid
        self._next_pid += 1
        return pid

    def spawn(self, name: str = "") -> Process:
        """A new process with an empty address space."""
        pid = self._pid()
        proc = Process(self, MM(self, pid), pid, name or f"p{pid}")
        self.processes.append(proc)
        return proc

    def shmem_file(self, size: int) -> MappedFile:
        """The backing object of a MAP_SHARED|MAP_ANONYMOUS mapping (shmem_zero_setup)."""
        from sim_mmu.memfile import MemInode

        inode = MemInode(size=size, mkwrite=False, accounts_dirty=False, name="dev/zero")
        return inode.open(write=True)


class Process:
    """A simulated task.  Threads of one process share ``mm`` (``clone_thread``)."""

    def __init__(self, sim: Simulation, mm: MM, pid: int, name: str) -> None:
        self.sim = sim
        self.mm = mm
        self.pid = pid
        self.name = name
        self.alive = True
        self.killed_by: SigInfo | None = None
        self.handlers: dict[int, SignalHandler] = {}
        self._vma: Vma | None = None
        self._faults = 0

    def __repr__(self) -> str:
        state = "alive" if self.alive else f"dead ({self.killed_by})"
        return f"<Process {self.pid} {self.name} {state}>"

    def _check_alive(self) -> None:
        if not self.alive:
            raise ProcessExited(f"process {self.pid} has exited")

    # -- system calls -----------------------------------------------------------------
    async def mmap(
        self,
        length: int,
        prot: Prot,
        flags: MapFlags,
        file: MappedFile | None = None,
        offset: int = 0,
        *,
        addr: int = 0,
    ) -> int:
        self._check_alive()
        return await self.mm.mmap(addr, length, prot, flags, file, offset)

    async def munmap(self, addr: int, length: int) -> None:
        self._check_alive()
        await self.mm.munmap(addr, length)

    async def mprotect(self, addr: int, length: int, prot: Prot) -> None:
        self._check_alive()
        await self.mm.mprotect(addr, length, prot)

    async def msync(self, addr: int, length: int, flags: MsFlags = MsFlags.SYNC) -> None:
        self._check_alive()
        await self.mm.msync(addr, length, flags)

    async def fork(self, name: str = "") -> Process:
        """A child with a copy of our address space (``fork``)."""
        self._check_alive()
        pid = self.sim._pid()
        child = Process(self.sim, await self.mm.fork(pid), pid, name or f"p{pid}")
        child.handlers = dict(self.handlers)
        self.sim.processes.append(child)
        self.sim.trace.record("fork", self.pid, 0, -1, f"child {pid}")
        return child

    def clone_thread(self, name: str = "") -> Process:
        """Another task sharing our address space (``clone(CLONE_VM)``)."""
        self._check_alive()
        pid = self.sim._pid()
        thread = Process(self.sim, self.mm, pid, name or f"t{pid}")
        self.mm.users += 1
        self.sim.processes.append(thread)
        return thread

    async def exit(self) -> None:
        """Exit: the last user of the mm tears it down (dirty PTEs reach the pages)."""
        if not self.alive:
            return
        self.alive = False
        self.mm.users -= 1
        if self.mm.users == 0:
            await self.mm.exit_mmap()
        self.sim.trace.record("exit", self.pid)

    def sigaction(self, signo: int, handler: SignalHandler | None) -> None:
        """Install (or with None remove) a handler for ``signo``."""
        if signo == SIGKILL:
            raise SimError(errno.EINVAL, "SIGKILL cannot be caught")
        if handler is None:
            self.handlers.pop(signo, None)
        else:
            self.handlers[signo] = handler

    def pte(self, addr: int) -> P.PteView | None:
        return self.mm.pte(addr)

    def find_vma(self, addr: int) -> Vma | None:
        return self.mm.find_vma(addr)

    # -- memory access ------------------------------------------------------------------
    def _vma_for(self, addr: int) -> Vma:
        vma = self._vma
        if vma is None or vma.mm is not self.mm or not vma.start <= addr < vma.end:
            vma = self.mm.find_vma(addr)
            if vma is None:
                raise RuntimeError(f"BUG: PTE at {addr:#x} outside every VMA")
            self._vma = vma
        return vma

    def _page_buffer(self, vpn: int, bits: int, addr: int) -> bytearray | bytes:
        """The memory a present PTE maps (what the TLB hands the CPU), via the TLB."""
        ptes = self.mm.ptes
        if vpn == ptes.tlb_vpn and ptes.tlb_removals == _REMOVALS[0]:
            return ptes.tlb_data  # type: ignore[return-value]
        return self._tlb_miss(vpn, bits, addr)

    def _tlb_miss(self, vpn: int, bits: int, addr: int) -> bytearray | bytes:
        """The memory a present PTE maps, found from the PTE and loaded into the TLB."""
        if bits & _ANON:
            buf: bytearray | bytes = self.mm.anon[vpn].data
        elif bits & _ZERO:
            buf = zero_page()
        else:
            vma = self._vma
            if vma is None or vma.mm is not self.mm or not vma.start <= addr < vma.end:
                vma = self._vma_for(addr)
            pgoff = vma.pgoff + vpn - (vma.start >> PAGE_SHIFT)
            node = vma.mapping.pages.nodes.get(pgoff >> _XA_SHIFT)  # type: ignore[union-attr]
            page = node[pgoff & _XA_MASK] if node is not None else None
            if page is None:
                raise RuntimeError(f"BUG: PTE at {addr:#x} maps a page not in the page cache")
            buf = page.data
        self.mm.ptes.load_tlb(vpn, buf)
        return buf

    async def store(self, addr: int, data: bytes | bytearray | memoryview) -> int:
        """Store ``data`` at ``addr``; return the bytes stored (all, unless abandoned)."""
        if not self.alive:
            raise ProcessExited(f"process {self.pid} has exited")
        # one page or less of bytes: use it as is; else a zero-copy view to slice
        if type(data) is bytes and len(data) <= PAGE_SIZE:
            src: bytes | memoryview = data
        else:
            src = memoryview(data).cast("B")
        n = len(src)
        ptes = self.mm.ptes
        leaves = ptes.nodes  # the page table walk is the hardware's
        pos = 0
        stuck = 0
        while pos < n:
            a = addr + pos
            vpn = a >> PAGE_SHIFT
            leaf = leaves.get(vpn >> _LEAF_SHIFT)
            bits = leaf[vpn & _LEAF_MASK] if leaf is not None else 0
            if bits & _WRITE_HIT == _WRITE_HIT:
                if bits & _DY != _DY:
                    leaf[vpn & _LEAF_MASK] = bits | _DY  # type: ignore[index]
                off = a & PAGE_MASK
                chunk = n - pos if n - pos <= PAGE_SIZE - off else PAGE_SIZE - off
                if vpn == ptes.tlb_vpn and ptes.tlb_removals == _REMOVALS[0]:
                    buf = ptes.tlb_data  # a TLB hit (as in _page_buffer)
                else:
                    buf = self._tlb_miss(vpn, bits, a)
                if chunk == n:
                    buf[off : off + n] = src  # type: ignore[index]
                else:
                    buf[off : off + chunk] = src[pos : pos + chunk]  # type: ignore[index]
                pos += chunk
                stuck = 0
                continue
            # the fault, taken here rather than in a helper: the hot path of every first touch
            stuck += 1
            if stuck > _LIVELOCK:
                raise RuntimeError(f"livelock: {stuck} faults at {a:#x} without progress")
            self._faults += 1
            if self._faults & _RESCHED_MASK == 0:  # cond_resched: let other tasks run
                await trio.lowlevel.checkpoint()
            info = await do_user_addr_fault(self.mm, a, True, self)
            if info is not None and not await self._deliver(info):
                return pos
        return pos

    async def load(self, addr: int, length: int) -> bytes:
        """Load ``length`` bytes from ``addr`` (fewer only if a handler abandoned it)."""
        if not self.alive:
            raise ProcessExited(f"process {self.pid} has exited")
        leaves = self.mm.ptes.nodes
        out: bytes | bytearray = b""
        pos = 0
        stuck = 0
        while pos < length:
            a = addr + pos
            vpn = a >> PAGE_SHIFT
            leaf = leaves.get(vpn >> _LEAF_SHIFT)
            bits = leaf[vpn & _LEAF_MASK] if leaf is not None else 0
            if bits & _PRESENT:
                if not bits & _YOUNG:
                    leaf[vpn & _LEAF_MASK] = bits | _YOUNG  # type: ignore[index]
                off = a & PAGE_MASK
                chunk = length - pos if length - pos <= PAGE_SIZE - off else PAGE_SIZE - off
                piece = self._page_buffer(vpn, bits, a)[off : off + chunk]
                if chunk == length:
                    return bytes(piece)
                if pos == 0:
                    out = bytearray()
                out += piece
                pos += chunk
                stuck = 0
                continue
            # the fault, as in store
            stuck += 1
            if stuck > _LIVELOCK:
                raise RuntimeError(f"livelock: {stuck} faults at {a:#x} without progress")
            self._faults += 1
            if self._faults & _RESCHED_MASK == 0:  # cond_resched: let other tasks run
                await trio.lowlevel.checkpoint()
            info = await do_user_addr_fault(self.mm, a, False, self)
            if info is not None and not await self._deliver(info):
                return bytes(out)
        return bytes(out)

    async def _deliver(self, info: SigInfo) -> bool:
        handler = self.handlers.get(info.signo) if info.signo != SIGKILL else None
        if handler is None:  # default action: the whole thread group dies
            for task in self.sim.processes:
                if task.mm is self.mm and task.alive and task is not self:
                    task.killed_by = info
                    await task.exit()
            self.killed_by = info
            await self.exit()
            raise SimSignal(info)
        result = handler(info)
        if inspect.isawaitable(result):
            result = await result
        return bool(result)

    # -- kernel-side access ------------------------------------------------------------
    async def access_process_vm(
        self, addr: int, data: bytes | int, *, write: bool, force: bool = True
    ) -> bytes | int:
        """What ptrace/``/proc/PID/mem`` do to *this* process (see ``sim_mmu.gup``)."""
        self._check_alive()
        return await gup.access_process_vm(self.mm, addr, data, write=write, force=force)

    async def copy_to_user(self, addr: int, data: bytes) -> int:
        """Kernel write into our memory (e.g. ``read(2)`` into a mapped buffer).

        Faults are resolved as for a store, but a failure is not a signal: the copy stops
        and the number of bytes *not* copied is returned (the caller's -EFAULT or short
        read).
        """
        self._check_alive()
        src = memoryview(bytes(data))
        ptes = self.mm.ptes
        pos = 0
        while pos < len(src):
            a = addr + pos
            vpn = a >> PAGE_SHIFT
            bits = ptes.get(vpn)
            if bits is not None and bits & _WRITE_HIT == _WRITE_HIT:
                ptes[vpn] = bits | _DY
                off = a & PAGE_MASK
                end = min(PAGE_SIZE, off + len(src) - pos)
                self._page_buffer(vpn, bits, a)[off:end] = src[pos : pos + end - off]  # type: ignore[index]
                pos += end - off
                continue
            if await do_user_addr_fault(self.mm, a, True, self, user=False) is not None:
                break
        return len(src) - pos
