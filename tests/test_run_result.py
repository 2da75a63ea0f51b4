"""The one result type (dfo.run.result.RunResult) as the RL trainer returns it, and the trainer's callback:
``False`` returned or ``StopIteration`` raised both stop the run, with a checkpoint of where it stopped."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from dfo.policies.checkpoint import list_checkpoints
from dfo.policies.training import TrainConfig, Trainer, TrainResult
from dfo.run.result import RunResult

CFG = TrainConfig(env_id="InvertedPendulum-v5", method="ars-v2t", episodes=10**6, max_iterations=4, horizon=20,
                  n_directions=2, top_b=2, n_eval_episodes=1, eval_every=2, checkpoint_every=100, backend="serial")


def test_train_result_is_a_run_result_with_the_names_users_know(tmp_path):
    with Trainer(CFG, out_dir=tmp_path / "run") as tr:
        res = tr.run()
    assert isinstance(res, RunResult) and isinstance(res, TrainResult)
    assert res.episodes == res.evaluations == 16 and res.iteration == 4 and res.env_steps > 0
    assert res.message == "max_iterations=4 reached" and res.checkpoint == list_checkpoints(tmp_path / "run")[-1]
    assert res.eval_return == res.final["charts/episodic_return"] == res.history[-1]["eval_return"]
    assert res.final["grad/norm"] == res.history[-1]["grad_norm"]
    np.testing.assert_array_equal(res.params, res.policy.params)
    summary = res.summary()
    assert json.loads(json.dumps(summary))["evaluations"] == 16 and "params" not in summary
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.iteration = 0


def test_eval_return_is_the_last_evaluation_even_when_the_last_row_has_none(tmp_path):
    with Trainer(dataclasses.replace(CFG, max_iterations=3), out_dir=None) as tr:
        res = tr.run()
    assert math.isnan(res.history[-1]["eval_return"])  # eval_every=2: row 3 has no evaluation
    assert res.eval_return == res.history[-2]["eval_return"]


@pytest.mark.parametrize("stop", ["false", "stopiteration"])
def test_a_callback_stops_the_run_by_returning_false_or_raising_stopiteration(tmp_path, stop):
    seen = []

    def callback(row):
        seen.append(row["iteration"])
        if row["iteration"] == 2:
            if stop == "false":
                return False
            raise StopIteration
        return None  # None (and anything but False) goes on

    with Trainer(CFG, out_dir=tmp_path / "run", callback=callback) as tr:
        res = tr.run()
    assert seen == [1, 2] and res.iteration == 2 and res.message == "stopped by the callback"
    assert res.checkpoint.name == "iter_000002" and [p.name for p in list_checkpoints(tmp_path / "run")] == \
        ["iter_000002"]
    with Trainer.resume(tmp_path / "run", overrides={"max_iterations": 4}) as tr:  # and it resumes from there
        assert tr.run().iteration == 4
