"""The layers of mkwritefs hold: who may import whom, checked on the source."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.layout.imports import cycles, graph, violations

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("fusefs", "sim_mmu")


def test_the_layering_rules_hold() -> None:
    assert violations(graph(ROOT, PACKAGES)) == []


def test_no_runtime_import_cycle_anywhere() -> None:
    assert cycles(graph(ROOT, PACKAGES), with_type_checking=False) == []


def _tree(tmp_path: Path, files: dict[str, str]) -> dict[str, list[object]]:
    for name, text in files.items():
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for pkg in PACKAGES:
        (tmp_path / pkg).mkdir(exist_ok=True)
        for d in [tmp_path / pkg, *(p for p in (tmp_path / pkg).rglob("*") if p.is_dir())]:
            (d / "__init__.py").touch()
    return graph(tmp_path, PACKAGES)  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("files", "broken"),
    [
        ({"sim_mmu/fault.py": "from fusefs.fs import core\n", "fusefs/fs/core.py": ""},
         "sim_mmu never imports fusefs"),
        ({"fusefs/fs/core.py": "import fusefs.fuse.ops\n", "fusefs/fuse/ops.py": ""},
         "the core (fusefs.fs) never imports fusefs.fuse"),
        ({"fusefs/vm/ops.py": "from fusefs.scenario.runner import play\n",
          "fusefs/scenario/runner.py": "def play(): pass\n"},
         "the core (fusefs.vm) never imports fusefs.scenario"),
        ({"fusefs/fs/core.py": "import pyfuse3\n"}, "only fusefs.fuse imports pyfuse3"),
        ({"fusefs/scenario/report.py": "from fusefs.cli.common import UsageError\n",
          "fusefs/cli/common.py": ""},
         "the command line is on top"),
        ({"fusefs/fs/a.py": "from fusefs.fs import b\n",
          "fusefs/fs/b.py": "from fusefs.fs import a\n"},
         "import cycle: fusefs.fs.a -> fusefs.fs.b"),
        ({"fusefs/vm/ops.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
          "    from fusefs.fs.core import Filesystem\n",
          "fusefs/fs/core.py": "from fusefs.vm import ops\n"},
         "import cycle across layers (annotations too)"),
    ],
)  # fmt: skip
def test_a_broken_rule_is_caught(tmp_path: Path, files: dict[str, str], broken: str) -> None:
    found = violations(_tree(tmp_path, files))  # type: ignore[arg-type]
    assert any(broken in line for line in found), found


def test_annotations_inside_one_layer_may_go_round(tmp_path: Path) -> None:
    tree = _tree(tmp_path, {
        "fusefs/fs/core.py": "from fusefs.fs import namespace\n",
        "fusefs/fs/namespace.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                  "    from fusefs.fs.core import Filesystem\n",
    })  # fmt: skip
    assert violations(tree) == []  # type: ignore[arg-type]
