"""Tests for envs/: presets, env creation errors, per-process cache, rollouts, lean steppers."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from envs import (
    PRESETS,
    GymStepper,
    LeanStepper,
    get_env,
    get_preset,
    lean_supported,
    make_env,
)
from envs.cache import cache_size
from policies import LinearPolicy, ObsNormalizer, RunningStat
from policies.rollout import rollout

MUJOCO_V5 = [
    "Swimmer-v5", "Hopper-v5", "HalfCheetah-v5", "Walker2d-v5", "Ant-v5", "Humanoid-v5",
    "HumanoidStandup-v5", "InvertedPendulum-v5", "InvertedDoublePendulum-v5", "Reacher-v5", "Pusher-v5",
]


def _linear(env, scale=0.0, seed=0):
    pol = LinearPolicy(env.observation_space.shape[0], env.action_space.shape[0])
    return pol, scale * np.random.default_rng(seed).standard_normal(pol.n_params)


def test_presets_cover_all_mujoco_v5_tasks():
    assert sorted(PRESETS) == sorted(MUJOCO_V5)
    for env_id, p in PRESETS.items():
        assert p.env_id == env_id
        assert p.horizon == gym.spec(env_id).max_episode_steps
    shifts = {k: p.survival_shift for k, p in PRESETS.items() if p.survival_shift}
    assert shifts == {"Hopper-v5": 1.0, "Walker2d-v5": 1.0, "Ant-v5": 1.0, "Humanoid-v5": 5.0}
    sw = get_preset("Swimmer-v5")
    assert (sw.n_directions, sw.top_b, sw.step_size, sw.noise) == (1, 1, 0.02, 0.01)


def test_generic_preset_for_other_box_env():
    p = get_preset("Pendulum-v1")
    assert p.env_id == "Pendulum-v1" and p.horizon == 200 and p.survival_shift == 0.0


def test_unknown_env_lists_presets():
    with pytest.raises(ValueError, match="unknown env id 'NoSuchEnv-v9'") as e:
        make_env("NoSuchEnv-v9")
    assert "HalfCheetah-v5" in str(e.value) and "Swimmer-v5" in str(e.value)
    with pytest.raises(ValueError, match="Known presets"):
        get_preset("NoSuchEnv-v9")


def test_discrete_env_rejected():
    with pytest.raises(ValueError, match="Box action space"):
        make_env("CartPole-v1")


def test_env_cache_returns_same_object():
    a = get_env("InvertedPendulum-v5")
    n = cache_size()
    assert get_env("InvertedPendulum-v5") is a
    assert cache_size() == n
    assert get_env("InvertedPendulum-v5", reset_noise_scale=0.02) is not a


@pytest.mark.parametrize("env_id,lean", [("InvertedPendulum-v5", None), ("Swimmer-v5", False), ("Swimmer-v5", True)])
def test_rollout_deterministic_given_seed(env_id, lean):
    env = get_env(env_id)
    pol, params = _linear(env, 0.3)
    norm = ObsNormalizer(pol.obs_dim)
    norm.update(RunningStat.from_batch(np.random.default_rng(0).standard_normal((10, pol.obs_dim))))
    snap = norm.refresh()
    kw = dict(normalizer_state=snap, horizon=60, lean=lean)
    r1 = rollout(env, pol, params, seed=5, **kw)
    rollout(env, pol, params, seed=6, **kw)  # an unrelated episode in between
    r2 = rollout(env, pol, params, seed=5, **kw)
    r3 = rollout(env, pol, params, seed=7, **kw)
    assert r1.ret == r2.ret and r1.steps == r2.steps
    np.testing.assert_array_equal(r1.obs_stats.m2, r2.obs_stats.m2)
    assert not np.array_equal(r3.obs_stats.mean, r1.obs_stats.mean)  # another seed, another episode
    assert r1.obs_stats.count == r1.steps and not r1.nonfinite


def test_rollout_obs_stats_match_visited_observations():
    env = get_env("Swimmer-v5")
    pol, params = _linear(env, 0.5)
    res = rollout(env, pol, params, seed=3, horizon=25, lean=False)
    obs, _ = env.reset(seed=3)
    seen = []
    for _ in range(25):
        seen.append(obs)
        a = np.clip(pol.act(params, obs), env.action_space.low, env.action_space.high)
        obs, *_ = env.step(a)
    ref = RunningStat.from_batch(np.array(seen))
    np.testing.assert_array_equal(res.obs_stats.mean, ref.mean)
    np.testing.assert_array_equal(res.obs_stats.m2, ref.m2)


def test_reward_shift_applies_to_ret_only():
    env = get_env("Hopper-v5")
    pol, params = _linear(env, 0.1)
    base = rollout(env, pol, params, seed=0, horizon=40)
    shifted = rollout(env, pol, params, seed=0, horizon=40, reward_shift=1.0)
    assert shifted.true_ret == base.true_ret == base.ret
    assert shifted.steps == base.steps
    np.testing.assert_allclose(shifted.ret, base.true_ret - base.steps, rtol=0, atol=1e-9)


def test_actions_are_clipped_to_action_space():
    env = get_env("InvertedPendulum-v5")  # action bounds [-3, 3]
    pol = LinearPolicy(4, 1, bias=True)
    huge = np.array([0.0, 0.0, 0.0, 0.0, 1e6])
    at_bound = np.array([0.0, 0.0, 0.0, 0.0, 3.0])
    a = rollout(env, pol, huge, seed=0, horizon=20, lean=False)
    b = rollout(env, pol, at_bound, seed=0, horizon=20, lean=False)
    assert a.ret == b.ret and a.steps == b.steps


class _NaNObsAt(gym.Wrapper):
    def __init__(self, env, at):
        super().__init__(env)
        self.at, self.t = at, 0

    def reset(self, **kw):
        self.t = 0
        return self.env.reset(**kw)

    def step(self, action):
        obs, r, term, trunc, info = self.env.step(action)
        self.t += 1
        if self.t == self.at:
            obs = obs.copy()
            obs[0] = np.nan
        return obs, r, term, trunc, info


def test_nan_params_end_episode_flagged():
    env = get_env("Swimmer-v5")
    pol, params = _linear(env)
    params[3] = np.nan
    res = rollout(env, pol, params, seed=0, horizon=50)
    assert res.nonfinite and res.steps == 0 and res.ret == 0.0
    ok = rollout(env, pol, np.zeros_like(params), seed=0, horizon=50)  # the env goes on working
    assert not ok.nonfinite and ok.steps == 50


def test_nan_observation_ends_episode_flagged():
    env = _NaNObsAt(make_env("InvertedPendulum-v5"), at=4)
    pol, params = _linear(env)
    res = rollout(env, pol, params, seed=0, horizon=50)
    assert res.nonfinite and res.steps == 4 and np.isfinite(res.ret)
    assert res.obs_stats.count == 4 and np.all(np.isfinite(res.obs_stats.mean))


@pytest.mark.parametrize("env_id", ["HalfCheetah-v5", "Swimmer-v5", "Hopper-v5", "Walker2d-v5"])
def test_lean_stepper_identical_to_gymnasium(env_id):
    gym_env, lean_env = make_env(env_id), make_env(env_id)
    assert lean_supported(lean_env)
    ref, lean = GymStepper(gym_env), LeanStepper(lean_env)
    rng = np.random.default_rng(0)
    n_steps = n_term = 0
    ep = 0
    while n_steps < 300:  # several episodes: Hopper/Walker2d fall within ~40 random steps
        o_ref, o_lean = ref.reset(ep), lean.reset(ep)
        ep += 1
        np.testing.assert_array_equal(o_lean, o_ref)
        for _ in range(150):
            a = rng.uniform(ref.low, ref.high)
            s_ref, s_lean = ref.step(a), lean.step(a)
            n_steps += 1
            np.testing.assert_array_equal(s_lean[0], s_ref[0])
            assert s_lean[1:] == s_ref[1:]  # reward, terminated, truncated: exactly equal
            if s_ref[2] or s_ref[3]:
                n_term += 1
                break
    if env_id in ("Hopper-v5", "Walker2d-v5"):
        assert n_term > 0  # random actions make them fall: the termination rule was exercised


def test_lean_rollout_equals_gym_rollout():
    env = get_env("Hopper-v5")
    pol, params = _linear(env, 0.2, seed=3)
    a = rollout(env, pol, params, seed=11, horizon=300, lean=False)
    b = rollout(env, pol, params, seed=11, horizon=300, lean=True)
    assert (a.ret, a.true_ret, a.steps, a.terminated) == (b.ret, b.true_ret, b.steps, b.terminated)
    np.testing.assert_array_equal(a.obs_stats.m2, b.obs_stats.m2)


def test_lean_unsupported_env_raises():
    env = get_env("InvertedPendulum-v5")
    assert not lean_supported(env)
    with pytest.raises(ValueError, match="no lean stepper"):
        rollout(env, *_linear(env), seed=0, horizon=5, lean=True)
