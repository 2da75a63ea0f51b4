"""Discrete action spaces: one score per action, ``argmax`` (``dfo.envs.actions``), through every path.

CartPole-v1 (``Discrete(2)``) and Acrobot-v1 (``Discrete(3)``) ship with gymnasium; the
spaces a policy cannot act in get one clear error.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from dfo.envs.actions import ActionMap
from dfo.envs.make import env_dims, make_env
from dfo.envs.presets import GENERIC_REL, get_preset
from dfo.policies import LinearPolicy
from dfo.policies.normalizer import ObsNormalizer, RunningStat
from dfo.policies.rollout import rollout
from dfo.policies.serialization import load_policy, save_policy
from dfo.policies.training import TrainConfig, Trainer


def test_discrete_map_takes_the_argmax_from_start_and_box_map_clips_and_reshapes():
    m = ActionMap.of(gym.spaces.Discrete(4, start=2))
    assert (m.dim, m.discrete) == (4, True)
    assert m.to_env(np.array([0.0, 3.0, -1.0, 2.9])) == 3
    assert m.to_env(np.zeros(4)) == 2  # ties: the lowest index (the zero policy of ARS acts `start`)
    np.testing.assert_array_equal(m.clip(np.array([1e300, -1e300, 0, 0])), [1e300, -1e300, 0, 0])  # no bounds
    np.testing.assert_array_equal(m.to_env_batch(np.array([[0, 1, 0, 0], [5, 1, 0, 0]])), [3, 2])

    box = ActionMap.of(gym.spaces.Box(-1.0, 2.0, (2, 2)))
    assert (box.dim, box.discrete) == (4, False)
    y = np.array([[-5.0, 0.5, 3.0, np.nan]])
    clipped = box.clip(y)
    np.testing.assert_array_equal(clipped[0, :3], [-1.0, 0.5, 2.0])
    assert np.isnan(clipped[0, 3])  # NaN stays NaN: the rollout ends the episode
    assert box.to_env(clipped[0]).shape == (2, 2)
    assert box.to_env_batch(y).shape == (1, 2, 2) and box.to_env_batch(y[0]).shape == (2, 2)


@pytest.mark.parametrize("space", [gym.spaces.MultiDiscrete([2, 3]), gym.spaces.MultiBinary(3),
                                   gym.spaces.Tuple((gym.spaces.Discrete(2),))])
def test_unsupported_action_spaces_get_one_line_naming_the_space(space):
    with pytest.raises(ValueError, match="is not supported") as err:
        ActionMap.of(space)
    assert "\n" not in str(err.value) and str(space) in str(err.value)


class _MultiBinaryEnv(gym.Env):
    observation_space = gym.spaces.Box(-1.0, 1.0, (2,))
    action_space = gym.spaces.MultiBinary(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, dtype=np.float32), {}

    def step(self, action):
        return np.zeros(2, dtype=np.float32), 0.0, True, False, {}


def test_an_env_with_an_unsupported_action_space_is_refused_by_make_and_the_trainer():
    if "dfo-test/MultiBinary-v0" not in gym.registry:
        gym.register("dfo-test/MultiBinary-v0", entry_point=_MultiBinaryEnv)
    with pytest.raises(ValueError, match=r"dfo-test/MultiBinary-v0: action space MultiBinary\(2\) is not supported"):
        make_env("dfo-test/MultiBinary-v0")
    with pytest.raises(ValueError, match="is not supported"):
        Trainer(TrainConfig(env_id="dfo-test/MultiBinary-v0", backend="serial"))


def test_cartpole_policy_outputs_one_score_per_action_and_steps_the_chosen_one():
    assert env_dims("CartPole-v1") == (4, 2)
    assert env_dims("Acrobot-v1") == (6, 3)
    env = make_env("CartPole-v1")
    pol = LinearPolicy(4, 2)
    # scores (-theta, theta): push right (action 1) when the pole leans right (theta > 0)
    params = np.array([[0.0, 0.0, -1.0, 0.0], [0.0, 0.0, 1.0, 0.0]]).ravel()
    ours = rollout(env, pol, params, seed=3, horizon=500, collect_stats=False)

    ref = gym.make("CartPole-v1")
    obs, _ = ref.reset(seed=3)
    total, steps = 0.0, 0
    while True:
        obs, r, terminated, truncated, _ = ref.step(int(np.argmax(pol.act(params, obs))))
        total, steps = total + r, steps + 1
        if terminated or truncated:
            break
    assert (ours.steps, ours.true_ret) == (steps, total)
    assert steps > 20  # the rule balances for a while: actions were really chosen by the scores


def test_discrete_tasks_get_the_generic_rule_with_unit_action_scale():
    p = get_preset("CartPole-v1")  # scores, a_max = 1; 4 observations: s = 1/2
    assert p.method == "orthogonal" and p.horizon == 500
    assert p.step_size == p.noise == pytest.approx(GENERIC_REL / 2, rel=0.02)


def test_default_settings_balance_cartpole():
    """``dfo train CartPole-v1`` with nothing but the seed: the zero policy (always action 0)
    falls in about 10 steps; the generic rule reaches gymnasium's threshold 475 (mean of 3
    evaluation episodes) within 300 training episodes (measured, seed 0: 307 after the first
    iteration's 16 episodes, 500 after 32)."""
    hit: list[int] = []
    evals: list[float] = []

    def watch(row):
        if row["eval_return"] == row["eval_return"]:
            evals.append(row["eval_return"])
            if row["eval_return"] >= 475.0:
                hit.append(row["episodes"])
                raise StopIteration

    cfg = TrainConfig(env_id="CartPole-v1", seed=0, episodes=300, backend="serial", n_eval_episodes=3,
                      eval_every=1, checkpoint_every=10**9)
    with Trainer(cfg, callback=watch) as tr:
        tr.run()
    zero = rollout(make_env("CartPole-v1"), LinearPolicy(4, 2), np.zeros(8), seed=0, horizon=500, collect_stats=False)
    assert zero.true_ret < 50
    assert hit, evals


def test_saved_discrete_policy_works_with_sb3_evaluate_policy(tmp_path):
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import DummyVecEnv

    from dfo.envs import get_env

    pol = LinearPolicy(6, 3)
    params = np.random.default_rng(1).standard_normal(pol.n_params)
    norm = ObsNormalizer(6)
    norm.update(RunningStat.from_batch(np.random.default_rng(2).standard_normal((20, 6))))
    norm.refresh()
    save_policy(tmp_path / "pol", pol, params, norm, {"env_id": "Acrobot-v1"})
    loaded = load_policy(tmp_path / "pol")
    obs = np.random.default_rng(3).standard_normal((5, 6))
    action, _ = loaded.predict(obs)
    assert action.shape == (5,) and np.issubdtype(action.dtype, np.integer) and set(action.tolist()) <= {0, 1, 2}
    np.testing.assert_array_equal(action, np.argmax(pol.act(params, norm.normalize(obs)), axis=1))

    venv = DummyVecEnv([lambda: gym.make("Acrobot-v1")])
    venv.seed(11)
    rewards, lengths = evaluate_policy(loaded, venv, n_eval_episodes=1, return_episode_rewards=True, warn=False)
    ours = rollout(get_env("Acrobot-v1"), pol, params, normalizer_state=norm.snapshot, seed=11, horizon=500,
                   collect_stats=False)
    assert (lengths[0], rewards[0]) == (ours.steps, pytest.approx(ours.true_ret))
