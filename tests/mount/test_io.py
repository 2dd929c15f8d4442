"""Data integrity through a real mount: mmap, concurrent writers, readdir while changing.

Writers are separate processes (the kernel serialises nothing for us here), the mapping
is a real mmap(MAP_SHARED) whose dirty pages the kernel writes back to the server, and
every check reads back through read(2).
"""

from __future__ import annotations

import mmap
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from .support import BLOCK, wait_until

pytestmark = pytest.mark.mount


def test_mmap_shared_store_reaches_the_server(workdir: Path) -> None:
    f = workdir / "mapped"
    fd = os.open(f, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.ftruncate(fd, 4 * BLOCK)  # a hole: no block yet
        assert os.fstat(fd).st_blocks == 0
        with mmap.mmap(fd, 4 * BLOCK, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE) as m:
            m[BLOCK + 10 : BLOCK + 15] = b"hello"
            m[3 * BLOCK] = 0x7A
            m.flush()  # msync(MS_SYNC): the kernel writes the dirty pages back to us
        # Drop the kernel's clean copies, so read(2) must fetch the pages from the server.
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        assert os.pread(fd, 5, BLOCK + 10) == b"hello"
        assert os.pread(fd, 1, 3 * BLOCK) == b"z"
        assert os.pread(fd, BLOCK, 0) == bytes(BLOCK)  # untouched page: still a hole
        assert os.fstat(fd).st_blocks == 2 * BLOCK // 512  # two pages got blocks
    finally:
        os.close(fd)
    # Another process sees it too.
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import os; print(open({str(f)!r},'rb').read()[{BLOCK + 10}:{BLOCK + 15}].decode())",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "hello"


def test_write_is_visible_in_an_existing_mapping(workdir: Path) -> None:
    f = workdir / "f"
    f.write_bytes(bytes(BLOCK))
    fd = os.open(f, os.O_RDWR)
    try:
        with mmap.mmap(fd, BLOCK, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE) as m:
            assert m[:4] == bytes(4)
            os.pwrite(fd, b"abcd", 0)
            assert m[:4] == b"abcd"
    finally:
        os.close(fd)


WRITER = textwrap.dedent(
    """
    import os, sys
    path, tag, start, count = sys.argv[1], sys.argv[2].encode(), int(sys.argv[3]), int(sys.argv[4])
    fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o644)
    while not os.path.exists(os.path.join(os.path.dirname(path), "go")):
        pass  # start together
    for i in range(start, start + count):
        block = (tag + b"%06d" % i) * (4096 // 8)
        assert os.pwrite(fd, block, i * 4096) == 4096
    os.close(fd)
    """
)


def _expected(tag: bytes, i: int) -> bytes:
    return (tag + b"%06d" % i) * (BLOCK // 8)


def test_two_processes_write_concurrently(workdir: Path) -> None:
    shared, a, b = workdir / "shared", workdir / "a", workdir / "b"
    jobs = [
        (shared, "AA", 0, 300),
        (shared, "BB", 300, 300),  # disjoint halves of one file
        (a, "CC", 0, 300),
        (b, "DD", 0, 300),  # a file each
    ]
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(p), tag, str(s), str(n)])
        for p, tag, s, n in jobs
    ]
    (workdir / "go").write_bytes(b"")
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    data = shared.read_bytes()
    assert len(data) == 600 * BLOCK
    for i in range(600):
        tag = b"AA" if i < 300 else b"BB"
        assert data[i * BLOCK : (i + 1) * BLOCK] == _expected(tag, i), f"block {i}"
    assert a.read_bytes() == b"".join(_expected(b"CC", i) for i in range(300))
    assert b.read_bytes() == b"".join(_expected(b"DD", i) for i in range(300))


def test_every_acknowledged_byte_reads_back(workdir: Path) -> None:
    f = workdir / "f"
    expected = bytearray()
    fd = os.open(f, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        offset = 0
        for size in (1, 4095, 4096, 4097, 100_000, 1 << 20, 7, 3 * BLOCK + 1):
            chunk = os.urandom(size)
            assert os.pwrite(fd, chunk, offset) == size
            expected += chunk
            offset += size
        patch = os.urandom(10_000)  # an overwrite across page boundaries
        os.pwrite(fd, patch, 5000)
        expected[5000:15000] = patch
    finally:
        os.close(fd)
    assert f.read_bytes() == bytes(expected)


CHURN = textwrap.dedent(
    """
    import os, sys
    d = sys.argv[1]
    i = 0
    while not os.path.exists(os.path.join(d, "stop")):
        p = os.path.join(d, "tmp%d" % (i % 50))
        if os.path.exists(p):
            os.unlink(p)
        else:
            open(p, "wb").close()
        i += 1
    """
)


def test_readdir_of_a_big_directory_while_it_changes(workdir: Path) -> None:
    stable = {f"stable{i:05d}" for i in range(1500)}
    for name in stable:
        (workdir / name).write_bytes(b"")
    churn = subprocess.Popen([sys.executable, "-c", CHURN, str(workdir)])
    try:
        wait_until(lambda: (workdir / "tmp0").exists(), "the churn started")
        for _ in range(5):
            names = os.listdir(workdir)
            # POSIX leaves names created or removed during the listing unspecified (one
            # re-created under a new cookie may even show twice); the others must each
            # appear exactly once.
            kept = [n for n in names if n in stable]
            assert len(kept) == len(set(kept)), "a name listed twice"
            assert set(kept) == stable, "a stable name went missing"
            assert all(n in stable or n.startswith("tmp") or n == "stop" for n in names)
    finally:
        (workdir / "stop").write_bytes(b"")
        churn.wait(timeout=60)
    assert churn.returncode == 0


def test_msync_of_a_large_mapping_gives_every_page_a_block(workdir: Path) -> None:
    size = 8 * 2**20
    f = workdir / "big"
    free_before = os.statvfs(workdir).f_bfree
    fd = os.open(f, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        os.ftruncate(fd, size)
        with mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE) as m:
            for i in range(0, size, BLOCK):
                m[i] = (i // BLOCK) % 251
            m.flush()
        assert os.fstat(fd).st_blocks == size // 512
        assert os.statvfs(workdir).f_bfree == free_before - size // BLOCK
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        data = os.pread(fd, size, 0)
        assert all(data[i] == (i // BLOCK) % 251 for i in range(0, size, BLOCK))
    finally:
        os.close(fd)
