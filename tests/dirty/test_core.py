"""The dirty-page model plugged into the filesystem core (fusefs.vm.throttle), on virtual
time: accounting by write(2), stores, writeback, truncate and eviction; write(2) and the
fault path throttled (after the page is dirtied, or before it becomes writable); the
device kind; the root's dirty attributes and settings."""

from __future__ import annotations

import errno
import os

import pytest
import trio
from trio.testing import MockClock

from fusefs.fs.core import ROOT_INO, Ctx, Filesystem, FsError
from fusefs.vm.throttle import DirtyConfig
from sim_mmu import MapFlags, Prot, Simulation

ROOT = Ctx(uid=0, gid=0, pid=1)
OWNER = Ctx(uid=1000, gid=1000, pid=2)
OTHER = Ctx(uid=1001, gid=1001, pid=3)
PAGE = 4096
NAME = b"user.mkwritefs."


def xattr(fs: Filesystem, name: str, ctx: Ctx = ROOT) -> bytes:
    return fs.getxattr(ROOT_INO, NAME + name.encode(), ctx)


def set_xattr(fs: Filesystem, name: str, value: bytes, ctx: Ctx = OWNER) -> None:
    fs.setxattr(ROOT_INO, NAME + name.encode(), value, 0, ctx)


def errno_of(fn, *args) -> int:  # noqa: ANN001
    with pytest.raises(FsError) as info:
        fn(*args)
    return info.value.errno


def new_fs(**config: object) -> Filesystem:
    policy = str(config.pop("policy", "reserve"))
    return Filesystem(
        capacity_blocks=1 << 16, uid=1000, gid=1000, policy=policy,
        dirty=DirtyConfig(**config),  # type: ignore[arg-type]
    )  # fmt: skip


async def test_write_stores_writeback_and_truncate_are_counted() -> None:
    fs = new_fs()
    dom = fs.dirty.domain if fs.dirty else None
    assert dom is not None
    f = fs.open_path(b"/f", os.O_RDWR | os.O_CREAT)
    await fs.write(f.fh, 0, b"w" * (10 * PAGE))
    assert (dom.dirty, xattr(fs, "dirty_pages")) == (10, b"10")
    await fs.setattr(f.ino, size=12 * PAGE, ctx=ROOT)
    proc = Simulation().spawn()
    addr = await proc.mmap(12 * PAGE, Prot.READ | Prot.WRITE, MapFlags.SHARED, f)
    assert await proc.store(addr + 10 * PAGE, b"s") == 1  # a hole page past the written
    assert await proc.store(addr + 11 * PAGE, b"s") == 1
    assert dom.dirty == 12
    await fs.setattr(f.ino, size=11 * PAGE - 100, ctx=ROOT)  # truncate drops page 11
    assert dom.dirty == 11
    assert fs.dirty is not None
    assert fs.dirty.bdi.cancelled == 1
    await fs.fsync(f.fh, False)
    assert dom.dirty == 0
    assert fs.dirty.bdi.written == 11
    dom.check()
    await proc.munmap(addr, 12 * PAGE)
    await f.close()
    fs.check()


async def test_eviction_detaches_the_mapping() -> None:
    fs = new_fs()
    fh, attr = fs.create(ROOT_INO, b"gone", 0o644, os.O_RDWR | os.O_CREAT, ROOT)
    await fs.write(fh, 0, b"x" * (3 * PAGE))
    assert fs.dirty is not None
    bdi = fs.dirty.bdi
    mapping = fs.file_data(attr.ino).mapping
    assert mapping.bdi is bdi
    assert bdi.reclaimable == 3
    await fs.unlink(ROOT_INO, b"gone", ROOT)
    await fs.release(fh)
    fs.forget([(attr.ino, 1)])  # the last reference: the inode is evicted, dirty
    assert mapping.bdi is None
    assert mapping not in bdi.a_ops
    assert (bdi.reclaimable, bdi.cancelled, bdi.written) == (0, 3, 0)
    fs.dirty.domain.check()


