"""The data path: read/write through the page cache, ENOSPC, truncate, punch,
fallocate, unlink while open, writeback, fsync error reporting and the flusher."""

from __future__ import annotations

import errno
import os

import pytest
import trio
import trio.testing

from fusefs.fs.core import ROOT_INO, Filesystem, FsError
from fusefs.fs.handles import FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE
from fusefs.fs.space import SpaceStats

from .conftest import PAGE, ROOT, create, used


def xattr_int(fs: Filesystem, ino: int, name: str) -> int:
    return int(fs.getxattr(ino, f"user.mkwritefs.{name}".encode(), ROOT))


async def test_write_read_roundtrip_unaligned(fs: Filesystem) -> None:
    fh, ino = create(fs, b"f")
    data = bytes(range(256)) * 40  # 10240 bytes
    assert await fs.write(fh, 1000, data) == len(data)
    assert fs.getattr(ino).size == 1000 + len(data)
    assert fs.read(fh, 0, 1 << 20) == bytes(1000) + data
    assert fs.read(fh, 5000, 10) == (bytes(1000) + data)[5000:5010]
    assert fs.read(fh, 100_000, 10) == b""
    assert used(fs) == 3  # pages 0, 1, 2
    assert fs.getattr(ino).blocks == 3 * 8


async def test_sparse_file_holes_cost_nothing(fs: Filesystem) -> None:
    fh, ino = create(fs, b"sparse")
    assert await fs.write(fh, 1 << 30, b"end") == 3
    assert fs.getattr(ino).size == (1 << 30) + 3
    assert used(fs) == 1
    assert fs.read(fh, (1 << 30) - 5, 8) == bytes(5) + b"end"
    assert fs.read(fh, 12345, PAGE) == bytes(PAGE)


async def test_short_write_when_space_runs_out(fs: Filesystem) -> None:
    fh, ino = create(fs, b"f")
    fs.space.set_capacity(2)
    data = b"a" * (3 * PAGE)
    n = await fs.write(fh, 2048, data)
    assert n == 2 * PAGE - 2048  # pages 0 and 1 fit, page 2 does not
    assert fs.getattr(ino).size == 2 * PAGE
    assert fs.read(fh, 0, 1 << 20) == bytes(2048) + data[:n]
    assert fs.file_data(ino).mapping.find_page(2) is None  # no empty page left behind
    with pytest.raises(FsError) as exc:
        await fs.write(fh, 2 * PAGE, b"b")
    assert exc.value.errno == errno.ENOSPC
    assert fs.statistics() == SpaceStats(2, 0, 2, 0)
    assert fs.statfs().bfree == 0


async def test_exact_fit_then_enospc(fs: Filesystem) -> None:
    fh, _ = create(fs, b"f")
    assert await fs.write(fh, 0, b"x" * (16 * PAGE)) == 16 * PAGE
    assert fs.statfs().bfree == 0
    with pytest.raises(FsError) as exc:
        await fs.write(fh, 16 * PAGE, b"y")
    assert exc.value.errno == errno.ENOSPC
    fh2, _ = create(fs, b"g")
    with pytest.raises(FsError):
        await fs.write(fh2, 0, b"y")


async def test_overwrite_when_full_needs_no_space(fs: Filesystem) -> None:
    fh, ino = create(fs, b"f")
    await fs.write(fh, 0, b"x" * (16 * PAGE))
    before = fs.statistics()
    assert await fs.write(fh, 5 * PAGE + 7, b"over reserved") == 13
    await fs.writeback()
    assert fs.statistics() == SpaceStats(16, 0, 0, 16)
    assert await fs.write(fh, 9 * PAGE - 3, b"over allocated") == 14
    assert fs.statistics().free_blocks == before.free_blocks == 0
    assert fs.read(fh, 5 * PAGE + 7, 13) == b"over reserved"
    assert fs.read(fh, 9 * PAGE - 3, 14) == b"over allocated"
    assert xattr_int(fs, ino, "dirty_pages") == 2


async def test_unlink_while_open_keeps_data_until_release_and_forget(fs: Filesystem) -> None:
    fh, ino = create(fs, b"f")
    await fs.write(fh, 0, b"keep me" * 1000)
    await fs.unlink(ROOT_INO, b"f", ROOT)
    assert fs.read(fh, 0, 7) == b"keep me"
    assert await fs.write(fh, 7000, b"more") == 4
    assert used(fs) == 2
    await fs.release(fh)
    assert used(fs) == 2  # the kernel still holds a lookup reference
    fs.forget([(ino, 1)])
    assert used(fs) == 0
    assert fs.statfs().bfree == 16


