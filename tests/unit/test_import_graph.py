"""The library's import graph has no cycles, and every module of ``layerwise.tasks`` imports first,
alone, in a fresh interpreter.

The graph is built with ``ast`` from every ``import`` in ``lib/layerwise`` (function-level ones too:
a lazy import hides a cycle, it does not remove it), except those under ``if TYPE_CHECKING:``,
which never run. Importing ``a.b.c`` also runs the package
``a.b``'s ``__init__``, so that edge is in the graph as well (except for a module of ``a.b`` itself:
its package is already being imported when it runs).
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

LIB = Path(__file__).parents[2] / "lib"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(LIB).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted((LIB / "layerwise").rglob("*.py"))}


def _targets(node: ast.AST, here: str, is_package: bool, modules: dict[str, Path]) -> set[str]:
    """The library modules one import statement runs (the module, and its parent packages)."""
    names: list[str] = []
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            base = here.split(".") if is_package else here.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        names = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in modules else prefix for a in node.names]
    out = set()
    for name in names:
        if name in modules:
            out.add(name)
        parts = name.split(".")
        for k in range(1, len(parts)):  # the parent packages, unless they are the importer's own
            parent = ".".join(parts[:k])
            if parent in modules and not here.startswith(parent + "."):
                out.add(parent)
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the library modules it imports (anywhere in its source)."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        edges: set[str] = set()
        typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                       and getattr(block.test, "id", getattr(block.test, "attr", None)) == "TYPE_CHECKING"
                       for stmt in block.body for n in ast.walk(stmt)}
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                edges |= _targets(node, name, path.name == "__init__.py", modules)
        graph[name] = edges - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of modules (first == last), or ``None``."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(u: str) -> list[str] | None:
        state[u] = 1
        stack.append(u)
        for v in sorted(graph.get(u, ())):
            if state.get(v) == 1:
                return stack[stack.index(v):] + [v]
            if v not in state and (c := visit(v)):
                return c
        stack.pop()
        state[u] = 2
        return None

    for u in sorted(graph):
        if u not in state and (c := visit(u)):
            return c
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_graph_sees_lazy_and_relative_imports():
    graph = import_graph()
    assert "layerwise.tasks" in graph["layerwise.pipeline"]  # a function-level `from .tasks import ...`
    assert "layerwise.tasks.registry" in graph["layerwise.tasks.pools"]
    assert "layerwise.catalogue" in graph["layerwise.templates"]


def test_library_import_graph_is_acyclic():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


TASK_MODULES = sorted(m for m in _modules() if m.startswith("layerwise.tasks")) + [
    "layerwise.catalogue", "layerwise.sources", "layerwise.templates"]


@pytest.mark.parametrize("module", TASK_MODULES)
def test_module_imports_first_in_a_fresh_interpreter(module):
    r = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True,
                       env={"PYTHONPATH": str(LIB), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
