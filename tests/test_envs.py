"""Tests for envs/: presets, env creation errors, per-process cache, rollouts, lean steppers."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from dfo.envs import (
    LEAN_TASKS,
    PRESETS,
    env_dims,
    get_env,
    get_preset,
    get_stepper,
    lean_supported,
    make_env,
    make_stepper,
)
from dfo.envs.cache import cache_size
from dfo.policies import LinearPolicy, ObsNormalizer, RunningStat
from dfo.policies.rollout import rollout, run_episodes

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
    from dfo.policies.methods import METHODS

    for env_id, p in PRESETS.items():  # every default names a real method and says where it comes from
        assert p.method in METHODS, (env_id, p.method)
        assert p.source, env_id


def test_generic_preset_for_other_box_env():
    p = get_preset("Pendulum-v1")
    assert p.env_id == "Pendulum-v1" and p.horizon == 200 and p.survival_shift == 0.0


def test_unknown_env_names_close_ids_and_presets():
    with pytest.raises(ValueError, match="unknown env id 'HalfCheeta-v5'.*did you mean 'HalfCheetah-v5'"):
        make_env("HalfCheeta-v5")
    with pytest.raises(ValueError, match="unknown env id 'NoSuchEnv-v9'") as e:
        get_preset("NoSuchEnv-v9")
    assert "Known presets" in str(e.value) and "Swimmer-v5" in str(e.value)


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


@pytest.mark.parametrize("env_id", MUJOCO_V5)
def test_lean_stepper_identical_to_gymnasium(env_id):
    """Three lean slots against three gymnasium envs, same random actions, step by step;
    an ended episode restarts its slot with a new seed (as batched rollouts do)."""
    width = 3
    lean = make_stepper(make_env(env_id))
    assert lean.lean and lean_supported(lean.env)
    lean.ensure_width(width)
    refs = [make_env(env_id) for _ in range(width)]
    rng = np.random.default_rng(0)
    seed = n_term = n_trunc = 0

    def reset(j):
        nonlocal seed
        obs, _ = refs[j].reset(seed=seed)
        lean.reset(j, seed)
        seed += 1
        np.testing.assert_array_equal(lean.obs[j], obs)

    for j in range(width):
        reset(j)
    slots = np.arange(width)
    for _ in range(60):
        actions = rng.uniform(lean.low, lean.high, size=(width, lean.act_dim))
        reward, terminated, truncated = lean.step(slots, actions)
        for j in range(width):
            obs, r, term, trunc, _ = refs[j].step(actions[j])
            np.testing.assert_array_equal(lean.obs[j], obs)
            assert (reward[j], terminated[j], truncated[j]) == (r, term, trunc)  # exactly equal
            if term or trunc:
                n_term, n_trunc = n_term + term, n_trunc + trunc
                reset(j)
    if env_id in ("Hopper-v5", "Walker2d-v5", "InvertedPendulum-v5", "InvertedDoublePendulum-v5", "Humanoid-v5"):
        assert n_term > 0  # random actions make them fall: the termination rule was exercised
    if env_id == "Reacher-v5":
        assert n_trunc > 0  # 50-step time limit


@pytest.mark.parametrize("env_id", ["Ant-v5", "Humanoid-v5", "Hopper-v5"])
def test_lean_slots_moved_and_stepped_long_stay_identical_to_gymnasium(env_id):
    """Slots share one scratch MjData (state rows swapped in and out): over long runs with
    contacts (warm starts matter) and with episodes moved between slots (``move``), every
    observation, reward and flag still equals gymnasium's, stepped through a slice or an index array."""
    width = 3
    lean = make_stepper(make_env(env_id))
    lean.ensure_width(width)
    refs = [make_env(env_id) for _ in range(width)]
    rng = np.random.default_rng(1)
    seed = 100
    for j in range(width):
        obs, _ = refs[j].reset(seed=seed + j)
        lean.reset(j, seed + j)
        np.testing.assert_array_equal(lean.obs[j], obs)
    seed += width
    moved = 0
    for t in range(240):
        slots = slice(0, width) if t % 2 else np.arange(width)
        actions = 0.4 * rng.uniform(lean.low, lean.high, size=(width, lean.act_dim))
        reward, terminated, truncated = lean.step(slots, actions)
        for j in range(width):
            obs, r, term, trunc, _ = refs[j].step(actions[j])
            np.testing.assert_array_equal(lean.obs[j], obs)
            assert (reward[j], terminated[j], truncated[j]) == (r, term, trunc)
            if term or trunc:
                refs[j].reset(seed=seed)
                lean.reset(j, seed)
                seed += 1
        if t % 40 == 39:  # hand slot 2's episode to slot 0, restart slot 2
            lean.move(2, 0)
            refs[0], refs[2] = refs[2], refs[0]
            obs, _ = refs[2].reset(seed=seed)
            lean.reset(2, seed)
            np.testing.assert_array_equal(lean.obs[2], obs)
            seed += 1
            moved += 1
    assert moved == 6


