"""Package edges (ARCHITECTURE.md): ``dfo`` imports nothing from ``policies``/``envs``,
``envs`` imports nothing from ``policies``, and no module-level import cycle exists.

The first check imports every module of a package in a fresh interpreter and looks at
``sys.modules``; the second builds the graph of module-level imports between project
modules from the source (function-level, lazy imports are not edges) and looks for cycles.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("dfo", "envs", "policies")
FORBIDDEN = {"dfo": ("policies", "envs"), "envs": ("policies",)}

_PROBE = """
import importlib, json, pkgutil, sys
pkg = importlib.import_module(sys.argv[1])
skipped = []
for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
    if info.name.startswith("dfo.torch"):
        continue  # needs torch (optional); it imports nothing of policies/envs either (checked statically below)
    try:
        importlib.import_module(info.name)
    except ImportError as exc:  # an optional dependency that is not installed
        skipped.append(f"{info.name}: {exc}")
print(json.dumps({"modules": sorted(sys.modules), "skipped": skipped}))
"""


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_importing_a_package_loads_no_forbidden_package(package):
    out = subprocess.run([sys.executable, "-c", _PROBE, package], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, check=True)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])["modules"]
    assert any(m.startswith(package + ".") for m in loaded)
    bad = [m for m in loaded if m.split(".")[0] in FORBIDDEN[package]]
    assert not bad, f"importing {package} (and its submodules) loaded {bad}"


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            mods[".".join(parts)] = path
    return mods


def _top_level_imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Project modules imported at module level (not in functions, not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    edges: set[str] = set()

    def visit(nodes):
        for node in nodes:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name in known:
                        edges.add(alias.name)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    if sub in known:
                        edges.add(sub)
                    elif base in known:
                        edges.add(base)
            elif isinstance(node, ast.If):
                test = ast.unparse(node.test)
                if "TYPE_CHECKING" not in test:
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                visit(node.body)
                for h in node.handlers:
                    visit(h.body)
                visit(node.orelse)
                visit(node.finalbody)

    visit(tree.body)
    edges.discard(name)
    return edges


def test_static_edges_and_no_import_cycles():
    mods = _modules()
    known = set(mods)
    graph = {m: _top_level_imports(m, p, known) for m, p in mods.items()}
    for src, dsts in graph.items():
        top = src.split(".")[0]
        bad = [d for d in dsts if d.split(".")[0] in FORBIDDEN.get(top, ())]
        assert not bad, f"{src} imports {bad} at module level"
    # a module's own package __init__ running first is how Python imports work, not a cycle
    for m in graph:
        parents = {".".join(m.split(".")[:k]) for k in range(1, m.count(".") + 1)}
        graph[m] -= parents
    state: dict[str, int] = {}
    stack: list[str] = []

    def dfs(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                cycle = stack[stack.index(d):] + [d]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if d not in state:
                dfs(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            dfs(m)
