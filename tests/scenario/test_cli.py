"""`mkwritefs scenario list|run`: outputs, JSON, traces and exit statuses (subprocesses)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fusefs import mountinfo
from fusefs.scenario.language import scenario_files

from .conftest import cli, unmount

COUNTERS = {"stores_acknowledged", "sigbus", "mkwrite_calls", "writeback_errors",
            "lost_bytes", "max_dirty_pages", "dirty_limit_pages"}  # fmt: skip

GOOD = '''"""A store into a hole of a full filesystem."""
from fusefs.scenario import *

setup(capacity=2, policies=("legacy", "reserve"))
create("/f", pages=1)
fill()
m = mmap(spawn("writer"), "/f")
store(m, page=0, data=b"x", name="store")
mount()
expect("store", per(reserve="sigbus", legacy="ok"))
'''


def test_list_one_scenario_a_line_name_first() -> None:
    result = cli("scenario", "list")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    names = [p.stem for p in scenario_files()]
    assert [line.split()[0] for line in lines] == names
    assert all(len(line.split(None, 1)) == 2 for line in lines)  # a story follows


@pytest.mark.mount
def test_run_all_policies_prints_one_table(tmp_path: Path) -> None:
    result = cli("scenario", "run", "row01-full-fs-store-into-hole")
    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()[1:]
    assert header.split() == ["legacy", "reserve", "reserve-cow", "fuse", "cache", "shmem"]
    store_row = next(r for r in rows if r.startswith("store into hole: outcome"))
    assert store_row.split()[-12:] == ["ok", "✓", "sigbus", "✓", "sigbus", "✓", "ok", "✓",
                                       "ok", "✓", "sigbus", "✓"]  # fmt: skip
    assert "[6/6]" in result.stderr  # progress


@pytest.mark.mount
def test_run_json_is_one_object(scenario_file) -> None:  # noqa: ANN001
    result = cli("scenario", "run", scenario_file(GOOD), "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["scenario"] == "mine"
    assert set(doc["policies"]) == {"legacy", "reserve"}
    reserve = doc["policies"]["reserve"]
    assert set(reserve["counters"]) >= COUNTERS
    assert reserve["counters"]["sigbus"] == 1
    assert doc["policies"]["legacy"]["counters"]["stores_acknowledged"] == 1
    names = [e["name"] for e in reserve["expectations"]]
    assert "store: outcome" in names
    assert "mount: df agrees with the filesystem" in names
    assert all(e["held"] is True and "detail" in e for e in reserve["expectations"])


@pytest.mark.mount
def test_chrome_trace_has_a_track_per_process_and_the_flusher(tmp_path: Path) -> None:
    trace = tmp_path / "t.json"
    result = cli("scenario", "run", "row16-msync-on-a-nearly-full-fs", "--policy", "legacy",
                 "--trace", str(trace))  # fmt: skip
    assert result.returncode == 0, result.stderr
    doc = json.loads(trace.read_text())
    events = doc["traceEvents"]
    for e in events:
        assert {"name", "ph", "pid", "tid"} <= set(e)
        assert e["ph"] in ("M", "i", "X")
        if e["ph"] != "M":
            assert isinstance(e["ts"], float | int)
        if e["ph"] == "X":
            assert e["dur"] > 0
    threads = {e["args"]["name"] for e in events if e["name"] == "thread_name"}
    assert threads == {"flusher", "writer (pid 1)"}
    kinds = {e["name"] for e in events if e["ph"] == "i"}
    assert {"fault", "writeback", "mmap", "msync"} <= kinds
    writebacks = [e["args"]["detail"] for e in events if e["name"] == "writeback"]
    assert sum("ENOSPC" in d for d in writebacks) == 2  # two pages lost at writeback
    timestamps = [e["ts"] for e in events if e["ph"] != "M"]
    assert timestamps == sorted(timestamps)


@pytest.mark.mount
def test_jsonl_trace_records_reservations_and_sigbus(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    result = cli("scenario", "run", "row16-msync-on-a-nearly-full-fs", "--policy", "reserve",
                 "--trace", str(trace))  # fmt: skip
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in trace.read_text().splitlines()]
    reserves = [e for e in events if e["kind"] == "reserve"]
    assert [e["detail"].endswith("reserved") for e in reserves] == [True, True, False, False]
    assert sum(e["kind"] == "sigbus" for e in events) == 2
    assert {e["policy"] for e in events} == {"reserve"}


@pytest.mark.mount
def test_a_failed_expectation_exits_1(scenario_file) -> None:  # noqa: ANN001
    wrong = GOOD.replace('per(reserve="sigbus", legacy="ok")', '"ok"')
    result = cli("scenario", "run", scenario_file(wrong), "--policy", "all")
    assert result.returncode == 1
    assert "FAILED reserve: store: outcome: expected 'ok', got 'sigbus'" in result.stdout


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD.replace('create("/f", pages=1)', 'create("/f", pages=1'), ":5: syntax error"),
        (GOOD.replace("fill()", "fil()"), ":6: unknown step or name 'fil'"),
        (GOOD.replace('name="store")', 'name="store", colour=1)'), ":8: TypeError"),
        (GOOD.replace('expect("store"', 'expect("stor"'), ":10: no step named 'stor'"),
        (GOOD.replace('"reserve")', '"reserv")'), ":4: unknown policy 'reserv'"),
        (GOOD + "sleep(1)\n", ":11: sleep() goes before mount()"),
        (GOOD.replace("fill()", 'expect_sim("faultz", 1)'), ":6: unknown mmu counter 'faultz'"),
    ],
)
def test_a_bad_scenario_is_one_line_with_file_and_line_exit_2(
    scenario_file,
    text: str,
    message: str,  # noqa: ANN001
) -> None:
    path = scenario_file(text)
    result = cli("scenario", "run", path)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert path + message in lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no-such-scenario"], "no scenario named 'no-such-scenario'"),
        (["/nonexistent/x.py"], "no such scenario file"),
        (["row01-full-fs-store-into-hole", "--policy", "bogus"], "unknown policy 'bogus'"),
        (["row19-fscache-wait", "--policy", "legacy"], "is told under cache, not legacy"),
        (["row01-full-fs-store-into-hole", "--profile", "2.4"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_2(args: list[str], message: str) -> None:
    result = cli("scenario", "run", *args)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.mount
def test_keep_leaves_the_mount_up_until_interrupted(tmp_path: Path) -> None:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "fusefs", "scenario", "run", "row30-write-into-a-hole-on-a-full-fs",
         "--policy", "reserve", "--mount", str(mnt), "--keep"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if line.startswith("mounted on"):
                break
        assert mountinfo.find(os.path.realpath(mnt)) is not None
        st = os.statvfs(mnt)  # this process is not the server: a plain system call is fine
        assert (st.f_blocks, st.f_bavail) == (2, 0)
        assert sorted(os.listdir(mnt)) == ["f", "filler"]
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0
        assert "row30" in out
        assert mountinfo.find(os.path.realpath(mnt)) is None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        unmount(str(mnt))
