#!/usr/bin/env python3
"""The mkwritefs demo: a 16 MiB filesystem, filled until ENOSPC, then freed again; then
the mmap safety demonstration, every write-notification policy side by side; the same
story as a scenario with its expectations checked; and the real kernel beside it.

Narrates each step and runs the real tools (`mkwritefs`, `dd`, `df`, `rm`) against a
mount in a temporary directory, printing their output as a user would see it. The mount
is always unmounted at the end (`finally`), also when a step fails or on Ctrl-C. The
policy table comes from `fusefs.scenario.showcase`, which mounts in this process (the simulated
process shares the filesystem's page cache) and unmounts between policies.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from fusefs.cli.mount import find_mount
from fusefs.scenario import showcase

MKWRITEFS = [sys.executable, "-m", "fusefs"]


def say(text: str) -> None:
    print()
    print(textwrap.fill(text, width=88, initial_indent="==> ", subsequent_indent="    "))


def run(
    *cmd: str, shown: str | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """Run a command, show it as `$ ...` with its output indented."""
    print(f"  $ {shown or shlex.join(cmd)}")
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    # stderr first: progress lines come before the table they lead to.
    for line in (result.stderr + result.stdout).rstrip().splitlines():
        print(f"    {line}")
    if check and result.returncode != 0:
        raise SystemExit(f"demo: `{shown or shlex.join(cmd)}` failed ({result.returncode})")
    return result


def mkwritefs(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return run(*MKWRITEFS, *args, shown=shlex.join(["mkwritefs", *args]), check=check)


def space(mnt: Path) -> None:
    run("df", "-h", "--output=target,size,used,avail,pcent", str(mnt))
    mkwritefs("stat", str(mnt))


def demo(mnt: Path, size: str, store: Path | None = None) -> None:
    if store is None:
        say(
            f"Mount a new, empty mkwritefs of {size} on {mnt}. Like tmpfs it lives in "
            "memory, and its size is a hard limit counted in 4096-byte blocks."
        )
        mkwritefs("mount", str(mnt), "--size", size)
    else:
        say(
            f"Make a store of {size}: one SQLite file that holds the filesystem, so it "
            "outlives the mount. Then mount it; its size is a hard limit counted in "
            "4096-byte blocks."
        )
        mkwritefs("mkfs", str(store), "--size", size)
        mkwritefs("mount", str(mnt), "--store", str(store))
    space(mnt)

    say(
        "Write a 6 MiB file with dd. Every write(2) reaches the filesystem before it "
        "returns (no writeback cache), so the filesystem can refuse one that does not fit."
    )
    run("dd", "if=/dev/urandom", f"of={mnt}/first", "bs=1M", "count=6", "status=none")

    say(
        "Now fill the rest with a second dd that asks for far more than is left. "
        "It gets everything that fits, then 'No space left on device' (ENOSPC)."
    )
    result = run("dd", "if=/dev/zero", f"of={mnt}/second", "bs=1M", "count=64", check=False)
    if result.returncode == 0 or "No space left" not in result.stderr:
        raise SystemExit("demo: expected dd to stop with ENOSPC")

    say(
        "The filesystem is full. df (statfs) and the filesystem's own figures "
        "(extended attributes user.mkwritefs.*) agree: no free block is left."
    )
    space(mnt)
    run("ls", "-ls", "--block-size=4K", str(mnt))
    say("Per file, `mkwritefs stat` shows its allocated and reserved blocks and dirty pages:")
    mkwritefs("stat", f"{mnt}/second")

    say(
        "Every byte dd was told was written is really there: the file's size is exactly "
        "what dd reported, and it reads back in full."
    )
    run("sh", "-c", f"wc -c < {shlex.quote(str(mnt))}/second", shown=f"wc -c < {mnt}/second")

    say(
        "Delete the first file. Its blocks come back as soon as the kernel lets go of "
        "the inode (it sends FORGET right after rm returns)."
    )
    full = os.statvfs(mnt).f_bfree
    run("rm", f"{mnt}/first")
    _wait_for(lambda: os.statvfs(mnt).f_bfree > full)
    space(mnt)

    say(
        "And there is room to write again. This time dd calls fsync at the end "
        "(conv=fsync): writeback gives each page its block, so the file's reserved "
        "blocks become allocated and its pages clean."
    )
    run("dd", "if=/dev/urandom", f"of={mnt}/third", "bs=1M", "count=4", "conv=fsync", "status=none")
    mkwritefs("stat", f"{mnt}/third")
    run("ls", "-ls", "--block-size=4K", str(mnt))


def remount_store(mnt: Path, store: Path) -> None:
    """Unmount, fsck the store, mount it again: every file reads back the same."""
    names = sorted(p.name for p in mnt.iterdir())
    before = run("sha256sum", *(str(mnt / n) for n in names), shown="sha256sum *").stdout
    say(
        "Unmount: every dirty page is written back and committed to the store. fsck "
        "checks the store: blocks, link counts, directories, space figures."
    )
    mkwritefs("umount", str(mnt))
    mkwritefs("fsck", str(store))
    say("Mount the store again: the same files, the same bytes, the same space figures.")
    mkwritefs("mount", str(mnt), "--store", str(store))
    after = run("sha256sum", *(str(mnt / n) for n in names), shown="sha256sum *").stdout
    space(mnt)
    if after != before:
        raise SystemExit("demo: the files read back differently after the remount")
    say("Identical: nothing written was lost across the unmount.")


def policy_table() -> None:
    say(
        f"The mmap safety demonstration. For each policy in turn: a new filesystem of "
        f"{showcase.CAPACITY} blocks with {showcase.FREE} free, mounted in this process; a "
        f"simulated process maps a sparse file of {showcase.HOLES} holes MAP_SHARED and "
        "stores a page into each hole, catching SIGBUS; then msync(MS_SYNC). df is "
        "statvfs on the mount, cat is read(2) through the mount, compared with what the "
        "process was told was stored."
    )
    print()
    for line in showcase.format_table(showcase.measure()).splitlines():
        print(f"    {line}")
    say(
        "Under reserve (ext4's delayed allocation in page_mkwrite), reserve-cow (btrfs) "
        "and shmem (tmpfs, at fault time) a store that finds no free block gets SIGBUS at "
        "once, so nothing acknowledged is lost. Under legacy, fuse and cache every store "
        "is acknowledged, df still shows free space, and writeback then finds none: "
        "msync reports ENOSPC and cat reads zeros where acknowledged data was - lost, "
        "and counted in user.mkwritefs.lost_bytes."
    )


def headline_scenario(store_dir: Path | None = None) -> None:
    say(
        "The same story is the scenario library's headline. The runner plays it under "
        "every policy, checks each expectation through the real mount, runs fsck, and "
        "prints one table: a column per policy, a row per expectation."
    )
    extra = []
    if store_dir is not None:
        say(
            "With --store each policy's filesystem lives in a store of its own, and after "
            "the unmount the verdicts are read back from the reopened store: 'none lost' "
            "under reserve, the acknowledged bytes that are gone under legacy."
        )
        extra = ["--store", str(store_dir)]
    mkwritefs("scenario", "run", "headline-stores-into-holes", "--policy", "all", *extra)


def real_kernel() -> None:
    say(
        "And the real kernel, asked the same question: a real mmap(MAP_SHARED) store into "
        "a hole of a full filesystem, on our FUSE mount (the kernel's FUSE has no "
        "page_mkwrite upcall) and, as root, on ext4 and tmpfs, beside the simulator's "
        "fuse and reserve. Each store runs in its own child process."
    )
    run(
        sys.executable,
        str(Path(__file__).with_name("real_mmap_enospc.py")),
        shown="scripts/real_mmap_enospc.py",
        check=False,
    )


def next_steps() -> None:
    say(
        "Every other case of the kernel's table is a scenario too: `mkwritefs scenario "
        "list` lists them, `mkwritefs scenario run NAME --policy all` plays one, "
        "`--trace FILE` saves its events for Perfetto, and `mkwritefs scenario report "
        "NAME --html FILE` draws it as one HTML page."
    )


def _wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 5
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="16M", help="filesystem size (default 16M)")
    parser.add_argument(
        "--store",
        action="store_true",
        help="keep the filesystem in a store (mkwritefs mkfs), unmount and "
        "mount it again, and read the scenario's verdicts back from stores",
    )
    parser.add_argument(
        "--no-real-kernel",
        action="store_true",
        help="skip the real-kernel comparison (ext4, tmpfs, FUSE mmap stores)",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="mkwritefs-demo-") as tmp:
        mnt = Path(tmp) / "mnt"
        mnt.mkdir()
        store = Path(tmp) / "store.db" if args.store else None
        try:
            demo(mnt, args.size, store)
            if store is not None:
                remount_store(mnt, store)
        finally:
            if find_mount(str(mnt)) is not None:
                _unmount(mnt)
        policy_table()
        headline_scenario(Path(tmp) if args.store else None)
    if not args.no_real_kernel:
        real_kernel()
    next_steps()
    say("Done.")
    return 0


def _unmount(mnt: Path) -> None:
    """Unmount, even when stdout is gone (`scripts/demo | head`) or a step failed."""
    try:
        say("Unmount (mkwritefs umount waits until the server has exited).")
        print(f"  $ mkwritefs umount {mnt}")
    except OSError:
        pass  # a closed pipe: unmount all the same
    result = subprocess.run(
        [*MKWRITEFS, "umount", str(mnt)], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        subprocess.run(["fusermount3", "-uz", str(mnt)], capture_output=True, check=False)
    try:
        for line in (result.stdout + result.stderr).splitlines():
            print(f"    {line}")
    except OSError:
        pass


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BrokenPipeError:  # the reader went away (`| head`): the mount is already gone
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
