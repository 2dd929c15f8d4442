"""`mkwritefs mount`, `umount`, `stat` and `set`: a mount's life and its control interface.

`mount` behaves like other mount helpers: it returns once the mount is ready and serves
it from a background process. That process is forked *before* trio or pyfuse3 start (a
fork after threads exist is unsafe), calls setsid, and reports readiness or its error
message to the waiting parent through a pipe; the parent exits 0 or 2 accordingly.
`--foreground` serves in the calling process instead.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from typing import TYPE_CHECKING

from fusefs import mountinfo
from fusefs.cli.common import DEFAULT_SIZE, UsageError, command, parse_size
from fusefs.constants import BLOCK_SIZE, FS_TYPE, XATTR_PREFIX
from fusefs.fs.errors import FsError
from fusefs.probe import realbdi
from fusefs.vm.policy import DEFAULT_POLICY, Policy, parse_policy

if TYPE_CHECKING:  # fusefs.fuse.mount imports pyfuse3: only `mount` needs it at run time
    from fusefs.fuse.mount import MountConfig


FUSE_DEVICE = "/dev/fuse"
BLOCK_FIGURES = ("capacity_blocks", "free_blocks", "reserved_blocks", "allocated_blocks")
# What the write-notification hooks and writeback counted (root: totals; file: its own).
COUNTERS = ("mkwrite_calls", "sigbus", "writeback_errors", "lost_bytes")
SETTINGS = ("policy", "writeback_interval", "dirty_expire")
ROOT_FIGURES = (*BLOCK_FIGURES, *COUNTERS, *SETTINGS)
FILE_FIGURES = ("allocated_blocks", "reserved_blocks", "dirty_pages", *COUNTERS)
UMOUNT_WAIT = 10.0


# -- mount ------------------------------------------------------------------------------


def _mount_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", metavar="DIR", help="an existing, empty directory to mount on")
    parser.add_argument(
        "--size",
        help="capacity, tmpfs style: 16M, 1G, 4096k or plain bytes; rounded up to "
        f"4096-byte blocks (default {DEFAULT_SIZE}; with --store the store's, and a "
        "--size that differs is an error)",
    )
    parser.add_argument(
        "--store",
        metavar="STORE",
        help="keep the filesystem in STORE (made by `mkwritefs mkfs`), where it outlives "
        "the mount; without it the filesystem lives in memory only",
    )
    parser.add_argument(
        "--policy",
        default=str(DEFAULT_POLICY),
        help="what a store through a shared mapping does: "
        f"{', '.join(p.value for p in Policy)} (default {DEFAULT_POLICY}); "
        "the mount's owner can change it later with `mkwritefs set DIR policy=P`",
    )
    parser.add_argument(
        "--foreground", "-f", action="store_true", help="serve in this process until unmounted"
    )
    parser.add_argument(
        "--debug", action="store_true", help="log every FUSE request (libfuse debug output)"
    )
    parser.add_argument(
        "--writeback-cache",
        action="store_true",
        help="let the kernel cache writes: write(2) returns before the filesystem sees "
        "the data, so ENOSPC surfaces only at fsync, or never (off by default)",
    )
    parser.add_argument(
        "--dirty-throttle",
        choices=("off", "modern", "crude"),
        help="turn on the simulated dirty-page model (KERNEL.md section 4) with this "
        "balance_dirty_pages: modern (IO-less pauses, 3.2+), crude (2.6.2x) or off "
        "(counted, not throttled); as `mkwritefs set DIR dirty_throttle=MODEL` (default: "
        "no model)",
    )
    parser.add_argument(
        "--dirty-placement",
        choices=("before", "after"),
        help="where stores through mappings are throttled: before the page becomes "
        "writable (in page_mkwrite, a hard cap) or after it was dirtied (the kernel's "
        "place); as `mkwritefs set DIR dirty_placement=P` (default after)",
    )
    parser.add_argument(
        "--log",
        metavar="FILE",
        help="in the background, append the server's log to FILE (default: discard it)",
    )


def _check_mount_input(args: argparse.Namespace) -> tuple[str, int, Policy]:
    blocks = parse_size(DEFAULT_SIZE if args.size is None else args.size)  # "" is bad input
    if getattr(args, "store", None):  # the size is the store's (fusefs.cli.store)
        from fusefs.cli.store import check_mount_store

        blocks = check_mount_store(args.store, args.size)
    try:
        policy = parse_policy(args.policy)
    except FsError as exc:
        raise UsageError(f"invalid policy: {exc.detail}") from None
    mountpoint = os.path.realpath(args.dir)
    if find_mount(mountpoint) is not None:
        raise UsageError(f"{args.dir} is already a mount point")
    if not os.path.isdir(mountpoint):
        raise UsageError(f"mount point {args.dir} is not an existing directory")
    try:
        if os.listdir(mountpoint):
            raise UsageError(f"mount point {args.dir} is not empty")
    except PermissionError:
        raise UsageError(f"mount point {args.dir} is not readable") from None
    if not os.path.exists(FUSE_DEVICE):
        raise UsageError(f"{FUSE_DEVICE} is missing: load the fuse module (modprobe fuse)")
    if os.getuid() != 0 and shutil.which("fusermount3") is None:
        raise UsageError("fusermount3 not found: install fuse3 (needed to mount as non-root)")
    return mountpoint, blocks, policy


def _setup_logging(debug: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s: %(message)s",
    )


@command(
    "mount",
    help="mount a new, empty mkwritefs on DIR",
    description="Mount a new, empty, size-limited mkwritefs on DIR. Returns once the mount "
    "is ready and serves it from a background process (stop it with `mkwritefs umount "
    "DIR`), or with --foreground serves it here until unmounted, SIGINT or SIGTERM.",
    add_arguments=_mount_arguments,
)
def run_mount(args: argparse.Namespace) -> int:
    mountpoint, blocks, policy = _check_mount_input(args)
    from fusefs.fuse.mount import MountConfig

    config = MountConfig(
        mountpoint=mountpoint,
        capacity_blocks=blocks,
        policy=policy,
        debug=args.debug,
        writeback_cache=args.writeback_cache,
        store=os.path.realpath(args.store) if args.store else None,
        dirty_throttle=args.dirty_throttle,
        dirty_placement=args.dirty_placement,
    )
    if args.foreground:
        return _mount_foreground(config)
    return _mount_background(config, log_path=args.log)


def _mount_foreground(config: MountConfig) -> int:
    from fusefs.fuse.mount import MountError, serve

    _setup_logging(config.debug)
    try:
        serve(config)
    except MountError as exc:
        raise UsageError(str(exc)) from None
    return 0


def _mount_background(config: MountConfig, *, log_path: str | None) -> int:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the server
        os.close(read_end)
        os._exit(_serve_detached(config, write_end, log_path))
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        report = pipe.readline().decode(errors="replace").strip()
    if report == "ready":
        return 0
    os.waitpid(pid, 0)
    raise UsageError(report or "the server exited before the mount was ready")


def _serve_detached(config: MountConfig, ready_fd: int, log_path: str | None) -> int:
    from fusefs.fuse.mount import MountError, serve

    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    out = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644) if log_path else null
    os.dup2(null, 0)
    os.dup2(out, 1)
    os.dup2(out, 2)
    _setup_logging(config.debug)

    reported = False

    def ready() -> None:
        nonlocal reported
        os.write(ready_fd, b"ready\n")
        os.close(ready_fd)
        reported = True

    try:
        serve(config, on_ready=ready)
    except MountError as exc:
        os.write(ready_fd, f"{exc}\n".encode())
        return 2
    except BaseException as exc:
        logging.getLogger(__name__).exception("the server failed")
        if not reported:
            os.write(ready_fd, f"the server failed: {exc!r}\n".encode())
        return 1
    return 0


# -- umount -----------------------------------------------------------------------------


def find_mount(mountpoint: str) -> str | None:
    """The filesystem type mounted on `mountpoint` (a real path), or None.

    Unlike os.path.ismount this also sees a dead FUSE mount, whose stat fails ENOTCONN.
    """
    entry = mountinfo.find(mountpoint)
    return None if entry is None else entry.fstype


def _server_pids(mountpoint: str) -> list[int]:
    """Processes holding /dev/fuse open whose command line mounts `mountpoint`."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
            if "mount" not in argv:
                continue
            cwd = os.readlink(f"/proc/{entry}/cwd")
            if not any(os.path.realpath(os.path.join(cwd, a)) == mountpoint for a in argv):
                continue
            fds = os.listdir(f"/proc/{entry}/fd")
            if any(os.readlink(f"/proc/{entry}/fd/{fd}") == FUSE_DEVICE for fd in fds):
                pids.append(int(entry))
        except OSError:
            continue
    return pids


