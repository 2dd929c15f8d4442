"""Real workloads against a directory on a mounted mkwritefs, and what they found.

Each driver runs real tools (or plain system calls) in that directory and returns an
:class:`Outcome`: operations done, bytes whose contents were checked, and errors by kind.
Nothing here touches the filesystem's objects: everything goes through the kernel, so
the same drivers serve the tests (tests/workloads) and the soak (scripts/soak).

- :func:`fio` - fio with data verification (crc32c headers in every block), the ``mmap``
  or ``psync`` engine; after an ENOSPC the acknowledged prefix of each file (what
  write(2) returned, or what a successful msync covered) is verified again from the
  server with ``fio --verify_only``, the kernel's cached copy dropped first.
- :func:`stress_ng` - stress-ng's filesystem and mmap stressors with ``--verify``,
  limited to the directory (``--temp-path``).
- :func:`xfs_io_script` - a seeded random script of truncate, pwrite, falloc (also
  ``-k``), fpunch, mmap/mwrite/msync/munmap and fsync steps, checked against a
  model: every ``pread -v`` dump along the way, and the whole file at the end.
- :func:`xfs_io_enospc` - the same steps on a filesystem too small for them.
- :func:`git_workload` - a small repository made locally, cloned onto the mount, checked
  out back and forth, ``git fsck --full --strict``, every file compared with the source.
- :func:`plain_io` - write/read/delete of files with random contents, checksummed.

Error kinds: ``ENOSPC`` and ``SIGBUS`` are the clean ways to run out of space; anything
else (``EIO``, ``verify`` - a wrong byte, ``hang`` - a tool past its time limit, ...) is
a failure. :func:`space_report` reads statfs and the root's ``user.mkwritefs.*``
figures and says where they disagree.

A limitation of FUSE that the drivers respect: the kernel never asks a FUSE server
before a page of a shared mapping becomes writable, so a store through a real ``mmap``
into a hole of a full mount is accepted, and the error surfaces at ``msync``/``fsync``
(ENOSPC) with that page's data lost. A store is acknowledged only by a successful
msync; only acknowledged data is checked. Nor does the mount do O_DIRECT
(``direct_io`` is never set): the drivers use buffered I/O (fio ``direct=0``).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fusefs.constants import PAGE_SIZE

PAGE = PAGE_SIZE
CLEAN_KINDS = frozenset({"ENOSPC", "SIGBUS"})
TOOLS = ("fio", "stress-ng", "xfs_io", "git", "strace")
SPACE_NAMES = ("capacity_blocks", "free_blocks", "reserved_blocks", "allocated_blocks")


class ToolMissing(RuntimeError):
    """A workload's tool is not installed (scripts/setup installs them all)."""


def require_tools(*names: str) -> None:
    missing = [n for n in names or TOOLS if shutil.which(n) is None]
    if missing:
        raise ToolMissing(f"missing {', '.join(missing)}: run scripts/setup, which installs them")


@dataclass
class Outcome:
    """What one workload run did and found."""

    name: str
    ops: int = 0
    bytes_verified: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    details: list[str] = field(default_factory=list)

    def error(self, kind: str, detail: str) -> None:
        self.errors[kind] += 1
        if len(self.details) < 20:
            self.details.append(f"{kind}: {detail}")

    def bad(self, allowed: frozenset[str] = frozenset()) -> dict[str, int]:
        """The errors of kinds not in `allowed` (by default every error is bad)."""
        return {k: n for k, n in self.errors.items() if k not in allowed}

    def merge(self, other: Outcome) -> None:
        self.ops += other.ops
        self.bytes_verified += other.bytes_verified
        self.errors.update(other.errors)
        self.details.extend(other.details[: max(0, 20 - len(self.details))])

    def __str__(self) -> str:
        errors = ", ".join(f"{k} {n}" for k, n in sorted(self.errors.items())) or "none"
        text = (
            f"{self.name}: {self.ops} ops, {self.bytes_verified} bytes verified, errors: {errors}"
        )
        return "\n  ".join([text, *self.details])


def errno_kind(code: int) -> str:
    if code == errno.EILSEQ:  # what fio reports for a block whose contents are wrong
        return "verify"
    return errno.errorcode.get(code, f"errno {code}")


_STRERROR = {os.strerror(code): name for code, name in errno.errorcode.items()}
_STRERROR["Out of diskspace"] = "ENOSPC"  # git's own words for ENOSPC


def strerror_kind(text: str) -> str | None:
    """The errno name of the first strerror(3) message in `text`, if any."""
    for message, name in _STRERROR.items():
        if message in text:
            return name
    return None


@dataclass
class Ran:
    returncode: int | None  # None: killed after its time limit (a hang)
    stdout: str
    stderr: str