def _nothing_lost(fs: Filesystem, names: list[bytes], pages: int, byte: bytes) -> None:
    """Every page dirtied is still dirty, under writeback or written (none dropped),
    and every file reads back what was written."""
    assert fs.dirty is not None
    b = fs.dirty.bdi
    assert b.dirtied == b.reclaimable + b.writeback + b.written + b.cancelled
    assert fs.vm_totals.lost_bytes == 0
    for name in names:
        ino = fs.open_path(name, os.O_RDONLY).ino
        assert fs.file_data(ino).read(0, pages * PAGE + 1) == byte * (pages * PAGE)


async def _dd(fs: Filesystem, name: bytes, pages: int, chunk: int = 16) -> None:
    f = fs.open_path(name, os.O_RDWR | os.O_CREAT)
    for i in range(0, pages, chunk):
        await fs.write(f.fh, i * PAGE, b"d" * (min(chunk, pages - i) * PAGE))
    await fs.release(f.fh)


@pytest.mark.parametrize("writers", [1, 4])
async def test_write_is_held_under_the_limit_at_the_device_rate(
    writers: int, autojump_clock: MockClock
) -> None:
    # 32 MiB dirtyable ⇒ thresh 1638, limit 1638; the store takes 256 pages/s.
    fs = new_fs(write_bandwidth=256.0, device="disk")
    assert fs.dirty is not None
    dom, bdi = fs.dirty.domain, fs.dirty.bdi
    bdi.write_bw = bdi.avg_write_bw = bdi.dirty_ratelimit = 256.0  # a measured device
    pages = 3000 // writers
    async with trio.open_nursery() as nursery:
        await nursery.start(fs.run_flusher)
        start = trio.current_time()
        async with trio.open_nursery() as dds:
            for i in range(writers):
                dds.start_soon(_dd, fs, f"/dd{i}".encode(), pages)
        took = trio.current_time() - start
        nursery.cancel_scope.cancel()
    lim = dom.limits()
    print(f"{writers} dd: {took:.1f} s, max_dirty {dom.max_dirty} limit {lim.limit}")
    assert dom.max_over_limit <= lim.limit // 32  # held at the limit, checked at every page
    # what did not fit under the limit went at the store's pace (within 20 %)
    over = writers * pages - lim.limit
    assert over / 256.0 * 0.8 <= took <= over / 256.0 * 1.2 + 5.0
    assert all(t.pauses > 0 for t in dom.tasks.values())
    dom.check()
    _nothing_lost(fs, [f"/dd{i}".encode() for i in range(writers)], pages, b"d")


@pytest.mark.parametrize("writers", [1, 4])
async def test_write_under_the_seeds_placement_never_passes_the_limit(
    writers: int, autojump_clock: MockClock
) -> None:
    # the same dd's with the throttle before the page becomes dirty: write(2) takes room
    # for each page under the hard limit first, so dirty + in flight never pass it
    fs = new_fs(write_bandwidth=256.0, device="disk", placement="before", measured=True)
    assert fs.dirty is not None
    dom = fs.dirty.domain
    worst = [-(1 << 30)]

    def check(event: str, _bdi: object) -> None:  # after every event
        worst[0] = max(worst[0], dom.dirty + dom.inflight - dom.limits().limit)

    dom.listeners.append(check)
    pages = 3000 // writers
    async with trio.open_nursery() as nursery:
        await nursery.start(fs.run_flusher)
        async with trio.open_nursery() as dds:
            for i in range(writers):
                dds.start_soon(_dd, fs, f"/dd{i}".encode(), pages)
        nursery.cancel_scope.cancel()
    print(f"{writers} dd before: peak over the limit {worst[0]}, max_dirty {dom.max_dirty}")
    assert worst[0] <= 0
    assert all(t.pauses > 0 for t in dom.tasks.values())  # held, not free-running
    assert dom.inflight == 0  # every page's room dirtied or given back
    dom.check()
    _nothing_lost(fs, [f"/dd{i}".encode() for i in range(writers)], pages, b"d")


