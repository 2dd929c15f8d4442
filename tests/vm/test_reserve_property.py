"""Under ``reserve``: random store/msync/truncate/fallocate/unlink sequences on a tiny
filesystem never lose a byte a writer was told was stored, and every SIGBUS came when
the page lay past EOF or needed a block and none was free (and never otherwise)."""

from __future__ import annotations

import os

import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fusefs.fs.core import Filesystem, FsError
from fusefs.fs.handles import FALLOC_FL_KEEP_SIZE
from fusefs.vm.file import SimFile
from sim_mmu import SIGBUS, MapFlags, Process, SigInfo, Simulation
from sim_mmu.check import check_simulation

from .conftest import PAGE, ROOT, RW

MAX_PAGES = 6
NAMES = (b"a", b"b")

stores = st.tuples(
    st.just("store"),
    st.integers(0, 1),
    st.integers(0, MAX_PAGES - 1),
    st.integers(0, PAGE - 16),
    st.integers(1, 255),
)
msyncs = st.tuples(st.just("msync"), st.integers(0, 1))
truncates = st.tuples(st.just("truncate"), st.integers(0, 1), st.integers(0, MAX_PAGES * PAGE))
fallocates = st.tuples(
    st.just("fallocate"),
    st.integers(0, 1),
    st.integers(0, MAX_PAGES - 1),
    st.integers(1, 3),
    st.booleans(),
)
unlinks = st.tuples(st.just("unlink"), st.integers(0, 1))
ops = st.lists(st.one_of(stores, stores, stores, msyncs, truncates, fallocates, unlinks))


class Run:
    def __init__(self) -> None:
        self.fs = Filesystem(capacity_blocks=5, uid=0, gid=0, policy="reserve")
        self.sim = Simulation()
        self.proc: Process = self.sim.spawn()
        self.files: list[SimFile] = []
        self.addrs: list[int] = []
        self.model: list[bytearray] = []
        self.linked = [True, True]
        self.sigbus: list[SigInfo] = []

        def on_sigbus(info: SigInfo) -> bool:
            self.sigbus.append(info)
            return False

        self.proc.sigaction(SIGBUS, on_sigbus)

    async def setup(self) -> None:
        for name in NAMES:
            f = self.fs.open_path(b"/" + name, os.O_RDWR | os.O_CREAT)
            await self.fs.setattr(f.ino, size=2 * PAGE, ctx=ROOT)
            self.files.append(f)
            self.model.append(bytearray(2 * PAGE))
            self.addrs.append(await self.proc.mmap(MAX_PAGES * PAGE, RW, MapFlags.SHARED, f))

    def verify(self) -> None:
        self.fs.check()
        check_simulation(self.sim)
        for f, model in zip(self.files, self.model, strict=True):
            assert f.data.size == len(model)
            assert f.data.read(0, len(model)) == bytes(model)
            assert f.data.lost_bytes == 0

    async def store(self, i: int, page: int, off: int, byte: int) -> None:
        data = self.files[i].data
        beyond = page >= (data.size + PAGE - 1) // PAGE
        starved = data.page_needs_block(page) and self.fs.space.free == 0
        before = len(self.sigbus)
        payload = bytes([byte]) * 16
        done = await self.proc.store(self.addrs[i] + page * PAGE + off, payload)
        if beyond or starved:
            assert done == 0
            assert len(self.sigbus) == before + 1
            return
        assert done == len(payload)  # acknowledged
        assert len(self.sigbus) == before
        model = self.model[i]
        start = page * PAGE + off
        end = min(start + len(payload), len(model))  # past EOF in the last page: not data
        model[start:end] = payload[: max(end - start, 0)]

    async def apply(self, op: tuple) -> None:  # type: ignore[type-arg]
        kind, i = op[0], op[1]
        f = self.files[i]
        if kind == "store":
            await self.store(i, *op[2:])
        elif kind == "msync":
            await self.proc.msync(self.addrs[i], MAX_PAGES * PAGE)  # never an error
        elif kind == "truncate":
            size = op[2]
            await self.fs.setattr(f.ino, size=size, ctx=ROOT)
            model = self.model[i]
            del model[size:]
            model.extend(bytes(size - len(model)))
        elif kind == "fallocate":
            first, count, keep = op[2], op[3], op[4]
            try:
                mode = FALLOC_FL_KEEP_SIZE if keep else 0
                await self.fs.fallocate(f.fh, mode, first * PAGE, count * PAGE)
            except FsError:
                return  # ENOSPC: nothing changed (verify checks it)
            end = (first + count) * PAGE
            if not keep and end > len(self.model[i]):
                self.model[i].extend(bytes(end - len(self.model[i])))
        elif kind == "unlink" and self.linked[i]:
            await self.fs.unlink(1, NAMES[i], ROOT)
            self.linked[i] = False

    async def finish(self) -> None:
        for f in self.files:
            await f.fsync()
        self.verify()
        await self.proc.exit()
        for f in self.files:
            await f.close()
        self.fs.check()
        live = sum(1 for lk in self.linked if lk)
        if live == 0:
            assert self.fs.space.allocated + self.fs.space.reserved == 0


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(ops)
def test_reserve_never_loses_acknowledged_bytes(sequence: list[tuple]) -> None:  # type: ignore[type-arg]
    async def main() -> None:
        run = Run()
        await run.setup()
        for op in sequence:
            await run.apply(op)
            run.verify()
        await run.finish()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
