"""Package edges (docs/architecture.md, "Package edges"): no import circle and no import across a
floor in the wrong direction, counting every import statement of a module (module level, inside
functions, under ``TYPE_CHECKING``).

Floors, bottom up: the core ``dfo`` (estimators, minimizer, problems, ...); beside one another on
it ``dfo.study``, ``dfo.torch`` (with ``dfo.torch.llm``) and ``envs``; ``policies`` on ``envs``; the
``dfo`` command (``dfo.cli``, ``dfo.__main__``) on top. A module may import its own group and the
groups in :data:`MAY_IMPORT`; anything else is an upward (or sideways) import.

The one route up is a *name table*: a module-level dict whose values are ``"module"`` or
``"module:attribute"`` strings (``dfo.LAZY`` for ``dfo.train``, the CLI's ``COMMANDS``,
``dfo.study.reference.SEEDED_OBJECTIVES``), resolved with ``importlib`` when a name is asked
for. A table's targets must exist; a string naming a project module anywhere else, or a dynamic
import (``importlib.import_module`` / ``__import__``) outside :data:`DYNAMIC_IMPORTS`, fails.
"""

from __future__ import annotations

import ast
import functools
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: source folder -> the package it installs as (pyproject's package-dir: envs/ and policies/ are dfo.envs, dfo.policies)
PACKAGES = {"dfo": "dfo", "envs": "dfo.envs", "policies": "dfo.policies"}

#: module-name prefix -> group (longest prefix wins)
GROUPS = {
    "dfo": "core",
    "dfo.study": "study",
    "dfo.torch": "torch",
    "dfo.cli": "command",
    "dfo.__main__": "command",
    "dfo.envs": "envs",
    "dfo.policies": "policies",
}
#: group -> the groups below it that it may import (besides itself)
MAY_IMPORT = {
    "core": set(),
    "study": {"core"},
    "torch": {"core"},
    "envs": {"core"},
    "policies": {"core", "envs"},
    "command": {"core"},
}
#: group -> its floor (for telling an upward import from a sideways one in messages)
FLOOR = {"core": 0, "study": 1, "torch": 1, "envs": 1, "policies": 2, "command": 3}

#: (module, function) -> why it may call importlib.import_module / __import__ with a name that is not a
#: fixed string outside the project
DYNAMIC_IMPORTS = {
    ("dfo", "__getattr__"): "resolves the name table dfo.LAZY",
    ("dfo.cli", "build_parser"): "resolves the name table dfo.cli.COMMANDS",
    ("dfo.study.reference", "seeded_objective"): "resolves the name table SEEDED_OBJECTIVES",
    ("dfo.torch", "__getattr__"): "its own submodules, on first attribute access",
    ("dfo.envs.ids", "import_modules"): "the user's modules (--import, module:Env-v0), never a project module",
}

_TABLE_ENTRY = re.compile(r"^dfo(\.[A-Za-z_]\w*)*(:[A-Za-z_]\w*)?:?$")


@functools.cache
def _modules() -> dict[str, Path]:
    mods = {}
    for folder, package in PACKAGES.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            mods[".".join([package, *parts])] = path
    return mods


@functools.cache
def _tree(name: str) -> ast.Module:
    path = _modules()[name]
    return ast.parse(path.read_text(), filename=str(path))


def group(module: str) -> str:
    best = max((p for p in GROUPS if module == p or module.startswith(p + ".")), key=len)
    return GROUPS[best]


def imports_of(name: str) -> set[str]:
    """Project modules that ``name`` imports anywhere in its source (every Import / ImportFrom)."""
    known = _modules()
    package = name if known[name].name == "__init__.py" else name.rpartition(".")[0]
    edges: set[str] = set()
    for node in ast.walk(_tree(name)):
        if isinstance(node, ast.Import):
            edges.update(alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            if base in known:  # `from P import x` runs P's __init__ first, even when x is a submodule
                edges.add(base)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in known:
                    edges.add(sub)
    edges.discard(name)
    return edges


def import_graph() -> dict[str, set[str]]:
    return {m: imports_of(m) for m in _modules()}


def wrong_way_imports(graph: dict[str, set[str]]) -> list[str]:
    """``"src -> dst (up|sideways: group -> group)"`` for every import the floors forbid."""
    bad = []
    for src, dsts in sorted(graph.items()):
        g = group(src)
        for dst in sorted(dsts):
            h = group(dst)
            if h != g and h not in MAY_IMPORT[g]:
                way = "up" if FLOOR[h] > FLOOR[g] else "sideways" if FLOOR[h] == FLOOR[g] else "down, not allowed"
                bad.append(f"{src} -> {dst} ({way}: {g} -> {h})")
    return bad


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
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

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def name_tables() -> dict[str, dict[str, str]]:
    """``"module.TABLE" -> {key: "module:attr"}`` for every module-level dict of project-module names."""
    tables = {}
    for name in _modules():
        for node in _tree(name).body:
            target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
            value = getattr(node, "value", None)
            if not isinstance(target, ast.Name) or not isinstance(value, ast.Dict):
                continue
            entries = {}
            for k, v in zip(value.keys, value.values):
                for s in ast.walk(v):
                    if isinstance(s, ast.Constant) and isinstance(s.value, str) and _TABLE_ENTRY.match(s.value):
                        entries[ast.literal_eval(k) if k is not None else "**"] = s.value
            if entries:
                tables[f"{name}.{target.id}"] = entries
    return tables


def _table_strings() -> set[tuple[str, int]]:
    spots = set()
    for name in _modules():
        for node in _tree(name).body:
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Dict):
                spots.update((name, id(s)) for s in ast.walk(node.value))
    return spots


def test_every_import_keeps_to_the_floors():
    bad = wrong_way_imports(import_graph())
    assert not bad, f"{len(bad)} import(s) across the floors the wrong way:\n" + "\n".join(bad)


def test_no_import_circles():
    found = circles(import_graph())
    assert not found, f"{len(found)} import circle(s):\n" + "\n".join(" <-> ".join(c) for c in found)


def test_name_tables_point_at_what_exists():
    known = _modules()
    tables = name_tables()
    assert {"dfo.LAZY", "dfo.cli.COMMANDS", "dfo.study.reference.SEEDED_OBJECTIVES"} <= set(tables)
    for table, entries in tables.items():
        for key, target in entries.items():
            module, _, attr = target.partition(":")
            assert module in known, f"{table}[{key!r}] names {module!r}, which is no module"
            if attr:
                defined = {n.name for n in _tree(module).body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
                defined |= {t.id for n in _tree(module).body if isinstance(n, ast.Assign)
                            for t in n.targets if isinstance(t, ast.Name)}
                defined |= {a.asname or a.name for n in _tree(module).body if isinstance(n, ast.ImportFrom)
                            for a in n.names}
                assert attr in defined, f"{table}[{key!r}] names {target!r}, but {module} defines no {attr!r}"


def test_project_modules_are_named_only_in_name_tables():
    """A string naming a project module outside a name table would be an import the graph cannot see."""
    in_tables = _table_strings()
    stray = []
    for name in _modules():
        for node in ast.walk(_tree(name)):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and _TABLE_ENTRY.match(node.value):
                module = node.value.partition(":")[0]
                if module in _modules() and module.count(".") and (name, id(node)) not in in_tables:
                    stray.append(f"{name}:{node.lineno}: {node.value!r}")
    assert not stray, "project modules named outside a name table:\n" + "\n".join(stray)


def test_dynamic_imports_only_where_sanctioned():
    found = set()
    for name in _modules():
        for func in ast.walk(_tree(name)):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Module)):
                continue
            body = func.body if isinstance(func, ast.Module) else [func]
            for node in (n for b in body for n in ast.walk(b)):
                if isinstance(node, ast.Call):
                    callee = ast.unparse(node.func)
                    if callee.endswith("import_module") or callee == "__import__":
                        arg = node.args[0] if node.args else None
                        if isinstance(arg, ast.Constant) and str(arg.value).split(".")[0] != "dfo":
                            continue  # a fixed name outside the project (the standard library, ...)
                        where = func.name if not isinstance(func, ast.Module) else "<module>"
                        found.add((name, where))
    # a call inside a function is seen from the module too; keep the innermost function
    found = {f for f in found if f[1] != "<module>"} | {f for f in found if f[1] == "<module>"
                                                        and not any(g[0] == f[0] and g[1] != "<module>" for g in found)}
    unsanctioned = sorted(found - set(DYNAMIC_IMPORTS))
    assert not unsanctioned, f"dynamic imports outside the name-table route: {unsanctioned}"


