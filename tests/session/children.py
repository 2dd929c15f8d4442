"""What the session tests run in a child process: in-process serving with simulated
processes, every look at the mount from a worker thread (`Mount.run_sync`).

Each function takes the mount point, runs its own trio loop, and returns plain data
for the test to assert on (so a failure shows the figures, with pytest's messages).
"""

from __future__ import annotations

import errno
import mmap
import os
from typing import Any

import trio

from fusefs import mountinfo
from fusefs.fs.core import Filesystem
from fusefs.fuse.mount import Mount, MountError, serving
from fusefs.scenario import showcase
from sim_mmu import SIGBUS, MapFlags, Process, Prot, SigInfo, Simulation

PAGE = 4096
RW = Prot.READ | Prot.WRITE


def _mounted(mountpoint: str) -> bool:
    """From /proc/self/mountinfo: never a system call on the mount (`mountpoint` is a
    real path, as the harness gives it)."""
    return mountinfo.find(mountpoint) is not None


# -- the serving context manager --------------------------------------------------------


def serve_and_check(mountpoint: str) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        fs = Filesystem(capacity_blocks=256)
        async with serving(fs, mountpoint) as m:
            inside = _mounted(mountpoint)
            st = await m.run_sync(os.statvfs, mountpoint)
            await m.run_sync(_write, m.path("f"), b"written through the mount")
            data = await m.run_sync(_read, m.path("f"))
            owner = await m.run_sync(lambda: os.stat(mountpoint).st_uid)
        return {
            "inside": inside,
            "blocks": st.f_blocks,
            "bsize": st.f_bsize,
            "data": data,
            "owner": owner,
            "after": _mounted(mountpoint),
            "fs_sees": fs.read(fs.open_path("/f", os.O_RDONLY).fh, 0, 100),
        }

    return trio.run(main)


class Boom(Exception):
    pass


def body_raises(mountpoint: str) -> dict[str, Any]:
    """The body raises with a file open on the mount; then mount again and read."""

    async def main() -> dict[str, Any]:
        fd = -1
        try:
            async with serving(Filesystem(capacity_blocks=64), mountpoint) as m:
                fd = await m.run_sync(os.open, m.path("open"), os.O_RDWR | os.O_CREAT, 0o644)
                await m.run_sync(os.write, fd, b"x")
                raise Boom("the body failed")
        except Boom:
            raised = True
        after = _mounted(mountpoint)
        stale = await trio.to_thread.run_sync(_stale_read, fd)
        async with serving(Filesystem(capacity_blocks=64), mountpoint) as m:
            again = await m.run_sync(os.listdir, mountpoint)
        return {
            "raised": raised,
            "after": after,
            "stale": stale,
            "again": again,
            "finally": _mounted(mountpoint),
        }

    return trio.run(main)


def cancelled_while_a_thread_waits(mountpoint: str) -> dict[str, Any]:
    """The body is cancelled while a worker thread is blocked in a write(2) that this
    loop cannot answer (its page is locked): the unmount must still complete."""

    async def main() -> dict[str, Any]:
        fs = Filesystem(capacity_blocks=64)
        with trio.move_on_after(0.5) as scope:
            async with serving(fs, mountpoint, stop_grace=0.2) as m:
                await m.run_sync(_write, m.path("f"), b"data")
                f = fs.open_path("/f")
                await f.data.mapping.pages[0].lock()  # a WRITE of page 0 waits for it
                await m.run_sync(_pwrite, m.path("f"), b"more", 0)  # never returns by itself
        return {"cancelled": scope.cancelled_caught, "after": _mounted(mountpoint)}

    return trio.run(main)


def mount_errors(mountpoint: str) -> dict[str, Any]:
    async def main() -> dict[str, Any]:
        messages = []
        for where in (os.path.join(mountpoint, "missing"), mountpoint):
            try:
                async with serving(Filesystem(capacity_blocks=8), where) as m:
                    if where == mountpoint:  # mounting on top of ourselves: refused
                        async with serving(Filesystem(capacity_blocks=8), where):
                            pass
                    await m.run_sync(os.listdir, where)
            except MountError as exc:
                messages.append(str(exc))
        return {"messages": messages, "after": _mounted(mountpoint)}

    return trio.run(main)


# -- coherence ---------------------------------------------------------------------------


async def _mapped(fs: Filesystem, m: Mount, pages: int) -> tuple[Process, int, Any, list[SigInfo]]:
    await m.run_sync(_sparse, m.path("f"), pages * PAGE)
    file = fs.open_path("/f")
    proc = Simulation().spawn()
    caught: list[SigInfo] = []
    proc.sigaction(SIGBUS, lambda info: caught.append(info) and False)
    addr = await proc.mmap(pages * PAGE, RW, MapFlags.SHARED, file)
    return proc, addr, file, caught


