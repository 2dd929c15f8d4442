"""Hostile command lines: one clear line on stderr, exit status 2, nothing changed.

`main()` runs in-process (argparse's usage errors arrive as SystemExit(2)), with
hypothesis choosing sizes, policies, KEY=VALUE settings and stray arguments; a few run
as subprocesses, as a user types them (argv bytes that are not UTF-8 included).

- `mount` with a bad --size or --policy mounts nothing and creates no log file. The
  mount point given is not empty, so a command line whose size and policy are good stops
  at that check: the error names the first bad input, in the order the command checks.
- `set` against a real mount (one server for the module): a rejected setting leaves
  every setting as it was (read back through the root's xattrs); an accepted one reads
  back as set and is restored.
- `umount`, `stat`, `set` of what is not a mkwritefs mount, and unknown commands/options.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fusefs import mountinfo
from fusefs.cli.main import main
from fusefs.vm.policy import Policy
from tests.mount.conftest import Server

from .conftest import fuzz, serve_module

SETTINGS = ("policy", "capacity_blocks", "writeback_interval", "dirty_expire",
            "writeback_latency", "inject_writeback_error")  # fmt: skip
PREFIX = "user.mkwritefs."
FUZZ = fuzz(80)
MAX_SIZE = 2**63 - 1
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
# What a user may type: no NUL (argv cannot carry one); lone surrogates are argv bytes
# that are not UTF-8, as Python decodes them.
ARG = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",))
              | st.sampled_from(["\udcff", "\udc80"]), max_size=12)  # fmt: skip


def run_main(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's own usage errors
            code = exc.code if isinstance(exc.code, int) else 2
    return code, out.getvalue(), err.getvalue()


def one_line_error(result: tuple[int, str, str], command: str) -> str:
    code, out, err = result
    assert (code, out) == (2, ""), result
    assert err.count("\n") == 1, err
    assert err.endswith("\n"), err
    # Ours: "mkwritefs COMMAND: ..."; argparse's: "mkwritefs[ COMMAND[ ACTION]]: ...".
    assert err.startswith(f"mkwritefs {command}: " if command else "mkwritefs"), err
    assert "Traceback" not in err
    return err


def mounts(under: Path) -> list[str]:
    """Mounts in this test session's directory (other programs on this machine mount too)."""
    with open(mountinfo.MOUNTINFO) as f:
        return sorted(p for p in (line.split()[4] for line in f) if p.startswith(str(under)))


# -- mount ------------------------------------------------------------------------------


def size_is_good(text: str) -> bool:
    """The documented grammar: ASCII digits, an optional k/M/G/T, 1 byte to 2^63-1."""
    m = re.fullmatch(r"[ \t\n\r\f\v]*([0-9]+)[ \t\n\r\f\v]*([kKmMgGtT]?)[ \t\n\r\f\v]*", text)
    return m is not None and 0 < int(m.group(1)) * _UNITS[m.group(2).lower()] <= MAX_SIZE


SIZES = st.one_of(
    st.from_regex(r"\A ?[0-9]{1,22} ?[kKmMgGtTpPeE]? ?\Z"),
    st.sampled_from(["", "0", "0k", "-1", "+5", "1.5M", "1e9", "16E", "١٢M", "8388607T",
                     "8388608T", str(MAX_SIZE), str(MAX_SIZE + 1), "4096 k", "k", "M1"]),
    ARG,
)  # fmt: skip
POLICIES = st.one_of(st.sampled_from([p.value for p in Policy]),
                     st.sampled_from(["RESERVE", " legacy ", "reserve_cow", "reserve cow", ""]),
                     ARG)  # fmt: skip


