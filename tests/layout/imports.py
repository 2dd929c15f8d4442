"""The import graph of a source tree, read from the code (``ast``), never by importing it.

``graph(root, packages)`` maps each module to the modules of the tree it imports, each
edge marked as made under ``if TYPE_CHECKING:`` (annotations only) or not; ``violations``
checks the layering rules of mkwritefs against such a graph and returns one line per
broken rule, so a test can assert there are none, and another that a broken tree is
caught.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, order=True)
class Edge:
    source: str
    target: str
    type_checking: bool  # made only for annotations, under `if TYPE_CHECKING:`
    line: int


def module_name(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_type_checking(test: ast.expr) -> bool:
    return isinstance(test, ast.Name | ast.Attribute) and ast.unparse(test).endswith(
        "TYPE_CHECKING"
    )


def _imports(tree: ast.AST) -> Iterator[tuple[str, list[str], bool, int]]:
    """(module, names imported from it, under TYPE_CHECKING, line) for every import."""

    def walk(nodes: Iterable[ast.AST], tc: bool) -> Iterator[tuple[str, list[str], bool, int]]:
        for node in nodes:
            if isinstance(node, ast.If) and _is_type_checking(node.test):
                yield from walk(node.body, True)
                yield from walk(node.orelse, tc)
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    yield alias.name, [], tc, node.lineno
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    raise ValueError(f"relative import at line {node.lineno}: use absolute")
                assert node.module is not None
                yield node.module, [a.name for a in node.names], tc, node.lineno
            else:
                yield from walk(ast.iter_child_nodes(node), tc)

    yield from walk(ast.iter_child_nodes(tree), False)


def graph(root: Path, packages: Iterable[str]) -> dict[str, list[Edge]]:
    """Every module under ``root/<package>`` and its imports of modules of the tree;
    an import of anything else (the standard library, pyfuse3, trio) is kept too, as an
    edge to that top-level name, so rules about third-party imports can be checked."""
    paths = {module_name(root, p): p for pkg in packages for p in (root / pkg).rglob("*.py")}
    out: dict[str, list[Edge]] = {}
    for mod, path in sorted(paths.items()):
        edges = []
        for target, names, tc, line in _imports(ast.parse(path.read_text(), str(path))):
            if target not in paths and target.split(".")[0] not in packages:
                edges.append(Edge(mod, target.split(".")[0], tc, line))
                continue
            # `from pkg import module` imports the module; `from module import name` the module
            found = [f"{target}.{n}" for n in names if f"{target}.{n}" in paths]
            for t in found or [target]:
                if t != mod:
                    edges.append(Edge(mod, t, tc, line))
        out[mod] = edges
    return out


def layer(module: str) -> str:
    """The layer a module belongs to: ``sim_mmu``, ``fusefs.<subpackage>``, or the
    top-level module itself (``fusefs.constants``, ``fusefs.mountinfo``)."""
    parts = module.split(".")
    if parts[0] == "sim_mmu" or len(parts) < 2:
        return parts[0]
    return ".".join(parts[:2])


# Layers that may not import a layer above them.
CORE = ("fusefs.fs", "fusefs.vm")
ABOVE_CORE = ("fusefs.fuse", "fusefs.cli", "fusefs.scenario", "fusefs.probe", "fusefs.live")


def cycles(edges: dict[str, list[Edge]], *, with_type_checking: bool) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    succ = {
        m: sorted(
            {
                e.target
                for e in es
                if e.target in edges and (with_type_checking or not e.type_checking)
            }
        )
        for m, es in edges.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in succ[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(succ):
        if v not in index:
            visit(v)
    return found


def violations(edges: dict[str, list[Edge]]) -> list[str]:
    """One line per broken layering rule (see the README's Layout section)."""
    out = []
    for mod, es in edges.items():
        for e in es:
            src, dst = layer(mod), layer(e.target)
            where = f"{mod}:{e.line} imports {e.target}"
            if src == "sim_mmu" and dst.startswith("fusefs"):
                out.append(f"{where}: sim_mmu never imports fusefs")
            if src in CORE and dst in ABOVE_CORE:
                out.append(f"{where}: the core ({src}) never imports {dst}")
            if e.target == "pyfuse3" and src != "fusefs.fuse":
                out.append(f"{where}: only fusefs.fuse imports pyfuse3")
            if src in ("fusefs.scenario", "fusefs.probe", "fusefs.fuse") and dst == "fusefs.cli":
                out.append(f"{where}: the command line is on top; {src} never imports it")
    for comp in cycles(edges, with_type_checking=False):
        out.append(f"import cycle: {' -> '.join(comp)}")
    for comp in cycles(edges, with_type_checking=True):
        if len({layer(m) for m in comp}) > 1:
            out.append(f"import cycle across layers (annotations too): {' -> '.join(comp)}")
    return out