async def test_without_the_model_write_is_not_held(autojump_clock: MockClock) -> None:
    fs = Filesystem(capacity_blocks=1 << 16)
    async with trio.open_nursery() as nursery:
        await nursery.start(fs.run_flusher)
        await _dd(fs, b"/dd", 3000)
        assert trio.current_time() < 1.0  # nothing paused the writer
        nursery.cancel_scope.cancel()
    assert sum(i.data.nr_dirty for i in fs.inodes.values() if i.data) == 3000
    for name in ("dirty_pages", "dirty_limit_pages"):  # no model, no figures
        assert errno_of(xattr, fs, name) == errno.ENODATA


@pytest.mark.parametrize(("placement", "seen"), [("before", [0, 1]), ("after", [1, 2])])
async def test_fault_path_throttles_before_or_after_the_page_is_dirtied(
    placement: str, seen: list[int]
) -> None:
    fs = new_fs(placement=placement)
    f = fs.open_path(b"/f", os.O_RDWR | os.O_CREAT)
    await fs.setattr(f.ino, size=4 * PAGE, ctx=ROOT)
    calls: list[int] = []
    assert fs.dirty is not None
    assert fs.balance_dirty is not None
    model, model_before = fs.balance_dirty, fs.dirty.balance_before

    async def balance(data: object) -> None:
        calls.append(f.data.nr_dirty)
        await model(data)  # type: ignore[arg-type]

    async def balance_before(data: object) -> None:
        calls.append(f.data.nr_dirty)
        await model_before(data)  # type: ignore[arg-type]

    fs.balance_dirty = balance
    fs.dirty.balance_before = balance_before  # type: ignore[method-assign]
    proc = Simulation().spawn()
    addr = await proc.mmap(4 * PAGE, Prot.READ | Prot.WRITE, MapFlags.SHARED, f)
    assert await proc.store(addr, b"a") == 1
    assert await proc.store(addr, b"b") == 1  # writable already: no fault, no call
    assert await proc.store(addr + PAGE, b"c") == 1
    assert calls == seen
    await proc.munmap(addr, 4 * PAGE)
    await f.close()


async def _written_once(fs: Filesystem) -> None:
    f = fs.open_path(b"/once", os.O_RDWR | os.O_CREAT)
    await fs.write(f.fh, 0, b"1" * PAGE)
    await f.close()  # writes it back


async def test_device_follows_the_policy_unless_chosen() -> None:
    fuse = new_fs(policy="fuse")
    disk = new_fs(policy="reserve")
    chosen = new_fs(policy="reserve", device="fuse")
    assert fuse.dirty is not None
    assert disk.dirty is not None
    assert chosen.dirty is not None
    assert (fuse.dirty.bdi.strictlimit, fuse.dirty.bdi.max_ratio) == (True, 1.0)
    assert (disk.dirty.bdi.strictlimit, disk.dirty.bdi.max_ratio) == (False, 100.0)
    assert chosen.dirty.bdi.strictlimit
    for fs in (fuse, disk):  # a completion: the device does all the writeback there is
        await _written_once(fs)
    # FUSE: its own 1 % share binds; a disk: the global limit
    assert xattr(fuse, "dirty_limit_pages") == b"16"  # 1 % of thresh 1638
    assert xattr(disk, "dirty_limit_pages") == b"1638"
    assert (xattr(fuse, "max_ratio"), xattr(fuse, "strictlimit")) == (b"1", b"1")


