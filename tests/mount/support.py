"""Helpers for the mount tests: system calls Python lacks, and waiting on the kernel."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest

BLOCK = 4096
AT_FDCWD = -100
RENAME_NOREPLACE = 1
RENAME_EXCHANGE = 2
FALLOC_FL_KEEP_SIZE = 1
FALLOC_FL_PUNCH_HOLE = 2
FALLOC_FL_ZERO_RANGE = 0x10

libc = ctypes.CDLL(None, use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
libc.getxattr.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]
libc.getxattr.restype = ctypes.c_ssize_t


def _check(result: int) -> int:
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def renameat2(old: os.PathLike[str] | str, new: os.PathLike[str] | str, flags: int) -> None:
    _check(libc.renameat2(AT_FDCWD, os.fsencode(old), AT_FDCWD, os.fsencode(new), flags))


def fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    _check(libc.fallocate(fd, mode, offset, length))


def getxattr_into(path: os.PathLike[str] | str, name: str, size: int) -> int:
    """getxattr(2) with a buffer of exactly `size` bytes (ERANGE when too small)."""
    buf = ctypes.create_string_buffer(max(size, 1))
    return _check(libc.getxattr(os.fsencode(path), name.encode(), buf, size))


def wait_until(condition: Callable[[], bool], what: str = "condition") -> None:
    """Poll for what the kernel does after a system call returned (RELEASE, FORGET)."""
    deadline = time.monotonic() + 10
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} never became true")
        time.sleep(0.005)


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `mkwritefs ARGS` in a subprocess (never from a thread serving a mount)."""
    return subprocess.run(
        [sys.executable, "-m", "fusefs", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def raises_errno(code: int) -> Any:
    """pytest.raises(OSError) that also checks the errno."""
    return pytest.raises(OSError, match=rf"^\[Errno {code}\] ")
