"""The README's simulator example runs as printed and does what its comments say."""

import re
import signal
import textwrap
from pathlib import Path

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
