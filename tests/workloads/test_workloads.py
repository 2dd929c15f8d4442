"""Real tools on a real mount: fio (mmap and psync engines) with data verification, the
filesystem and mmap stressors of stress-ng, random xfs_io scripts checked against a
model, a git clone/checkout/fsck. No verification error, no other error, the mount
alive, and statfs, the root's figures, the files' figures and fsck agreeing after each.

The normal run does a short slice of each (a few MiB, seconds); `scripts/test --long`
adds the full sizes (tests marked ``long``).
"""

from __future__ import annotations

import pytest

from fusefs.probe import workloads
from tests.mount.conftest import Server, served
from tests.workloads.conftest import check_mount

pytestmark = pytest.mark.mount

FIO_RUNS = [  # (engine, rw, sparse, fsync): mmap stores into holes and into laid-out files
    ("mmap", "randwrite", True, 32),
    ("mmap", "write", False, 0),
    ("psync", "randrw", False, 0),
    ("psync", "write", False, 16),
]


@pytest.mark.parametrize(("engine", "rw", "sparse", "fsync"), FIO_RUNS)
def test_fio_verifies(
    mkwritefs: Server, workdir, engine: str, rw: str, sparse: bool, fsync: int
) -> None:
    out = workloads.fio(
        str(workdir),
        name="f",
        engine=engine,
        rw=rw,
        size="2M",
        numjobs=2,
        sparse=sparse,
        fsync=fsync,
        timeout=120,
    )
    check_mount(mkwritefs, out)
    assert out.bytes_verified >= (2 if rw.endswith("rw") else 4) << 20, str(out)


def test_stress_ng_filesystem_and_mmap(mkwritefs: Server, workdir) -> None:
    out = workloads.stress_ng(str(workdir), seconds=2, scale=0.5)
    check_mount(mkwritefs, out)
    assert out.ops > 0, str(out)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_xfs_io_script_matches_the_model(mkwritefs: Server, workdir, seed: int) -> None:
    out = workloads.xfs_io_script(str(workdir), seed=seed, max_size=512 * 1024, steps=30)
    check_mount(mkwritefs, out)
    assert out.bytes_verified > 0, str(out)


def test_git_clone_checkout_fsck(mkwritefs: Server, workdir, small_repo: str) -> None:
    out = workloads.git_workload(str(workdir), small_repo)
    check_mount(mkwritefs, out)
    assert out.bytes_verified > 100_000, str(out)


def test_plain_write_read_delete(mkwritefs: Server, workdir) -> None:
    out = workloads.plain_io(str(workdir), seed=4, files=12, max_file=256 * 1024)
    check_mount(mkwritefs, out)
    assert out.bytes_verified > 0, str(out)


# -- full sizes: scripts/test --long --------------------------------------------------


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory):
    """One 1 GiB mount for the long workloads of this module."""
    with served(tmp_path_factory.mktemp("big") / "mnt", size="1G") as server:
        yield server


@pytest.mark.long
@pytest.mark.parametrize(("engine", "rw", "sparse", "fsync"), FIO_RUNS)
def test_long_fio_verifies(big: Server, engine: str, rw: str, sparse: bool, fsync: int) -> None:
    out = workloads.fio(
        big.mountpoint,
        name="f",
        engine=engine,
        rw=rw,
        size="64M",
        numjobs=4,
        sparse=sparse,
        fsync=fsync,
        timeout=900,
    )
    check_mount(big, out)
    assert out.bytes_verified >= (128 if rw.endswith("rw") else 256) << 20, str(out)
    workloads.clear(big.mountpoint)


@pytest.mark.long
def test_long_stress_ng_every_stressor(big: Server) -> None:
    out = workloads.stress_ng(
        big.mountpoint, stressors=tuple(workloads.STRESSORS), seconds=20, scale=4, timeout=900
    )
    check_mount(big, out)
    assert out.ops > 0, str(out)
    workloads.clear(big.mountpoint)


@pytest.mark.long
def test_long_xfs_io_scripts(big: Server) -> None:
    total = workloads.Outcome("xfs_io scripts")
    for seed in range(100, 120):
        total.merge(
            workloads.xfs_io_script(
                big.mountpoint, seed=seed, max_size=8 << 20, steps=120, timeout=600
            )
        )
    check_mount(big, total)
    workloads.clear(big.mountpoint)


@pytest.mark.long
def test_long_git(big: Server, tmp_path) -> None:
    repo = str(tmp_path / "repo")
    workloads.make_git_repo(repo, seed=9, commits=40, files=400, max_file=200 * 1024)
    out = workloads.git_workload(big.mountpoint, repo, timeout=900)
    check_mount(big, out)
    assert out.bytes_verified > 10 << 20, str(out)
    workloads.clear(big.mountpoint)
