"""Faults: a failing disk, a slow one, and a server killed in the middle of a request.

The mount's owner makes the disk fail (`user.mkwritefs.inject_writeback_error=EIO[:N]`:
the next N page writes of each file fail) or slow (`writeback_latency`, seconds per batch
of writeback I/O). What Linux promises, and what is checked through a real mount:

- a failed writeback reaches fsync(2) and msync(2) as EIO, once per error per open file
  (errseq): every file open at the time sees it once, a later fsync returns 0; a file
  opened after the error sees it only if nobody has yet (ERRSEQ_SEEN);
- the mount never goes stale: reads, writes, listings and statfs go on, and once the
  disk is healthy again a rewrite and fsync succeed; what fsync acknowledged is never
  lost, and the counters (writeback_errors, lost_bytes) say what happened;
- a slow writeback in flight holds up only the caller waiting for it;
- a server killed with SIGKILL while a request waits in it leaves a dead mount
  ("Transport endpoint is not connected"): the waiting call fails (never a false
  success), `mkwritefs umount DIR` clears the mount even with a file still open on it,
  and a new mount on the same directory works.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from fusefs import mountinfo
from fusefs.fs.core import ROOT_INO, Ctx, Filesystem, FsError
from tests.mount.conftest import Server, start_server, stop_server
from tests.mount.support import BLOCK, cli, raises_errno, wait_until

from .conftest import check_no_bug_logged, serve_module

pytestmark = pytest.mark.mount
PREFIX = "user.mkwritefs."
WATCHDOG = 60  # seconds: a child that has not finished by then is hung (not a timing check)


@pytest.fixture(scope="module")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serve_module(tmp_path_factory, "faults", size="4M")


HEALTHY = {"inject_writeback_error": "none", "writeback_latency": "0",
           "writeback_interval": "5", "dirty_expire": "30"}  # fmt: skip


@pytest.fixture
def server(shared_server: Server) -> Iterator[Server]:
    """The module's mount, with a healthy disk again after each test (its own files)."""
    try:
        yield shared_server
    finally:
        for key, value in HEALTHY.items():
            setting(shared_server.mountpoint, key, value)
        assert shared_server.proc.poll() is None, shared_server.log()


def setting(mnt: str, key: str, value: str | None = None) -> str:
    if value is not None:
        os.setxattr(mnt, PREFIX + key, value.encode())
    return os.getxattr(mnt, PREFIX + key).decode()


def figure(path: str | Path, key: str) -> int:
    return int(os.getxattr(path, PREFIX + key))


def fsync_errno(fd: int) -> int:
    try:
        os.fsync(fd)
    except OSError as exc:
        return exc.errno
    return 0


def space_adds_up(mnt: str) -> None:
    vfs = os.statvfs(mnt)
    free, alloc, res = (figure(mnt, k) for k in ("free_blocks", "allocated_blocks",
                                                  "reserved_blocks"))  # fmt: skip
    assert free == vfs.f_bfree
    assert free + alloc + res == figure(mnt, "capacity_blocks") == vfs.f_blocks


def test_eio_at_fsync_once_per_open_file(server: Server) -> None:
    mnt = server.mountpoint
    path = os.path.join(mnt, "f")
    fd1 = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    fd2 = os.open(path, os.O_RDWR)
    try:
        os.pwrite(fd1, b"A" * 3 * BLOCK, 0)
        assert fsync_errno(fd1) == 0  # acknowledged: on the disk
        errors = figure(mnt, "writeback_errors")

        assert setting(mnt, "inject_writeback_error", "EIO:1") == "EIO:1"
        os.pwrite(fd1, b"B" * BLOCK, BLOCK)
        assert fsync_errno(fd1) == errno.EIO
        assert fsync_errno(fd1) == 0  # reported once to this file
        assert fsync_errno(fd2) == errno.EIO  # and once to every other file open then
        assert fsync_errno(fd2) == 0
        fd3 = os.open(path, os.O_RDWR)  # opened after the error was seen: nothing
        assert fsync_errno(fd3) == 0
        os.close(fd3)
        assert figure(mnt, "writeback_errors") == errors + 1
        assert figure(path, "writeback_errors") == 1
        assert figure(path, "lost_bytes") == 0

        # The mount goes on: the data written is readable, a healthy disk takes a rewrite.
        assert os.pread(fd2, 3 * BLOCK, 0) == b"A" * BLOCK + b"B" * BLOCK + b"A" * BLOCK
        assert setting(mnt, "inject_writeback_error", "none") == "none"
        os.pwrite(fd1, b"C" * BLOCK, BLOCK)
        assert fsync_errno(fd1) == 0
        assert fsync_errno(fd2) == 0
    finally:
        os.close(fd1)
        os.close(fd2)
    with open(path, "rb") as f:
        assert f.read() == b"A" * BLOCK + b"C" * BLOCK + b"A" * BLOCK
    assert "f" in os.listdir(mnt)
    space_adds_up(mnt)


