"""`mkwritefs scenario report NAME --html FILE`: the page's content, and the page as
headless Chromium renders it (a screenshot whose pixels show the table and the SVG).

The command runs in a subprocess (it mounts, one policy after another); Chromium runs
with no network, no sandbox (we are root in a container) and a fresh profile.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest

HEADLINE = "headline-stores-into-holes"
POLICIES = ["legacy", "reserve", "reserve-cow", "fuse", "cache", "shmem"]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]  # fmt: skip
LIMIT = 120  # seconds: a harness limit for a hung child, not an assertion


def report(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fusefs", "scenario", "report", *args],
        capture_output=True, text=True, check=False, timeout=LIMIT,
    )  # fmt: skip


class _Page(HTMLParser):
    """The parts of the page a reader relies on: table cells, SVGs, life chips."""

    def __init__(self) -> None:
        super().__init__()
        self.headers: list[str] = []
        self.row_names: list[str] = []
        self.svgs: list[str] = []
        self.lives: dict[str, list[str]] = {}
        self.external: list[str] = []
        self._stack: list[tuple[str, dict[str, str]]] = []
        self._policy = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "svg":
            self.svgs.append(a.get("class", ""))
        if tag in ("script", "link", "img", "iframe") or a.get("src") or a.get("href"):
            self.external.append(tag)
        if tag == "div" and a.get("class") == "life":
            self._policy = a["data-policy"]
            self.lives[self._policy] = []
        self._stack.append((tag, a))

    def handle_endtag(self, tag: str) -> None:
        while self._stack and self._stack.pop()[0] != tag:
            pass
        if tag == "div":
            self._policy = ""

    def handle_data(self, data: str) -> None:
        if not self._stack or not data.strip():
            return
        tag, a = self._stack[-1]
        if tag == "th" and a.get("class") == "row":
            self.row_names.append(data.strip())
        elif tag == "th" and len(self._stack) >= 2 and self._stack[-2][0] == "tr":
            self.headers.append(data.strip())
        elif tag == "span" and self._policy and a.get("class") != "arrow":
            self.lives[self._policy].append(data.strip())


def parse(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    return page


def test_unknown_scenario_is_one_line_and_status_2(tmp_path: Path) -> None:
    result = report("no-such-scenario", "--html", str(tmp_path / "r.html"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "no-such-scenario" in result.stderr
    assert not (tmp_path / "r.html").exists()


def test_unwritable_destination_is_refused_before_running(tmp_path: Path) -> None:
    result = report(HEADLINE, "--html", str(tmp_path / "missing" / "r.html"))
    assert result.returncode == 2
    assert "not writable" in result.stderr
    assert "[1/" not in result.stderr


@pytest.fixture(scope="module")
def headline(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("report") / "headline.html"
    result = report(HEADLINE, "--html", str(out))
    assert result.returncode == 0, result.stderr
    assert "[6/6]" in result.stderr  # progress, one line per policy
    return out, out.read_text()


@pytest.mark.mount
def test_page_has_story_table_timelines_plot_and_lives(headline: tuple[Path, str]) -> None:
    _, text = headline
    page = parse(text)
    assert "16 KiB the program believes stored" in text  # the story (docstring)
    assert page.headers[: len(POLICIES)] == POLICIES
    assert "mmu: sigbus" in page.row_names
    assert "msync: outcome" in page.row_names
    assert "lost_bytes" in page.row_names
    assert "mkwrite_calls" in page.row_names
    assert text.count("✓ held") == 11 * len(POLICIES)
    assert "✗ FAILED" not in text
    assert page.svgs.count("timeline") == len(POLICIES)
    assert page.svgs.count("plot") == 2  # by step; over time (cache's copies take time)
    assert page.external == []  # self-contained: nothing fetched, nothing run


@pytest.mark.mount
def test_pte_life_of_the_first_mkwrite_page(headline: tuple[Path, str]) -> None:
    page = parse(headline[1])
    assert "The life of page 0" in headline[1]
    assert list(page.lives) == POLICIES
    reserve = page.lives["reserve"]
    order = ["no PTE", "page_mkwrite: LOCKED", "writable, dirty",
             "mkclean (cleaned for writeback)", "write-protected again"]  # fmt: skip
    assert [c for c in reserve if c in order] == [*order, "no PTE"]  # unmapped at exit
    assert not any("page_mkwrite" in c for c in page.lives["legacy"])  # no hook before 2.6.18
    assert "writable, dirty" in page.lives["legacy"]


@pytest.mark.mount
def test_chosen_page_refused_under_reserve_written_under_legacy(tmp_path: Path) -> None:
    out = tmp_path / "page4.html"
    result = report(HEADLINE, "--html", str(out), "--page", "4")
    assert result.returncode == 0, result.stderr
    lives = parse(out.read_text()).lives
    assert "page_mkwrite: SIGBUS" in lives["reserve"]
    assert not any(c.startswith("writable") for c in lives["reserve"])
    assert any("ENOSPC" in c for c in lives["legacy"])  # written back: dropped


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("chromium not found (scripts/setup installs Debian's chromium package)")
    return path


def _chromium_run(page: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *extra,
             page.resolve().as_uri()],
            capture_output=True, text=True, check=False, timeout=LIMIT,
        )  # fmt: skip


@pytest.mark.mount
def test_chromium_dom_has_table_every_policy_and_svg(headline: tuple[Path, str]) -> None:
    result = _chromium_run(headline[0], "--dump-dom")
    assert result.returncode == 0, result.stderr[-2000:]
    dom = parse(result.stdout)
    assert dom.headers[: len(POLICIES)] == POLICIES
    assert dom.svgs.count("timeline") == len(POLICIES)
    assert re.search(r"<polygon[^>]+class=\"dirty\"", result.stdout)


@pytest.mark.mount
def test_chromium_screenshot_shows_the_table_and_the_marks(
    headline: tuple[Path, str], tmp_path: Path
) -> None:
    shot = tmp_path / "report.png"
    result = _chromium_run(headline[0], f"--screenshot={shot}", "--window-size=1280,2000")
    assert result.returncode == 0, result.stderr[-2000:]
    from PIL import Image

    with Image.open(shot) as im:
        assert im.format == "PNG"
        assert im.size == (1280, 2000)
        colours = {c for _, c in im.convert("RGB").getcolors(maxcolors=1 << 20) or []}
    assert len(colours) > 50  # text, table, glyphs: not a blank page
    assert (0xE8, 0xF6, 0xEA) in colours  # held cells of the table
    assert (0x2A, 0x9D, 0x3A) in colours  # page_mkwrite ok diamonds of the timeline
    assert (0xD6, 0x28, 0x28) in colours  # SIGBUS crosses / refused page_mkwrite


@pytest.mark.mount
def test_dirty_pages_over_time_when_virtual_time_passes(tmp_path: Path) -> None:
    out = tmp_path / "flusher.html"
    result = report("flusher-loses-data-nobody-asked-about", "--html", str(out))
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    plot = text[text.index('id="dirty-time"') : text.index("</svg>", text.index('id="dirty-time"'))]
    assert plot.count("<polyline") == len(POLICIES)
    last_tick = max(float(t) for t in re.findall(r">([0-9.]+) s</text>", plot))
    assert last_tick >= 30  # the flusher waits dirty_expire (30 s) before writing back


WRONG = '''"""A store into a hole of a full filesystem, expected to succeed everywhere (wrong)."""
from fusefs.scenario import *

setup(capacity=2, policies=("legacy", "reserve"))
create("/f", pages=1)
fill()
m = mmap(spawn("writer"), "/f")
store(m, page=0, data=b"x", name="store")
mount()
expect("store", "ok")
'''


@pytest.mark.mount
def test_failed_expectation_is_marked_and_exits_1(tmp_path: Path) -> None:
    story = tmp_path / "wrong.py"
    story.write_text(WRONG)
    out = tmp_path / "wrong.html"
    result = report(str(story), "--html", str(out))
    assert result.returncode == 1, result.stderr
    text = out.read_text()  # the page is written all the same: it shows what went wrong
    assert "Some expectations FAILED" in text
    cells = re.findall(r'<td class="(held|failed)"[^>]*>([^<]*)<b>', text)
    assert cells[:2] == [("held", "ok "), ("failed", "sigbus ")]  # legacy, reserve
