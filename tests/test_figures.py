"""Every committed figure has a command that draws it again, and the command still runs.

Each entry of :data:`FIGURES` names the committed PNGs (a glob) and how to redraw them into a
scratch folder from what is committed beside them (CSV / JSON results, run folders): no
experiment is rerun. The same commands are written in each figure's .md or README.
"""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DFO = [sys.executable, "-m", "dfo.cli"]


def _study_replot(folder: str, stem: str, preset: list[str]):
    def redraw(tmp: Path) -> list[Path]:
        out = tmp / Path(folder).name
        out.mkdir()
        shutil.copy(ROOT / folder / f"{stem}.csv", out)
        _run([*DFO, "study", *preset, "--out", str(out), "--replot"])
        return sorted(out.glob("*.png"))
    return redraw


def _peers(tmp: Path) -> list[Path]:
    _run([sys.executable, "bench/peers.py", "--table", str(tmp / "peers.md"), "--plot", str(tmp / "peers.png")])
    return [tmp / "peers.png"]


def _ars_swimmer(tmp: Path) -> list[Path]:
    runs = sorted(str(p) for p in (ROOT / "bench/results/ars_runs").glob("Swimmer-v5_*"))
    _run([*DFO, "plot", *runs, "--out", str(tmp / "ars_swimmer.png")])
    return [tmp / "ars_swimmer.png"]


def _noisy_profiles(tmp: Path) -> list[Path]:
    _run([sys.executable, "bench/noisy_profiles.py", "--report-only", "--noises",
          "relative,wild3,gaussian,additive,nonvanishing,none",
          "--out", str(tmp / "noisy_profiles")])
    return [tmp / "noisy_profiles.png"]


def _torch_quality(tmp: Path) -> list[Path]:
    empty = tmp / "no-runs"
    empty.mkdir()
    _run([sys.executable, "bench/torch_quality.py", "table", "--runs", str(empty), "--cells",
          "bench/results/torch_quality_cells", "--out", str(tmp / "t.md"), "--png", str(tmp / "torch_quality_seed42.png")])
    return [tmp / "torch_quality_seed42.png"]


#: committed PNG glob -> (redraw into a scratch folder, returning the PNGs drawn; names must match)
FIGURES = {
    "results/berahas/*.png": _study_replot("results/berahas", "cells", ["--preset", "berahas"]),
    "results/profiles/*.png": _study_replot("results/profiles", "runs", ["--preset", "profiles"]),
    "results/rl/*.png": _study_replot("results/rl", "study", []),
    "results/rl_crn/*.png": _study_replot("results/rl_crn", "study", []),
    "bench/results/peers.png": _peers,
    "bench/results/ars_swimmer.png": _ars_swimmer,
    "bench/results/noisy_profiles.png": _noisy_profiles,
    "bench/results/torch_quality_seed42.png": _torch_quality,
}


def _run(argv: list[str]) -> None:
    res = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, f"{' '.join(argv)}\n{res.stderr[-2000:]}"


def _committed_pngs() -> list[str]:
    out = subprocess.run(["git", "ls-files", "*.png"], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip("not a git checkout")
    return out.stdout.split()


def test_every_committed_png_has_a_redraw_command():
    missing = [p for p in _committed_pngs() if not any(fnmatch.fnmatch(p, g) for g in FIGURES)]
    assert not missing, f"committed figures without an entry in FIGURES: {missing}"


@pytest.mark.parametrize("pattern", sorted(FIGURES))
def test_the_redraw_command_runs_and_draws_every_committed_png(pattern, tmp_path):
    committed = sorted(Path(p).name for p in _committed_pngs() if fnmatch.fnmatch(p, pattern))
    drawn = FIGURES[pattern](tmp_path)
    names = sorted(p.name for p in drawn)
    assert set(committed) <= set(names), (committed, names)
    for p in drawn:
        assert p.stat().st_size > 10_000  # a real picture, not an empty canvas