def test_unseen_error_reaches_the_next_opener(server: Server) -> None:
    """The writer closed without fsync; writeback failed later: the next fsync of the file,
    from a new open, reports it (Linux 4.16+), and only once."""
    mnt = server.mountpoint
    path = os.path.join(mnt, "closed")
    setting(mnt, "inject_writeback_error", "EIO:2")
    with open(path, "wb") as f:
        f.write(b"x" * 2 * BLOCK)
    setting(mnt, "dirty_expire", "0")  # the flusher writes it back, and fails, at once
    setting(mnt, "writeback_interval", "0.05")
    wait_until(lambda: figure(path, "writeback_errors") == 2, "the flusher's failed writes")
    setting(mnt, "writeback_interval", "5")
    fd = os.open(path, os.O_RDONLY)
    try:
        assert fsync_errno(fd) == errno.EIO
        assert fsync_errno(fd) == 0
    finally:
        os.close(fd)
    fd = os.open(path, os.O_RDONLY)  # seen now: a later opener hears nothing
    try:
        assert fsync_errno(fd) == 0
    finally:
        os.close(fd)
    setting(mnt, "inject_writeback_error", "none")


def test_unseen_error_in_the_core() -> None:
    """The same rule without a mount: errseq sampling of Filesystem.open."""

    async def main() -> list[int]:
        fs = Filesystem(capacity_blocks=16)
        ctx = Ctx(0, 0, 1)
        fh, attr = fs.create(ROOT_INO, b"f", 0o644, os.O_RDWR, ctx)
        await fs.write(fh, 0, b"data")
        await fs.release(fh)
        fs.inject_writeback_error(errno.EIO, 1)
        await fs.writeback(attr.ino)  # the flusher: nobody is told
        seen = []
        for _ in range(2):
            fh = fs.open(attr.ino, os.O_RDONLY, ctx)
            for _ in range(2):
                try:
                    await fs.fsync(fh, False)
                    seen.append(0)
                except FsError as exc:
                    seen.append(exc.errno)
            await fs.release(fh)
        fs.check()
        return seen

    assert trio.run(main) == [errno.EIO, 0, 0, 0]


MSYNC_CHILD = textwrap.dedent("""
    import mmap, os, sys
    path, pages = sys.argv[1], 3
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    os.ftruncate(fd, pages * 4096)
    m = mmap.mmap(fd, pages * 4096, mmap.MAP_SHARED)
    m[:] = b"m" * (pages * 4096)
    def msync():
        try:
            m.flush()
            return "ok"
        except OSError as exc:
            return os.strerror(exc.errno)
    first = msync()
    print(first, flush=True)
    sys.stdin.readline()  # the test makes the disk fail
    m[4096:8192] = b"n" * 4096
    print(msync(), msync(), flush=True)
    sys.stdin.readline()  # the test heals it
    m[8192:8200] = b"healthy!"
    print(msync(), flush=True)
    m.close()
    os.close(fd)
""")


def test_eio_at_msync_of_a_real_mapping(server: Server) -> None:
    """A real process stores through mmap(MAP_SHARED); its msync(MS_SYNC) gets EIO once."""
    mnt = server.mountpoint
    path = os.path.join(mnt, "mapped")
    with subprocess.Popen([sys.executable, "-c", MSYNC_CHILD, path], stdin=subprocess.PIPE,
                          stdout=subprocess.PIPE, text=True) as child:  # fmt: skip
        _msync_story(mnt, child)
    with open(path, "rb") as f:
        assert f.read() == b"m" * BLOCK + b"n" * BLOCK + b"healthy!" + b"m" * (BLOCK - 8)
    assert figure(path, "writeback_errors") == 1
    space_adds_up(mnt)


def _msync_story(mnt: str, child: subprocess.Popen[str]) -> None:
    try:
        assert child.stdout is not None
        assert child.stdin is not None
        assert child.stdout.readline().split() == ["ok"]
        setting(mnt, "inject_writeback_error", "EIO:1")
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().split() == ["Input/output", "error", "ok"]
        setting(mnt, "inject_writeback_error", "none")
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().split() == ["ok"]
        assert child.wait(timeout=WATCHDOG) == 0
    finally:
        child.kill()


