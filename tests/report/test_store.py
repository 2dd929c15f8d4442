"""`mkwritefs scenario report NAME --html FILE --store DIR`: the same `--store` as `run`.

The page of a run on stores shows the verdicts read back after each unmount (the rows
`scenario run --store` prints), and the stores are left in DIR, closed and clean. A bad
DIR gets exactly the line, and the status, `scenario run --store` gives it, before
anything is played or written. Every command runs in a subprocess (it mounts and unmounts
there); the one mkwritefs mount a case needs is served by another process
(tests.mount.conftest's mount_factory) and stopped at teardown.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.mount.conftest import Server, mount_factory
from tests.mount.support import cli
from tests.report.test_html import parse
from tests.session.test_settings import _as_nobody

__all__ = ["mount_factory"]  # a fixture, used by a test here

LIMIT = 120  # seconds: a harness limit for a hung child, not an assertion

STORY = '''"""A store into a hole of a full filesystem."""
from fusefs.scenario import *

setup(capacity=2, policies=("legacy", "reserve"))
create("/f", pages=1)
fill()
m = mmap(spawn("writer"), "/f")
store(m, page=0, data=b"x", name="store")
msync(m, name="msync")
mount()
expect("store", per(reserve="sigbus", legacy="ok"))
expect("msync", per(reserve="ok", legacy="ENOSPC"))
expect_data("/f", 0, b"\\0")
'''


def scenario(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fusefs", "scenario", *args],
        capture_output=True, text=True, check=False, timeout=LIMIT,
    )  # fmt: skip


def scenario_as_nobody(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`mkwritefs scenario ARGS` as nobody, in a forked child (no exec: the interpreter
    lives under /root, which nobody may not enter, so the modules the commands import
    are imported here first); output all on stderr."""
    from fusefs.cli.main import main
    from fusefs.fs import store  # noqa: F401

    code, text = _as_nobody(str(cwd), lambda: main(["scenario", *args]))
    return subprocess.CompletedProcess(args, code, "", text)


@pytest.fixture
def shared() -> Iterator[Path]:
    """A directory every user may enter and write in (pytest's tmp_path is root's only),
    for the case run as nobody (root may write in any directory)."""
    path = Path(tempfile.mkdtemp(prefix="mkwritefs-report-store-"))
    path.chmod(0o1777)
    try:
        yield path
    finally:
        shutil.rmtree(path)


@pytest.mark.mount
def test_report_on_stores_shows_the_verdicts_read_back(tmp_path: Path) -> None:
    story = tmp_path / "mine.py"
    story.write_text(STORY)
    (tmp_path / "report").mkdir()
    (tmp_path / "run").mkdir()
    out = tmp_path / "mine.html"
    result = scenario("report", str(story), "--html", str(out), "--store", str(tmp_path / "report"))
    assert result.returncode == 0, result.stderr
    ran = scenario("run", str(story), "--json", "--store", str(tmp_path / "run"))
    assert ran.returncode == 0, ran.stderr
    page = parse(text := out.read_text())
    assert "✗ FAILED" not in text
    for policy, verdicts in json.loads(ran.stdout)["policies"].items():
        names = [e["name"] for e in verdicts["expectations"]]
        assert "store: read back after unmount and mount" in names
        assert "store: fsck clean after unmount" in names
        assert set(names) <= set(page.row_names), policy  # the rows `run --store` has
        store = tmp_path / "report" / f"mine-{policy}.db"
        assert cli("fsck", str(store)).returncode == 0  # closed, unlocked, clean


def both_refuse(folder: Path, html: Path, *, as_nobody: bool = False) -> str:
    """`run` and `report` with `--store folder`: status 2, the same one line, nothing
    played (no progress line) and no page written. Returns the line."""
    if as_nobody:

        def command(*args: str) -> subprocess.CompletedProcess[str]:
            return scenario_as_nobody(html.parent, *args)
    else:
        command = scenario
    run = command("run", "headline-stores-into-holes", "--store", str(folder))
    report = command("report", "headline-stores-into-holes", "--html", str(html),
                     "--store", str(folder))  # fmt: skip
    assert (run.returncode, report.returncode) == (2, 2), run.stderr + report.stderr
    assert report.stderr == run.stderr
    assert run.stderr.count("\n") == 1, run.stderr
    assert "[1/" not in report.stderr
    assert not html.exists()
    return run.stderr


def test_missing_directory(tmp_path: Path) -> None:
    line = both_refuse(tmp_path / "nowhere", tmp_path / "r.html")
    assert "is not a writable directory" in line


def test_not_a_directory(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_bytes(b"mine")
    line = both_refuse(plain, tmp_path / "r.html")
    assert "is not a writable directory" in line
    assert plain.read_bytes() == b"mine"


def test_not_writable(shared: Path) -> None:
    folder = shared / "read-only"
    folder.mkdir(mode=0o555)
    folder.chmod(0o555)  # root could write anyway: the commands run as nobody
    line = both_refuse(folder, shared / "r.html", as_nobody=True)
    assert "is not a writable directory" in line


def test_a_store_of_the_run_exists(tmp_path: Path) -> None:
    existing = tmp_path / "headline-stores-into-holes-legacy.db"
    existing.write_bytes(b"mine")
    line = both_refuse(tmp_path, tmp_path / "r.html")
    assert "already exists: --store makes new stores only" in line
    assert existing.read_bytes() == b"mine"


@pytest.mark.mount
def test_on_a_mkwritefs_mount(mount_factory: Callable[..., Server], tmp_path: Path) -> None:
    """Its server would wait on itself: refused before anything is made there."""
    theirs = Path(mount_factory().mountpoint)
    folder = theirs / "stores"
    folder.mkdir()
    line = both_refuse(folder, tmp_path / "r.html")
    assert "a store must live on another filesystem" in line
    assert os.listdir(folder) == []