def test_gym_stepper_moves_keep_the_cached_env_in_slot_zero():
    """Rollouts hand episodes between slots; the env.step path swaps which env serves a slot,
    never the order of its env list (envs[0] stays the per-process cached env)."""
    st = get_stepper("Hopper-v5", lean=False)
    pol = LinearPolicy(st.obs_dim, st.act_dim)
    P = 0.3 * np.random.default_rng(2).standard_normal((6, pol.n_params))
    outs = run_episodes(st, pol, P, list(range(6)), horizon=60, width=4)
    assert len({o.steps for o in outs}) > 1  # episodes ended at different times: slots were moved
    assert st.envs[0] is get_env("Hopper-v5") and sorted(st.slot_env) == list(range(st.width))
    again = run_episodes(st, pol, P, list(range(6)), horizon=60, width=4)
    assert [(o.true_ret, o.steps) for o in outs] == [(o.true_ret, o.steps) for o in again]


def test_lean_rollout_equals_gym_rollout():
    env = get_env("Hopper-v5")
    pol, params = _linear(env, 0.2, seed=3)
    a = rollout(env, pol, params, seed=11, horizon=300, lean=False)
    b = rollout(env, pol, params, seed=11, horizon=300, lean=True)
    assert (a.ret, a.true_ret, a.steps, a.terminated) == (b.ret, b.true_ret, b.steps, b.terminated)
    np.testing.assert_array_equal(a.obs_stats.m2, b.obs_stats.m2)


class _ZeroReward(gym.RewardWrapper):
    def reward(self, reward):
        return 0.0


class _NaNReward(gym.RewardWrapper):
    def reward(self, reward):
        return float("nan")


gym.register("DfoTestZeroRewardCheetah-v0", entry_point=lambda **kw: _ZeroReward(gym.make("HalfCheetah-v5", **kw)),
             max_episode_steps=1000)


def test_wrapped_or_custom_env_never_takes_the_lean_path():
    assert lean_supported(make_env("HalfCheetah-v5"))
    assert not lean_supported(_ZeroReward(make_env("HalfCheetah-v5")))  # user wrapper
    assert not lean_supported(make_env("HalfCheetah-v5", ctrl_cost_weight=0.2))  # env kwargs
    assert not lean_supported(make_env("HalfCheetah-v5").unwrapped)  # no spec chain of make
    assert not lean_supported(make_env("DfoTestZeroRewardCheetah-v0"))  # custom id around a lean task
    spec = gym.spec("HalfCheetah-v5")
    with_extra = make_env("HalfCheetah-v5")
    assert not lean_supported(gym.wrappers.ClipAction(with_extra))
    assert get_stepper("HalfCheetah-v5").lean
    assert not get_stepper("HalfCheetah-v5", {"ctrl_cost_weight": 0.2}).lean
    assert not get_stepper("DfoTestZeroRewardCheetah-v0").lean
    assert spec.entry_point == LEAN_TASKS["HalfCheetah-v5"][0]
    with pytest.raises(ValueError, match="no lean stepper"):
        rollout(_ZeroReward(make_env("HalfCheetah-v5")), *_linear(with_extra), seed=0, horizon=5, lean=True)


@pytest.mark.parametrize("env_id", ["HalfCheetah-v5", "Hopper-v5"])
def test_reward_wrappers_act_on_lean_tasks(env_id):
    base = make_env(env_id)
    pol, params = _linear(base, 0.1, seed=1)
    plain = rollout(base, pol, params, seed=0, horizon=50)
    assert plain.true_ret != 0.0
    zero = rollout(_ZeroReward(make_env(env_id)), pol, params, seed=0, horizon=50)
    assert zero.true_ret == 0.0 and zero.ret == 0.0 and zero.steps == plain.steps
    nan = rollout(_NaNReward(make_env(env_id)), pol, params, seed=0, horizon=50)
    assert nan.nonfinite and nan.steps == 1 and nan.true_ret == 0.0