@pytest.fixture(scope="module")
def busy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory that is not empty: a good command line stops at that check."""
    path = tmp_path_factory.mktemp("busy")
    (path / "somebody's file").write_text("keep me")
    return path


@FUZZ
@given(size=SIZES, policy=POLICIES)
def test_mount_rejects_bad_size_and_policy(busy_dir: Path, size: str, policy: str) -> None:
    before = mounts(busy_dir.parent)
    log = busy_dir.parent / "never-created.log"
    # --size=VALUE: a value may start with "-" (as "--size -1" would be an option)
    err = one_line_error(run_main(["mount", str(busy_dir), f"--size={size}",
                                   f"--policy={policy}", "--log", str(log)]), "mount")  # fmt: skip
    if not size_is_good(size):
        assert "invalid size" in err, err
    elif policy.strip().lower().replace("_", "-") not in {p.value for p in Policy}:
        assert "invalid policy" in err, err
    else:
        assert "is not empty" in err, err
    assert mounts(busy_dir.parent) == before
    assert not log.exists()
    assert os.listdir(busy_dir) == ["somebody's file"]


@pytest.mark.parametrize(
    "argv",
    [
        ["mount"],
        ["mount", "/nonexistent/dir"],
        ["mount", "/proc/self/fd/0"],
        ["mount", "DIR", "--size"],
        ["mount", "DIR", "--bogus"],
        ["mount", "DIR", "extra"],
        ["umount"],
        ["umount", "DIR"],
        ["umount", "/proc"],
        ["stat", "/nonexistent"],
        ["stat", "DIR"],
        ["set", "DIR"],
        ["set", "DIR", "policy=legacy"],
        ["set", "/proc", "policy=legacy"],
        ["scenario", "run"],
        ["scenario", "run", "no-such-story"],
        ["scenario", "frobnicate"],
        ["frobnicate"],
        [],
        ["--size", "1M"],
    ],
)
def test_bad_command_lines(argv: list[str], busy_dir: Path) -> None:
    before = mounts(busy_dir.parent)
    argv = [str(busy_dir) if a == "DIR" else a for a in argv]
    one_line_error(run_main(argv), "")
    assert mounts(busy_dir.parent) == before
    assert os.listdir(busy_dir) == ["somebody's file"]


def test_bad_bytes_in_argv_from_a_shell(busy_dir: Path) -> None:
    """argv as bytes that are not UTF-8, in a subprocess: still one line, exit 2."""
    for argv in ([b"mount", os.fsencode(busy_dir), b"--size", b"1M", b"--policy", b"\xfe\xff"],
                 [b"stat", os.fsencode(busy_dir) + b"/\xff"]):  # fmt: skip
        result = subprocess.run([sys.executable.encode(), b"-m", b"fusefs", *argv],
                                capture_output=True, timeout=60, check=False)  # fmt: skip
        assert (result.returncode, result.stdout) == (2, b""), result.stderr
        assert result.stderr.count(b"\n") == 1, result.stderr
        assert result.stderr.startswith(b"mkwritefs "), result.stderr


# -- set, against a real mount --------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    for server in serve_module(tmp_path_factory, "set"):
        with open(os.path.join(server.mountpoint, "data"), "wb") as f:  # 16 blocks in use
            f.write(b"d" * 16 * 4096)
            os.fsync(f.fileno())
        yield server


def read_settings(mnt: str) -> dict[str, bytes]:
    return {k: os.getxattr(mnt, PREFIX + k) for k in SETTINGS}


def _reads_back(key: str, value: str, now: bytes) -> bool:
    text = value.strip()
    if key == "policy":
        return now.decode() == text.lower().replace("_", "-")
    if key == "inject_writeback_error":
        return now == b"none" or now.decode().split(":")[0] == text.split(":")[0]
    return float(now) == float(text)


KEYS = st.one_of(st.sampled_from([*SETTINGS, "free_blocks", "dirty_pages", "colour", " policy",
                                  "policy ", "POLICY", "x" * 300]), ARG)  # fmt: skip
VALUES = st.one_of(
    st.sampled_from(["legacy", "reserve", "", " ", "-1", "0", "1", "16", "15", "1e3", "nan",
                     "inf", "-0", "1e308", "1e309", "0x10", "EIO", "EIO:2", "none", "ENOPE",
                     "\udcff", "x" * 70000, str(2**51), str(2**51 + 1), "٣"]),
    ARG,
)  # fmt: skip


@FUZZ
@given(pairs=st.lists(st.tuples(KEYS, VALUES), min_size=1, max_size=3),
       junk=st.sampled_from(["", "=", "novalue", "=x", "a==b"]))  # fmt: skip
def test_set_rejects_bad_settings_and_changes_nothing(
    server: Server, pairs: list[tuple[str, str]], junk: str
) -> None:
    mnt = server.mountpoint
    before = read_settings(mnt)
    statfs = os.statvfs(mnt)
    argv = ["set", mnt, *(f"{k}={v}" for k, v in pairs), *([junk] if junk else [])]
    code, out, err = run_main(argv)
    try:
        if code == 0:
            after = read_settings(mnt)
            last = {key.strip(): value for key, value in pairs}  # set in order: the last wins
            for key, value in last.items():
                assert _reads_back(key, value, after[key]), (key, value, after)
        else:
            one_line_error((code, out, err), "")  # ours, or argparse's for a KEY like "-x"
            # Only the settings named before the bad one may have changed (and it says so).
            if "already set" not in err:
                assert read_settings(mnt) == before, err
    finally:
        for key, value in before.items():  # back to where the example started
            os.setxattr(mnt, PREFIX + key, value)
    assert os.statvfs(mnt).f_blocks == statfs.f_blocks
    assert server.proc.poll() is None, server.log()


def test_stat_of_what_has_no_figures(server: Server) -> None:
    """A directory, FIFO or symlink on the mount: said so, not "not on a mkwritefs"."""
    mnt = server.mountpoint
    os.mkdir(os.path.join(mnt, "d"))
    os.mkfifo(os.path.join(mnt, "fifo"))
    os.symlink("d", os.path.join(mnt, "link"))
    try:
        for name in ("d", "fifo", "link"):
            err = one_line_error(run_main(["stat", os.path.join(mnt, name)]), "stat")
            assert "is not a regular file" in err, err
        err = one_line_error(run_main(["stat", os.path.join(mnt, "missing")]), "stat")
        assert "no such file" in err, err
    finally:
        os.rmdir(os.path.join(mnt, "d"))
        os.unlink(os.path.join(mnt, "fifo"))
        os.unlink(os.path.join(mnt, "link"))
