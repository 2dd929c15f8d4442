#!/usr/bin/env python3
"""What the real kernel does with stores through a shared mapping on a full filesystem.

Mounts a small mkwritefs (with the `mkwritefs` command, in a temporary directory, always
unmounted), fills it until ENOSPC and, one child process per access, stores into a hole
and into an allocated page of a MAP_SHARED mapping, calls msync, writes with write(2)
and fsyncs, and stores into a page fallocated before the fill; then reads everything
back past the page cache. The same again with `--writeback-cache`. As root it adds two
of the kernel's own filesystems as ground truth: ext4 on a loop device (`mkfs.ext4 -m 0`)
and a size-limited tmpfs. Then the simulator plays the same cases in process under the
`fuse` and `reserve` policies (`fusefs.probe.simprobe`). One table shows them side by side.

Expected: ext4 and tmpfs refuse the store into a hole with SIGBUS at the store, while an
overwrite of an allocated page succeeds. FUSE has no page_mkwrite upcall, so on
mkwritefs the store succeeds, msync reports ENOSPC, and the data is not in the
filesystem - the simulator's `fuse` column shows the same; its `reserve` column shows
what ext4 does. fallocate before mapping keeps the data everywhere.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Callable, Sequence

from fusefs.probe.realkernel import (
    PAGE,
    Column,
    ProbeError,
    ProbeReport,
    ext4_loop,
    format_table,
    ground_truth_unavailable,
    mkwritefs_mounted,
    probe_filesystem,
    report_column,
    tmpfs_mounted,
)
from fusefs.probe.simprobe import DEFAULT_CAPACITY, simulate

SIM_POLICIES = ("fuse", "reserve")


def probe_mkwritefs(size: str, *, writeback_cache: bool) -> ProbeReport:
    label = "mkwritefs --writeback-cache" if writeback_cache else "mkwritefs (FUSE)"
    with mkwritefs_mounted(size, writeback_cache=writeback_cache) as mountpoint:
        return probe_filesystem(mountpoint, label=label)


def probe_ext4() -> ProbeReport:
    with ext4_loop() as loop:
        return probe_filesystem(loop.directory, label="ext4 (loop, -m 0)", remount=loop.remount)


def probe_tmpfs() -> ProbeReport:
    with tmpfs_mounted("1m") as mountpoint:
        return probe_filesystem(mountpoint, label="tmpfs (size=1m)")


def simulator_columns(reports: Sequence[ProbeReport]) -> list[Column]:
    """The simulator beside the real kernel: the same cases, in process, under `fuse`
    (Linux's FUSE today: no page_mkwrite upcall) and `reserve` (the hook reserves a block
    or refuses with SIGBUS, as ext4 does), on a filesystem of the first mkwritefs probe's
    size (`fusefs.probe.simprobe`: nothing mounted, data read from the simulated page cache)."""
    blocks = next((r.df_full.size // PAGE for r in reports if r.label.startswith("mkwritefs")),
                  DEFAULT_CAPACITY)  # fmt: skip
    return [report_column(simulate(policy, capacity_blocks=blocks)) for policy in SIM_POLICIES]


def measure(
    size: str, *, ground_truth: bool, progress: Callable[[str], None]
) -> tuple[list[ProbeReport], dict[str, str]]:
    """Every probe that can run here, and why the others could not."""
    probes: list[tuple[str, Callable[[], ProbeReport]]] = [
        ("mkwritefs", lambda: probe_mkwritefs(size, writeback_cache=False)),
        ("mkwritefs --writeback-cache", lambda: probe_mkwritefs(size, writeback_cache=True)),
    ]
    skipped: dict[str, str] = {}
    for kind, probe in (("ext4", probe_ext4), ("tmpfs", probe_tmpfs)):
        reason = ground_truth_unavailable(kind) if ground_truth else "--no-ground-truth was given"
        if reason is None:
            probes.append((kind, probe))
        else:
            skipped[kind] = reason
    reports = []
    for name, probe in probes:
        progress(f"probing {name} ...")
        reports.append(probe())
    return reports, skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--size", default="1M", help="size of the mkwritefs mounts, tmpfs style (default 1M)"
    )
    parser.add_argument(
        "--no-ground-truth",
        action="store_true",
        help="skip the ext4 and tmpfs comparison even as root",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    def progress(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    try:
        reports, skipped = measure(
            args.size, ground_truth=not args.no_ground_truth, progress=progress
        )
    except ProbeError as exc:
        print(f"real_mmap_enospc: {exc}", file=sys.stderr)
        return 1
    columns = [report_column(r) for r in reports] + simulator_columns(reports)
    if args.json:
        print(
            json.dumps(
                {
                    "columns": [{"title": c.title, "cells": dict(c.cells)} for c in columns],
                    "reports": [dataclasses.asdict(r) for r in reports],
                    "skipped": skipped,
                }
            )
        )
        return 0
    print(format_table(columns))
    if skipped:
        print()
    for kind, reason in skipped.items():
        print(f"{kind}: not measured: {reason}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