async def test_truncate_down_and_up(fs: Filesystem) -> None:
    fh, ino = create(fs, b"f")
    await fs.write(fh, 0, b"a" * (4 * PAGE))
    await fs.writeback()
    await fs.write(fh, 2 * PAGE, b"b" * PAGE)  # page 2 dirty again (allocated)
    attr = await fs.setattr(ino, size=5000, ctx=ROOT)
    assert attr.size == 5000
    assert used(fs) == 2  # blocks of pages 2 and 3 came back at once
    attr = await fs.setattr(ino, size=3 * PAGE, ctx=ROOT)
    assert used(fs) == 2  # growing costs nothing
    assert fs.read(fh, 0, 1 << 20) == b"a" * 5000 + bytes(3 * PAGE - 5000)
    await fs.setattr(ino, size=0, ctx=ROOT)
    assert used(fs) == 0
    with pytest.raises(FsError) as exc:
        await fs.setattr(ino, size=-1, ctx=ROOT)
    assert exc.value.errno == errno.EINVAL
    with pytest.raises(FsError) as exc:
        await fs.setattr(ROOT_INO, size=0, ctx=ROOT)
    assert exc.value.errno == errno.EISDIR


async def test_truncate_releases_reservations(fs: Filesystem) -> None:
    fh, ino = create(fs, b"f")
    await fs.write(fh, 0, b"r" * (6 * PAGE))
    assert fs.statistics().reserved_blocks == 6
    await fs.setattr(ino, size=PAGE + 1, ctx=ROOT)
    assert fs.statistics() == SpaceStats(16, 14, 2, 0)
    assert xattr_int(fs, ino, "reserved_blocks") == 2


async def test_open_o_trunc_frees(fs: Filesystem) -> None:
    fh, ino = create(fs, b"f")
    await fs.write(fh, 0, b"x" * (3 * PAGE))
    fh2 = fs.open(ino, os.O_WRONLY | os.O_TRUNC, ROOT)
    assert fs.getattr(ino).size == 0
    assert used(fs) == 0
    await fs.write(fh, 0, b"y")
    ro = fs.open(ino, os.O_RDONLY | os.O_TRUNC, ROOT)  # Linux truncates this too
    assert fs.getattr(ino).size == 0
    with pytest.raises(FsError) as exc:
        await fs.write(ro, 0, b"no")
    assert exc.value.errno == errno.EBADF
    for h in (fh, ro, fh2):
        await fs.release(h)


async def test_punch_hole_frees_whole_pages_and_zeroes_edges(fs: Filesystem) -> None:
    fh, ino = create(fs, b"f")
    await fs.write(fh, 0, b"p" * (5 * PAGE))
    await fs.writeback(ino)
    mode = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE
    await fs.fallocate(fh, mode, PAGE + 100, 2 * PAGE)  # pages 1 (part), 2 (whole), 3 (part)
    assert fs.getattr(ino).size == 5 * PAGE
    assert used(fs) == 4
    expect = b"p" * (PAGE + 100) + bytes(2 * PAGE) + b"p" * (2 * PAGE - 100)
    assert fs.read(fh, 0, 1 << 20) == expect
    await fs.fallocate(fh, mode, 0, 1 << 40)  # far beyond EOF: fine
    assert used(fs) == 0
    assert fs.read(fh, 0, 1 << 20) == bytes(5 * PAGE)
    with pytest.raises(FsError) as exc:
        await fs.fallocate(fh, FALLOC_FL_PUNCH_HOLE, 0, PAGE)
    assert exc.value.errno == errno.EOPNOTSUPP


async def test_punch_inside_one_page(fs: Filesystem) -> None:
    fh, _ = create(fs, b"f")
    await fs.write(fh, 0, b"q" * 100)
    await fs.fallocate(fh, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 10, 20)
    assert fs.read(fh, 0, 100) == b"q" * 10 + bytes(20) + b"q" * 70
    assert used(fs) == 1


async def test_fallocate_then_write_when_full(fs: Filesystem) -> None:
    fh, ino = create(fs, b"pre")
    await fs.fallocate(fh, FALLOC_FL_KEEP_SIZE, 0, 4 * PAGE)
    assert fs.getattr(ino).size == 0
    assert fs.statistics().allocated_blocks == 4
    fh2, _ = create(fs, b"filler")
    assert await fs.write(fh2, 0, b"f" * (20 * PAGE)) == 12 * PAGE
    assert fs.statfs().bfree == 0
    assert await fs.write(fh, 0, b"w" * (4 * PAGE)) == 4 * PAGE  # no ENOSPC
    assert fs.read(fh, 0, 1 << 20) == b"w" * (4 * PAGE)
    with pytest.raises(FsError):
        await fs.write(fh, 4 * PAGE, b"w")
    await fs.writeback()
    assert fs.statistics() == SpaceStats(16, 0, 0, 16)


