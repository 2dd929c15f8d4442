"""Differential tests: the same mmap programs on the real kernel and in the simulator.

Each program runs (1) in a child process against a real file with libc ``mmap`` via
ctypes (``kernel_runner.py``), on the local disk (/var/tmp: a filesystem with
``page_mkwrite`` and dirty accounting) and on tmpfs (/dev/shm: neither), and (2) in the
simulator with a ``MemInode`` configured like that filesystem.  Per-operation results
(loaded bytes, errnos), the signal that ended the program (SIGBUS/SIGSEGV) and the final
file contents and size must agree.

Addresses are relative to a PROT_NONE anonymous reservation made first, so programs can
place mappings with MAP_FIXED and both sides see the same layout.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim_mmu import MapFlags, MsFlags, Process, Prot, SimError, SimSignal, Simulation
from sim_mmu.memfile import MemInode

pytestmark = pytest.mark.kernel

PAGE = os.sysconf("SC_PAGE_SIZE")
RUNNER = Path(__file__).with_name("kernel_runner.py")
RESERVE = 16
PROT = {"none": Prot.NONE, "r": Prot.READ, "rw": Prot.READ | Prot.WRITE}
TYPE = {
    "shared": MapFlags.SHARED,
    "private": MapFlags.PRIVATE,
    "neither": MapFlags(0),
    "both": MapFlags.SHARED | MapFlags.PRIVATE,
}
MS = {"sync": MsFlags.SYNC, "async": MsFlags.ASYNC, "invalidate": MsFlags.INVALIDATE}
FILESYSTEMS = {"disk": "/var/tmp", "tmpfs": "/dev/shm"}

Outcome = tuple[list[Any], int, bytes]


def run_kernel(program: list, initial: bytes, directory: str) -> Outcome:
    with tempfile.NamedTemporaryFile(dir=directory, prefix="simdiff") as f:
        f.write(initial)
        f.flush()
        proc = subprocess.run(
            [sys.executable, str(RUNNER), f.name],
            input=json.dumps([["reserve", RESERVE], *program]),
            capture_output=True,
            text=True,
            timeout=60,
        )
        results = [json.loads(line) for line in proc.stdout.splitlines()][1:]
        signo = -proc.returncode if proc.returncode < 0 else 0
        assert proc.returncode <= 0, proc.stderr
        with open(f.name, "rb") as g:
            content = g.read()
    return results, signo, content


class SimRunner:
    def __init__(self, proc: Process, inode: MemInode) -> None:
        self.proc = proc
        self.inode = inode
        self.files = {"rw": inode.open(write=True), "ro": inode.open(write=False)}
        self.base = 0

    async def op(self, op: list) -> object:
        kind, args = op[0], op[1:]
        try:
            return await getattr(self, "do_" + kind)(*args)
        except SimError as e:
            return f"errno {e.errno}"

    async def do_reserve(self, pages: int) -> str:
        flags = MapFlags.PRIVATE | MapFlags.ANONYMOUS
        self.base = await self.proc.mmap(pages * PAGE, Prot.NONE, flags)
        return "ok"

    async def do_mmap(
        self, at: int | None, length: int, prot: str, typ: str, offset: int, fd: str
    ) -> str:
        flags = TYPE[typ]
        addr = 0
        if at is not None:
            addr, flags = self.base + at, flags | MapFlags.FIXED
        await self.proc.mmap(length, PROT[prot], flags, self.files[fd], offset, addr=addr)
        return "ok"

    async def do_munmap(self, at: int, length: int) -> str:
        await self.proc.munmap(self.base + at, length)
        return "ok"

    async def do_mprotect(self, at: int, length: int, prot: str) -> str:
        await self.proc.mprotect(self.base + at, length, PROT[prot])
        return "ok"

    async def do_msync(self, at: int, length: int, how: str) -> str:
        flags = MS.get(how, MsFlags.SYNC | MsFlags.ASYNC)
        await self.proc.msync(self.base + at, length, flags)
        return "ok"

    async def do_store(self, at: int, hexdata: str) -> str:
        await self.proc.store(self.base + at, bytes.fromhex(hexdata))
        return "ok"

    async def do_load(self, at: int, n: int) -> str:
        return (await self.proc.load(self.base + at, n)).hex()

    async def do_truncate(self, size: int) -> str:
        self.inode.truncate(size)
        return "ok"

    async def do_pwrite(self, offset: int, hexdata: str) -> str:
        self.inode.write(offset, bytes.fromhex(hexdata))
        return "ok"

    async def do_procmem_write(self, at: int, hexdata: str) -> str:
        data = bytes.fromhex(hexdata)
        n = await self.proc.access_process_vm(self.base + at, data, write=True, force=True)
        return f"wrote {n}" if n else f"errno {errno.EIO}"  # mem_rw: nothing copied ⇒ EIO

    async def do_procmem_read(self, at: int, n: int) -> str:
        got = await self.proc.access_process_vm(self.base + at, n, write=False, force=True)
        assert isinstance(got, bytes)
        return got.hex() if got else f"errno {errno.EIO}"

    async def do_fork(self, ops: list) -> object:
        child = await self.proc.fork()
        sub = SimRunner(child, self.inode)
        sub.files, sub.base = self.files, self.base
        results, signo = await sub.run(ops)
        if child.alive:
            await child.exit()
        return ["child", results, signo]

    async def run(self, ops: list) -> tuple[list, int]:
        results: list[object] = []
        try:
            for op in ops:
                results.append(await self.op(op))
        except SimSignal as e:
            return results, e.signo
        return results, 0


def run_sim(program: list, initial: bytes, fs: str) -> Outcome:
    async def main() -> Outcome:
        sim = Simulation()
        disk = fs == "disk"
        inode = MemInode(mkwrite=disk, accounts_dirty=disk)
        inode.write(0, initial)
        proc = sim.spawn()
        runner = SimRunner(proc, inode)
        await runner.do_reserve(RESERVE)
        results, signo = await runner.run(program)
        if proc.alive:
            await proc.exit()
        return results, signo, inode.read(0, inode.size)

    return trio.run(main)


def hx(data: bytes) -> str:
    return data.hex()


P = PAGE
PROGRAMS: dict[str, tuple[bytes, list]] = {
    "shared store load and file contents": (
        b"a" * (3 * P),
        [
            ["mmap", 0, 3 * P, "rw", "shared", 0, "rw"],
            ["load", 10, 4],
            ["store", P - 2, hx(b"cross")],
            ["load", P - 4, 8],
            ["msync", 0, 3 * P, "sync"],
        ],
    ),
    "sigbus beyond eof": (
        b"x" * (P + 100),
        [["mmap", 0, 4 * P, "r", "shared", 0, "rw"], ["load", P + 50, 4], ["load", 2 * P, 1]],
    ),
    "tail store never reaches the file": (
        b"y" * 100,
        [
            ["mmap", 0, P, "rw", "shared", 0, "rw"],
            ["store", 98, hx(b"TAIL")],
            ["load", 96, 8],
            ["munmap", 0, P],
        ],
    ),
    "private store is not written to the file": (
        b"f" * (2 * P),
        [
            ["mmap", 0, 2 * P, "rw", "private", 0, "rw"],
            ["mmap", 4 * P, 2 * P, "rw", "shared", 0, "rw"],
            ["store", 5, hx(b"PRIV")],
            ["load", 4 * P + 5, 4],
            ["store", 4 * P + P + 7, hx(b"SHRD")],
            ["load", P + 7, 4],
        ],
    ),
    "mprotect ro then store is sigsegv": (
        b"z" * (2 * P),
        [
            ["mmap", 0, 2 * P, "rw", "shared", 0, "rw"],
            ["store", 0, hx(b"ok")],
            ["mprotect", P, P, "r"],
            ["load", P, 2],
            ["store", P, hx(b"no")],
        ],
    ),
    "munmap hole is sigsegv": (
        b"h" * (3 * P),
        [
            ["mmap", 0, 3 * P, "rw", "shared", 0, "rw"],
            ["munmap", P, P],
            ["load", 2 * P, 1],
            ["msync", 0, 3 * P, "sync"],
            ["load", P, 1],
        ],
    ),
    "truncate down then up": (
        b"t" * (3 * P),
        [
            ["mmap", 0, 3 * P, "rw", "shared", 0, "rw"],
            ["store", 2 * P, hx(b"gone")],
            ["truncate", P + 10],
            ["load", P, 12],
            ["truncate", 3 * P],
            ["load", P, 12],
            ["store", 2 * P + 1, hx(b"back")],
            ["load", 2 * P, 8],
            ["truncate", P],
            ["load", 2 * P, 1],
        ],
    ),
    "fork shares shared and copies private": (
        b"k" * (2 * P),
        [
            ["mmap", 0, P, "rw", "shared", 0, "rw"],
            ["mmap", 2 * P, P, "rw", "private", P, "rw"],
            ["store", 2 * P, hx(b"parent")],
            [
                "fork",
                [["load", 2 * P, 6], ["store", 0, hx(b"child")], ["store", 2 * P, hx(b"CHILD!")]],
            ],
            ["load", 0, 5],
            ["load", 2 * P, 6],
        ],
    ),
    "fork child dies of sigbus": (
        b"q" * P,
        [
            ["mmap", 0, 2 * P, "rw", "shared", 0, "rw"],
            ["fork", [["store", 0, hx(b"c")], ["store", P, hx(b"dead")]]],
            ["load", 0, 2],
        ],
    ),
    "private unwritten page sees later file changes": (
        b"p" * P,
        [
            ["mmap", 0, P, "r", "private", 0, "rw"],
            ["load", 0, 2],
            ["pwrite", 0, hx(b"NEW")],
            ["load", 0, 3],
        ],
    ),
    "forced writes through /proc/self/mem (rows 27, 28)": (
        b"m" * (2 * P),
        [
            ["mmap", 0, P, "r", "shared", 0, "rw"],
            ["mmap", 2 * P, P, "r", "private", P, "rw"],
            ["mmap", 4 * P, P, "r", "shared", 0, "ro"],
            ["procmem_write", 0, hx(b"POKE")],
            ["load", 0, 4],
            ["procmem_write", 2 * P, hx(b"POKE")],
            ["load", 2 * P, 4],
            ["procmem_write", 4 * P, hx(b"POKE")],
            ["procmem_read", 2 * P, 4],
            ["procmem_read", 6 * P, 4],
        ],
    ),
    "argument errors": (
        b"e" * (2 * P),
        [
            ["mmap", None, P, "r", "shared", 100, "rw"],
            ["mmap", None, 0, "r", "shared", 0, "rw"],
            ["mmap", None, P, "r", "neither", 0, "rw"],
            ["mmap", None, P, "rw", "shared", 0, "ro"],
            ["mmap", 0, P, "r", "shared", 0, "ro"],
            ["mprotect", 0, P, "rw"],
            ["msync", 1, P, "sync"],
            ["msync", 0, P, "bad"],
            ["munmap", 10 * P, P],
            ["mprotect", 10 * P, P, "r"],
            ["msync", 10 * P, P, "sync"],
            ["munmap", 3, P],
            ["load", 0, 2],
            ["mmap", 0, P, "rw", "private", 0, "ro"],
            ["store", 0, hx(b"cow")],
            ["load", 0, 3],
        ],
    ),
}


@pytest.mark.parametrize("fs", sorted(FILESYSTEMS))
@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_program_matches_kernel(name: str, fs: str) -> None:
    if not os.access(FILESYSTEMS[fs], os.W_OK):
        pytest.skip(f"{FILESYSTEMS[fs]} is not writable here")
    initial, program = PROGRAMS[name]
    kernel = run_kernel(program, initial, FILESYSTEMS[fs])
    sim = run_sim(program, initial, fs)
    assert sim[0] == kernel[0], "per-operation results differ"
    assert (sim[1], len(sim[2])) == (kernel[1], len(kernel[2])), "signal or size differs"
    assert sim[2] == kernel[2], "file contents differ"


def test_runner_reports_signals() -> None:
    """The harness itself: a SIGSEGV in the child is seen, with earlier results kept."""
    results, signo, _ = run_kernel([["load", 0, 1]], b"", FILESYSTEMS["disk"])
    assert (results, signo) == ([], signal.SIGSEGV)


# -- random programs --------------------------------------------------------------------
_offsets = st.integers(0, 5 * P - 8)
_access = st.one_of(
    st.tuples(st.just("store"), _offsets, st.binary(min_size=1, max_size=6).map(hx)).map(list),
    st.tuples(st.just("load"), _offsets, st.integers(1, 6)).map(list),
)
_ops = st.one_of(
    _access,
    st.tuples(st.just("fork"), st.lists(_access, max_size=3)).map(list),
    st.tuples(st.just("truncate"), st.integers(0, 5 * P)).map(list),
    st.tuples(
        st.just("mprotect"),
        st.integers(0, 4).map(lambda k: k * P),
        st.just(P),
        st.sampled_from(["r", "rw", "none"]),
    ).map(list),
    st.tuples(st.just("munmap"), st.integers(0, 4).map(lambda k: k * P), st.just(P)).map(list),
    st.tuples(st.just("msync"), st.just(0), st.just(5 * P), st.sampled_from(["sync", "async"])).map(
        list
    ),
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    typ=st.sampled_from(["shared", "private"]),
    size=st.integers(0, 5 * P),
    ops=st.lists(_ops, min_size=1, max_size=10),
)
def test_random_programs_match_kernel(typ: str, size: int, ops: list) -> None:
    program = [["mmap", 0, 5 * P, "rw", typ, 0, "rw"], *ops]
    initial = bytes(range(256)) * (size // 256) + bytes(size % 256)
    kernel = run_kernel(program, initial, FILESYSTEMS["disk"])
    sim = run_sim(program, initial, "disk")
    assert sim == kernel
