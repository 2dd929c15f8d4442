"""The real kernel's answer to stores through a shared mapping on a full filesystem.

Ground truth first (root only): on ext4 (loop device, `mkfs.ext4 -m 0`) and on a
size-limited tmpfs, once the filesystem is full a store into a hole of a MAP_SHARED
mapping dies of SIGBUS - the filesystem refuses it at the fault, so nothing acknowledged
is ever lost - while an overwrite of an allocated page succeeds. Then our FUSE mount: the
kernel's FUSE has no page_mkwrite upcall, so the store succeeds, msync reports the
server's ENOSPC, and the data is not in the filesystem; fallocate before mapping keeps
it. Each probe runs once per module (a fixture) and every access in a child process.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from fusefs.probe.realkernel import (
    PAGE,
    ROWS,
    Column,
    ProbeError,
    ProbeReport,
    ext4_loop,
    format_table,
    ground_truth_unavailable,
    mkwritefs_mounted,
    probe_filesystem,
    tmpfs_mounted,
)

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "real_mmap_enospc.py"


def _skip_unless_ground_truth(kind: str) -> None:
    reason = ground_truth_unavailable(kind)
    if reason is not None:
        pytest.skip(reason)


def _skip_unless_fuse() -> None:
    if not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None:
        pytest.skip("needs /dev/fuse and fusermount3")


@pytest.fixture(scope="module")
def ext4() -> Iterator[ProbeReport]:
    _skip_unless_ground_truth("ext4")
    with ext4_loop() as loop:
        yield probe_filesystem(loop.directory, label="ext4", remount=loop.remount)


@pytest.fixture(scope="module")
def tmpfs() -> Iterator[ProbeReport]:
    _skip_unless_ground_truth("tmpfs")
    with tmpfs_mounted("1m") as mountpoint:
        yield probe_filesystem(mountpoint, label="tmpfs")


@pytest.fixture(scope="module")
def fuse() -> Iterator[ProbeReport]:
    _skip_unless_fuse()
    with mkwritefs_mounted("1M") as mountpoint:
        yield probe_filesystem(mountpoint, label="mkwritefs")


@pytest.fixture(scope="module")
def fuse_wbc() -> Iterator[ProbeReport]:
    _skip_unless_fuse()
    with mkwritefs_mounted("1M", writeback_cache=True) as mountpoint:
        yield probe_filesystem(mountpoint, label="mkwritefs --writeback-cache")


# -- ground truth: the kernel's own filesystems ------------------------------------------


@pytest.mark.kernel
@pytest.mark.parametrize("kind", ["ext4", "tmpfs"])
def test_full_fs_store_into_hole_dies_of_sigbus(kind: str, request: pytest.FixtureRequest) -> None:
    report: ProbeReport = request.getfixturevalue(kind)
    assert report.df_full.avail == 0
    hole = report.case("store_hole")
    assert hole.sigbus
    assert not hole.completed
    assert hole.acknowledged_bytes == 0
    assert hole.data_intact  # the hole still reads as zeros: nothing acknowledged, nothing lost
    assert hole.bytes_lost == 0
    assert hole.df_after == hole.df_before


@pytest.mark.kernel
@pytest.mark.parametrize("kind", ["ext4", "tmpfs"])
def test_full_fs_overwrite_of_allocated_page_succeeds(
    kind: str, request: pytest.FixtureRequest
) -> None:
    report: ProbeReport = request.getfixturevalue(kind)
    overwrite = report.case("store_allocated")
    assert overwrite.completed
    assert overwrite.signal is None
    assert (overwrite.msync_errno, overwrite.fsync_errno) == (0, 0)
    assert overwrite.data_intact
    assert overwrite.bytes_lost == 0


@pytest.mark.kernel
@pytest.mark.parametrize("kind", ["ext4", "tmpfs"])
def test_full_fs_write_fails_at_once_and_fallocate_keeps_stores(
    kind: str, request: pytest.FixtureRequest
) -> None:
    report: ProbeReport = request.getfixturevalue(kind)
    write = report.case("write_hole")
    assert write.write_errno == errno.ENOSPC
    assert write.acknowledged_bytes == 0
    falloc = report.case("store_fallocated")
    assert falloc.completed
    assert falloc.msync_errno == 0
    assert falloc.data_intact


@pytest.mark.kernel
def test_ext4_data_is_read_after_a_remount(ext4: ProbeReport) -> None:
    assert ext4.remounted
    assert ext4.fallocate_native
    assert ext4.case("load_hole").completed  # a read fault on a hole needs no block


@pytest.mark.kernel
def test_tmpfs_fails_at_first_touch_even_a_load(tmpfs: ProbeReport) -> None:
    # shmem_fault allocates the page for a read of a hole too: over size= that is SIGBUS.
    assert tmpfs.case("load_hole").sigbus


# -- our FUSE mount: no page_mkwrite upcall ------------------------------------------------


@pytest.mark.mount
@pytest.mark.parametrize("kind", ["fuse", "fuse_wbc"])
def test_fuse_store_into_hole_succeeds_then_msync_fails_and_data_is_lost(
    kind: str, request: pytest.FixtureRequest
) -> None:
    report: ProbeReport = request.getfixturevalue(kind)
    assert report.df_full.avail == 0
    hole = report.case("store_hole")
    assert hole.completed
    assert hole.signal is None
    assert hole.acknowledged_bytes == PAGE
    assert hole.msync_errno == errno.ENOSPC  # the server's WRITE error, on the mapping
    assert not hole.data_intact  # past the page cache: the server never took it
    assert not hole.evicted_intact  # and a reader sees it gone once the cache drops it
    assert hole.bytes_lost == PAGE
    assert hole.df_after == hole.df_before  # nothing was allocated for it


@pytest.mark.mount
@pytest.mark.parametrize("kind", ["fuse", "fuse_wbc"])
def test_fuse_overwrite_and_fallocated_store_keep_their_data(
    kind: str, request: pytest.FixtureRequest
) -> None:
    report: ProbeReport = request.getfixturevalue(kind)
    for name in ("store_allocated", "store_fallocated"):
        result = report.case(name)
        assert result.completed, name
        assert (result.msync_errno, result.fsync_errno) == (0, 0), name
        assert result.data_intact, name
        assert result.evicted_intact, name
    assert report.case("load_hole").completed


@pytest.mark.mount
def test_fuse_write_fails_at_once_without_the_writeback_cache(fuse: ProbeReport) -> None:
    write = fuse.case("write_hole")
    assert write.write_errno == errno.ENOSPC
    assert write.acknowledged_bytes == 0
    assert write.data_intact


@pytest.mark.mount
def test_fuse_writeback_cache_acknowledges_write_and_fails_at_fsync(
    fuse_wbc: ProbeReport,
) -> None:
    write = fuse_wbc.case("write_hole")
    assert write.write_errno == 0
    assert write.acknowledged_bytes == PAGE
    assert write.fsync_errno == errno.ENOSPC
    assert not write.data_intact
    assert write.bytes_lost == PAGE


# -- the probe's own safety and the table ------------------------------------------------


def test_probe_refuses_to_fill_a_large_filesystem(tmp_path: Path) -> None:
    if os.statvfs(tmp_path).f_blocks * os.statvfs(tmp_path).f_frsize <= 64 << 20:
        pytest.skip("the temporary directory's filesystem is small enough to be filled")
    with pytest.raises(ProbeError, match="refusing to fill"):
        probe_filesystem(str(tmp_path), label="big")
    assert list(tmp_path.iterdir()) == []  # refused before creating anything


def test_probe_refuses_a_directory_that_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ProbeError, match="not an existing directory"):
        probe_filesystem(str(tmp_path / "missing"), label="missing")


def test_without_root_the_ground_truth_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    for kind in ("ext4", "tmpfs"):
        reason = ground_truth_unavailable(kind)
        assert reason is not None
        assert reason.startswith("not root")
        with (
            pytest.raises(ProbeError, match="not root"),
            ext4_loop() if kind == "ext4" else tmpfs_mounted(),
        ):
            pass


def test_table_has_a_row_per_key_and_blank_cells_for_missing_ones() -> None:
    columns = [Column("a", {"store_hole": "SIGBUS"}), Column("sim: reserve", {})]
    lines = format_table(columns).splitlines()
    assert len(lines) == 2 + len(ROWS)
    assert [c.strip() for c in lines[0].split("|")] == ["", "a", "sim: reserve"]
    assert [c.strip() for c in lines[2].split("|")] == [ROWS[0][1], "SIGBUS", ""]
    assert [c.strip() for c in lines[3].split("|")] == [ROWS[1][1], "", ""]


@pytest.mark.kernel
def test_ext4_loop_is_unmounted_and_detached_even_when_the_body_fails() -> None:
    _skip_unless_ground_truth("ext4")
    with pytest.raises(RuntimeError, match="boom"), ext4_loop() as loop:  # noqa: PT012
        device, directory = loop.device, loop.directory
        assert os.path.ismount(directory)
        raise RuntimeError("boom")
    assert not os.path.exists(directory)
    backing = Path("/sys/block") / Path(device).name / "loop" / "backing_file"
    assert not backing.exists()


@pytest.mark.mount
def test_mkwritefs_is_unmounted_even_when_the_body_fails() -> None:
    _skip_unless_fuse()
    with pytest.raises(RuntimeError, match="boom"), mkwritefs_mounted("64k") as mnt:  # noqa: PT012
        assert os.path.ismount(mnt)
        raise RuntimeError("boom")
    assert not os.path.exists(mnt)


@pytest.mark.mount
def test_script_prints_the_comparison_as_json() -> None:
    _skip_unless_fuse()
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--json", "--no-ground-truth"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    titles = [c["title"] for c in out["columns"]]
    assert titles == ["mkwritefs (FUSE)", "mkwritefs --writeback-cache", "sim: fuse",
                      "sim: reserve"]  # fmt: skip
    for column in out["columns"][:3]:  # the real kernel's, and the simulator's fuse policy
        assert set(column["cells"]) == {key for key, _ in ROWS}
        assert column["cells"]["store_hole"] == "ok"
        assert column["cells"]["msync_hole"] == "ENOSPC"
    assert out["columns"][3]["cells"]["store_hole"] == "SIGBUS"  # sim: reserve, as ext4
    assert set(out["skipped"]) == {"ext4", "tmpfs"}
