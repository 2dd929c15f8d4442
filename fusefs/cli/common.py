"""What every `mkwritefs` command shares: the registry of subcommands, usage errors and
size parsing.

Every subcommand registers itself in `COMMANDS` with `@command(...)`: a function that adds
its arguments and a function that runs it and returns the exit status. Exit statuses:
0 success, 1 a failure while running, 2 bad input (one clear line on stderr, like
argparse's own usage errors). Nothing is mounted or changed when input is bad.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from dataclasses import dataclass

from fusefs.constants import BLOCK_SIZE

DEFAULT_SIZE = "64M"
MAX_SIZE = 2**63 - 1  # the kernel's largest file and filesystem size (MAX_LFS_FILESIZE)
_SUFFIXES = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


class UsageError(Exception):
    """Bad input: reported as one line on stderr, exit status 2."""


AddArguments = Callable[[argparse.ArgumentParser], None]
Run = Callable[[argparse.Namespace], int]


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    help: str
    description: str
    add_arguments: AddArguments
    run: Run


COMMANDS: dict[str, Command] = {}


def command(
    name: str, *, help: str, description: str, add_arguments: AddArguments
) -> Callable[[Run], Run]:
    """Register a subcommand: `@command("mount", help=..., add_arguments=...)`."""

    def register(run: Run) -> Run:
        COMMANDS[name] = Command(name, help, description, add_arguments, run)
        return run

    return register


def parse_size(text: str) -> int:
    """A tmpfs-style size (`16M`, `1G`, `4096k`, `65536`) in 4096-byte blocks, rounded up."""
    match = re.fullmatch(r"\s*(\d+)\s*([kKmMgGtT]?)\s*", text, re.ASCII)  # not "١٢M"
    if match is None:
        raise UsageError(
            f"invalid size {text!r}: use a number of bytes with an optional k, M, G or T suffix"
        )
    size = int(match.group(1)) * _SUFFIXES[match.group(2).lower()]
    if size <= 0:
        raise UsageError(f"invalid size {text!r}: the size must be at least one block (4096)")
    if size > MAX_SIZE:  # statfs reports blocks as a u64: past it, df fails with EIO
        raise UsageError(f"invalid size {text!r}: at most 2^63 - 1 bytes (8388607T)")
    return -(-size // BLOCK_SIZE)
