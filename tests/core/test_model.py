"""Property test of the data path and space accounting against a reference model.

Random sequences of write, truncate, fallocate, punch, unlink, close, writeback, fsync,
and legacy stores (a page dirtied through a mapping with no ``page_mkwrite``: it gets
its block only at writeback, or is lost) run on a tiny filesystem.  The model keeps
the bytes of each file, the pages holding a block and the legacy pages.  After every
step: every acknowledged byte reads back, short counts and ENOSPC are exactly as
predicted, each open file's fsync reports a lost page once, ``statfs`` and
``st_blocks`` equal the real block use, and the fsck invariants hold."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field

import pytest
import trio
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from fusefs.fs.core import ROOT_INO, Filesystem, FsError
from fusefs.fs.handles import FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE

from .conftest import PAGE, ROOT

CAPACITY = 6
SLOTS = 3


@dataclass
class ModelFile:
    fh: int
    ino: int
    data: bytearray = field(default_factory=bytearray)
    backed: set[int] = field(default_factory=set)  # pages holding a block
    legacy: set[int] = field(default_factory=set)  # dirty pages stored with no block
    error: bool = False  # a writeback error not yet reported to our fsync
    linked: bool = True


def span(offset: int, length: int) -> range:
    if length <= 0:
        return range(0)
    return range(offset // PAGE, (offset + length - 1) // PAGE + 1)


class Model:
    def __init__(self) -> None:
        self.fs = Filesystem(capacity_blocks=CAPACITY, uid=0, gid=0)
        self.files: dict[int, ModelFile] = {}
        self.gen = 0

    @property
    def free(self) -> int:
        return CAPACITY - sum(len(f.backed) for f in self.files.values())

    def file(self, slot: int) -> ModelFile:
        if slot not in self.files:
            self.gen += 1
            fh, attr = self.fs.create(ROOT_INO, b"f%d" % self.gen, 0o644, os.O_RDWR, ROOT)
            self.files[slot] = ModelFile(fh, attr.ino)
        return self.files[slot]

    # -- operations, each with the model's prediction -------------------------------
    async def write(self, slot: int, offset: int, length: int, byte: int) -> None:
        f = self.file(slot)
        free, n = self.free, 0
        for index in span(offset, length):
            if index not in f.backed:
                if free == 0:
                    break
                free -= 1
                f.backed.add(index)
                f.legacy.discard(index)
            n = min(offset + length, (index + 1) * PAGE) - offset
        if n == 0 < length:
            with pytest.raises(FsError) as exc:
                await self.fs.write(f.fh, offset, bytes([byte]) * length)
            assert exc.value.errno == errno.ENOSPC
            return
        assert await self.fs.write(f.fh, offset, bytes([byte]) * length) == n
        if n and offset + n > len(f.data):
            f.data.extend(bytes(offset + n - len(f.data)))
        f.data[offset : offset + n] = bytes([byte]) * n

    async def truncate(self, slot: int, size: int) -> None:
        f = self.file(slot)
        await self.fs.setattr(f.ino, size=size, ctx=ROOT)
        if size <= len(f.data):  # frees everything past EOF, preallocation included
            del f.data[size:]
            f.backed = {i for i in f.backed if i * PAGE < size}
            f.legacy = {i for i in f.legacy if i * PAGE < size}
        else:
            f.data.extend(bytes(size - len(f.data)))

    async def fallocate(self, slot: int, offset: int, length: int, keep: bool) -> None:
        f = self.file(slot)
        pages = set(span(offset, length))
        mode = FALLOC_FL_KEEP_SIZE if keep else 0
        if len(pages - f.backed) > self.free:
            with pytest.raises(FsError) as exc:
                await self.fs.fallocate(f.fh, mode, offset, length)
            assert exc.value.errno == errno.ENOSPC
            return
        await self.fs.fallocate(f.fh, mode, offset, length)
        f.backed |= pages
        f.legacy -= pages
        if not keep and offset + length > len(f.data):
            f.data.extend(bytes(offset + length - len(f.data)))

    async def punch(self, slot: int, offset: int, length: int) -> None:
        f = self.file(slot)
        await self.fs.fallocate(f.fh, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length)
        end = min(offset + length, len(f.data))
        if offset < end:
            f.data[offset:end] = bytes(end - offset)
        # Only pages wholly inside the range lose their block; the edges are zeroed.
        f.backed = {
            i for i in f.backed if not (offset <= i * PAGE and (i + 1) * PAGE <= offset + length)
        }
        f.legacy = {
            i for i in f.legacy if not (offset <= i * PAGE and (i + 1) * PAGE <= offset + length)
        }

    async def unlink(self, slot: int) -> None:
        f = self.files.get(slot)
        if f is None or not f.linked:
            return
        root = self.fs.inode(ROOT_INO).dir
        assert root is not None
        name = next(n for n, (ino, _) in root.entries.items() if ino == f.ino)
        await self.fs.unlink(ROOT_INO, name, ROOT)
        f.linked = False

    async def close(self, slot: int) -> None:
        f = self.files.get(slot)
        if f is None or f.linked:
            return
        await self.fs.release(f.fh)
        self.fs.forget([(f.ino, 1)])
        del self.files[slot]

    async def store(self, slot: int, where: float, length: int, byte: int) -> None:
        """A store through a shared mapping with no page_mkwrite (the legacy kernel):
        the page is dirtied in place, inside EOF, and no block is looked for."""
        f = self.file(slot)
        offset = int(where * len(f.data))
        length = min(length, len(f.data) - offset)
        if length <= 0:
            return
        data = self.fs.file_data(f.ino)
        for index in span(offset, length):
            page = data.mapping.find_or_create_page(index)
            lo, hi = max(offset, index * PAGE), min(offset + length, (index + 1) * PAGE)
            page.data[lo - index * PAGE : hi - index * PAGE] = bytes([byte]) * (hi - lo)
            data.mark_page_dirty(page)
            if index not in f.backed:
                f.legacy.add(index)
        f.data[offset : offset + length] = bytes([byte]) * length

    def _writeback_model(self, f: ModelFile) -> None:
        """Legacy pages get a block in index order while any is free; the rest is lost."""
        for index in sorted(f.legacy):
            if self.free > 0:
                f.backed.add(index)
                event("a legacy page got its block at writeback")
            else:
                end = min((index + 1) * PAGE, len(f.data))
                f.data[index * PAGE : end] = bytes(end - index * PAGE)
                f.error = True
                event("a legacy page was lost at writeback")
        f.legacy.clear()

    async def writeback(self, slot: int) -> None:
        f = self.files.get(slot)
        await self.fs.writeback(None if f is None else f.ino)
        for g in sorted(self.files.values(), key=lambda g: g.ino) if f is None else [f]:
            self._writeback_model(g)

    async def fsync(self, slot: int) -> None:
        f = self.files.get(slot)
        if f is None:
            return
        self._writeback_model(f)
        if f.error:
            with pytest.raises(FsError) as exc:
                await self.fs.fsync(f.fh, False)
            assert exc.value.errno == errno.ENOSPC
            f.error = False
        else:
            await self.fs.fsync(f.fh, False)

    # -- the check after every step ---------------------------------------------------
    def verify(self) -> None:
        self.fs.check()
        for f in self.files.values():
            attr = self.fs.getattr(f.ino)
            assert attr.size == len(f.data)
            assert attr.blocks == 8 * len(f.backed)
            assert self.fs.read(f.fh, 0, len(f.data) + PAGE) == f.data
        st_ = self.fs.statfs()
        stats = self.fs.statistics()
        assert st_.bfree == stats.free_blocks == self.free
        assert stats.allocated_blocks + stats.reserved_blocks == CAPACITY - self.free


slots = st.integers(0, SLOTS - 1)
offsets = st.one_of(st.integers(0, 10 * PAGE), st.integers(0, 10).map(lambda p: p * PAGE))
lengths = st.one_of(st.integers(0, 4 * PAGE), st.integers(1, 4).map(lambda p: p * PAGE))
writes = st.tuples(st.just("write"), slots, offsets, lengths, st.integers(1, 255))
stores = st.tuples(st.just("store"), slots, st.floats(0, 1), lengths, st.integers(1, 255))
truncates = st.tuples(st.just("truncate"), slots, offsets)
fsyncs = st.tuples(st.just("fsync"), slots)
ops = st.one_of(
    # Weighted towards the steps that make space run out and pages get lost.
    writes,
    writes,
    stores,
    stores,
    truncates,
    truncates,
    fsyncs,
    st.tuples(st.just("fallocate"), slots, offsets, lengths.filter(bool), st.booleans()),
    st.tuples(st.just("punch"), slots, offsets, lengths.filter(bool)),
    st.tuples(st.just("unlink"), slots),
    st.tuples(st.just("close"), slots),
    st.tuples(st.just("writeback"), slots),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ops, max_size=40))
def test_random_sequences_match_the_model(steps: list[tuple[object, ...]]) -> None:
    async def run() -> None:
        model = Model()
        for name, *args in steps:
            await getattr(model, str(name))(*args)
            model.verify()
        for slot in list(model.files):
            await model.unlink(slot)
            await model.close(slot)
        model.verify()
        assert model.fs.statistics().free_blocks == CAPACITY

    trio.run(run)