async def test_fallocate_mode0_extends_and_reads_zeros(fs: Filesystem) -> None:
    fh, ino = create(fs, b"f")
    await fs.write(fh, 0, b"abc")
    await fs.fallocate(fh, 0, 0, 3 * PAGE)
    attr = fs.getattr(ino)
    assert attr.size == 3 * PAGE
    assert attr.blocks == 3 * 8
    assert fs.statistics() == SpaceStats(16, 13, 0, 3)  # the reserved page was converted
    assert fs.read(fh, 0, 1 << 20) == b"abc" + bytes(3 * PAGE - 3)
    await fs.fallocate(fh, 0, 0, PAGE)  # already allocated: nothing to do
    assert fs.getattr(ino).size == 3 * PAGE


async def test_fallocate_is_all_or_nothing(fs: Filesystem) -> None:
    fh, ino = create(fs, b"f")
    with pytest.raises(FsError) as exc:
        await fs.fallocate(fh, 0, 0, 17 * PAGE)
    assert exc.value.errno == errno.ENOSPC
    assert used(fs) == 0
    assert fs.getattr(ino).size == 0
    for mode, off, length, want in (
        (8, 0, PAGE, errno.EOPNOTSUPP),
        (0, -1, PAGE, errno.EINVAL),
        (0, 0, 0, errno.EINVAL),
        (0, (1 << 63) - 10, PAGE, errno.EFBIG),
    ):
        with pytest.raises(FsError) as exc:
            await fs.fallocate(fh, mode, off, length)
        assert exc.value.errno == want


async def test_write_limits(fs: Filesystem) -> None:
    fh, ino = create(fs, b"f")
    assert await fs.write(fh, 0, b"") == 0
    with pytest.raises(FsError) as exc:
        await fs.write(fh, -1, b"x")
    assert exc.value.errno == errno.EINVAL
    with pytest.raises(FsError) as exc:
        await fs.write(fh, 1 << 63, b"x")
    assert exc.value.errno == errno.EFBIG
    assert await fs.write(fh, (1 << 63) - 3, b"abcdef") == 2  # cut at the size limit
    with pytest.raises(FsError) as exc:
        await fs.write(999, 0, b"x")
    assert exc.value.errno == errno.EBADF
    await fs.setattr(ino, size=0, ctx=ROOT)


async def test_big_writes_and_reads(fs: Filesystem) -> None:
    fs.space.set_capacity(1024)
    fh, _ = create(fs, b"big")
    chunk = os.urandom(1 << 20)
    for i in range(3):
        assert await fs.write(fh, i << 20, chunk) == 1 << 20
    assert fs.read(fh, 1 << 20, 1 << 20) == chunk
    assert fs.read(fh, (1 << 20) + 5, 100) == chunk[5:105]
    assert used(fs) == 768


# -- writeback, errors, flusher ---------------------------------------------------------
async def test_writeback_turns_reservations_into_allocations(fs: Filesystem) -> None:
    fh, ino = create(fs, b"f")
    await fs.write(fh, 0, b"d" * (3 * PAGE))
    assert (xattr_int(fs, ino, "reserved_blocks"), xattr_int(fs, ino, "dirty_pages")) == (3, 3)
    await fs.fsync(fh, False)
    assert fs.statistics() == SpaceStats(16, 13, 0, 3)
    assert xattr_int(fs, ino, "allocated_blocks") == 3
    assert xattr_int(fs, ino, "dirty_pages") == 0
    assert xattr_int(fs, ROOT_INO, "allocated_blocks") == 3
    assert fs.read(fh, 0, 1 << 20) == b"d" * (3 * PAGE)


async def test_writeback_zeroes_the_tail_past_eof(fs: Filesystem) -> None:
    fh, ino = create(fs, b"f")
    await fs.write(fh, 0, b"t" * 100)
    page = fs.file_data(ino).mapping.find_page(0)
    assert page is not None
    page.data[200:300] = b"z" * 100  # a store past EOF through a mapping
    await fs.writeback(ino)
    assert bytes(page.data[100:]) == bytes(PAGE - 100)