async def test_settings_are_for_the_owner_and_bad_values_change_nothing() -> None:
    fs = new_fs()
    assert fs.dirty is not None
    set_xattr(fs, "dirty_ratio", b"30")
    set_xattr(fs, "dirty_background_ratio", b"5\n")
    lim = fs.dirty.domain.limits()
    assert (lim.thresh, lim.bg_thresh) == (2457, 409)
    assert (xattr(fs, "dirty_ratio"), xattr(fs, "dirty_background_ratio")) == (b"30", b"5")
    await _written_once(fs)
    set_xattr(fs, "max_ratio", b"2.5")
    set_xattr(fs, "strictlimit", b"1")
    assert (fs.dirty.bdi.max_ratio, fs.dirty.bdi.strictlimit) == (2.5, True)
    assert xattr(fs, "dirty_limit_pages") == b"61"  # 2.5 % of 2457, own share binds
    for name, bad in [("dirty_ratio", b"101"), ("dirty_ratio", b"-1"), ("dirty_ratio", b"x"),
                      ("dirty_background_ratio", b"nan"), ("max_ratio", b"200"),
                      ("strictlimit", b"2"), ("dirty_throttle", b"fast"),
                      ("dirty_placement", b"during")]:  # fmt: skip
        assert errno_of(set_xattr, fs, name, bad) == errno.EINVAL, (name, bad)
    for name in ("dirty_ratio", "max_ratio", "strictlimit", "dirty_throttle"):
        assert errno_of(set_xattr, fs, name, b"1", OTHER) == errno.EPERM
    for name in ("dirty_pages", "dirty_limit_pages"):
        assert errno_of(set_xattr, fs, name, b"1") == errno.EPERM  # read-only
    assert fs.dirty.domain.limits().thresh == 2457
    assert (fs.dirty.bdi.max_ratio, fs.dirty.bdi.strictlimit) == (2.5, True)
    set_xattr(fs, "dirty_ratio", b"20", ROOT)  # root may too
    assert fs.dirty.domain.limits().thresh == 1638
    set_xattr(fs, "dirty_bytes", b"4194304")  # 4 MiB: the ratio gives way
    assert (fs.dirty.domain.limits().thresh, xattr(fs, "dirty_ratio")) == (1024, b"0")
    for bad in (b"4096", b"-1", b"4M"):
        assert errno_of(set_xattr, fs, "dirty_bytes", bad) == errno.EINVAL
    set_xattr(fs, "dirty_ratio", b"20")  # and back
    assert (fs.dirty.domain.limits().thresh, xattr(fs, "dirty_bytes")) == (1638, b"0")
    set_xattr(fs, "min_ratio", b"2")
    assert xattr(fs, "min_ratio") == b"2"
    assert errno_of(set_xattr, fs, "min_ratio", b"3") == errno.EINVAL  # above max_ratio 2.5
    assert fs.dirty.bdi.min_ratio == 2.0


async def test_the_model_can_be_turned_on_at_run_time(autojump_clock: MockClock) -> None:
    fs = Filesystem(capacity_blocks=1 << 16, uid=1000, gid=1000)
    f = fs.open_path(b"/early", os.O_RDWR | os.O_CREAT)
    await fs.write(f.fh, 0, b"e" * (5 * PAGE))
    async with trio.open_nursery() as nursery:
        await nursery.start(fs.run_flusher)
        assert xattr(fs, "dirty_throttle") == b"none"
        set_xattr(fs, "dirty_ratio", b"10")  # kept until the model is on
        set_xattr(fs, "dirty_throttle", b"modern")
        assert fs.dirty is not None
        assert fs.dirty.flusher_running
        dom = fs.dirty.domain
        assert dom.dirty == 5
        assert dom.limits().thresh == 819
        dom.check()
        set_xattr(fs, "dirty_throttle", b"crude")
        assert dom.throttle == "crude"
        assert errno_of(set_xattr, fs, "dirty_throttle", b"none") == errno.EBUSY
        nursery.cancel_scope.cancel()
    await f.close()


async def test_the_series_is_recorded_when_asked(autojump_clock: MockClock, tmp_path) -> None:  # noqa: ANN001
    fs = new_fs(record_interval=0.25, write_bandwidth=256.0)
    assert fs.dirty is not None
    recorder = fs.dirty.recorder
    assert recorder is not None
    async with trio.open_nursery() as nursery:
        await nursery.start(fs.run_flusher)
        await _dd(fs, b"/dd", 2000)
        nursery.cancel_scope.cancel()
    rows = recorder.rows
    # a fresh device (100 MB/s guessed): dirty runs up to the limit, 362 pages wait for
    # the store (256/s): > 1.25 s of samples
    assert len(rows) >= 5
    assert max(r["dirty"] for r in rows) <= rows[-1]["limit"]
    assert {"thresh", "setpoint", "mkwritefs:dirty", "mkwritefs:write_bw"} <= set(rows[-1])
    pytest.importorskip("matplotlib")
    assert recorder.plot(tmp_path / "d.png")
    assert (tmp_path / "d.png").read_bytes()[:4] == b"\x89PNG"


