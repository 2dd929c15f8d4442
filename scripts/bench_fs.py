#!/usr/bin/env python3
"""Benchmark mkwritefs through the kernel against the kernel's own tmpfs, in one run.

Both filesystems get the same workloads, from this process (the mkwritefs server runs in
its own background process, mounted with `mkwritefs mount` in a temporary directory and
unmounted in `finally`):

- sequential write: 64 MiB with 1 MiB write(2) calls, into a new file (close included);
- sequential read: the same file with 1 MiB read(2) calls. For mkwritefs the kernel's
  cached copy is dropped first (POSIX_FADV_DONTNEED), so every byte comes from the
  server; the warm figure (served by the kernel's page cache) is printed too;
- first-touch stores to a shared mapping: one store per page of a new sparse file
  mapped MAP_SHARED, each one a page fault the kernel handles (faults per second);
- small-file creates: create, write 1 KiB, close, per file (files per second).

`--store` instead compares mkwritefs in memory with mkwritefs on a store (`mkwritefs mkfs`,
`mount --store`, the store in `--store-dir`, default a temporary directory in /tmp), in
one run: sequential write of the same 64 MiB with a final fsync (the fsync is where the
store's commit happens), best of `--repeat` runs alternating between the two.

Prints each figure and the mkwritefs/tmpfs ratio; `--json` prints one object with
seq_write_ratio, seq_read_ratio, mmap_fault_ratio, creates_ratio and the raw figures.
Each figure is the best of `--repeat` runs (default 5), alternating between the two
filesystems run by run, to keep noise from other load out of the ratios.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from fusefs.fs import store

MIB = 1 << 20
PAGE = 4096
SEQ_BYTES = 64 * MIB
MMAP_BYTES = 32 * MIB
CREATE_FILES = 1000
CREATE_SIZE = 1024


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fusefs", *args], capture_output=True, text=True, check=False
    )


@contextmanager
def mkwritefs_mount(size: str = "512M") -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="bench-mkwritefs-") as tmp:
        mnt = Path(tmp) / "mnt"
        mnt.mkdir()
        result = _cli("mount", str(mnt), "--size", size)
        if result.returncode != 0:
            raise SystemExit(f"bench_fs: cannot mount mkwritefs: {result.stderr.strip()}")
        try:
            yield mnt
        finally:
            if _cli("umount", str(mnt)).returncode != 0:
                subprocess.run(["fusermount3", "-uz", str(mnt)], check=False)


@contextmanager
def store_mount(store_dir: str | None, size: str = "512M") -> Iterator[Path]:
    """mkwritefs on a fresh store made in `store_dir` (default: a temporary directory)."""
    with tempfile.TemporaryDirectory(prefix="bench-store-", dir=store_dir) as tmp:
        store = Path(tmp) / "store.db"
        made = _cli("mkfs", str(store), "--size", size)
        if made.returncode != 0:
            raise SystemExit(f"bench_fs: cannot make a store: {made.stderr.strip()}")
        with tempfile.TemporaryDirectory(prefix="bench-mkwritefs-") as mtmp:
            mnt = Path(mtmp) / "mnt"
            mnt.mkdir()
            result = _cli("mount", str(mnt), "--store", str(store))
            if result.returncode != 0:
                raise SystemExit(f"bench_fs: cannot mount the store: {result.stderr.strip()}")
            try:
                yield mnt
            finally:
                if _cli("umount", str(mnt)).returncode != 0:
                    subprocess.run(["fusermount3", "-uz", str(mnt)], check=False)


@contextmanager
def tmpfs_mount(size: str = "512M") -> Iterator[Path]:
    """A private tmpfs when root; otherwise a directory in /dev/shm (tmpfs too)."""
    if os.getuid() != 0:
        with tempfile.TemporaryDirectory(prefix="bench-tmpfs-", dir="/dev/shm") as tmp:
            yield Path(tmp)
        return
    with tempfile.TemporaryDirectory(prefix="bench-tmpfs-") as tmp:
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "bench", tmp], check=True)
        try:
            yield Path(tmp)
        finally:
            subprocess.run(["umount", tmp], check=False)


def seq_write(d: Path, *, fsync: bool = False) -> float:
    """MiB/s writing SEQ_BYTES with 1 MiB calls into a new file (then fsync, if asked)."""
    path = d / "seq"
    path.unlink(missing_ok=True)
    buf = os.urandom(MIB)
    start = time.perf_counter()
    fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
    for _ in range(SEQ_BYTES // MIB):
        if os.write(fd, buf) != MIB:
            raise SystemExit(f"bench_fs: short write on {d}")
    if fsync:
        os.fsync(fd)
    os.close(fd)
    return SEQ_BYTES / MIB / (time.perf_counter() - start)


def store_main(args: argparse.Namespace) -> int:
    """In memory against a store, sequential write with a final fsync, in one run."""
    best = {"memory": 0.0, "store": 0.0}
    with mkwritefs_mount() as memory, store_mount(args.store_dir) as stored:
        for _ in range(args.repeat):
            for name, d in (("memory", memory), ("store", stored)):
                best[name] = max(best[name], seq_write(d, fsync=True))
        sqlite_alone = max(sqlite_insert(args.store_dir) for _ in range(args.repeat))
    ratio = best["store"] / best["memory"]
    if args.json:
        print(
            json.dumps(
                {
                    "seq_write_fsync_ratio": ratio,
                    "memory_mib_s": best["memory"],
                    "store_mib_s": best["store"],
                    "sqlite_alone_mib_s": sqlite_alone,
                },
                indent=2,
            )
        )
        return 0
    print(f"{'':48} {'memory':>10} {'store':>10} {'ratio':>8}")
    print(
        f"{'sequential write + fsync, 1 MiB calls (MiB/s)':48} {best['memory']:10,.0f} "
        f"{best['store']:10,.0f} {ratio:8.1%}"
    )
    print(f"{'the same bytes as blobs, SQLite alone (MiB/s)':48} {'':10} {sqlite_alone:10,.0f}")
    return 0


def sqlite_insert(store_dir: str | None) -> float:
    """MiB/s of SQLite alone storing SEQ_BYTES as 4 KiB blobs in a fresh store's blocks
    table, one transaction, with the store's settings: the ceiling for a store's commit
    (no filesystem, no FUSE, no page cache)."""
    with tempfile.TemporaryDirectory(prefix="bench-sqlite-", dir=store_dir) as tmp:
        path = Path(tmp) / "store.db"
        made = _cli("mkfs", str(path), "--size", "512M")
        if made.returncode != 0:
            raise SystemExit(f"bench_fs: cannot make a store: {made.stderr.strip()}")
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute(f"PRAGMA cache_size=-{store.CACHE_KIB}")
            block = os.urandom(PAGE)
            rows = ((1000, i, block) for i in range(SEQ_BYTES // PAGE))
            start = time.perf_counter()
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO blocks VALUES(?, ?, ?)", rows)
            conn.execute("COMMIT")
            return SEQ_BYTES / MIB / (time.perf_counter() - start)
        finally:
            conn.close()


def seq_read(d: Path, *, cold: bool) -> float:
    """MiB/s reading the file seq_write made, with 1 MiB calls."""
    fd = os.open(d / "seq", os.O_RDONLY)
    try:
        if cold:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        total = 0
        start = time.perf_counter()
        while chunk := os.read(fd, MIB):
            total += len(chunk)
        elapsed = time.perf_counter() - start
    finally:
        os.close(fd)
    if total != SEQ_BYTES:
        raise SystemExit(f"bench_fs: read {total} bytes back, wrote {SEQ_BYTES}")
    return total / MIB / elapsed


def mmap_faults(d: Path) -> float:
    """First-touch stores per second into a new sparse file mapped MAP_SHARED."""
    path = d / "mapped"
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_TRUNC, 0o644)
    try:
        os.ftruncate(fd, MMAP_BYTES)
        with mmap.mmap(fd, MMAP_BYTES, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE) as m:
            pages = MMAP_BYTES // PAGE
            start = time.perf_counter()
            for i in range(pages):
                m[i * PAGE] = 1
            elapsed = time.perf_counter() - start
            m.flush()
    finally:
        os.close(fd)
    path.unlink()
    return pages / elapsed


def creates(d: Path) -> float:
    """Small files (create, write 1 KiB, close) per second, in a fresh directory."""
    sub = d / f"creates-{time.monotonic_ns()}"
    sub.mkdir()
    data = b"c" * CREATE_SIZE
    start = time.perf_counter()
    for i in range(CREATE_FILES):
        fd = os.open(sub / f"f{i}", os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644)
        os.write(fd, data)
        os.close(fd)
    elapsed = time.perf_counter() - start
    for i in range(CREATE_FILES):
        os.unlink(sub / f"f{i}")
    sub.rmdir()
    return CREATE_FILES / elapsed


def measure(ours: Path, tmpfs: Path, *, repeat: int) -> dict[str, dict[str, float]]:
    """Best of `repeat` runs of each workload, alternating between the two filesystems
    run by run, so a burst of load from elsewhere hits both sides alike."""
    workloads: dict[str, Callable[[Path, bool], float]] = {
        "seq_write_mib_s": lambda d, fuse: seq_write(d),
        "seq_read_mib_s": lambda d, fuse: seq_read(d, cold=fuse),
        "seq_read_warm_mib_s": lambda d, fuse: seq_read(d, cold=False),
        "mmap_faults_s": lambda d, fuse: mmap_faults(d),
        "creates_s": lambda d, fuse: creates(d),
    }
    best: dict[str, dict[str, float]] = {"mkwritefs": {}, "tmpfs": {}}
    for key, workload in workloads.items():
        if key == "mmap_faults_s":  # done with the sequential file
            for d in (ours, tmpfs):
                (d / "seq").unlink()
        for _ in range(repeat):
            for name, d, fuse in (("tmpfs", tmpfs, False), ("mkwritefs", ours, True)):
                best[name][key] = max(best[name].get(key, 0.0), workload(d, fuse))
    return best


ROWS = [
    ("seq_write", "seq_write_mib_s", "sequential write, 1 MiB calls (MiB/s)"),
    ("seq_read", "seq_read_mib_s", "sequential read, 1 MiB calls (MiB/s)"),
    ("seq_read_warm", "seq_read_warm_mib_s", "  same, from the kernel's page cache"),
    ("mmap_fault", "mmap_faults_s", "first-touch MAP_SHARED stores (faults/s)"),
    ("creates", "creates_s", "small-file creates (files/s)"),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--repeat", type=int, default=5, help="runs per figure (best counts)")
    parser.add_argument(
        "--store", action="store_true", help="compare mkwritefs in memory with mkwritefs on a store"
    )
    parser.add_argument(
        "--store-dir",
        metavar="DIR",
        help="where --store makes its store (default: a temporary directory)",
    )
    args = parser.parse_args(argv)
    if args.store:
        return store_main(args)
    with tmpfs_mount() as tmpfs_dir, mkwritefs_mount() as ours_dir:
        figures = measure(ours_dir, tmpfs_dir, repeat=args.repeat)
    ours, tmpfs = figures["mkwritefs"], figures["tmpfs"]
    ratios = {f"{name}_ratio": ours[key] / tmpfs[key] for name, key, _ in ROWS}
    if args.json:
        print(json.dumps({**ratios, "mkwritefs": ours, "tmpfs": tmpfs}, indent=2))
        return 0
    print(f"{'':44} {'mkwritefs':>12} {'tmpfs':>12} {'ratio':>8}")
    for name, key, label in ROWS:
        print(f"{label:44} {ours[key]:12,.0f} {tmpfs[key]:12,.0f} {ratios[name + '_ratio']:8.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