async def test_legacy_writeback_loss_reported_once_per_open_file(fs: Filesystem) -> None:
    """A dirty page with no block (stored through a mapping with no page_mkwrite) on a
    full filesystem: writeback cannot allocate, the data is lost, the error is recorded
    on the mapping and each open file's fsync reports it exactly once."""
    fh, ino = create(fs, b"victim")
    fh2 = fs.open(ino, os.O_RDWR, ROOT)
    await fs.write(fh, 0, b"v" * 10)
    data = fs.file_data(ino)
    page = data.mapping.add_page(1)
    page.data[:] = b"L" * PAGE
    data.mapping.set_page_dirty(page)  # no reservation: the legacy store
    await fs.setattr(ino, size=2 * PAGE, ctx=ROOT)
    filler, _ = create(fs, b"filler")
    await fs.write(filler, 0, b"f" * (16 * PAGE))
    invalidated: list[int] = []
    fs.on_invalidate = invalidated.append
    with pytest.raises(FsError) as exc:
        await fs.fsync(fh, False)
    assert exc.value.errno == errno.ENOSPC
    assert invalidated == [ino]
    assert fs.read(fh, PAGE, PAGE) == bytes(PAGE)  # the data is gone
    assert fs.read(fh, 0, 10) == b"v" * 10  # the page that had a reservation is safe
    assert (data.writeback_errors, data.lost_bytes) == (1, PAGE)
    await fs.fsync(fh, False)  # reported once
    with pytest.raises(FsError):
        await fs.fsync(fh2, False)  # ... to every open file
    fh3 = fs.open(ino, os.O_RDWR, ROOT)
    await fs.fsync(fh3, True)  # opened after the error: nothing to report
    for h in (fh, fh2, fh3, filler):
        await fs.release(h)


async def test_write_waits_for_a_locked_page(fs: Filesystem) -> None:
    fh, ino = create(fs, b"f")
    await fs.write(fh, 0, b"1" * PAGE)
    page = fs.file_data(ino).mapping.find_page(0)
    assert page is not None
    page.trylock()  # e.g. a fault holding the page through page_mkwrite
    async with trio.open_nursery() as nursery:
        nursery.start_soon(fs.write, fh, 10, b"2222")
        await trio.testing.wait_all_tasks_blocked()
        assert fs.read(fh, 10, 4) == b"1111"
        page.unlock()
    assert fs.read(fh, 10, 4) == b"2222"


async def test_write_into_page_truncated_while_waiting(fs: Filesystem) -> None:
    fh, ino = create(fs, b"f")
    await fs.write(fh, 0, b"1" * (2 * PAGE))
    old = fs.file_data(ino).mapping.find_page(1)
    assert old is not None
    old.trylock()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(fs.write, fh, PAGE, b"new")
        await trio.testing.wait_all_tasks_blocked()
        fs.file_data(ino).truncate(PAGE)  # drops page 1 with its reservation
        old.unlock()
    assert fs.read(fh, PAGE, 10) == b"new"
    assert fs.statistics().reserved_blocks == 2


async def test_flusher_writes_back_expired_files(
    fs: Filesystem, autojump_clock: trio.testing.MockClock
) -> None:
    fh, ino = create(fs, b"f")
    async with trio.open_nursery() as nursery:
        await nursery.start(fs.run_flusher)  # 5 s interval, 30 s expiry
        await fs.write(fh, 0, b"x" * (2 * PAGE))
        await trio.sleep(29)
        assert fs.statistics().reserved_blocks == 2
        await fs.write(fh, 5 * PAGE, b"y")  # the file was already dirty: clock unchanged
        await trio.sleep(7)
        assert fs.statistics() == SpaceStats(16, 13, 0, 3)
        assert xattr_int(fs, ino, "dirty_pages") == 0
        nursery.cancel_scope.cancel()


async def test_flusher_notices_pages_dirtied_behind_its_back(
    fs: Filesystem, autojump_clock: trio.testing.MockClock
) -> None:
    fh, ino = create(fs, b"f")
    await fs.write(fh, 0, b"x")
    await fs.writeback()
    data = fs.file_data(ino)
    page = data.mapping.find_page(0)
    assert page is not None
    data.mapping.set_page_dirty(page)  # no mark_page_dirty: no dirtied_when
    async with trio.open_nursery() as nursery:
        await nursery.start(fs.run_flusher)
        await trio.sleep(41)
        assert data.nr_dirty == 0
        nursery.cancel_scope.cancel()


async def test_release_and_bad_handles(fs: Filesystem) -> None:
    fh, _ = create(fs, b"f")
    await fs.flush(fh)
    await fs.release(fh)
    for call in (fs.release(fh), fs.flush(fh), fs.fsync(fh, False)):
        with pytest.raises(FsError) as exc:
            await call
        assert exc.value.errno == errno.EBADF
    with pytest.raises(FsError) as exc:
        fs.read(fh, 0, 1)
    assert exc.value.errno == errno.EBADF
    with pytest.raises(FsError) as exc:
        fs.open(ROOT_INO, os.O_RDONLY, ROOT)
    assert exc.value.errno == errno.EISDIR