def test_slow_disk_fsync_completes_and_keeps_the_data(server: Server) -> None:
    mnt = server.mountpoint
    assert setting(mnt, "writeback_latency", "0.3") == "0.3"
    path = os.path.join(mnt, "slow")
    with open(path, "wb") as f:
        f.write(b"s" * 5 * BLOCK)
        os.fsync(f.fileno())  # waits for the slow I/O, then succeeds
    setting(mnt, "writeback_latency", "0")
    with open(path, "rb") as f:
        assert f.read() == b"s" * 5 * BLOCK
    assert figure(path, "writeback_errors") == 0
    assert figure(path, "dirty_pages") == 0
    space_adds_up(mnt)


# -- a server killed mid-request -------------------------------------------------------------

WAITER = textwrap.dedent("""
    import os, sys
    fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
    os.write(fd, b"w" * 8192)
    print("fsync", flush=True)
    try:
        os.fsync(fd)
        print("0", flush=True)
    except OSError as exc:
        print(exc.errno, flush=True)
    sys.stdin.readline()  # keep the file open until the test says so
    try:
        os.close(fd)
    except OSError:
        pass
""")

BYSTANDER = textwrap.dedent("""
    import os, sys
    mnt = sys.argv[1]
    os.statvfs(mnt)
    names = os.listdir(mnt)
    with open(os.path.join(mnt, "other"), "wb") as f:
        f.write(b"o" * 10000)
    with open(os.path.join(mnt, "other"), "rb") as f:
        assert f.read() == b"o" * 10000
    os.getxattr(mnt, "user.mkwritefs.free_blocks")
    print(sorted(names))
""")


def _waiting_requests(mnt: str) -> int:
    """Requests the kernel has sent to the server and not had answered (fusectl)."""
    entry = mountinfo.find(mnt)
    assert entry is not None
    path = f"/sys/fs/fuse/connections/{entry.device.split(':')[1]}/waiting"
    with open(path) as f:
        return int(f.read())


def test_server_killed_mid_request_umount_clears_it(tmp_path: Path) -> None:
    if not os.path.isdir("/sys/fs/fuse/connections") or not os.listdir("/sys/fs/fuse/connections"):
        pytest.skip("needs fusectl (/sys/fs/fuse/connections) to see a request in flight")
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    mnt = os.path.realpath(mountpoint)
    server = start_server(mnt, size="4M")
    try:
        setting(mnt, "writeback_latency", "600")  # a disk that takes ten minutes
        with subprocess.Popen([sys.executable, "-c", WAITER, os.path.join(mnt, "f")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True) as waiter:  # fmt: skip
            _kill_mid_request(server, mnt, waiter)
    finally:
        stop_server(server)

    again = start_server(mnt, size="1M")  # the same directory mounts afresh
    try:
        assert os.listdir(mnt) == []
        Path(mnt, "new").write_bytes(b"works")
        assert Path(mnt, "new").read_bytes() == b"works"
        assert figure(mnt, "writeback_latency") == 0
        check_no_bug_logged(again)
    finally:
        stop_server(again)
    assert mountinfo.find(mnt) is None


def _kill_mid_request(server: Server, mnt: str, waiter: subprocess.Popen[str]) -> None:
    try:
        assert waiter.stdout is not None
        assert waiter.stdin is not None
        assert waiter.stdout.readline() == "fsync\n"
        wait_until(lambda: _waiting_requests(mnt) >= 1, "the FSYNC in flight")
        # One slow request holds up only its caller: the rest of the mount answers.
        bystander = subprocess.run([sys.executable, "-c", BYSTANDER, mnt], capture_output=True,
                                   text=True, timeout=WATCHDOG, check=False)  # fmt: skip
        assert bystander.returncode == 0, bystander.stderr
        assert bystander.stdout.strip() == "['f']"
        assert waiter.poll() is None  # still waiting for its fsync

        check_no_bug_logged(server)
        os.kill(server.proc.pid, signal.SIGKILL)  # the server dies with the FSYNC in it
        server.proc.wait(timeout=WATCHDOG)
        answer = int(waiter.stdout.readline())
        assert answer in (errno.ENOTCONN, errno.ECONNABORTED), os.strerror(answer)
        with raises_errno(errno.ENOTCONN):
            os.statvfs(mnt)

        # The file is still open in the waiter: umount clears the dead mount regardless.
        result = cli("umount", mnt)
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        assert mountinfo.find(mnt) is None
        waiter.stdin.write("close\n")
        waiter.stdin.flush()
        assert waiter.wait(timeout=WATCHDOG) == 0
    finally:
        waiter.kill()