async def test_fuse_requests_in_tasks_of_their_own_are_charged_to_the_open_file(
    autojump_clock: MockClock,
) -> None:
    # As served through FUSE: every 128 KiB WRITE is a trio task of its own. The open file
    # carries the throttle's state (nr_dirtied, the pause debt) from one to the next, so
    # a dd is paced at the store's 256 pages/s under the FUSE device's strict 1 % share.
    fs = new_fs(policy="fuse", measured=True, write_bandwidth=256.0)
    fh, _ = fs.create(ROOT_INO, b"dd", 0o644, os.O_RDWR | os.O_CREAT, ROOT)
    pages, chunk = 1024, 32
    async with trio.open_nursery() as nursery:
        await nursery.start(fs.run_flusher)
        start = trio.current_time()
        for i in range(0, pages, chunk):
            async with trio.open_nursery() as request:
                request.start_soon(fs.write, fh, i * PAGE, b"q" * (chunk * PAGE))
        took = trio.current_time() - start
        nursery.cancel_scope.cancel()
    assert fs.dirty is not None
    names = {t.name for t in fs.dirty.domain.tasks.values()}
    print(f"{pages} pages in {took:.2f} s; charged {names}")
    _nothing_lost(fs, [b"/dd"], pages, b"q")
    assert names == {f"fh {fh}"}
    assert pages / 256.0 * 0.8 <= took <= pages / 256.0 * 1.2
    await fs.release(fh)


async def test_two_filesystems_of_one_machine_share_its_dirty_pool(
    autojump_clock: MockClock,
) -> None:
    # Two mounts in one process, one machine (DirtyConfig(domain=...)): 1000 pages
    # written to each; either alone runs free (< freerun 1228), together they pass it.
    from sim_mmu.bdi import DirtyDomain

    machine = DirtyDomain(8192)
    a = new_fs(domain=machine, device="disk", write_bandwidth=128.0)
    b = new_fs(domain=machine, device="disk", write_bandwidth=128.0)
    assert a.dirty is not None
    assert b.dirty is not None
    assert a.dirty.domain is b.dirty.domain is machine
    assert [d.name for d in machine.bdis] == ["mkwritefs", "mkwritefs-2"]
    set_xattr(a, "dirty_ratio", b"10")  # the machine's sysctl: both mounts see it
    assert xattr(b, "dirty_ratio") == b"10"
    assert xattr(b, "dirty_limit_pages") == b"819"
    set_xattr(b, "dirty_ratio", b"20")
    async with trio.open_nursery() as nursery:
        await nursery.start(a.run_flusher)
        await nursery.start(b.run_flusher)
        start = trio.current_time()
        async with trio.open_nursery() as dds:
            dds.start_soon(_dd, a, b"/a", 1000)
            dds.start_soon(_dd, b, b"/b", 1000)
        took = trio.current_time() - start
        nursery.cancel_scope.cancel()
    lim = machine.limits()
    devices = [a.dirty.bdi, b.dirty.bdi]
    print(f"machine max {machine.max_dirty}, devices {[d.max_wb_dirty for d in devices]}")
    assert all(d.max_wb_dirty < lim.freerun for d in devices)
    assert machine.max_dirty > lim.freerun  # counted together, throttled together
    assert took > 1.0  # virtual seconds of throttling pauses
    assert xattr(a, "dirty_pages") == str(machine.dirty).encode()
    machine.check()
    for fs, name in ((a, b"/a"), (b, b"/b")):
        _nothing_lost(fs, [name], 1000, b"d")
    # a machine of its own each (the default): the same writes run free
    c, d = new_fs(device="disk"), new_fs(device="disk")
    assert c.dirty is not None
    assert d.dirty is not None
    assert c.dirty.domain is not d.dirty.domain
    start = trio.current_time()
    await _dd(c, b"/c", 1000)
    await _dd(d, b"/d", 1000)
    assert trio.current_time() - start < 0.01  # virtual time: nothing paused them
    assert c.dirty.domain.max_dirty == d.dirty.domain.max_dirty == 1000


