"""docs/architecture.md stays true: what it names exists, and its floors are the edge test's."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAP = (ROOT / "docs" / "architecture.md").read_text()
sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_package_edges as edges  # noqa: E402  (the floors and name tables as the test enforces them)


def _resolves(dotted: str) -> bool:
    """A project module, or an attribute reached from one (``dfo.cli.COMMANDS``, ``dfo.train``)."""
    parts = dotted.split(".")
    for k in range(len(parts), 0, -1):
        module = ".".join(parts[:k])
        if module in edges._modules():
            if k == len(parts):
                return True  # a module: it exists (not imported: dfo.__main__ would run the command)
            obj = importlib.import_module(module)
            try:
                for attr in parts[k:]:
                    obj = getattr(obj, attr)
            except AttributeError:
                return False
            return True
    return False


def test_every_project_name_in_the_map_exists():
    names = set(re.findall(r"`((?:dfo|envs|policies)(?:\.[A-Za-z_]\w*)+)`", MAP))
    assert len(names) > 20
    missing = sorted(n for n in names if not n.startswith("dfo.torch") and not _resolves(n))
    assert not missing, f"docs/architecture.md names what does not exist: {missing}"
    torch_names = {n for n in names if n.startswith("dfo.torch")}
    for name in torch_names:  # checked from the source (importing them needs torch)
        module = name if name in edges._modules() else name.rpartition(".")[0]
        assert module in edges._modules() or module.rpartition(".")[0] in edges._modules(), name


def test_every_file_in_the_layout_exists():
    block = MAP.split("## Layout", 1)[1].split("```")[1]
    folder = None
    for line in block.splitlines():
        head = line[:24].strip()
        if head.endswith("/") and not line.startswith(" "):
            folder = ROOT / head
        elif head.endswith("/") and folder is not None:
            assert any(p.is_dir() for p in folder.rglob(head.rstrip("/"))), f"layout names {folder.name}/.../{head}"
        for path in re.findall(r"\b([a-z_/]+\.py)\b", line):
            places = [folder, *(ROOT / d for d in ("dfo", "envs", "policies", "tests"))] if "/" not in path else [ROOT]
            assert any(any(p.as_posix().endswith(path) for p in place.rglob(Path(path).name)) for place in places), \
                f"layout names {path} (under {folder.name})"


def test_the_maps_floors_and_name_tables_are_the_edge_tests():
    rows = re.findall(r"^\| (\d) \| (.+?) \| (.+?) \|$", MAP, flags=re.M)
    floors = {}
    for floor, groups, _ in rows:
        for module in re.findall(r"`([\w.]+)`", groups):
            floors[module] = int(floor)
    for module, floor in floors.items():
        assert edges.FLOOR[edges.group(module)] == floor, (module, floor)
    tables = re.findall(r"^- `([\w.]+)` —", MAP.split("name table", 1)[1], flags=re.M)
    assert sorted(tables) == sorted(t for t in edges.name_tables() if not t.startswith("dfo.torch"))
    assert f"the {['no', 'one', 'two', 'three', 'four', 'five', 'six'][len(edges.DYNAMIC_IMPORTS)]} places" in MAP