def _umount_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", metavar="DIR", help="the mount point")
    parser.add_argument(
        "--lazy",
        "-z",
        action="store_true",
        help="detach now even if files are open; the server exits when the last is closed",
    )


def _mkwritefs_mount(path: str) -> str:
    """The real path of ``path``, which must be a mkwritefs mount point (else UsageError)."""
    mountpoint = os.path.realpath(path)
    fstype = find_mount(mountpoint)
    if fstype is None:
        raise UsageError(f"{path} is not a mount point")
    if fstype != FS_TYPE:
        raise UsageError(f"{path} is a {fstype} mount, not mkwritefs")
    return mountpoint


@command(
    "umount",
    help="unmount a mkwritefs and wait for its server to exit",
    description="Unmount the mkwritefs on DIR (fusermount3 -u) and wait until its server "
    "process has exited. A mount whose server died ('Transport endpoint is not "
    "connected') is detached lazily (fusermount3 -uz). A mount with open files is left "
    "alone (exit status 1) unless --lazy.",
    add_arguments=_umount_arguments,
)
def run_umount(args: argparse.Namespace) -> int:
    mountpoint = _mkwritefs_mount(args.dir)
    if shutil.which("fusermount3") is None:
        raise UsageError("fusermount3 not found: install fuse3")
    servers = _server_pids(mountpoint)
    result = _fusermount("-uz" if args.lazy else "-u", mountpoint)
    if result.returncode != 0 and not args.lazy:
        dead = "not connected" in result.stderr or all(has_exited(p) for p in servers)
        if dead:  # the server is gone: nothing can answer, detach it
            result = _fusermount("-uz", mountpoint)
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines()
        message = lines[-1] if lines else f"fusermount3 failed ({result.returncode})"
        if "busy" in message:
            message += " (files are open on it: close them, or use --lazy)"
        print(f"mkwritefs umount: {message}", file=sys.stderr)
        return 1
    if args.lazy:  # open files keep the server busy until they are closed: do not wait
        return 0
    return 0 if _wait_exited(servers, UMOUNT_WAIT) else _report_still_running(servers)


