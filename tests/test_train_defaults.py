"""The per-task defaults: presets are complete and valid, and the defaults really train.

The training tests run ``TrainConfig(env_id=...)`` with nothing but the seed, the serial
backend and evaluation settings given, i.e. the method, α, ν, N, b and horizon of
``envs/presets.py`` (picked by ``bench/tune_presets.py``), and must reach a real return.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from dfo.envs.presets import PRESETS, get_preset, task_scale
from dfo.policies.methods import METHODS
from dfo.policies.training import TrainConfig, Trainer


@pytest.mark.parametrize("env_id", sorted(PRESETS))
def test_every_preset_names_a_known_method_a_budget_and_a_source(env_id):
    p = get_preset(env_id)
    assert p.method in METHODS
    assert p.episodes >= 2 * p.n_directions
    assert p.source.strip()
    cfg = TrainConfig(env_id=env_id).resolved()
    assert (cfg.method, cfg.episodes, cfg.step_size, cfg.noise) == (p.method, p.episodes, p.step_size, p.noise)
    assert (cfg.policy, cfg.hidden) == (p.policy, p.hidden)


def test_given_settings_override_the_preset():
    cfg = TrainConfig(env_id="InvertedPendulum-v5", method="lozo", episodes=7, noise=0.5).resolved()
    assert (cfg.method, cfg.episodes, cfg.noise) == ("lozo", 7, 0.5)


@pytest.mark.parametrize("env_id", ["InvertedPendulum-v5", "Reacher-v5"])
def test_policy_and_hidden_come_from_the_preset_unless_given(env_id):
    p = get_preset(env_id)
    cfg = TrainConfig(env_id=env_id).resolved()
    assert (cfg.policy, cfg.hidden) == (p.policy, p.hidden)
    other = "linear" if p.policy == "mlp" else "mlp"
    cfg = TrainConfig(env_id=env_id, policy=other, hidden=[5, 3]).resolved()
    assert (cfg.policy, cfg.hidden) == (other, (5, 3))
    assert TrainConfig(env_id=env_id, hidden=(7,)).resolved().hidden == (7,)
    with pytest.raises(ValueError, match="hidden"):
        TrainConfig(env_id=env_id, hidden=(0,))
    with pytest.raises(ValueError, match="policy"):
        TrainConfig(env_id=env_id, policy="cnn")


def test_the_trainer_builds_the_preset_policy():
    from dfo.policies.linear import LinearPolicy
    from dfo.policies.mlp import MLPPolicy

    for env_id in ("Reacher-v5", "Pusher-v5", "Swimmer-v5"):
        p = get_preset(env_id)
        with Trainer(TrainConfig(env_id=env_id, backend="serial", max_iterations=1)) as tr:
            if p.policy == "mlp":
                assert isinstance(tr.policy, MLPPolicy) and tr.policy.hidden == p.hidden
            else:
                assert isinstance(tr.policy, LinearPolicy)


def test_a_run_saved_with_a_linear_policy_resumes_linear(tmp_path):
    """A run directory records the resolved policy; resuming it never takes the preset's
    (a run made before a task's preset became an MLP stays linear and continues exactly)."""
    import json

    from dfo.policies.linear import LinearPolicy

    cfg = TrainConfig(env_id="Reacher-v5", policy="linear", hidden=(32, 32), backend="serial", n_directions=2,
                      top_b=2, episodes=10**6, checkpoint_every=1, n_eval_episodes=1, eval_every=1)
    with Trainer(dataclasses.replace(cfg, max_iterations=4), out_dir=tmp_path / "full") as tr:
        tr.run()
        full = tr.params.copy()
    with Trainer(dataclasses.replace(cfg, max_iterations=2), out_dir=tmp_path / "cut") as tr:
        tr.run()
    stored = json.loads((tmp_path / "cut" / "config.json").read_text())
    stored = stored.get("config", stored)
    assert (stored["policy"], stored["hidden"]) == ("linear", [32, 32])
    with Trainer.resume(tmp_path / "cut", overrides={"max_iterations": 4}) as tr:
        assert isinstance(tr.policy, LinearPolicy) and tr.config.policy == "linear"
        tr.run()
        assert np.array_equal(tr.params, full)
    old = {k: v for k, v in stored.items() if k not in ("run_id", "lean")}  # lean: added later, old ones lack it
    assert TrainConfig.from_dict(old).resolved().policy == "linear"


def test_an_unresolved_config_round_trips():
    cfg = TrainConfig(env_id="Reacher-v5")
    assert cfg.policy is None and cfg.hidden is None
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_task_scale_is_action_bound_over_root_obs_dim():
    # InvertedPendulum: |a| <= 3, 4 observations; Hopper: |a| <= 1, 11 observations
    assert task_scale("InvertedPendulum-v5") == pytest.approx(1.5)
    assert task_scale("Hopper-v5") == pytest.approx(1 / math.sqrt(11))
    # an MLP's output layer reads its last hidden layer: Pusher |a| <= 2, 16 features
    assert task_scale("Pusher-v5", hidden=(64, 16)) == pytest.approx(2 / 4)


def test_a_task_without_preset_gets_the_relative_rule():
    from dfo.envs.presets import GENERIC_REL

    p = get_preset("Pendulum-v1")  # |a| <= 2, 3 observations: s = 2/sqrt(3)
    assert p.method == "orthogonal" and (p.n_directions, p.top_b) == (8, 8)
    assert p.step_size == p.noise == pytest.approx(GENERIC_REL * 2 / math.sqrt(3), rel=0.02)  # 2 digits
    assert "not tuned" in p.source
    assert p.policy == "linear"


def _episodes_to(threshold: float, cfg: TrainConfig) -> tuple[int | None, list[float]]:
    hit: list[int] = []
    evals: list[float] = []

    def watch(row):
        if row["eval_return"] == row["eval_return"]:
            evals.append(row["eval_return"])
            if row["eval_return"] >= threshold:
                hit.append(row["episodes"])
                raise StopIteration

    with Trainer(cfg, callback=watch) as tr:
        tr.run()
    return (hit[0] if hit else None), evals


def test_default_settings_balance_the_inverted_pendulum():
    """``dfo train InvertedPendulum-v5`` defaults on seed 0 reach gymnasium's threshold 950
    (mean of 3 full 1000-step evaluation episodes) within 200 training episodes; the zero
    policy starts below 100 (it falls within ~100 steps). (The tuned defaults needed 16-48 episodes on the tuning seeds.)"""
    cfg = TrainConfig(env_id="InvertedPendulum-v5", seed=0, episodes=200, backend="serial", n_eval_episodes=3,
                      eval_every=2, checkpoint_every=10**9)
    reached, evals = _episodes_to(950.0, cfg)
    assert evals[0] < 100
    assert reached is not None, evals


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_default_settings_balance_the_inverted_pendulum_other_seeds(seed):
    cfg = TrainConfig(env_id="InvertedPendulum-v5", seed=seed, episodes=400, backend="serial", n_eval_episodes=3,
                      eval_every=2, checkpoint_every=10**9)
    reached, evals = _episodes_to(950.0, cfg)
    assert reached is not None, evals


@pytest.mark.slow
@pytest.mark.parametrize("env_id, threshold", [("Reacher-v5", -3.75), ("Pusher-v5", -32.0)])
def test_default_settings_reach_the_threshold_on_reacher_and_pusher(env_id, threshold):
    """``dfo train Reacher-v5`` / ``Pusher-v5`` defaults (an MLP since the linear policy stalled
    short) on seed 0 reach the threshold within the preset's budget, with the evaluation
    protocol of ``bench/tune_presets.py`` (5 episodes about every 16 training episodes);
    measured: Reacher 3152 of 6000 episodes, Pusher 2112 of 5000."""
    p = get_preset(env_id)
    cfg = TrainConfig(env_id=env_id, seed=0, backend="serial", n_eval_episodes=5, eval_every=1,
                      checkpoint_every=10**9)
    reached, evals = _episodes_to(threshold, cfg)
    assert p.policy == "mlp"
    assert evals[0] < threshold - 5
    assert reached is not None and reached <= p.episodes, max(evals)
