"""Harness of the scenario tests: the library played in child processes, the command
line in subprocesses; every mount point is ours and unmounted afterwards."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fusefs import mountinfo
from fusefs.scenario.language import scenario_files

from . import children

WORKERS = 2
LIMIT = 300  # seconds: a harness limit for a hung child, not an assertion


def unmount(mountpoint: str) -> None:
    for flags in ("-u", "-uz"):
        if mountinfo.find(os.path.realpath(mountpoint)) is None:
            return
        subprocess.run(["fusermount3", flags, mountpoint], capture_output=True, check=False)


@pytest.fixture(scope="session")
def library_results(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Every scenario of scripts/scenarios under each of its policies, played by
    WORKERS spawned processes, each mounting on a directory of its own."""
    files = [str(p) for p in scenario_files()]
    dirs = [str(tmp_path_factory.mktemp(f"mnt{i}")) for i in range(WORKERS)]
    ctx = multiprocessing.get_context("spawn")
    try:
        with ctx.Pool(WORKERS) as pool:
            jobs = [
                pool.apply_async(children.play_files, (files[i::WORKERS], dirs[i]))
                for i in range(WORKERS)
            ]
            results: dict[str, Any] = {}
            for job in jobs:
                results.update(job.get(LIMIT))
        yield results
    finally:
        for d in dirs:
            unmount(d)


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`mkwritefs ARGS` in a subprocess."""
    return subprocess.run(
        [sys.executable, "-m", "fusefs", *args],
        capture_output=True, text=True, check=False, timeout=timeout,
    )  # fmt: skip


@pytest.fixture
def scenario_file(tmp_path: Path):  # noqa: ANN201
    """write(text) -> the path of a scenario file holding ``text``."""

    def write(text: str, name: str = "mine.py") -> str:
        path = tmp_path / name
        path.write_text(text)
        return str(path)

    return write
