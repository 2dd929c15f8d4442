"""Hostile scenario files: the loader answers a clean parse or one ScenarioError line.

Three sources of input, with hypothesis: the library's own scenarios mutated (spans cut,
lines swapped, numbers, strings and bytes replaced by hostile values), scenario texts
built from random calls of the language with random arguments, and raw bytes (non-UTF-8,
NUL). Whatever the text, `load_file` either returns a Scenario or raises ScenarioError
whose message is one line naming the file and a line number; any other exception, a
traceback, or a loader left half-way (the next good file fails) is a bug. Through the
command line (`mkwritefs scenario run FILE`, in-process and once as a subprocess) a bad
file is one line on stderr, exit status 2, and nothing is mounted.
"""

from __future__ import annotations

import contextlib
import io
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fusefs.cli.main import main
from fusefs.scenario import runner
from fusefs.scenario.language import Scenario, ScenarioError, load_file, scenario_files

from .conftest import fuzz

# The library's short stories (a story of thousands of steps makes each example slow).
LIBRARY = [p.read_text() for p in scenario_files() if len(load_file(p).steps) < 100]
GOOD = min(LIBRARY, key=len)
FUZZ = fuzz(100)

# Values a hostile or careless author might pass anywhere an argument goes.
HOSTILE_VALUES = [
    "-1", "0", "2**70", "-2**70", "1.5", "float('nan')", "float('inf')", "None", "True",
    "''", "'x'", "'/'", "'/f\\0g'", "'/' + 'x' * 300", "b''", "b'\\xff' * 70000", "()", "[]",
    "{}", "(1,)", "'reserve'", "('reserve', 'nope')", "'EIO'", "'EWHAT'", "object()",
    "lambda: 0", "10**10", "'r'", "'rwx'", "per()", "per(default=1)", "per_profile()",
    "per_profile(modern=1)", "per_profile({'2.4': 1})", "('modern', 'modern')",
]  # fmt: skip
CALLS = [
    "setup", "create", "reopen", "fill", "spawn", "fork", "thread", "mmap", "store", "load",
    "poke", "copy_to_user", "msync", "munmap", "mprotect", "exit", "write", "fsync",
    "truncate", "fallocate", "inject_error", "writeback", "sleep", "mount", "expect",
    "expect_loaded", "expect_took", "expect_df", "expect_data", "expect_attr", "expect_sim",
    "expect_pte", "expect_cache", "per", "per_profile", "together",
]  # fmt: skip
KEYWORDS = [
    "capacity", "policies", "profile", "profiles", "pages", "size", "page", "data", "offset",
    "proc", "name", "delay", "prot", "shared", "length", "read_only", "blocks", "free", "reserved",
    "allocated", "when", "writable", "dirty", "punch", "keep_size", "err", "seconds",
    "writeback_latency", "writeback_interval", "bogus",
]  # fmt: skip
NAMES = ["f", "m", "p", "w", "'/f'", "'/g'"]

_scratch = Path(tempfile.gettempdir())  # this module's own directory while it runs


@pytest.fixture(scope="module", autouse=True)
def _scratch_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    global _scratch
    _scratch = tmp_path_factory.mktemp("fuzz")


def _write(text: str | bytes) -> Path:
    path = _scratch / "fuzzed.py"
    path.write_bytes(text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text)
    return path


def _load_cleanly(text: str | bytes) -> Scenario | None:
    """load_file: a Scenario, or None after a one-line ScenarioError naming file and line."""
    path = _write(text)
    try:
        return load_file(path)
    except ScenarioError as exc:
        message = str(exc)
        assert "\n" not in message, message
        assert re.match(rf"{re.escape(str(path))}:\d+: \S", message), message
        assert "Traceback" not in message
        return None


def _still_loads_good_files() -> None:
    scenario = load_file(_write(GOOD))  # a failure left no builder behind
    assert scenario.steps