def store_then_read(mountpoint: str, policy: str, load_first: bool) -> dict[str, Any]:
    """A simulated store, then read(2), stat and a real mmap through the mount."""

    async def main() -> dict[str, Any]:
        fs = Filesystem(capacity_blocks=64, policy=policy)
        async with serving(fs, mountpoint) as m:
            proc, addr, file, _ = await _mapped(fs, m, 2)
            fd = await m.run_sync(os.open, m.path("f"), os.O_RDONLY)
            before = await m.run_sync(os.pread, fd, 8, PAGE)  # the kernel caches zeros
            kernel_map = await m.run_sync(mmap.mmap, fd, 2 * PAGE, mmap.MAP_SHARED, mmap.PROT_READ)
            mapped_before = await m.run_sync(_through_kernel, kernel_map, PAGE, 8)
            if load_first:
                await proc.load(addr + PAGE, 8)
            await proc.store(addr + PAGE, b"SIMSTORE")
            read = await m.run_sync(os.pread, fd, 8, PAGE)
            mapped = await m.run_sync(_through_kernel, kernel_map, PAGE, 8)
            await m.run_sync(kernel_map.close)
            await proc.store(addr + PAGE + 8, b"AGAIN")  # the PTE is writable: no fault
            read_again = await m.run_sync(os.pread, fd, 13, PAGE)
            await m.run_sync(os.close, fd)
            await proc.exit()
            await file.close()
        return {
            "before": before,
            "mapped_before": mapped_before,
            "read": read,
            "mapped": mapped,
            "read_again": read_again,
        }

    return trio.run(main)


def store_then_cat(mountpoint: str, policy: str) -> dict[str, bytes]:
    """Stores, each followed by `cat` in another process at once (no settle): the first
    cat leaves zeros in the kernel's page cache, the later ones must not be served them."""

    async def cat() -> bytes:
        done = await trio.run_process(
            ["dd", f"if={mountpoint}/f", "bs=8", "skip=512", "count=2", "status=none"],
            capture_stdout=True,
        )
        return done.stdout

    async def main() -> dict[str, bytes]:
        fs = Filesystem(capacity_blocks=64, policy=policy)
        async with serving(fs, mountpoint) as m:
            proc, addr, file, _ = await _mapped(fs, m, 2)
            before = await cat()
            await proc.store(addr + PAGE, b"SIMSTORE")  # faults: the page becomes writable
            first = await cat()
            await proc.store(addr + PAGE + 8, b"NO-FAULT")  # writable PTE: no fault at all
            second = await cat()
            await proc.exit()
            await file.close()
        return {"before": before, "first": first, "second": second}

    return trio.run(main)


def write_then_load(mountpoint: str, policy: str) -> dict[str, Any]:
    """write(2) through the mount, seen by a simulated process with the page mapped."""

    async def main() -> dict[str, Any]:
        fs = Filesystem(capacity_blocks=64, policy=policy)
        async with serving(fs, mountpoint) as m:
            proc, addr, file, _ = await _mapped(fs, m, 2)
            loaded = await proc.load(addr, 8)  # page 0 mapped (read-only PTE)
            await proc.store(addr + PAGE, b"mine")  # page 1 mapped writable
            faults = proc.sim.statistics()
            fd = await m.run_sync(os.open, m.path("f"), os.O_WRONLY)
            await m.run_sync(os.pwrite, fd, b"WRITE(2)", 0)
            await m.run_sync(os.pwrite, fd, b"kernel", PAGE + 4)
            await m.run_sync(os.close, fd)
            seen = await proc.load(addr, 8)
            seen_writable = await proc.load(addr + PAGE, 10)
            faults_after = proc.sim.statistics()
            await proc.exit()
            await file.close()
        return {
            "loaded": loaded,
            "seen": seen,
            "seen_writable": seen_writable,
            "no_new_faults": faults_after == faults,
        }

    return trio.run(main)


def showcase_outcomes(mountpoint: str) -> list[showcase.Outcome]:
    outcomes = trio.run(showcase.run_all)
    assert not _mounted(mountpoint)
    return outcomes


# -- in worker threads ---------------------------------------------------------------------


def _write(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _through_kernel(kernel_map: mmap.mmap, offset: int, length: int) -> bytes:
    """Bytes of a real mapping of a file on our mount, copied by the kernel.

    Never slice the mmap in Python: its page fault needs a READ that only the trio
    thread can answer, and slicing holds the GIL through the fault (a deadlock).
    write(2) from the mapping releases the GIL; the kernel takes the fault.
    """
    r, w = os.pipe()
    try:
        os.write(w, memoryview(kernel_map)[offset : offset + length])
        return os.read(r, length)
    finally:
        os.close(r)
        os.close(w)


def _stale_read(fd: int) -> str:
    """Read and close a file of a mount that is gone: the kernel answers, not a server."""
    try:
        os.pread(fd, 1, 0)
        return "readable"
    except OSError as exc:
        return errno.errorcode[exc.errno]
    finally:
        try:
            os.close(fd)
        except OSError:
            pass


def _pwrite(path: str, data: bytes, offset: int) -> int:
    fd = os.open(path, os.O_WRONLY)
    try:
        return os.pwrite(fd, data, offset)
    finally:
        os.close(fd)


def _sparse(path: str, size: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, size)
    finally:
        os.close(fd)
