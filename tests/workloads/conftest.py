"""Fixtures for real workloads on a real mount (served by a separate process).

The mounts come from tests/mount/conftest.py (start_server/stop_server, `mkwritefs`,
`mount_factory`), imported here so these tests use the very same fixtures. A workload's
tool that is missing fails the test: scripts/setup installs them all, so a missing one is
a broken setup, not a reason to skip.
"""

from __future__ import annotations

import os

import pytest

from fusefs.probe import workloads
from tests.mount.conftest import Server, mkwritefs, mount_factory, workdir  # noqa: F401


@pytest.fixture(autouse=True)
def tools() -> None:
    try:
        workloads.require_tools()
    except workloads.ToolMissing as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def small_repo(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A local git repository (a few commits, ~1 MiB) to clone onto mounts."""
    path = str(tmp_path_factory.mktemp("repo") / "small")
    workloads.make_git_repo(path, seed=8, commits=4, files=24, max_file=48 * 1024)
    return path


def check_mount(
    server: Server, outcome: workloads.Outcome, allowed: frozenset[str] = frozenset()
) -> dict[str, int | str]:
    """What every workload test asserts afterwards: no error outside `allowed`, the
    server alive and still mounted (no stale mount), statfs, the root's figures, the
    files' own figures and the server's fsck in agreement. Returns the figures."""
    print(f"\n{outcome}")  # the figures, shown with pytest -s (scripts/test --long -s)
    assert not outcome.bad(allowed), str(outcome)
    assert server.proc.poll() is None, f"the server died:\n{server.log()}"
    assert server.is_mounted(), "stale mount: no longer in the mount table"
    assert os.path.ismount(server.mountpoint), "stale mount: the mount point does not answer"
    figures, problems = workloads.settled_space_report(server.mountpoint)
    assert not problems, problems
    return figures


def empty_again(server: Server) -> None:
    """Delete everything; once the kernel has forgotten the inodes, all space is free."""
    workloads.clear(server.mountpoint)
    figures = check_mount(server, workloads.Outcome("rm"))
    assert figures["free_blocks"] == figures["capacity_blocks"], figures