# -- mutated library scenarios -------------------------------------------------------------


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(LIBRARY))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["cut", "insert", "swap", "number", "string", "dup"]))
        lines = text.splitlines(keepends=True)
        if kind == "cut" and text:
            a = draw(st.integers(0, len(text) - 1))
            b = draw(st.integers(a, min(len(text), a + 40)))
            text = text[:a] + text[b:]
        elif kind == "insert":
            at = draw(st.integers(0, len(text)))
            junk = draw(st.one_of(
                st.sampled_from(["(", ")", ",", "=", ":", "\\", "'", '"""', "\0", "\t",
                                 "\n    ", "with together():\n", "mount()\n", "*", "**"]),
                st.text(max_size=8),
            ))  # fmt: skip
            text = text[:at] + junk + text[at:]
        elif kind == "swap" and len(lines) > 2:
            i = draw(st.integers(0, len(lines) - 2))
            j = draw(st.integers(i + 1, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
            text = "".join(lines)
        elif kind == "number":
            numbers = list(re.finditer(r"\b\d+(\.\d+)?\b", text))
            if numbers:
                m = draw(st.sampled_from(numbers))
                text = text[: m.start()] + draw(st.sampled_from(HOSTILE_VALUES)) + text[m.end() :]
        elif kind == "string":
            strings = list(re.finditer(r"b?\"[^\"\n]*\"|b?'[^'\n]*'", text))
            if strings:
                m = draw(st.sampled_from(strings))
                text = text[: m.start()] + draw(st.sampled_from(HOSTILE_VALUES)) + text[m.end() :]
        elif kind == "dup" and lines:
            i = draw(st.integers(0, len(lines) - 1))
            lines.insert(i, lines[i])
            text = "".join(lines)
    return text


@FUZZ
@given(mutated())
def test_mutated_library_scenarios_load_or_fail_in_one_line(text: str) -> None:
    _load_cleanly(text)
    _still_loads_good_files()


# -- random programs of the language ------------------------------------------------------


@st.composite
def call(draw: st.DrawFn) -> str:
    fn = draw(st.sampled_from(CALLS))
    args = draw(st.lists(st.sampled_from(NAMES + HOSTILE_VALUES), max_size=3))
    values = st.sampled_from(NAMES + HOSTILE_VALUES)
    kwargs = draw(st.dictionaries(st.sampled_from(KEYWORDS), values, max_size=3))
    text = ", ".join([*args, *(f"{k}={v}" for k, v in kwargs.items())])
    target = draw(st.sampled_from(["", "f = ", "m = ", "p = ", "w = "]))
    if fn == "together":
        return f"with together():\n    {target}{draw(st.sampled_from(CALLS))}({text})"
    return f"{target}{fn}({text})"


@st.composite
def program(draw: st.DrawFn) -> str:
    head = '"""A fuzzed story."""\nfrom fusefs.scenario import *\n'
    prefix = draw(st.sampled_from([
        "",
        "setup(capacity=4)\nf = create('/f', pages=2)\np = spawn('p')\nm = mmap(p, f)\n",
    ]))  # fmt: skip
    body = draw(st.lists(call(), min_size=1, max_size=8))
    return head + prefix + "\n".join(body) + "\nexpect_df(free=0)\n"


@FUZZ
@given(program())
def test_random_calls_load_or_fail_in_one_line(text: str) -> None:
    _load_cleanly(text)
    _still_loads_good_files()


# -- raw bytes ---------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=300), st.sampled_from([b"", b'"""story"""\n', GOOD.encode()]))
def test_raw_bytes_load_or_fail_in_one_line(junk: bytes, head: bytes) -> None:
    _load_cleanly(head + junk)
    _still_loads_good_files()


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (b'"""s"""\nx = 1\0\n', ":2: syntax error"),
        (b'"""s\xff"""\n', ":1: not UTF-8"),
        (b'"""s"""\nraise SystemExit(3)\n', ":2: SystemExit"),
        (b'"""s"""\nx = ' + b"-" * 100_000 + b"1\n", ":1: syntax error"),
        (b'"""s"""\n' + b"(" * 300 + b")" * 300, ":2: syntax error"),
        (b'"""s"""\nfrom fusefs.scenario import *\nsetup(capacity=-5)\n', ":3: capacity"),
        (b'"""s"""\nfrom fusefs.scenario import *\nsetup(capacity=1.5)\n', ":3: capacity"),
        (
            b'"""s"""\nfrom fusefs.scenario import *\nsetup(writeback_interval=0)\n',
            ":3: writeback_interval",
        ),
        (
            b'"""s"""\nfrom fusefs.scenario import *\nsetup(writeback_interval=1e-300)\n',
            ":3: writeback_interval",
        ),
        (
            b'"""s"""\nfrom fusefs.scenario import *\nsetup(writeback_latency="x")\n',
            ":3: writeback_latency",
        ),
        (b'"""s"""\nfrom fusefs.scenario import *\nsetup(policies=())\n', ":3: policies"),
        (b'"""s"""\nfrom fusefs.scenario import *\nsetup(policies=5)\n', ":3: policies"),
        (b'"""s"""\nfrom fusefs.scenario import *\nsetup(capacity=10**30)\n', ":3: capacity"),
        (b'"""s"""\nfrom fusefs.scenario import *\ncreate("/f", size=2**40)\n', ":3: a file"),
        (b'"""s"""\nfrom fusefs.scenario import *\ncreate("/f", pages=-1)\n', ":3: a file"),
        (b'"""s"""\nfrom fusefs.scenario import *\ncreate(5)\n', ":3: bad or duplicate"),
        (b"", ":1: a scenario starts with a docstring"),
    ],
)
def test_known_hostile_files(text: bytes, words: str) -> None:
    """Inputs that once escaped as tracebacks, a wrong exit status or a failed run."""
    path = _write(text)
    with pytest.raises(ScenarioError) as info:
        load_file(path)
    assert str(info.value).startswith(f"{path}{words}"), str(info.value)
    _still_loads_good_files()


# -- through the command line --------------------------------------------------------------


def _run_main(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse
            code = int(exc.code or 0)
    return code, out.getvalue(), err.getvalue()


@fuzz(40)
@given(st.one_of(mutated(), program(), st.binary(max_size=200)))
def test_cli_bad_file_is_one_line_exit_2(text: str | bytes) -> None:
    """`mkwritefs scenario run FILE`, in-process, on files that do not load."""
    if _load_cleanly(text) is not None:
        return  # a good story would be played (and mounted): not this test's business
    # A tripwire, not a fake: playing (which mounts) must never start for a bad file.
    never = mock.patch.object(runner, "play", side_effect=AssertionError("a bad file played"))
    with never:
        code, out, err = _run_main(["scenario", "run", str(_write(text))])
    assert (code, out) == (2, "")
    assert err.count("\n") == 1, err
    assert err.startswith("mkwritefs scenario: "), err


def test_cli_bad_file_in_a_subprocess(tmp_path: Path) -> None:
    """As a user runs it: one line, exit 2, no traceback."""
    bad = tmp_path / "bad.py"
    bad.write_bytes(b'"""story"""\nfrom fusefs.scenario import *\nsetup(capacity="x")\n\xff')
    for text in (bad.read_bytes(),):
        bad.write_bytes(text)
        result = subprocess.run(
            [sys.executable, "-m", "fusefs", "scenario", "run", str(bad)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert (result.returncode, result.stdout) == (2, ""), result.stderr
        assert result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith(f"mkwritefs scenario: {bad}:"), result.stderr
