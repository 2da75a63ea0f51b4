"""examples/optuna_swimmer.py: Optuna pruning through dfo.train's callback (a False return ends the run)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "optuna_swimmer.py"


def test_pruned_trials_stop_early_and_complete_ones_use_the_budget():
    spec = importlib.util.spec_from_file_location("optuna_swimmer", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    episodes = 64
    study = module.main(["--trials", "6", "--episodes", str(episodes), "--seed", "0"])
    states = [t.state for t in study.trials]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert len(complete) + len(pruned) == 6, states
    assert pruned, "with these seeds the median pruner stops at least one trial (measured: 3 of 6)"
    for t in complete:
        assert max(t.intermediate_values) >= episodes
    for t in pruned:                      # the callback's False ended the run before the budget
        assert max(t.intermediate_values) < episodes
    assert study.best_value == max(t.value for t in complete)


def test_callback_returning_false_stops_training(tmp_path):
    import dfo

    seen = []

    def stop_after_two(row):
        seen.append(row["iteration"])
        return False if row["iteration"] >= 2 else None

    result = dfo.train("InvertedPendulum-v5", episodes=400, n_jobs=1, progress=False, callback=stop_after_two,
                       out=tmp_path / "run")
    assert seen == [1, 2] and result.iteration == 2
    assert result.message == "stopped by the callback"