def _fusermount(flags: str, mountpoint: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["fusermount3", flags, mountpoint], capture_output=True, text=True, check=False
    )


def _wait_exited(pids: list[int], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not all(has_exited(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def has_exited(pid: int) -> bool:
    """True once `pid` is gone or a zombie (its parent, maybe init, has yet to reap it)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


def _report_still_running(pids: list[int]) -> int:
    alive = [str(p) for p in pids if not has_exited(p)]
    print(f"mkwritefs umount: unmounted, but server {', '.join(alive)} still runs", file=sys.stderr)
    return 1


# -- stat -------------------------------------------------------------------------------


def _stat_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path", metavar="PATH", help="the mount point (filesystem figures) or a file in it"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


Figure = int | float | str


def _figure(raw: bytes) -> Figure:
    text = raw.decode(errors="replace")
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            continue
    return text


def read_figures(path: str) -> tuple[str, dict[str, Figure]]:
    """('filesystem' | 'file', {name: value}) from the user.mkwritefs.* xattrs of `path`."""
    is_root = find_mount(os.path.realpath(path)) is not None
    kind, names = ("filesystem", ROOT_FIGURES) if is_root else ("file", FILE_FIGURES)
    figures = {}
    for name in names:
        try:
            figures[name] = _figure(os.getxattr(path, XATTR_PREFIX + name))
        except FileNotFoundError:
            raise UsageError(f"{path}: no such file or directory") from None
        except OSError as exc:
            if not is_root and _fstype_under(path) == FS_TYPE:  # a directory, FIFO, device
                raise UsageError(f"{path} is not a regular file: mkwritefs has figures for "
                                 "regular files and for the mount point") from None  # fmt: skip
            raise UsageError(f"{path} is not on a mkwritefs filesystem ({exc.strerror})") from None
    return kind, figures


def _fstype_under(path: str) -> str | None:
    """The type of the filesystem mounted at `path` or the nearest directory above it."""
    here = os.path.realpath(path)
    while (fstype := find_mount(here)) is None and here != "/":
        here = os.path.dirname(here)
    return fstype


@command(
    "stat",
    help="show the figures and settings of a mkwritefs or of one file in it",
    description="Print the user.mkwritefs.* figures: for the mount point, the filesystem's "
    "capacity and free, reserved and allocated 4096-byte blocks, the totals of the "
    "write-notification counters (page_mkwrite calls, SIGBUS delivered, writeback errors, "
    "bytes acknowledged to a writer and then lost at writeback) and the settings (policy, "
    "flusher interval and dirty expiry); for a file, its allocated and reserved blocks, "
    "dirty pages and its own counters.",
    add_arguments=_stat_arguments,
)
def run_stat(args: argparse.Namespace) -> int:
    kind, figures = read_figures(args.path)
    if args.json:
        dirty = {"dirty": realbdi.beside(args.path)} if kind == "filesystem" else {}
        print(json.dumps({"path": args.path, "kind": kind, **figures, **dirty}))
        return 0
    what = "mkwritefs filesystem" if kind == "filesystem" else "file on mkwritefs"
    print(f"{args.path} ({what}; blocks and pages are {BLOCK_SIZE} bytes)")
    for name, value in figures.items():
        print(f"  {name:<18} {value!s:>10}  {_unit(name, value)}".rstrip())
    if kind == "filesystem":  # the dirty model beside the real kernel's bdi (fusefs.probe.realbdi)
        print("\n".join(realbdi.stat_lines(args.path)))
    return 0


def _unit(name: str, value: Figure) -> str:
    if name in ("writeback_interval", "dirty_expire"):
        return "s"
    if not isinstance(value, int):
        return ""
    if name.endswith(("_blocks", "_pages")):
        return f"{_mib(value * BLOCK_SIZE):>10}"
    if name == "lost_bytes":
        return f"{_mib(value):>10}"
    return ""


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


# -- set --------------------------------------------------------------------------------


def _set_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("mount", metavar="MOUNT", help="the mount point")
    parser.add_argument(
        "settings",
        metavar="KEY=VALUE",
        nargs="+",
        help="policy=P (" + ", ".join(p.value for p in Policy) + "), capacity_blocks=N "
        "(not below what is allocated and reserved), writeback_interval=SECONDS, "
        "dirty_expire=SECONDS; fault injection: writeback_latency=SECONDS, "
        "inject_writeback_error=EIO[:PAGES]|none",
    )


def _parse_setting(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UsageError(f"expected KEY=VALUE, got {text!r}")
    return key, value.strip()


def _check_known(mount: str, key: str) -> None:
    try:
        os.getxattr(mount, XATTR_PREFIX + key)
    except OSError as exc:
        if exc.errno in (errno.ENODATA, errno.ERANGE):  # ERANGE: longer than any name
            raise UsageError(f"unknown setting {key!r}") from None
        raise UsageError(f"{mount}: {exc.strerror}") from None


def _is_owner(mount: str) -> bool:
    uid = os.geteuid()
    return uid == 0 or os.stat(mount).st_uid == uid


def _set_error(mount: str, key: str, value: str, exc: OSError) -> str:
    # EACCES: the kernel's own check (user.* xattrs need write permission on the root).
    if exc.errno in (errno.EPERM, errno.EACCES) and not _is_owner(mount):
        return "only the mount's owner may change settings"
    if exc.errno == errno.EPERM:
        return f"{key} is a figure, not a setting: it cannot be changed"
    if exc.errno == errno.EINVAL:
        return f"bad value {value!r} for {key}"
    if exc.errno == errno.ENODATA:
        return f"unknown setting {key!r}"
    if exc.errno == errno.E2BIG:
        return f"the value for {key} is too long (at most 65536 bytes)"
    return f"cannot set {key}: {exc.strerror}"


@command(
    "set",
    help="change settings of a mounted mkwritefs (its owner only)",
    description="Set user.mkwritefs.KEY to VALUE on the root of the mkwritefs mounted on "
    "MOUNT, for each KEY=VALUE in order: the write-notification policy, the capacity, "
    "the flusher's interval and dirty expiry. Only the mount's owner (or root) may. A "
    "bad value changes nothing and is reported on one line (exit status 2).",
    add_arguments=_set_arguments,
)
def run_set(args: argparse.Namespace) -> int:
    mountpoint = _mkwritefs_mount(args.mount)
    settings = [_parse_setting(text) for text in args.settings]
    for key, _ in settings:
        _check_known(args.mount, key)
    done: list[str] = []
    for key, value in settings:
        try:
            # fsencode: bytes that are not UTF-8 reach the filesystem as given (EINVAL)
            os.setxattr(mountpoint, XATTR_PREFIX + key, os.fsencode(value))
        except OSError as exc:
            message = _set_error(args.mount, key, value, exc)
            if done:
                message += f" ({', '.join(done)} already set)"
            raise UsageError(message) from None
        done.append(key)
    return 0