@pytest.mark.parametrize("policy", ["reserve", "fuse"])
async def test_stores_throttled_before_the_page_is_writable_never_pass_the_limit(
    policy: str, autojump_clock: MockClock
) -> None:
    # four processes store through shared mappings; page_mkwrite throttles and holds the
    # page's room (reserve: ext4-like device, limit 1638; fuse: its own 16 pages)
    fs = new_fs(policy=policy, placement="before", write_bandwidth=256.0, measured=True)
    assert fs.dirty is not None
    dom, bdi = fs.dirty.domain, fs.dirty.bdi
    worst = [-(1 << 30)]

    def check(event: str, _bdi: object) -> None:  # after every event
        assert fs.dirty is not None
        worst[0] = max(worst[0], fs.dirty.dirty_pages() - fs.dirty.limit_pages())
        worst[0] = max(worst[0], dom.dirty + dom.inflight - dom.limits().limit)

    dom.listeners.append(check)
    sim, pages = Simulation(), 600

    async def writer(i: int) -> None:
        f = fs.open_path(f"/w{i}".encode(), os.O_RDWR | os.O_CREAT)
        await fs.setattr(f.ino, size=pages * PAGE, ctx=ROOT)
        proc = sim.spawn(f"writer{i}")
        addr = await proc.mmap(pages * PAGE, Prot.READ | Prot.WRITE, MapFlags.SHARED, f)
        for p in range(pages):
            assert await proc.store(addr + p * PAGE, b"%d" % i) == 1
        await proc.munmap(addr, pages * PAGE)
        await f.close()

    async with trio.open_nursery() as nursery:
        await nursery.start(fs.run_flusher)
        start = trio.current_time()
        async with trio.open_nursery() as writers:
            for i in range(4):
                writers.start_soon(writer, i)
        took = trio.current_time() - start
        nursery.cancel_scope.cancel()
    print(f"{policy}: peak over the limit {worst[0]}, {took:.1f} s, max {dom.max_dirty}")
    assert worst[0] <= 0
    assert dom.inflight == bdi.inflight == 0  # every reserved page dirtied or given back
    assert took > 1.0  # held: 2400 pages at 256 pages/s past what fits
    dom.check()
    for i in range(4):
        ino = fs.open_path(f"/w{i}".encode(), os.O_RDONLY).ino
        assert fs.file_data(ino).read((pages - 1) * PAGE, 1) == b"%d" % i


async def test_a_failed_page_mkwrite_gives_back_its_room() -> None:
    # placement before, a full filesystem: page_mkwrite reserves room for the page under
    # the dirty limit, then SIGBUS (no block): the room goes back at once, not held
    from sim_mmu import SIGBUS

    fs = Filesystem(capacity_blocks=64, policy="reserve",
                    dirty=DirtyConfig(placement="before"))  # fmt: skip
    assert fs.dirty is not None
    dom = fs.dirty.domain
    f = fs.open_path(b"/f", os.O_RDWR | os.O_CREAT)
    await fs.setattr(f.ino, size=128 * PAGE, ctx=ROOT)
    proc = Simulation().spawn()
    proc.sigaction(SIGBUS, lambda info: False)  # abandon the store (siglongjmp)
    addr = await proc.mmap(128 * PAGE, Prot.READ | Prot.WRITE, MapFlags.SHARED, f)
    stored = 0
    for p in range(128):
        if await proc.store(addr + p * PAGE, b"s") == 1:
            stored += 1
            assert dom.inflight == 0  # the page is dirty: its room was used
            continue
        assert dom.inflight == 0  # SIGBUS: its room was given back
        break
    assert 0 < stored < 128
    assert dom.dirty == stored
    dom.check()
    await proc.munmap(addr, 128 * PAGE)
    await f.close()