def run_tool(
    cmd: Sequence[str], *, timeout: float, cwd: str | None = None, env: dict[str, str] | None = None
) -> Ran:
    """Run a tool in its own process group; past `timeout` kill the group (a hang)."""
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
        return Ran(proc.returncode, out, err)
    except BaseException as exc:  # Ctrl-C, or past its time: end the whole group
        if not isinstance(exc, subprocess.TimeoutExpired):
            _kill_group(proc)
            raise
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:  # stuck in the kernel: leave it, report it
            out, err = "", ""
        return Ran(None, out, err)


def _kill_group(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        pass


def drop_cache(path: str) -> None:
    """Make the next read of `path` come from the server (POSIX_FADV_DONTNEED)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


# -- fio ------------------------------------------------------------------------------


def _fio_json(text: str) -> dict | None:
    start = text.find("{")
    if start < 0:
        return None
    try:
        return json.loads(text[start:])
    except json.JSONDecodeError:
        return None


_FIO_ERR = re.compile(r"err=\s*(\d+)")
_FIO_VERIFY = re.compile(r"verify failed|bad magic|bad header|verify: ", re.IGNORECASE)


def fio(
    directory: str,
    *,
    name: str,
    engine: str,
    rw: str,
    size: str,
    numjobs: int,
    bs: str = "4k",
    fsync: int = 0,
    sparse: bool = False,
    timeout: float = 300,
    enospc: bool = False,
) -> Outcome:
    """fio with crc32c verification of everything it wrote, `numjobs` files of `size`.

    `sparse` creates each file first as a hole of its full size, so fio lays nothing out
    and the mmap engine's stores land in holes. With `enospc`, a job may end on ENOSPC;
    then the acknowledged prefix of a sequentially written file is verified again.
    """
    require_tools("fio")
    out = Outcome(f"fio {engine} {rw} {numjobs}x{size}")
    nbytes = _parse_bytes(size)
    if sparse:
        for job in range(numjobs):
            with open(os.path.join(directory, f"{name}.{job}.0"), "wb") as f:
                f.truncate(nbytes)
    with tempfile.TemporaryDirectory(prefix="mkwritefs-fio-") as scratch:
        report = os.path.join(scratch, "fio.json")
        # global options, then one job per file: the report names each job's file
        cmd = [
            "fio",
            f"--directory={directory}",
            f"--ioengine={engine}",
            f"--rw={rw}",
            f"--bs={bs}",
            f"--size={size}",
            "--direct=0",
            "--verify=crc32c",
            "--do_verify=1",
            "--verify_fatal=1",
            "--verify_state_save=0",
            "--randrepeat=1",
            "--output-format=json",
        ]
        if fsync:
            cmd.append(f"--fsync={fsync}")
        for job in range(numjobs):
            cmd += [f"--name={name}.{job}", f"--filename={name}.{job}.0"]
        ran = run_tool([*cmd, f"--output={report}"], timeout=timeout, cwd=scratch)
        text = Path(report).read_text(errors="replace") if os.path.exists(report) else ""
        if ran.returncode == 0 and rw not in ("read", "randread"):
            # fio's own pass may read the kernel's cache; read it all again from the server
            out.merge(_fio_verify_again(cmd, directory, name, numjobs, scratch, timeout))
    if ran.returncode is None:
        out.error("hang", f"fio did not end within {timeout:.0f} s")
        return out
    if ran.returncode < 0:
        out.error(
            "SIGBUS" if -ran.returncode == signal.SIGBUS else "crash",
            f"fio killed by signal {-ran.returncode}",
        )
    data = _fio_json(text)
    messages = "\n".join([text[: text.find("{")] if data else text, ran.stdout, ran.stderr])
    if _FIO_VERIFY.search(messages):
        out.error("verify", _first_line(messages, _FIO_VERIFY))
    jobs = data["jobs"] if data else []
    for job in jobs:
        out.ops += job["read"]["total_ios"] + job["write"]["total_ios"]
        code = job["error"]
        if code:
            out.error(errno_kind(code), f"job {job['jobname']}: {os.strerror(code)}")
        elif rw not in ("read", "randread"):
            out.bytes_verified += job["write"]["io_bytes"]
    if not jobs:  # no report at all: fio failed before its jobs ran (laying out files)
        codes = [int(c) for c in _FIO_ERR.findall(messages)]
        for code in codes:
            out.error(errno_kind(code), f"fio: {os.strerror(code)}")
        if not codes and ran.returncode:
            out.error("other", f"fio exit {ran.returncode}: {messages.strip()[:300]}")
    elif ran.returncode and not out.errors:
        out.error("other", f"fio exit {ran.returncode}: {messages.strip()[:300]}")
    if enospc and out.errors.get("ENOSPC") and rw == "write":
        batch = fsync * _parse_bytes(bs) if engine == "mmap" else 0
        for job in jobs:
            if job["error"] not in (0, errno.ENOSPC):
                continue
            path = os.path.join(directory, f"{job['jobname']}.0")
            out.merge(_fio_verify_prefix(path, job, bs=bs, batch=batch, timeout=timeout))
    return out


def _fio_verify_again(
    cmd: list[str], directory: str, name: str, numjobs: int, scratch: str, timeout: float
) -> Outcome:
    """The same jobs again with --verify_only (same seeds, so the same blocks), after
    dropping the kernel's cached copy of every file: each block is read from the server."""
    out = Outcome("fio verify from the server")
    for job in range(numjobs):
        drop_cache(os.path.join(directory, f"{name}.{job}.0"))
    report = os.path.join(scratch, "again.json")
    ran = run_tool([*cmd, "--verify_only", f"--output={report}"], timeout=timeout, cwd=scratch)
    text = Path(report).read_text(errors="replace") if os.path.exists(report) else ""
    data = _fio_json(text)
    if ran.returncode is None:
        out.error("hang", "fio --verify_only did not end")
        return out
    if data is None:
        out.error("verify", f"fio --verify_only: exit {ran.returncode}: {text[:300]}")
        return out
    for job in data["jobs"]:
        if job["error"]:
            out.error(
                errno_kind(job["error"]),
                f"verify again, job {job['jobname']}:"
                f" {os.strerror(job['error'])} {_first_line(text, _FIO_VERIFY)}",
            )
        else:
            out.bytes_verified += job["write"]["io_bytes"]
            out.ops += job["read"]["total_ios"]
    return out


def _fio_verify_prefix(path: str, job: dict, *, bs: str, batch: int, timeout: float) -> Outcome:
    """Verify, from the server, the part of a sequentially written file that was
    acknowledged: its size (write(2)), or the syncs that succeeded (mmap + msync)."""
    out = Outcome(f"fio verify {os.path.basename(path)}")
    if not os.path.exists(path):
        return out
    block = _parse_bytes(bs)
    written = job["write"]["io_bytes"]
    if batch:  # the batches whose msync returned 0, in order; none after a failed one
        synced = job.get("sync", {}).get("lat_ns", {}).get("N", 0)
        acked = min(synced, written // batch) * batch
    else:
        acked = min(os.path.getsize(path), written) // block * block
    if acked == 0:
        return out
    drop_cache(path)
    with tempfile.TemporaryDirectory(prefix="mkwritefs-fio-") as scratch:
        report = os.path.join(scratch, "verify.json")
        ran = run_tool(
            [
                "fio",
                "--name=verify",
                f"--filename={path}",
                "--ioengine=psync",
                "--rw=write",
                f"--bs={bs}",
                f"--size={acked}",
                "--verify=crc32c",
                "--verify_only",
                "--verify_fatal=1",
                "--verify_state_save=0",
                "--output-format=json",
                f"--output={report}",
            ],
            timeout=timeout,
            cwd=scratch,
        )
        text = Path(report).read_text(errors="replace") if os.path.exists(report) else ""
    data = _fio_json(text)
    if ran.returncode is None:
        out.error("hang", "fio --verify_only did not end")
    elif ran.returncode or data is None or data["jobs"][0]["error"]:
        out.error(
            "verify",
            f"{path}: acknowledged prefix of {acked} bytes: {(text + ran.stderr).strip()[:300]}",
        )
    else:
        out.bytes_verified += acked
        out.ops += data["jobs"][0]["read"]["total_ios"]
    return out


def _first_line(text: str, pattern: re.Pattern[str]) -> str:
    for line in text.splitlines():
        if pattern.search(line):
            return line.strip()
    return ""


def _parse_bytes(text: str) -> int:
    match = re.fullmatch(r"(\d+)([kKmMgG]?)", text.strip())
    if match is None:
        raise ValueError(f"not a size: {text!r}")
    scale = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[match.group(2).lower()]
    return int(match.group(1)) * scale


# -- stress-ng ------------------------------------------------------------------------

# Each stressor with its options; sizes are scaled by stress_ng(scale=...).
STRESSORS: dict[str, tuple[str, ...]] = {
    "hdd": ("--hdd-bytes", "{8M}", "--hdd-write-size", "4096"),
    "mmap": ("--mmap-file", "--mmap-bytes", "{4M}"),
    "fallocate": ("--fallocate-bytes", "{4M}"),
    "seek": ("--seek-size", "{4M}"),
    "sync-file": ("--sync-file-bytes", "{4M}"),
    "dir": (),
    "rename": (),
    "lockf": (),
    "utime": (),
    "chmod": (),
    "dentry": (),
    "iomix": ("--iomix-bytes", "{8M}"),
    "readahead": ("--readahead-bytes", "{4M}"),
    "link": (),
    "dirdeep": (),
    "dirmany": (),
    "open": (),
    "xattr": (),
}
SHORT_STRESSORS = (
    "hdd",
    "mmap",
    "fallocate",
    "seek",
    "sync-file",
    "dir",
    "rename",
    "lockf",
    "utime",
)

_METRIC = re.compile(r"metrc: \[\d+\] (\S+)\s+(\d+)\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[\d.]+")


def stress_ng(
    directory: str,
    *,
    stressors: Sequence[str] = SHORT_STRESSORS,
    seconds: int = 3,
    scale: float = 1.0,
    timeout: float | None = None,
    enospc: bool = False,
) -> Outcome:
    """stress-ng's filesystem and mmap stressors, one instance each, with --verify.

    stress-ng exits 3 ("out of system resources") when a stressor met ENOSPC: under
    `enospc` that is counted as ENOSPC; any "fail:" line (a wrong byte read back, an
    unexpected errno) is a failure, unless its errno is ENOSPC.
    """
    require_tools("stress-ng")
    out = Outcome(f"stress-ng {len(stressors)} stressors {seconds}s")
    cmd = [
        "stress-ng",
        "--temp-path",
        directory,
        "--verify",
        "--metrics-brief",
        "-t",
        f"{seconds}s",
    ]
    for name in stressors:
        cmd += [f"--{name}", "1"]
        for arg in STRESSORS[name]:
            if arg.startswith("{"):
                arg = f"{max(1, round(_parse_bytes(arg[1:-1]) * scale / (1 << 20)))}M"
            cmd.append(arg)
    limit = timeout if timeout is not None else seconds * 10 + 60
    ran = run_tool(cmd, timeout=limit, cwd=tempfile.gettempdir())
    text = ran.stdout + ran.stderr
    seen: set[str] = set()
    for match in _METRIC.finditer(text):
        if match.group(1) not in seen:
            seen.add(match.group(1))
            out.ops += int(match.group(2))
    for line in text.splitlines():
        if " fail: " in line:
            kind = strerror_kind(line) or ("verify" if "incorrect" in line else "fail")
            out.error(kind, line.strip())
    if ran.returncode is None:
        out.error("hang", f"stress-ng did not end within {limit:.0f} s")
    elif ran.returncode == 3 and enospc:
        out.error("ENOSPC", "stress-ng: a stressor ran out of space (exit 3)")
    elif ran.returncode < 0:
        out.error("crash", f"stress-ng killed by signal {-ran.returncode}")
    elif ran.returncode and not out.bad(CLEAN_KINDS):
        out.error(
            "fail",
            f"stress-ng exit {ran.returncode}: "
            + " | ".join(line for line in text.splitlines() if "error:" in line or "warn:" in line)[
                :300
            ],
        )
    return out


# -- xfs_io ---------------------------------------------------------------------------

_HEX = re.compile(r"^([0-9a-f]{8,}):\s+((?:[0-9a-f]{2} )+)")
_READ_DONE = re.compile(r"^read (\d+)/(\d+) bytes at offset (\d+)")


@dataclass
class XfsIoScript:
    """xfs_io commands for one file, the expected contents after them, and the ranges
    whose ``pread -v`` dump (in order) must equal the model at that point."""

    commands: list[str]
    expected: bytes
    checks: list[tuple[int, bytes]]


def make_xfs_io_script(seed: int, *, max_size: int, steps: int) -> XfsIoScript:
    """A random sequence of steps on one file, and the model's contents after each."""
    rng = random.Random(seed)
    model = bytearray()
    cmds: list[str] = []
    checks: list[tuple[int, bytes]] = []

    def span(limit: int) -> tuple[int, int]:
        off = rng.randrange(0, max(1, limit))
        return off, rng.randrange(1, max(2, min(limit - off, max_size // 4) + 1))

    size = rng.randrange(1, max_size // PAGE) * PAGE
    cmds.append(f"truncate {size}")
    model.extend(bytes(size))
    for _ in range(steps):
        step = rng.choice(
            (
                "pwrite",
                "pwrite",
                "mwrite",
                "mwrite",
                "falloc",
                "falloc_k",
                "fpunch",
                "truncate",
                "fsync",
                "pread",
            )
        )
        value = rng.randrange(1, 256)
        if step == "pwrite":
            off, length = span(max_size)
            cmds.append(f"pwrite -S {value:#x} {off} {length}")
            if off > len(model):
                model.extend(bytes(off - len(model)))
            end = off + length
            model.extend(bytes(max(0, end - len(model))))
            model[off:end] = bytes([value]) * length
        elif step == "mwrite" and len(model) >= PAGE:
            mapped = len(model) // PAGE * PAGE  # whole pages within EOF
            off, length = span(mapped)
            cmds += [
                f"mmap -rw 0 {mapped}",
                f"mwrite -S {value:#x} {off} {length}",
                f"msync -s 0 {mapped}",
                "munmap",
            ]
            model[off : off + length] = bytes([value]) * length
        elif step in ("falloc", "falloc_k"):
            off, length = span(max_size)
            keep = step == "falloc_k"
            cmds.append(f"falloc {'-k ' if keep else ''}{off} {length}")
            if not keep and off + length > len(model):
                model.extend(bytes(off + length - len(model)))
        elif step == "fpunch" and model:
            off, length = span(len(model))
            cmds.append(f"{step} {off} {length}")
            end = min(off + length, len(model))
            model[off:end] = bytes(end - off)
        elif step == "truncate":
            new = rng.randrange(0, max_size)
            cmds.append(f"truncate {new}")
            if new < len(model):
                del model[new:]
            else:
                model.extend(bytes(new - len(model)))
        elif step == "fsync":
            cmds.append("fsync")
        elif step == "pread" and model:
            off, length = span(len(model))
            cmds.append(f"pread -v {off} {length}")
            checks.append((off, bytes(model[off : off + length])))
    return XfsIoScript(cmds, bytes(model), checks)


def parse_pread_dumps(text: str) -> list[tuple[int, bytes]]:
    """The ``pread -v`` dumps in xfs_io's output, in order: (offset, bytes)."""
    dumps: list[tuple[int, bytes]] = []
    current = bytearray()
    start: int | None = None
    for line in text.splitlines():
        hexline = _HEX.match(line)
        if hexline:
            if start is None:
                start = int(hexline.group(1), 16)
            current += bytes.fromhex(hexline.group(2))
            continue
        done = _READ_DONE.match(line)
        if done:
            offset = int(done.group(3))
            dumps.append((offset, bytes(current[: int(done.group(1))])))
            current, start = bytearray(), None
    return dumps


def _xfs_io_errors(out: Outcome, ran: Ran, *, what: str) -> None:
    if ran.returncode is None:
        out.error("hang", f"{what}: xfs_io did not end")
    elif ran.returncode < 0:
        out.error(
            "SIGBUS" if -ran.returncode == signal.SIGBUS else "crash",
            f"{what}: xfs_io killed by signal {-ran.returncode}",
        )
    for line in (ran.stdout + ran.stderr).splitlines():
        if _HEX.match(line) or _READ_DONE.match(line) or line.startswith(("wrote ", "  ")):
            continue
        kind = strerror_kind(line)
        if kind is not None:
            out.error(kind, f"{what}: {line.strip()}")


def xfs_io_script(
    directory: str, *, seed: int, max_size: int = 1 << 20, steps: int = 40, timeout: float = 120
) -> Outcome:
    """Run one seeded random script on a new file; check every dump and the whole file
    (read back from the server, the kernel's cached copy dropped) against the model."""
    require_tools("xfs_io")
    script = make_xfs_io_script(seed, max_size=max_size, steps=steps)
    path = os.path.join(directory, f"xfs_io.{seed}")
    out = Outcome(f"xfs_io seed {seed}")
    args = ["xfs_io", "-f"]
    for cmd in script.commands:
        args += ["-c", cmd]
    ran = run_tool([*args, path], timeout=timeout)
    out.ops += len(script.commands)
    _xfs_io_errors(out, ran, what=path)
    dumps = parse_pread_dumps(ran.stdout)
    if len(dumps) != len(script.checks):
        out.error("verify", f"{path}: {len(dumps)} pread dumps, {len(script.checks)} expected")
    for (off, want), (got_off, got) in zip(script.checks, dumps, strict=False):
        if (got_off, got) != (off, want):
            out.error("verify", f"{path}: pread -v {off} {len(want)} differs from the model")
        else:
            out.bytes_verified += len(want)
    if ran.returncode is None:
        return out
    drop_cache(path)
    with open(path, "rb") as f:
        data = f.read()
    if data != script.expected:
        pairs = zip(data, script.expected, strict=False)
        where = next(
            (i for i, (a, b) in enumerate(pairs) if a != b), min(len(data), len(script.expected))
        )
        out.error(
            "verify",
            f"{path}: {len(data)} bytes read back, {len(script.expected)}"
            f" expected, first difference at {where} (seed {seed})",
        )
    else:
        out.bytes_verified += len(data)
    os.unlink(path)
    return out


def xfs_io_enospc(directory: str, *, capacity: int, timeout: float = 120) -> Outcome:
    """xfs_io on a filesystem of `capacity` bytes, empty at the start: fill it, then ask
    for more with every kind of step; each must fail with ENOSPC (or SIGBUS), and what
    was acknowledged must read back intact from the server."""
    require_tools("xfs_io")
    out = Outcome("xfs_io ENOSPC")
    half = capacity // 2 // PAGE * PAGE
    a, b, c, d = (os.path.join(directory, f"full.{n}") for n in "abcd")

    def xfs_io(path: str, *commands: str) -> Ran:
        args = ["xfs_io", "-f"]
        for cmd in commands:
            args += ["-c", cmd]
        ran = run_tool([*args, path], timeout=timeout)
        out.ops += len(commands)
        _xfs_io_errors(out, ran, what=os.path.basename(path))
        return ran

    # a: preallocated, then overwritten through write(2) and a mapping: never ENOSPC
    before = Counter(out.errors)
    xfs_io(
        a,
        f"falloc 0 {half}",
        f"pwrite -S 0x11 0 {half}",
        f"mmap -rw 0 {half}",
        f"mwrite -S 0x33 0 {half}",
        f"msync -s 0 {half}",
        "munmap",
        "fsync",
    )
    if out.errors != before:
        out.error("unexpected", f"{a}: steps into preallocated space failed")
    # b: write(2) of more than is free: short, then ENOSPC; what was written is kept
    xfs_io(b, f"pwrite -b 65536 -S 0x22 0 {capacity}", "fsync")
    # c: fallocate of more than is free: all or nothing
    xfs_io(c, f"falloc 0 {capacity}")
    # d: stores into holes of a full filesystem: msync says ENOSPC (FUSE) or SIGBUS
    xfs_io(
        d,
        f"truncate {half}",
        f"mmap -rw 0 {half}",
        f"mwrite -S 0x44 0 {half}",
        f"msync -s 0 {half}",
        "munmap",
    )
    for path, value in ((a, 0x33), (b, 0x22)):
        drop_cache(path)
        data = Path(path).read_bytes()
        if data.count(value) != len(data):
            out.error("verify", f"{path}: acknowledged data changed")
        else:
            out.bytes_verified += len(data)
    if os.path.getsize(c) != 0:
        out.error("verify", f"{c}: a failed fallocate changed the size")
    Path(d).read_bytes()  # lost pages read back as whatever the server has, never EIO
    return out


# -- git ------------------------------------------------------------------------------

GIT_ENV = {
    "GIT_AUTHOR_NAME": "mkwritefs",
    "GIT_AUTHOR_EMAIL": "workload@mkwritefs.invalid",
    "GIT_COMMITTER_NAME": "mkwritefs",
    "GIT_COMMITTER_EMAIL": "workload@mkwritefs.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
}


def make_git_repo(
    path: str, *, seed: int, commits: int, files: int, max_file: int, timeout: float = 300
) -> None:
    """A local repository of `commits` commits over up to `files` files (text and
    incompressible binary, an executable, a symlink, subdirectories), tagged ``first``."""
    rng = random.Random(seed)
    env = _git_env(path)
    os.makedirs(path, exist_ok=True)
    _git(["init", "-q", "-b", "main", path], env=env, timeout=timeout)
    for n in range(commits):
        for _ in range(max(1, files // max(1, commits) * 2)):
            k = rng.randrange(files)
            rel = os.path.join(f"d{k % 7}", f"sub{k % 3}", f"f{k}.{'bin' if k % 4 == 0 else 'txt'}")
            full = os.path.join(path, rel)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            size = rng.randrange(0, max_file)
            if k % 4 == 0:
                data = rng.randbytes(size)
            else:
                data = "".join(
                    f"line {i} of {k} in commit {n}\n" for i in range(size // 24)
                ).encode()
            Path(full).write_bytes(data)
        if n == 0:
            script = os.path.join(path, "run.sh")
            Path(script).write_text("#!/bin/sh\necho run\n")
            os.chmod(script, 0o755)
            os.symlink("run.sh", os.path.join(path, "link"))
        _git(["-C", path, "add", "-A"], env=env, timeout=timeout)
        _git(["-C", path, "commit", "-q", "-m", f"commit {n}"], env=env, timeout=timeout)
        if n == 0:
            _git(["-C", path, "tag", "first"], env=env, timeout=timeout)


def _git_env(home: str) -> dict[str, str]:
    return {**os.environ, **GIT_ENV, "HOME": home}


def _git(args: list[str], *, env: dict[str, str], timeout: float) -> Ran:
    ran = run_tool(["git", *args], timeout=timeout, env=env)
    if ran.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: exit {ran.returncode}: {ran.stderr.strip()}")
    return ran


# System calls that write to the filesystem, and the errnos git meets on them as a matter
# of course (a missing file, a lock held, a pipe closed): under ENOSPC git often says
# only "unable to write file", so strace tells which errno the kernel gave it.
_GIT_TRACED = (
    "write,pwrite64,writev,fsync,fdatasync,close,rename,renameat,renameat2,"
    "mkdir,mkdirat,link,linkat,symlink,symlinkat,fallocate,ftruncate,openat"
)
_GIT_USUAL = {"ENOENT", "EEXIST", "ENOTDIR", "EPIPE", "EISDIR", "ENOTEMPTY", "EAGAIN"}
_STRACE_ERR = re.compile(r"= -1 (E[A-Z0-9]+) ")


def _git_traced(
    args: list[str], *, env: dict[str, str], timeout: float, trace: bool
) -> tuple[Ran, set[str]]:
    if not trace:
        return run_tool(["git", *args], timeout=timeout, env=env), set()
    require_tools("strace")
    with tempfile.TemporaryDirectory(prefix="mkwritefs-git-") as scratch:
        log = os.path.join(scratch, "strace")
        ran = run_tool(
            [
                "strace",
                "-f",
                "-qq",
                "-e",
                f"trace={_GIT_TRACED}",
                "-e",
                "status=failed",
                "-o",
                log,
                "git",
                *args,
            ],
            timeout=timeout,
            env=env,
        )
        text = Path(log).read_text(errors="replace") if os.path.exists(log) else ""
    return ran, set(_STRACE_ERR.findall(text)) - _GIT_USUAL


def git_workload(
    directory: str, source: str, *, timeout: float = 300, enospc: bool = False
) -> Outcome:
    """Clone `source` (a local repository) onto the mount, check out its first commit and
    back, ``git fsck --full --strict``, ``git gc``, and compare every file with the
    source's work tree. Under `enospc` the clone may fail, with ENOSPC only."""
    require_tools("git")
    out = Outcome("git clone/checkout/fsck")
    clone = os.path.join(directory, "clone")
    env = _git_env(tempfile.gettempdir())
    steps = [
        ["clone", "-q", "--no-hardlinks", source, clone],
        ["-C", clone, "checkout", "-q", "first"],
        ["-C", clone, "checkout", "-q", "main"],
        ["-C", clone, "fsck", "--full", "--strict", "--no-progress"],
        ["-C", clone, "gc", "-q"],
        ["-C", clone, "fsck", "--full", "--strict", "--no-progress"],
        ["-C", clone, "status", "--porcelain"],
    ]
    for args in steps:
        ran, errnos = _git_traced(args, env=env, timeout=timeout, trace=enospc)
        out.ops += 1
        if ran.returncode is None:
            out.error("hang", f"git {args[-1] if args[0] != '-C' else args[2]} did not end")
            return out
        for code in sorted(errnos - {"ENOSPC"}):
            out.error(code, f"git {' '.join(args[:3])}: a system call failed with {code}")
        if ran.returncode != 0:
            kind = strerror_kind(ran.stderr) or ("ENOSPC" if "ENOSPC" in errnos else "git")
            out.error(
                kind,
                f"git {' '.join(args[2:] if args[0] == '-C' else args[:1])}: "
                f"{ran.stderr.strip()[-300:]}",
            )
            return out
        if args[-1] == "--porcelain" and ran.stdout.strip():
            out.error("verify", f"git status after checkout: {ran.stdout.strip()[:300]}")
    for root, dirs, files in os.walk(source):
        dirs[:] = [d for d in dirs if d != ".git"]
        for name in files:
            src = os.path.join(root, name)
            dst = os.path.join(clone, os.path.relpath(src, source))
            if os.path.islink(src):
                if os.readlink(src) != os.readlink(dst):
                    out.error("verify", f"{dst}: symlink differs")
                continue
            want = Path(src).read_bytes()
            got = Path(dst).read_bytes()
            if want != got:
                out.error("verify", f"{dst}: contents differ from the source")
            else:
                out.bytes_verified += len(got)
            if os.stat(src).st_mode & 0o111 != os.stat(dst).st_mode & 0o111:
                out.error("verify", f"{dst}: executable bit differs")
    return out


# -- plain write/read/delete ----------------------------------------------------------


def plain_io(directory: str, *, seed: int, files: int, max_file: int) -> Outcome:
    """Write files of random contents (some fsync'ed, some overwritten in the middle),
    read them all back from the server and compare checksums, delete half. write(2)
    may be short or fail with ENOSPC; only what it acknowledged is compared."""
    rng = random.Random(seed)
    out = Outcome("plain write/read/delete")
    want: dict[str, bytes] = {}
    for n in range(files):
        path = os.path.join(directory, f"plain.{seed}.{n}")
        data = rng.randbytes(rng.randrange(0, max_file))
        acked = bytearray()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        except OSError as exc:
            out.error(errno_kind(exc.errno or 0), f"open {path}: {exc}")
            continue
        try:
            view = memoryview(data)
            while len(acked) < len(data):
                done = os.write(fd, view[len(acked) : len(acked) + (1 << 20)])
                out.ops += 1
                acked += view[len(acked) : len(acked) + done]
            if acked and rng.random() < 0.5:  # overwrite a middle range in place
                off = rng.randrange(len(acked))
                patch = rng.randbytes(min(len(acked) - off, rng.randrange(1, 65536)))
                os.pwrite(fd, patch, off)
                acked[off : off + len(patch)] = patch
                out.ops += 1
            if rng.random() < 0.3:
                os.fsync(fd)
                out.ops += 1
        except OSError as exc:
            out.error(errno_kind(exc.errno or 0), f"write {path}: {exc}")
        finally:
            os.close(fd)
        want[path] = bytes(acked)
    for path, data in want.items():
        try:
            drop_cache(path)
            got = Path(path).read_bytes()
        except OSError as exc:
            out.error(errno_kind(exc.errno or 0), f"read {path}: {exc}")
            continue
        out.ops += 1
        if hashlib.sha256(got).digest() != hashlib.sha256(data).digest():
            out.error("verify", f"{path}: {len(got)} bytes read back, {len(data)} written")
        else:
            out.bytes_verified += len(got)
    for path in list(want)[::2]:
        os.unlink(path)
        out.ops += 1
    return out


# -- the space figures ----------------------------------------------------------------


def space_report(mountpoint: str) -> tuple[dict[str, int | str], list[str]]:
    """statfs and the root's figures (and the server's fsck), and what disagrees.

    Call when the mount is quiet (no workload running): the figures are read one by one.
    """
    st = os.statvfs(mountpoint)
    figures: dict[str, int | str] = {
        n: int(os.getxattr(mountpoint, f"user.mkwritefs.{n}")) for n in SPACE_NAMES
    }
    figures["fsck"] = os.getxattr(mountpoint, "user.mkwritefs.fsck").decode()
    problems = []
    cap, free, reserved, allocated = (int(figures[n]) for n in SPACE_NAMES)
    if (st.f_frsize, st.f_blocks, st.f_bfree, st.f_bavail) != (PAGE, cap, free, free):
        problems.append(
            f"statfs (frsize {st.f_frsize}, blocks {st.f_blocks}, bfree"
            f" {st.f_bfree}, bavail {st.f_bavail}) disagrees with {figures}"
        )
    if allocated + reserved + free != cap:
        problems.append(f"allocated + reserved + free != capacity: {figures}")
    if figures["fsck"] != "clean":
        problems.append(f"fsck: {figures['fsck']}")
    held = _blocks_held(mountpoint)
    if held != allocated + reserved:
        problems.append(
            f"the files hold {held} blocks, the root says"
            f" {allocated} allocated + {reserved} reserved"
        )
    return figures, problems


def settled_space_report(
    mountpoint: str, *, timeout: float = 15.0
) -> tuple[dict[str, int | str], list[str]]:
    """:func:`space_report` once the figures agree, or the last disagreement after
    `timeout` seconds: space of an unlinked file returns only when the kernel has
    forgotten its inode (FORGET comes a moment after the last close)."""
    deadline = time.monotonic() + timeout
    while True:
        figures, problems = space_report(mountpoint)
        if not problems or time.monotonic() > deadline:
            return figures, problems
        time.sleep(0.05)


def _blocks_held(mountpoint: str) -> int:
    """Allocated + reserved blocks summed over the files reachable from the root."""
    seen: set[int] = set()
    total = 0
    for root, _dirs, files in os.walk(mountpoint):
        for name in files:
            path = os.path.join(root, name)
            st = os.lstat(path)
            if not os.path.isfile(path) or os.path.islink(path) or st.st_ino in seen:
                continue
            seen.add(st.st_ino)
            total += sum(
                int(os.getxattr(path, f"user.mkwritefs.{n}"))
                for n in ("allocated_blocks", "reserved_blocks")
            )
    return total


def clear(directory: str) -> None:
    """Remove everything in `directory` (the work of a run), keeping the directory."""
    for entry in os.scandir(directory):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)