def test_env_kwargs_reach_the_env():
    default = get_stepper("Reacher-v5")
    heavy = get_stepper("Reacher-v5", {"reward_control_weight": 10.0})
    assert default.lean and not heavy.lean
    pol, params = _linear(default.env, 1.0, seed=2)
    a = run_episodes(default, pol, params, [0], horizon=20)[0]
    b = run_episodes(heavy, pol, params, [0], horizon=20)[0]
    assert b.true_ret < a.true_ret  # control cost weighted 10x


class _DictObsEnv(gym.Env):
    """Tiny Dict-observation task: the policy must read both keys."""

    observation_space = gym.spaces.Dict({"b": gym.spaces.Box(-1, 1, (2,)), "a": gym.spaces.Box(-1, 1, (1,))})
    action_space = gym.spaces.Box(-1, 1, (1,))

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return {"a": np.array([0.5], np.float32), "b": np.array([0.25, -0.25], np.float32)}, {}

    def step(self, action):
        self.t += 1
        obs = {"a": np.array([0.5], np.float32), "b": np.array([0.25, -0.25], np.float32)}
        return obs, float(action[0]), False, self.t >= 10, {}


gym.register("DfoTestDictObs-v0", entry_point=_DictObsEnv)


def test_dict_observations_are_flattened():
    assert env_dims("DfoTestDictObs-v0") == (3, 1)
    st = get_stepper("DfoTestDictObs-v0")
    st.reset(0, 0)
    np.testing.assert_array_equal(st.obs[0], [0.5, 0.25, -0.25])  # FlattenObservation order: sorted keys
    pol = LinearPolicy(3, 1)
    res = run_episodes(st, pol, np.array([1.0, 0.0, 0.0]), [0], horizon=50)[0]
    assert res.steps == 10 and res.true_ret == 5.0  # action = obs["a"] = 0.5 per step


def test_unflattenable_observation_space_is_one_clear_error():
    class Seq(_DictObsEnv):
        observation_space = gym.spaces.Sequence(gym.spaces.Box(-1, 1, (1,)))

    with pytest.raises(ValueError, match="cannot be flattened"):
        make_stepper(Seq())


def test_saved_policy_predicts_on_dict_observations(tmp_path):
    from dfo.policies import load_policy, save_policy

    pol = LinearPolicy(3, 1)
    save_policy(tmp_path / "p", pol, np.array([3.0, 0.0, 0.0]), None, {"env_id": "DfoTestDictObs-v0"})
    loaded = load_policy(tmp_path / "p")
    one = {"a": np.array([0.5], np.float32), "b": np.array([0.25, -0.25], np.float32)}
    action, state = loaded.predict(one)
    assert action.tolist() == [1.0] and state is None  # 3 * 0.5 clipped to the action bound 1
    batch = {"a": np.array([[0.1], [-0.2]]), "b": np.zeros((2, 2))}  # as a vector env stacks them
    np.testing.assert_allclose(loaded.predict(batch)[0], [[0.3], [-0.6]])


# -- env ids: module:Env-v0, factories and instances (issue 26) ------------------------------------


