"""bench/seed_sweep.py: a cell stopped by SIGTERM resumes from its checkpoint with the same result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import seed_sweep  # noqa: E402

pytest.importorskip("mujoco")

CELL = ["--tasks", "InvertedPendulum-v5", "--seeds", "1000", "--episodes", "400", "--checkpoint-every", "1"]
NAME = seed_sweep.cell_name("InvertedPendulum-v5", "default", 1000, 400)
#: what depends on the wall clock, the machine or the modules loaded, not on the settings and seed
VOLATILE = {"wall_s", "cpu_s", "segments", "machine", "code"}


def _run_args(base: Path) -> list[str]:
    return ["run", *CELL, "--cells", str(base / "cells"), "--runs", str(base / "runs")]


def test_cell_resumes_after_sigterm_with_the_same_result(tmp_path):
    assert seed_sweep.main(_run_args(tmp_path / "whole")) == 0
    whole = json.loads((tmp_path / "whole" / "cells" / f"{NAME}.json").read_text())
    assert whole["episodes"] >= 400 and whole["reached_episodes"] is not None  # InvertedPendulum learns

    cut = tmp_path / "cut"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, str(ROOT / "bench" / "seed_sweep.py"), *_run_args(cut)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ckpts = cut / "runs" / NAME / "checkpoints"
    deadline = time.monotonic() + 120
    while not (ckpts.is_dir() and any(p.name.startswith("iter_00000") and p.name != "iter_000000"
                                      for p in ckpts.iterdir())):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stdout.read().decode()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode == 143, out
    assert "interrupted" in out
    assert not (cut / "cells" / f"{NAME}.json").exists()  # no result from a half-run cell

    assert seed_sweep.main(_run_args(cut)) == 0  # the same command continues it
    resumed = json.loads((cut / "cells" / f"{NAME}.json").read_text())
    assert [s["resumed"] for s in resumed["segments"]] == [False, True]
    assert {k: v for k, v in resumed.items() if k not in VOLATILE} == {
        k: v for k, v in whole.items() if k not in VOLATILE}

    # a finished cell is skipped: running again changes nothing
    before = (cut / "cells" / f"{NAME}.json").read_text()
    assert seed_sweep.main(_run_args(cut)) == 0
    assert (cut / "cells" / f"{NAME}.json").read_text() == before


def test_paper_variant_is_the_default_where_the_preset_is_the_paper():
    assert seed_sweep.same_as_default("Hopper-v5", "ars-v2t-paper")
    assert not seed_sweep.same_as_default("Swimmer-v5", "ars-v2t-paper")
    assert seed_sweep.variant_settings("Reacher-v5", "ars-v2t-paper") is None
    cells = seed_sweep.planned_cells(["Hopper-v5", "Swimmer-v5", "Walker2d-v5"], ["ars-v2t-paper"], [1000, 1001])
    assert cells == [("Swimmer-v5", "ars-v2t-paper", 1000), ("Swimmer-v5", "ars-v2t-paper", 1001)]
    with pytest.raises(ValueError, match="unknown variant"):
        seed_sweep.variant_settings("Swimmer-v5", "nope")


def test_nearest_rank_quantiles_count_failures_as_not_reached():
    inf = float("inf")
    assert seed_sweep.quantile_nr([3, 1, 2, inf], 0.5) == 2
    assert seed_sweep.quantile_nr([3, inf, inf, 1], 0.5) == 3
    assert seed_sweep.quantile_nr([inf, inf, inf, 1], 0.5) == inf
    assert seed_sweep.quantile_nr(list(range(1, 11)), 0.25) == 3
