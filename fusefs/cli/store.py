"""`mkwritefs mkfs` and `mkwritefs fsck`: make and check a store (fusefs.fs.store).

`mkfs STORE --size SIZE` creates a new store holding an empty root owned by the caller.
`fsck STORE [--repair]` checks an unmounted store (fusefs.fs.store_fsck): exit 0 when clean,
1 with the problems listed one a line (after --repair: what was fixed, and what is left).
A path that is not a usable store (missing, not a store, a newer format, in use by a
mount, read-only, on a mkwritefs mount) is one line on stderr, exit 2, the file untouched.
`mount DIR --store STORE` checks its store here too (`check_mount_store`).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import time

from fusefs.cli.common import UsageError, command, parse_size
from fusefs.constants import BLOCK_SIZE
from fusefs.fs import store as store_mod
from fusefs.fs import store_fsck
from fusefs.fs.store import StoreError


def check_mount_store(path: str, size: str | None) -> int:
    """The capacity (blocks) of the store `mount --store` is given; UsageError when it
    cannot be mounted or `--size` differs from the store's size."""
    try:
        real = store_mod.check_store(path)
        conn = sqlite3.connect(real)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'capacity_blocks'").fetchone()
        finally:
            conn.close()
    except StoreError as exc:
        raise UsageError(str(exc)) from None
    except sqlite3.Error as exc:
        raise UsageError(f"{path} is a damaged store ({exc}): run mkwritefs fsck") from None
    if row is None:
        raise UsageError(f"{path} is a damaged store (no capacity): run mkwritefs fsck")
    blocks = int(row[0])
    if size is not None and parse_size(size) != blocks:
        raise UsageError(
            f"--size {size} differs from the store's size ({blocks * BLOCK_SIZE} bytes); "
            "leave --size out, or change it with `mkwritefs set DIR capacity_blocks=N`"
        )
    return blocks


# -- mkfs ----------------------------------------------------------------------------------


def _mkfs_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", metavar="STORE", help="the store file to create (must not exist)")
    parser.add_argument(
        "--size",
        required=True,
        help="capacity, tmpfs style: 16M, 1G, 4096k or plain bytes (4096-byte blocks)",
    )


@command(
    "mkfs",
    help="create a store: a filesystem that outlives its mounts",
    description="Create STORE, one SQLite database file holding an empty mkwritefs of "
    "--size (its root owned by you). Mount it with `mkwritefs mount DIR --store STORE`.",
    add_arguments=_mkfs_arguments,
)
def run_mkfs(args: argparse.Namespace) -> int:
    blocks = parse_size(args.size)
    try:
        store_mod.mkfs(args.store, blocks, uid=os.getuid(), gid=os.getgid(), now_ns=time.time_ns())
    except StoreError as exc:
        raise UsageError(str(exc)) from None
    print(f"{args.store}: a mkwritefs store of {blocks} blocks of {BLOCK_SIZE} bytes")
    return 0


# -- fsck ----------------------------------------------------------------------------------


def _fsck_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("store", metavar="STORE", help="the store to check (not mounted)")
    parser.add_argument(
        "--repair", action="store_true", help="fix what can be fixed and say what was done"
    )


@command(
    "fsck",
    help="check a store (and with --repair fix it)",
    description="Check the unmounted STORE: blocks owned by exactly one regular file, link "
    "counts, directory structure, every file reachable, orphaned inodes of files unlinked "
    "while open, the space figures. Exit 0 when clean, 1 with the problems listed; "
    "--repair fixes what can be fixed, says what it did and exits 0 when nothing is left.",
    add_arguments=_fsck_arguments,
)
def run_fsck(args: argparse.Namespace) -> int:
    try:
        real = store_mod.check_location(args.store)
        store_mod.read_header(real)
        if args.repair:
            store_mod.check_writable(real)
        lock = store_mod.lock_store(real)
    except StoreError as exc:
        raise UsageError(str(exc)) from None
    try:
        conn = sqlite3.connect(real, isolation_level=None)
        try:
            if args.repair:
                done, left = store_fsck.repair(conn)
            else:
                done, left = [], store_fsck.check(conn)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        print(f"{args.store}: cannot be read: {exc}", file=sys.stderr)
        return 1
    finally:
        os.close(lock)
    for line in done:
        print(f"{args.store}: fixed: {line}")
    if not left:
        print(f"{args.store}: clean")
        return 0
    for problem in left:
        hint = "" if problem.repair is None or args.repair else " (--repair fixes it)"
        print(f"{args.store}: {problem.message}{hint}")
    print(f"{args.store}: {len(left)} problem(s)")
    return 1