async def test_capacity_change_at_run_time(fs: Filesystem) -> None:
    fh, _ = create(fs, b"f")
    await fs.write(fh, 0, b"x" * (5 * PAGE))
    with pytest.raises(FsError) as exc:
        fs.set_capacity(4)
    assert exc.value.errno == errno.EINVAL
    fs.set_capacity(5)
    assert fs.statfs().blocks == 5
    assert fs.statfs().bfree == 0
    with pytest.raises(FsError):
        await fs.write(fh, 5 * PAGE, b"y")
    fs.set_capacity(6)
    assert await fs.write(fh, 5 * PAGE, b"y") == 1


async def test_write_waits_for_writeback_then_sees_truncate(fs: Filesystem) -> None:
    """A write that waits for a page under writeback (stable pages) and finds it
    truncated when it wakes writes into a fresh page, never into the dead one."""
    fh, ino = create(fs, b"f")
    await fs.write(fh, 0, b"1" * (2 * PAGE))
    data = fs.file_data(ino)
    old = data.mapping.find_page(1)
    assert old is not None
    old.start_writeback()  # an I/O in flight (a slow writepage policy)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(fs.write, fh, PAGE, b"new")
        await trio.testing.wait_all_tasks_blocked()
        data.truncate(PAGE)
        old.end_writeback()
    page = data.mapping.find_page(1)
    assert page is not None
    assert page is not old
    assert fs.read(fh, PAGE, 3) == b"new"
    assert bytes(old.data[:3]) == b"111"


async def test_racing_writers_get_exactly_the_free_blocks(fs: Filesystem) -> None:
    """Many tasks write one page each into holes while a page they need is locked:
    exactly as many succeed as there were free blocks, and the invariant holds."""
    handles = [create(fs, b"w%d" % i) for i in range(24)]
    await fs.setattr(handles[0][1], size=PAGE, ctx=ROOT)
    blocker = fs.file_data(handles[0][1]).mapping.add_page(0)  # a read fault's page
    blocker.trylock()  # the first writer sleeps on this page lock mid-write
    results: list[int] = []

    async def writer(fh: int) -> None:
        try:
            results.append(await fs.write(fh, 0, b"z" * PAGE))
        except FsError as exc:
            results.append(-exc.errno)
        fs.space.check()

    async with trio.open_nursery() as nursery:
        for fh, _ in handles:
            nursery.start_soon(writer, fh)
        await trio.testing.wait_all_tasks_blocked()
        blocker.unlock()
    assert sorted(results, reverse=True) == [PAGE] * 16 + [-errno.ENOSPC] * 8
    assert fs.statfs().bfree == 0


async def test_write_accepts_any_buffer(fs: Filesystem) -> None:
    fh, _ = create(fs, b"f")
    assert await fs.write(fh, 0, bytearray(b"ab")) == 2
    assert await fs.write(fh, 2, memoryview(b"xcdx")[1:3]) == 2
    assert fs.read(fh, 0, 10) == b"abcd"


async def test_cancelled_write_leaves_no_lock_and_no_reservation(
    fs: Filesystem, autojump_clock: trio.testing.MockClock
) -> None:
    fh, ino = create(fs, b"f")
    await fs.setattr(ino, size=PAGE, ctx=ROOT)
    page = fs.file_data(ino).mapping.add_page(0)
    page.start_writeback()
    with trio.move_on_after(1) as scope:  # virtual time: the autojump clock moves it
        await fs.write(fh, 0, b"never")
    assert scope.cancelled_caught
    assert not page.locked
    assert fs.statistics().reserved_blocks == 0
    page.end_writeback()
    assert await fs.write(fh, 0, b"later") == 5


async def test_flusher_expiry_restarts_after_truncate_cleans_the_file(
    fs: Filesystem, autojump_clock: trio.testing.MockClock
) -> None:
    fh, ino = create(fs, b"f")
    async with trio.open_nursery() as nursery:
        await nursery.start(fs.run_flusher)
        await fs.write(fh, 0, b"x")
        await trio.sleep(20)
        await fs.setattr(ino, size=0, ctx=ROOT)  # clean again: the 30 s start over
        await fs.write(fh, 0, b"y")
        await trio.sleep(20)
        assert fs.statistics().reserved_blocks == 1  # dirty for 20 s only
        await trio.sleep(16)
        assert fs.statistics().allocated_blocks == 1
        nursery.cancel_scope.cancel()