def test_module_prefixed_id_imports_the_module_first(tmp_path, monkeypatch):
    (tmp_path / "dfo_prefix_envmod.py").write_text(
        "import gymnasium as gym\n"
        "gym.register('DfoPrefixPendulum-v0', entry_point='gymnasium.envs.classic_control:PendulumEnv',"
        " max_episode_steps=30)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    env = make_env("dfo_prefix_envmod:DfoPrefixPendulum-v0")
    assert env.spec.id == "DfoPrefixPendulum-v0" and env.spec.max_episode_steps == 30
    assert env_dims("dfo_prefix_envmod:DfoPrefixPendulum-v0") == (3, 1)
    assert get_preset("dfo_prefix_envmod:DfoPrefixPendulum-v0").horizon == 30
    with pytest.raises(ValueError, match="module 'dfo_prefix_envmod' did not register it"):
        make_env("dfo_prefix_envmod:Nope-v0")
    with pytest.raises(ValueError, match="cannot import module 'dfo_no_such_mod'"):
        make_env("dfo_no_such_mod:Nope-v0")


def test_dict_observation_task_gets_a_generic_preset_and_trains():
    import dfo

    assert get_preset("DfoTestDictObs-v0").env_id == "DfoTestDictObs-v0"  # was: int(None) on the Dict shape
    run = dfo.train("DfoTestDictObs-v0", episodes=16, horizon=10, backend="serial", n_eval_episodes=1)
    assert run.params.shape == (3,) and run.episodes >= 16


def _make_cartpole():
    return gym.make("CartPole-v1")


def test_train_takes_a_factory_or_an_instance_with_the_ids_numbers():
    import dfo

    kw = dict(episodes=16, backend="serial", n_eval_episodes=1, seed=3)
    by_id = dfo.train("CartPole-v1", **kw)
    by_factory = dfo.train(env=_make_cartpole, **kw)
    template = gym.make("CartPole-v1")
    by_instance = dfo.train(template, **kw)
    np.testing.assert_array_equal(by_factory.params, by_id.params)
    np.testing.assert_array_equal(by_instance.params, by_id.params)
    assert template.unwrapped.state is None  # the caller's instance was copied, never reset or stepped
    with pytest.raises(ValueError, match="not both"):
        dfo.train("CartPole-v1", env=_make_cartpole, **kw)


def test_register_env_gives_one_id_per_object():
    from dfo.envs import register_env

    first = register_env(_make_cartpole)
    assert first.startswith("dfo/make_cartpole-v") and register_env(_make_cartpole) == first
    inst = gym.make("CartPole-v1")
    copy_id = register_env(inst)
    a, b = make_env(copy_id), make_env(copy_id)
    assert a.unwrapped is not b.unwrapped is not inst.unwrapped
    with pytest.raises(ValueError, match="takes no env_kwargs"):
        make_env(copy_id, sutton_barto_reward=True)
    with pytest.raises(ValueError, match="callable returning an env"):
        register_env(42)


# -- reliability round 3, cases in envs/ (one clear line each) -------------------------------------


@pytest.mark.parametrize("case,body,message", [
    ("I4", "raise RuntimeError('module init failed')\n",
     r"module 'dfo_rel_I4' raised RuntimeError while being imported \(--import\): module init failed"),
    ("I5", "def broken(:\n", r"cannot import module 'dfo_rel_I5' \(--import\): SyntaxError: .* line 1"),
    ("I6", "import sys\nsys.exit(0)\n", r"module 'dfo_rel_I6' called sys.exit\(0\) while being imported"),
    ("I6b", "import os\nos._exit(0)\n", r"module 'dfo_rel_I6b' called os._exit\(0\) while being imported"),
], ids=["I4", "I5", "I6", "I6b"])
def test_reliability_import_of_a_failing_module_is_one_line(case, body, message, tmp_path, monkeypatch):
    from dfo.envs import import_modules

    (tmp_path / f"dfo_rel_{case}.py").write_text(body)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match=message) as err:
        import_modules([f"dfo_rel_{case}"])
    assert "\n" not in str(err.value) and f"dfo_rel_{case}" not in __import__("sys").modules


def test_reliability_I4_train_with_a_raising_import_is_a_one_line_error(tmp_path, monkeypatch):
    import dfo

    (tmp_path / "dfo_rel_I4b.py").write_text("raise RuntimeError('module init failed')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match="raised RuntimeError while being imported"):
        dfo.train("InvertedPendulum-v5", imports=["dfo_rel_I4b"], episodes=8, backend="serial")


@pytest.mark.parametrize("case,skip", [("E5", 0), ("E5b", -1), ("E5c", 2.5), ("E5d", True)],
                         ids=["E5", "E5b", "E5c", "E5d"])
def test_reliability_frame_skip_below_one_is_refused(case, skip):
    with pytest.raises(ValueError, match=f"InvertedPendulum-v5: frame_skip must be an integer >= 1, got {skip!r}"):
        make_env("InvertedPendulum-v5", frame_skip=skip)
    assert make_env("InvertedPendulum-v5", frame_skip=3).unwrapped.frame_skip == 3


def test_reliability_E7_render_mode_human_is_refused_before_any_window():
    with pytest.raises(ValueError, match="render_mode 'human' opens a window"):
        make_env("InvertedPendulum-v5", render_mode="human")
    with pytest.raises(ValueError, match="render_mode 'human'"):
        get_stepper("InvertedPendulum-v5", {"render_mode": "human"})



def test_render_env_takes_the_runs_kwargs_and_a_size_only_where_the_env_has_one():
    from dfo.envs.make import make_render_env

    pendulum = make_render_env("InvertedPendulum-v5", {"reset_noise_scale": 0.2, "render_mode": "human"},
                               width=64, height=48)
    inner = pendulum.unwrapped
    assert (inner.render_mode, inner.width, inner.height, inner._reset_noise_scale) == ("rgb_array", 64, 48, 0.2)
    cartpole = make_render_env("CartPole-v1", width=64, height=48)  # CartPole takes no width: was a false GL error
    assert cartpole.unwrapped.render_mode == "rgb_array"
