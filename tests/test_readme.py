"""The README's examples run as printed and do what they say."""

import json
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def _example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    (block,) = [b for b in blocks if "Simulation(" in b]
    return block


async def test_readme_simulator_example_runs() -> None:
    code = _example()
    body = "\n".join(line for line in code.splitlines() if not line.startswith("from "))
    imports = "\n".join(line for line in code.splitlines() if line.startswith("from "))
    namespace: dict[str, object] = {"SIGBUS": signal.SIGBUS, "seen": []}
    exec(imports, namespace)
    exec(
        "async def example():\n" + textwrap.indent(body + "\nreturn sim, proc, addr", "    "),
        namespace,
    )
    sim, proc, addr = await namespace["example"]()  # type: ignore[operator]
    seen = namespace["seen"]
    assert len(seen) == 1  # type: ignore[arg-type]
    assert seen[0].signo == signal.SIGBUS  # type: ignore[index]
    assert sim.statistics().mkwrite_calls >= 2  # type: ignore[attr-defined]


@pytest.mark.mount
def test_readme_scenario_example_holds(tmp_path: Path) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    (block,) = [b for b in blocks if "from fusefs.scenario import" in b]
    assert len(block.splitlines()) < 20
    path = tmp_path / "mine.py"
    path.write_text(block)
    done = subprocess.run(
        [sys.executable, "-m", "fusefs", "scenario", "run", str(path), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert set(result["policies"]) == {"legacy", "reserve"}
    assert result["policies"]["legacy"]["counters"]["lost_bytes"] == 4096
    assert result["policies"]["reserve"]["counters"]["lost_bytes"] == 0