def test_the_floor_check_can_fail():
    """The checks above see an import hidden in a function, and a circle through one."""
    graph = import_graph()
    graph["dfo.minimize"] = graph["dfo.minimize"] | {"dfo.policies.api"}
    assert "dfo.minimize -> dfo.policies.api (up: core -> policies)" in wrong_way_imports(graph)
    graph["dfo.radius"] = graph["dfo.radius"] | {"dfo.minimize"}
    graph["dfo.minimize"] = graph["dfo.minimize"] | {"dfo.radius"}
    assert any({"dfo.minimize", "dfo.radius"} <= set(c) for c in circles(graph))
    src = "def f():\n    from dfo.policies.api import train\n"
    assert "dfo.policies.api" in {a.module for a in ast.walk(ast.parse(src)) if isinstance(a, ast.ImportFrom)}


_PROBE = """
import importlib, json, pkgutil, sys
pkg = importlib.import_module(sys.argv[1])
skipped = []
for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
    if info.name.startswith(("dfo.torch", "dfo.__main__")):
        continue  # needs torch (optional) / runs the command; both are checked statically above
    try:
        importlib.import_module(info.name)
    except ImportError as exc:  # an optional dependency that is not installed
        skipped.append(f"{info.name}: {exc}")
print(json.dumps({"modules": sorted(sys.modules), "skipped": skipped}))
"""


@pytest.mark.parametrize("package,forbidden", [("dfo", ("dfo.policies", "dfo.envs")), ("dfo.envs", ("dfo.policies",))])
def test_importing_a_package_loads_no_package_above_it(package, forbidden):
    out = subprocess.run([sys.executable, "-c", _PROBE, package], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, check=True)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])["modules"]
    assert any(m.startswith(package + ".") for m in loaded)
    bad = [m for m in loaded if any(m == f or m.startswith(f + ".") for f in forbidden)]
    assert not bad, f"importing {package} (and its submodules) loaded {bad}"
