#!/usr/bin/env python3
"""Soak a real mkwritefs mount: real workloads in a loop for a long time (default an
hour), the server's memory sampled all along.

Mounts a new filesystem with the public CLI (`mkwritefs mount DIR --size SIZE
--foreground`, its own process) in a temporary directory and loops over the workloads of
fusefs.probe.workloads, in a seeded random order: fio with verification (mmap and psync
engines), stress-ng's filesystem and mmap stressors, random xfs_io scripts checked
against a model (mmap stores, msync, falloc, punch, pread), a git clone/checkout/fsck, plain
writes/reads/deletes, and now and then a run far bigger than the free space (ENOSPC).
After each workload its files are deleted and the space figures are checked (statfs,
the root's user.mkwritefs.* figures, the files' own, the server's fsck).

The server's VmRSS and VmHWM (/proc/PID/status) are sampled every few seconds. The RSS
right after a workload's files are deleted is the baseline; once the first full round
is done (the warm-up), its slope must stay flat. Prints a progress line every ~30 s and
a summary at the end: operations, errors by kind, bytes verified, peak server memory,
RSS at warm-up and at the end and the slope; `--json` prints the summary as one object.
Unmounts in `finally`, also on Ctrl-C and SIGTERM. Exit status 0 when no error other
than ENOSPC/SIGBUS happened and memory stayed flat, 1 otherwise, 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from fusefs.probe import workloads

ROOT = Path(__file__).resolve().parent.parent
MKWRITEFS = str(ROOT / ".venv" / "bin" / "mkwritefs")
MIB = 1 << 20
# Memory is flat when the baseline RSS at the end exceeds the warm-up's by no more than
# this (or 5 % of it, whichever is larger).
FLAT_SLACK = 16 * MIB


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="scripts/soak",
        description="Mount a mkwritefs and run real workloads on it in a loop, sampling the"
        " server's memory; unmount at the end.",
    )
    parser.add_argument(
        "--duration",
        type=_positive,
        default=3600,
        metavar="SECONDS",
        help="how long to run (default 3600)",
    )
    parser.add_argument(
        "--size", default="512M", help="the mount's capacity, as for mkwritefs mount (default 512M)"
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the workload order")
    parser.add_argument(
        "--sample",
        type=_positive,
        default=5,
        metavar="SECONDS",
        help="memory sampling interval (default 5)",
    )
    parser.add_argument(
        "--progress",
        type=_positive,
        default=30,
        metavar="SECONDS",
        help="seconds between progress lines (default 30)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    return parser.parse_args(argv)


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


_PROGRESS = sys.stdout


def say(line: str) -> None:
    """A progress line: on stdout, or on stderr when stdout is for the JSON summary."""
    print(line, file=_PROGRESS, flush=True)


class Stop(Exception):
    """SIGTERM: end the soak as Ctrl-C would."""


class Memory:
    """Samples of the server's VmRSS and VmHWM, from a thread (never touches the mount)."""

    def __init__(self, pid: int, interval: float) -> None:
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self.baseline: list[tuple[float, int]] = []  # RSS right after files were deleted
        self.hwm = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def read(self) -> tuple[int, int]:
        rss = hwm = 0
        try:
            with open(f"/proc/{self.pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        rss = int(line.split()[1]) * 1024
                    elif line.startswith("VmHWM:"):
                        hwm = int(line.split()[1]) * 1024
        except OSError:
            pass
        return rss, hwm

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def sample(self) -> int:
        rss, hwm = self.read()
        if rss:
            self.samples.append((time.monotonic(), rss))
            self.hwm = max(self.hwm, hwm)
        return rss

    def mark_baseline(self) -> None:
        rss = self.sample()
        if rss:
            self.baseline.append((time.monotonic(), rss))


def slope(points: list[tuple[float, int]]) -> float:
    """Least-squares slope in bytes per hour (0 with fewer than two points)."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    var = sum((t - mx) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    return sum((t - mx) * (v - my) for t, v in points) / var * 3600


class Soak:
    def __init__(
        self, args: argparse.Namespace, mountpoint: str, repo: str, capacity: int, memory: Memory
    ) -> None:
        self.args = args
        self.mnt = mountpoint
        self.work = os.path.join(mountpoint, "work")
        self.repo = repo
        self.capacity = capacity
        self.memory = memory
        self.rng = random.Random(args.seed)
        self.total = workloads.Outcome("soak")
        self.runs: Counter[str] = Counter()
        self.space_checks = 0
        self.rounds = 0
        self.warm_at: float | None = None

    def workloads(self) -> list[tuple[str, object]]:
        chunk = max(1, self.capacity // 16 // MIB)  # MiB per fio job: a quarter, 4 jobs
        seed = self.rng.randrange(1 << 30)
        return [
            (
                "fio mmap randwrite",
                lambda: workloads.fio(
                    self.work,
                    name="mr",
                    engine="mmap",
                    rw="randwrite",
                    size=f"{chunk}M",
                    numjobs=4,
                    sparse=True,
                    fsync=32,
                    timeout=900,
                ),
            ),
            (
                "fio mmap write",
                lambda: workloads.fio(
                    self.work,
                    name="mw",
                    engine="mmap",
                    rw="write",
                    size=f"{chunk}M",
                    numjobs=2,
                    timeout=900,
                ),
            ),
            (
                "fio psync randrw",
                lambda: workloads.fio(
                    self.work,
                    name="pr",
                    engine="psync",
                    rw="randrw",
                    size=f"{chunk}M",
                    numjobs=4,
                    timeout=900,
                ),
            ),
            (
                "fio psync write",
                lambda: workloads.fio(
                    self.work,
                    name="pw",
                    engine="psync",
                    rw="write",
                    size=f"{chunk}M",
                    numjobs=2,
                    fsync=64,
                    timeout=900,
                ),
            ),
            (
                "stress-ng",
                lambda: workloads.stress_ng(
                    self.work, stressors=tuple(workloads.STRESSORS), seconds=15, scale=2
                ),
            ),
            (
                "xfs_io",
                lambda: workloads.xfs_io_script(
                    self.work, seed=seed, max_size=min(16 * MIB, self.capacity // 8), steps=80
                ),
            ),
            ("git", lambda: workloads.git_workload(self.work, self.repo)),
            (
                "plain io",
                lambda: workloads.plain_io(
                    self.work, seed=seed, files=32, max_file=max(4096, self.capacity // 64)
                ),
            ),
            (
                "ENOSPC fio psync",
                lambda: workloads.fio(
                    self.work,
                    name="full",
                    engine="psync",
                    rw="write",
                    size=f"{self.capacity // MIB}M",
                    numjobs=2,
                    enospc=True,
                    timeout=900,
                ),
            ),
            (
                "ENOSPC fio mmap",
                lambda: workloads.fio(
                    self.work,
                    name="fullm",
                    engine="mmap",
                    rw="write",
                    size=f"{self.capacity // MIB}M",
                    numjobs=2,
                    sparse=True,
                    fsync=64,
                    enospc=True,
                    timeout=900,
                ),
            ),
        ]

    def run(self, deadline: float) -> None:
        next_progress = time.monotonic() + self.args.progress
        start = time.monotonic()
        while time.monotonic() < deadline:
            jobs = self.workloads()
            self.rng.shuffle(jobs)
            for name, job in jobs:
                if time.monotonic() >= deadline:
                    return
                os.makedirs(self.work, exist_ok=True)
                try:
                    out = job()  # type: ignore[operator]
                except OSError as exc:  # e.g. EIO from a read the driver did itself
                    out = workloads.Outcome(name)
                    out.error(workloads.errno_kind(exc.errno or 0), f"{name}: {exc}")
                self.runs[name] += 1
                self.total.merge(out)
                if out.bad(workloads.CLEAN_KINDS):
                    say(f"soak: {out}")
                self.check_space()
                if time.monotonic() >= next_progress:
                    self.progress(start)
                    next_progress = time.monotonic() + self.args.progress
            self.rounds += 1
            if self.warm_at is None and self.memory.baseline:  # warm: a round is done
                self.warm_at = self.memory.baseline[-1][0]

    def check_space(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)
        _, problems = workloads.settled_space_report(self.mnt)
        self.space_checks += 1
        for problem in problems:
            self.total.error("space", problem)
            say(f"soak: space: {problem}")
        self.memory.mark_baseline()

    def progress(self, start: float) -> None:
        rss, _ = self.memory.read()
        errors = ", ".join(f"{k} {n}" for k, n in sorted(self.total.errors.items())) or "none"
        say(
            f"soak: {time.monotonic() - start:6.0f} s  round {self.rounds + 1}  "
            f"{self.total.ops} ops  {self.total.bytes_verified / MIB:.0f} MiB verified  "
            f"errors: {errors}  server RSS {rss / MIB:.0f} MiB (peak "
            f"{self.memory.hwm / MIB:.0f})"
        )

    def summary(self, elapsed: float, interrupted: bool) -> dict:
        base = self.memory.baseline
        if self.warm_at is not None:
            warm = [(t, v) for t, v in base if t >= self.warm_at]
        else:  # shorter than a round: the second half of the baselines
            warm = base[len(base) // 2 :]
        warm_rss = warm[0][1] if warm else 0
        end_rss = base[-1][1] if base else 0
        flat = end_rss - warm_rss <= max(FLAT_SLACK, warm_rss // 20)
        bad = self.total.bad(workloads.CLEAN_KINDS)
        return {
            "duration_s": round(elapsed, 1),
            "interrupted": interrupted,
            "capacity_bytes": self.capacity,
            "rounds": self.rounds,
            "workload_runs": dict(self.runs),
            "operations": self.total.ops,
            "bytes_verified": self.total.bytes_verified,
            "errors": dict(self.total.errors),
            "bad_errors": bad,
            "error_details": self.total.details,
            "space_checks": self.space_checks,
            "peak_rss_bytes": self.memory.hwm,
            "rss_warm_bytes": warm_rss,
            "rss_end_bytes": end_rss,
            "rss_slope_bytes_per_hour": round(slope(warm)),
            "memory_flat": flat,
            "ok": not bad and flat,
        }


def print_summary(s: dict) -> None:
    errors = ", ".join(f"{k} {n}" for k, n in sorted(s["errors"].items())) or "none"
    print(
        f"soak: {s['duration_s']:.0f} s{' (interrupted)' if s['interrupted'] else ''}, "
        f"{s['rounds']} rounds, {sum(s['workload_runs'].values())} workload runs, "
        f"{s['space_checks']} space checks"
    )
    for name, n in sorted(s["workload_runs"].items()):
        print(f"  {name:22} {n}")
    print(f"  operations             {s['operations']}")
    print(f"  bytes verified         {s['bytes_verified']} ({s['bytes_verified'] / MIB:.0f} MiB)")
    print(f"  errors by kind         {errors}")
    for detail in s["error_details"][:10]:
        print(f"    {detail}")
    print(f"  peak server memory     {s['peak_rss_bytes'] / MIB:.1f} MiB (VmHWM)")
    print(
        f"  server RSS warm / end  {s['rss_warm_bytes'] / MIB:.1f} / "
        f"{s['rss_end_bytes'] / MIB:.1f} MiB (after files deleted)"
    )
    print(
        f"  RSS slope after warm-up {s['rss_slope_bytes_per_hour'] / MIB:+.2f} MiB/hour"
        f" ({'flat' if s['memory_flat'] else 'GROWING'})"
    )
    print(f"soak: {'ok' if s['ok'] else 'FAILED'}")


def mount(mountpoint: str, size: str, log: str) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [MKWRITEFS, "mount", mountpoint, "--size", size, "--foreground"],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )
    deadline = time.monotonic() + 30
    while not os.path.ismount(mountpoint):
        if proc.poll() is not None or time.monotonic() > deadline:
            return proc
        time.sleep(0.05)
    return proc


def unmount(mountpoint: str, proc: subprocess.Popen[bytes]) -> None:
    """`mkwritefs umount`, then fusermount3 -uz, then end the server: never leave a mount."""
    try:
        if os.path.ismount(mountpoint) or proc.poll() is None:
            subprocess.run(
                [MKWRITEFS, "umount", mountpoint], capture_output=True, timeout=60, check=False
            )
    except subprocess.TimeoutExpired:
        pass
    finally:
        with open("/proc/mounts") as f:
            if f" {mountpoint} " in f.read():
                subprocess.run(["fusermount3", "-uz", mountpoint], capture_output=True, check=False)
        for stop in (None, proc.terminate, proc.kill):
            if stop is not None:
                stop()
            try:
                proc.wait(timeout=15)
                break
            except subprocess.TimeoutExpired:
                continue


def main(argv: list[str]) -> int:
    global _PROGRESS
    args = parse_args(argv)
    _PROGRESS = sys.stderr if args.json else sys.stdout
    try:
        workloads.require_tools()
    except workloads.ToolMissing as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return 2

    def terminate(signum: int, frame: object) -> None:
        raise Stop

    signal.signal(signal.SIGTERM, terminate)
    tmp = tempfile.mkdtemp(prefix="mkwritefs-soak-")
    mountpoint = os.path.join(tmp, "mnt")
    os.mkdir(mountpoint)
    log = os.path.join(tmp, "server.log")
    proc = mount(mountpoint, args.size, log)
    interrupted = False
    try:
        if not os.path.ismount(mountpoint):
            text = Path(log).read_text(errors="replace").strip().splitlines()
            print(f"soak: the mount failed: {text[-1] if text else 'no message'}", file=sys.stderr)
            return 2 if proc.poll() == 2 else 1
        capacity = int(os.getxattr(mountpoint, "user.mkwritefs.capacity_blocks")) * 4096
        repo = os.path.join(tmp, "repo")
        workloads.make_git_repo(repo, seed=args.seed, commits=12, files=120, max_file=64 * 1024)
        memory = Memory(proc.pid, args.sample)
        memory.start()
        memory.mark_baseline()
        soak = Soak(args, mountpoint, repo, capacity, memory)
        say(
            f"soak: {capacity // MIB} MiB mounted on {mountpoint} (server pid {proc.pid}),"
            f" {args.duration:.0f} s"
        )
        start = time.monotonic()
        try:
            soak.run(start + args.duration)
        except (KeyboardInterrupt, Stop):
            interrupted = True
            say("soak: interrupted, unmounting")
        finally:
            memory.stop()
        summary = soak.summary(time.monotonic() - start, interrupted)
        if proc.poll() is not None:
            summary["errors"]["server died"] = 1
            summary["bad_errors"]["server died"] = 1
            summary["ok"] = False
        if args.json:
            print(json.dumps(summary, indent=2))
        else:
            print_summary(summary)
        return 0 if summary["ok"] else 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        unmount(mountpoint, proc)
        with open("/proc/mounts") as f:
            if f" {mountpoint} " not in f.read():
                shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:  # Ctrl-C before the loop began; unmounted in finally
        sys.exit(130)
