"""ENOSPC under load: the real workloads on a mount far smaller than they need.

Every failure must be a clean ENOSPC (SIGBUS would be clean too for stores under
`reserve`, but FUSE never asks the server before a page becomes writable, so on a real
mount a store into a hole of a full filesystem is refused at msync, with ENOSPC). Never
EIO, never a hang (every tool runs under a time limit), never a wrong byte in what was
acknowledged (what write(2) returned, what a successful msync covered: read back from
the server). Then everything is deleted, all space is free again, and work goes on.
"""

from __future__ import annotations

import pytest

from fusefs.probe import workloads
from tests.mount.conftest import Server
from tests.workloads.conftest import check_mount, empty_again

pytestmark = pytest.mark.mount

CLEAN = workloads.CLEAN_KINDS


def _full_then_free(server: Server, *outcomes: workloads.Outcome) -> workloads.Outcome:
    total = workloads.Outcome("ENOSPC run")
    for out in outcomes:
        total.merge(out)
    check_mount(server, total, CLEAN)
    return total


def _run_all(
    server: Server, repo: str, *, capacity: int, size: str, numjobs: int, seconds: int, scale: float
) -> workloads.Outcome:
    """Each workload on the full mount, then rm and the space report, one by one."""
    mnt = server.mountpoint
    total = workloads.Outcome("ENOSPC under load")
    runs = [
        lambda: workloads.fio(
            mnt,
            name="pw",
            engine="psync",
            rw="write",
            size=size,
            numjobs=numjobs,
            enospc=True,
            timeout=600,
        ),
        lambda: workloads.fio(
            mnt,
            name="mw",
            engine="mmap",
            rw="write",
            size=size,
            numjobs=numjobs,
            sparse=True,
            fsync=16,
            enospc=True,
            timeout=600,
        ),
        lambda: workloads.fio(
            mnt,
            name="rw",
            engine="psync",
            rw="randrw",
            size=size,
            numjobs=numjobs,
            enospc=True,
            timeout=600,
        ),
        lambda: workloads.stress_ng(
            mnt,
            stressors=("hdd", "mmap", "fallocate", "sync-file", "seek", "iomix"),
            seconds=seconds,
            scale=scale,
            enospc=True,
        ),
        lambda: workloads.xfs_io_enospc(mnt, capacity=capacity),
        lambda: workloads.git_workload(mnt, repo, enospc=True),
        lambda: workloads.plain_io(mnt, seed=5, files=16, max_file=capacity // 4),
    ]
    for run in runs:
        out = run()
        total.merge(out)
        check_mount(server, out, CLEAN)
        empty_again(server)
    return total


@pytest.fixture(scope="module")
def big_repo(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A repository of ~6 MiB of incompressible blobs: more than a 4 MiB mount holds."""
    path = str(tmp_path_factory.mktemp("repo") / "big")
    workloads.make_git_repo(path, seed=3, commits=3, files=12, max_file=1 << 20)
    return path


def test_enospc_under_load_then_work_goes_on(mount_factory, big_repo: str, small_repo: str) -> None:
    server = mount_factory(size="4M")
    total = _run_all(server, big_repo, capacity=4 << 20, size="4M", numjobs=2, seconds=1, scale=1.0)
    assert total.errors["ENOSPC"] >= 6, str(total)  # every workload met a full mount
    assert total.bytes_verified > 0, str(total)
    # deleted, all free again: the same kinds of work now succeed in full
    after = [
        workloads.fio(
            server.mountpoint,
            name="ok",
            engine="mmap",
            rw="write",
            size="1M",
            numjobs=2,
            sparse=True,
            fsync=16,
        ),
        workloads.git_workload(server.mountpoint, small_repo),
        workloads.xfs_io_script(server.mountpoint, seed=7, max_size=1 << 20, steps=20),
    ]
    for out in after:
        check_mount(server, out)
        assert out.bytes_verified > 0, str(out)
        empty_again(server)


def test_a_failed_fallocate_and_write_leave_the_figures_exact(mount_factory) -> None:
    server = mount_factory(size="2M")
    out = workloads.xfs_io_enospc(server.mountpoint, capacity=2 << 20)
    figures = check_mount(server, out, CLEAN)
    assert out.errors["ENOSPC"] == 3, str(out)  # pwrite, falloc, msync: nothing else
    assert figures["free_blocks"] == 0, figures
    empty_again(server)


@pytest.fixture(scope="module")
def huge_repo(tmp_path_factory: pytest.TempPathFactory) -> str:
    """~24 MiB of incompressible blobs: more than a 16 MiB mount holds."""
    path = str(tmp_path_factory.mktemp("repo") / "huge")
    workloads.make_git_repo(path, seed=4, commits=4, files=16, max_file=3 << 20)
    return path


@pytest.mark.long
@pytest.mark.parametrize("policy", ["reserve", "legacy", "reserve-cow"])
def test_long_enospc_under_load(mount_factory, huge_repo: str, policy: str) -> None:
    server = mount_factory(size="16M", extra=("--policy", policy))
    total = _run_all(
        server, huge_repo, capacity=16 << 20, size="32M", numjobs=4, seconds=10, scale=4.0
    )
    assert total.errors["ENOSPC"] >= 6, str(total)
    after = workloads.fio(
        server.mountpoint, name="ok", engine="psync", rw="randrw", size="2M", numjobs=4
    )
    check_mount(server, after)
