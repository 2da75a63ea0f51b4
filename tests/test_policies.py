"""Tests for policies/: flat-parameter policies, mergeable normalizer, save/load."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from dfo.policies import (
    LinearPolicy,
    MLPPolicy,
    NormalizerSnapshot,
    ObsNormalizer,
    RunningStat,
    load_policy,
    policy_from_config,
    save_policy,
)

POLICIES = [
    LinearPolicy(5, 3),
    LinearPolicy(5, 3, bias=True),
    MLPPolicy(5, 3, hidden=(8, 4)),
]


def test_linear_act_is_matrix_product():
    rng = np.random.default_rng(0)
    pol = LinearPolicy(7, 3)
    params = rng.standard_normal(pol.n_params)
    x = rng.standard_normal(7)
    m = params.reshape(3, 7)
    np.testing.assert_array_equal(pol.act(params, x), m @ x)
    assert pol.param_blocks() == [("M", (3, 7))]
    np.testing.assert_array_equal(pol.init_params(1), np.zeros(21))


def test_linear_bias_layout():
    pol = LinearPolicy(2, 2, bias=True)
    params = np.array([1.0, 0.0, 0.0, 1.0, 10.0, 20.0])
    np.testing.assert_array_equal(pol.act(params, np.array([3.0, 4.0])), [13.0, 24.0])


@pytest.mark.parametrize("pol", POLICIES, ids=repr)
def test_batch_act_equals_per_row(pol):
    rng = np.random.default_rng(1)
    params = rng.standard_normal(pol.n_params)
    obs = rng.standard_normal((6, pol.obs_dim))
    batch = pol.act(params, obs)
    rows = np.stack([pol.act(params, o) for o in obs])
    assert batch.shape == (6, pol.act_dim)
    # gemm vs gemv may sum in a different order: equal up to rounding
    np.testing.assert_allclose(batch, rows, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(pol.bind(params)(obs[0]), pol.act(params, obs[0]))


@pytest.mark.parametrize("pol", POLICIES, ids=repr)
def test_param_blocks_cover_vector(pol):
    params = np.arange(pol.n_params, dtype=float)
    blocks = pol.unflatten(params)
    assert [n for n, _ in pol.param_blocks()] == list(blocks)
    assert sum(b.size for b in blocks.values()) == pol.n_params
    np.testing.assert_array_equal(pol.flatten(blocks), params)
    assert policy_from_config(json.loads(json.dumps(pol.config()))).config() == pol.config()


def test_mlp_blocks_and_init():
    pol = MLPPolicy(4, 2, hidden=(3,))
    assert pol.param_blocks() == [("W0", (3, 4)), ("b0", (3,)), ("W1", (2, 3)), ("b1", (2,))]
    p = pol.init_params(0)
    np.testing.assert_array_equal(p, pol.init_params(0))
    np.testing.assert_array_equal(pol.act(p, np.ones(4)), np.zeros(2))  # zero output layer
    assert np.any(pol.unflatten(p)["W0"] != 0)
    b = pol.unflatten(p)
    x = np.arange(4.0)
    np.testing.assert_allclose(pol.act(p + 0, x), b["W1"] @ np.tanh(b["W0"] @ x + b["b0"]) + b["b1"])


def test_bad_shapes_raise():
    pol = LinearPolicy(3, 2)
    with pytest.raises(ValueError, match="length 6"):
        pol.act(np.zeros(5), np.zeros(3))
    with pytest.raises(ValueError, match="obs of shape"):
        pol.act(np.zeros(6), np.zeros(4))
    with pytest.raises(ValueError, match="unknown policy class"):
        policy_from_config({"class": "Nope"})


def test_running_stat_merge_equals_concatenation():
    rng = np.random.default_rng(2)
    chunks = [rng.normal(loc=5.0, scale=s, size=(n, 4)) for n, s in [(1, 1.0), (17, 3.0), (250, 0.1), (3, 10.0)]]
    merged = RunningStat(4)
    for c in chunks:
        merged.merge(RunningStat.from_batch(c))
    merged.merge(RunningStat(4))  # empty merge is a no-op
    full = np.concatenate(chunks)
    assert merged.count == len(full)
    np.testing.assert_allclose(merged.mean, full.mean(axis=0), rtol=1e-12, atol=0)
    np.testing.assert_allclose(merged.m2, ((full - full.mean(axis=0)) ** 2).sum(axis=0), rtol=1e-12, atol=0)
    np.testing.assert_allclose(merged.var, full.var(axis=0, ddof=1), rtol=1e-12)
    # merging in a different grouping gives the same stats up to rounding
    other = RunningStat.from_batch(full[:100])
    other.push_batch(full[100:])
    np.testing.assert_allclose(other.m2, merged.m2, rtol=1e-12)


def test_normalizer_low_variance_zeroed_and_snapshot_frozen():
    x = np.column_stack([np.arange(10.0), np.full(10, 3.0), 3.0 + 1e-6 * np.arange(10.0)])
    norm = ObsNormalizer(3)
    np.testing.assert_array_equal(norm.normalize(np.array([1.0, 2.0, 3.0])), [1.0, 2.0, 3.0])  # identity before data
    norm.update(RunningStat.from_batch(x))
    np.testing.assert_array_equal(norm.normalize(np.array([1.0, 2.0, 3.0])), [1.0, 2.0, 3.0])  # frozen until refresh
    snap = norm.refresh()
    out = snap.normalize(np.array([4.5, 100.0, 7.0]))
    assert out[0] == 0.0 and out[1] == 0.0 and out[2] == 0.0  # mean 4.5; var 0 and var ~9e-12 < 1e-8 zeroed
    out = snap.normalize(np.array([4.5 + np.sqrt(x[:, 0].var(ddof=1)), 3.0, 3.0]))
    np.testing.assert_allclose(out[0], 1.0, rtol=1e-14)
    # one observation only: zero variance, every coordinate zeroed
    one = NormalizerSnapshot.from_stat(RunningStat.from_batch(np.ones((1, 3))))
    np.testing.assert_array_equal(one.normalize(np.array([5.0, -1.0, 2.0])), np.zeros(3))


def test_normalizer_state_round_trip():
    rng = np.random.default_rng(3)
    norm = ObsNormalizer(4)
    norm.update(RunningStat.from_batch(rng.standard_normal((20, 4))))
    norm.refresh()
    norm.update(RunningStat.from_batch(rng.standard_normal((5, 4))))  # accumulated, not yet frozen
    back = ObsNormalizer.from_state({k: np.array(v) for k, v in norm.state.items()})
    for k, v in norm.state.items():
        np.testing.assert_array_equal(back.state[k], v)
    x = rng.standard_normal(4)
    np.testing.assert_array_equal(back.normalize(x), norm.normalize(x))


@pytest.mark.parametrize("pol", POLICIES, ids=repr)
def test_save_load_round_trip_no_pickle(tmp_path, pol):
    rng = np.random.default_rng(4)
    params = rng.standard_normal(pol.n_params)
    norm = ObsNormalizer(pol.obs_dim)
    norm.update(RunningStat.from_batch(rng.standard_normal((30, pol.obs_dim))))
    norm.refresh()
    npz, js = save_policy(tmp_path / "ckpt" / "policy", pol, params, norm, {"env_id": "Swimmer-v5", "iteration": 7})
    assert {p.name for p in (tmp_path / "ckpt").iterdir()} == {"policy.npz", "policy.json"}  # no temp files left
    with np.load(npz, allow_pickle=False) as z:  # would raise if any array needed pickle
        assert all(z[k].dtype != object for k in z.files)
    loaded = load_policy(tmp_path / "ckpt" / "policy.npz")
    assert loaded.policy.config() == pol.config()
    np.testing.assert_array_equal(loaded.params, params)
    for k, v in norm.state.items():
        np.testing.assert_array_equal(loaded.normalizer.state[k], v)
    assert loaded.metadata["env_id"] == "Swimmer-v5" and loaded.metadata["iteration"] == 7
    x = rng.standard_normal(pol.obs_dim)
    np.testing.assert_array_equal(loaded.act(x), pol.act(params, norm.normalize(x)))


def test_load_detects_corruption(tmp_path):
    pol = LinearPolicy(3, 1)
    npz, js = save_policy(tmp_path / "p", pol, np.ones(3), None, {})
    assert load_policy(tmp_path / "p").normalizer is None
    data = npz.read_bytes()
    npz.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="checksum"):
        load_policy(tmp_path / "p")
    js.write_text("{not json")
    with pytest.raises(ValueError, match="corrupt policy metadata"):
        load_policy(tmp_path / "p")
    with pytest.raises(FileNotFoundError):
        load_policy(tmp_path / "missing")
    with pytest.raises(ValueError, match="reserved"):
        save_policy(tmp_path / "q", pol, np.ones(3), None, {"policy": 1})
    assert zipfile.is_zipfile(save_policy(tmp_path / "r", pol, np.ones(3))[0])


# -- batched actors and lockstep rollouts ----------------------------------------------


@pytest.mark.parametrize("pol", POLICIES + [LinearPolicy(17, 6)], ids=repr)
def test_batch_actor_rows_depend_only_on_their_own_policy(pol):
    rng = np.random.default_rng(0)
    P = rng.standard_normal((9, pol.n_params))
    X = rng.standard_normal((9, pol.obs_dim))
    full = pol.batch_bind(P)(X)
    for i in range(9):  # alone, in a subset, and through act(): bit for bit
        np.testing.assert_array_equal(pol.batch_bind(P[i:i + 1])(X[i:i + 1])[0], full[i])
        np.testing.assert_allclose(pol.act(P[i], X[i]), full[i], rtol=1e-13, atol=1e-13)
    rows = np.array([1, 4, 8])
    np.testing.assert_array_equal(pol.batch_bind(P)(X[rows], rows), full[rows])


def _episodes(env_id, P, seeds, **kw):
    from dfo.envs import get_stepper
    from dfo.policies.rollout import run_episodes

    pol = LinearPolicy(P.shape[1] // get_stepper(env_id).act_dim, get_stepper(env_id).act_dim)
    return run_episodes(get_stepper(env_id, lean=kw.pop("lean", None)), pol, P, seeds, **kw)


def _key(o):
    stats = None if o.obs_stats is None else (o.obs_stats.count, o.obs_stats.mean.tobytes(), o.obs_stats.m2.tobytes())
    return (o.ret, o.true_ret, o.steps, o.nonfinite, o.terminated, stats)


@pytest.mark.parametrize("env_id", ["Hopper-v5", "InvertedDoublePendulum-v5"])
def test_lockstep_episodes_equal_one_at_a_time(env_id):
    """Episodes of different lengths (falls, refilled slots, a NaN policy) give the same
    outcomes whatever else shares the batch: serial == parallel at any chunking."""
    from dfo.envs import get_stepper

    st = get_stepper(env_id)
    n = st.obs_dim * st.act_dim
    rng = np.random.default_rng(1)
    P = 0.3 * rng.standard_normal((7, n))
    P[3, 0] = np.nan  # ends at once, flagged
    seeds = [int(s) for s in rng.integers(0, 2**31 - 1, size=7)]
    snap = NormalizerSnapshot(mean=0.1 * rng.standard_normal(st.obs_dim), inv_std=1 + rng.random(st.obs_dim))
    kw = dict(normalizer_state=snap, horizon=80, reward_shift=1.0)
    together = _episodes(env_id, P, seeds, **kw)
    narrow = _episodes(env_id, P, seeds, width=3, **kw)  # slots are refilled as episodes end
    alone = [_episodes(env_id, P[i:i + 1], seeds[i:i + 1], **kw)[0] for i in range(7)]
    gym_path = _episodes(env_id, P, seeds, lean=False, **kw)
    assert [_key(o) for o in together] == [_key(o) for o in narrow] == [_key(o) for o in alone]
    assert [_key(o) for o in together] == [_key(o) for o in gym_path]  # lean == env.step, batched too
    assert together[3].nonfinite and together[3].steps == 0
    assert len({o.steps for o in together}) > 2  # episodes really had different lengths


def test_map_episodes_serial_equals_loky():
    from dfo.parallel import make_evaluator
    from dfo.envs import get_stepper
    from dfo.policies.objective import RolloutBatch, RolloutSpec, map_episodes

    st = get_stepper("Swimmer-v5")
    pol = LinearPolicy(st.obs_dim, st.act_dim)
    spec = RolloutSpec(env_id="Swimmer-v5", policy=pol.config(), horizon=60)
    center = 0.2 * np.random.default_rng(3).standard_normal(pol.n_params)
    batch = RolloutBatch(spec=spec, center=center, snapshot=None, training=True)
    items = [(-1, 0, s) for s in range(11)]
    with make_evaluator("serial") as ev:
        a = map_episodes(ev, batch, items)
    with make_evaluator(2) as ev:
        b = map_episodes(ev, batch, items)
    assert [_key(o) for o in a] == [_key(o) for o in b]
    assert len({o.true_ret for o in a}) == 11


# -- custom envs, wrappers, env kwargs --------------------------------------------------


def test_custom_env_from_a_user_module_trains_on_loky():
    """The env is registered only by the module named in ``imports``: every loky worker imports it."""
    from dfo.policies.training import TrainConfig, Trainer

    kw = dict(env_id="DfoTestPointMass-v0", imports=("dfo_test_custom_env",), method="ars-v1", episodes=64,
              n_directions=4, top_b=4, step_size=0.05, noise=0.1, eval_every=2, n_eval_episodes=4)
    with Trainer(TrainConfig(backend="loky", n_jobs=2, **kw)) as tr:
        par = tr.run()
    with Trainer(TrainConfig(backend="serial", **kw)) as tr:
        ser = tr.run()
    np.testing.assert_array_equal(par.params, ser.params)  # identical numbers on 2 workers and serially
    first = par.history[0]["eval_return"]
    assert par.eval_return > first + 1.0  # it learned to move the mass to the origin


@pytest.mark.filterwarnings("ignore:.*reward is a NaN value")
def test_zero_and_nan_reward_wrappers_reach_training_rollouts():
    """A registered id whose env wraps a lean task goes through env.step in a worker rollout."""
    import gymnasium as gym

    from dfo.policies.objective import RolloutBatch, RolloutSpec, run_group

    class Zero(gym.RewardWrapper):
        def reward(self, r):
            return 0.0

    class NaN(gym.RewardWrapper):
        def reward(self, r):
            return float("nan")

    for name, wrapper in (("DfoTestZeroHopper-v0", Zero), ("DfoTestNaNHopper-v0", NaN)):
        if name not in gym.registry:
            gym.register(name, entry_point=lambda w=wrapper, **kw: w(gym.make("Hopper-v5", **kw)),
                         max_episode_steps=1000)
    pol = LinearPolicy(11, 3)
    params = 0.05 * np.random.default_rng(0).standard_normal(pol.n_params)
    outs = {}
    for env_id in ("Hopper-v5", "DfoTestZeroHopper-v0", "DfoTestNaNHopper-v0"):
        spec = RolloutSpec(env_id=env_id, policy=pol.config(), horizon=30, reward_shift=1.0)
        batch = RolloutBatch(spec=spec, center=params, snapshot=None, training=True)
        outs[env_id] = run_group(batch, [(-1, 0, 1), (-1, 0, 2)])
    assert all(o.true_ret > 1 for o in outs["Hopper-v5"])
    assert all(o.true_ret == 0.0 and o.ret == -o.steps for o in outs["DfoTestZeroHopper-v0"])
    assert all(o.nonfinite and o.steps == 1 for o in outs["DfoTestNaNHopper-v0"])


def test_cli_env_kwargs_and_import_errors_are_one_line(tmp_path, capsys):
    from dfo.cli import main

    with pytest.raises(SystemExit) as e:
        main(["train", "Hopper-v5", "--env-kwargs", "{ctrl: 1}", "--out", str(tmp_path / "a")])
    assert e.value.code == 2 and "not valid JSON" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", "Hopper-v5", "--env-kwargs", "[1, 2]", "--out", str(tmp_path / "b")])
    assert "expected a JSON object" in capsys.readouterr().err
    code = main(["train", "Hopper-v5", "--import", "no_such_module_xyz", "--out", str(tmp_path / "c")])
    err = capsys.readouterr().err
    assert code == 2 and "cannot import module 'no_such_module_xyz'" in err and "Traceback" not in err


def test_cli_trains_with_env_kwargs_and_a_user_module(tmp_path, monkeypatch):
    import json as _json

    from dfo.cli import main

    monkeypatch.chdir(tmp_path)
    out = tmp_path / "run"
    code = main(["train", "DfoTestPointMass-v0", "--import", "dfo_test_custom_env", "--method", "ars-v1",
                 "--episodes", "8", "--n-directions", "2", "--backend", "serial", "--no-progress", "--out", str(out)])
    assert code == 0
    code = main(["train", "Reacher-v5", "--env-kwargs", '{"reward_control_weight": 0.5}', "--episodes", "8",
                 "--n-directions", "2", "--top-b", "2", "--backend", "serial", "--no-progress",
                 "--out", str(tmp_path / "r")])
    assert code == 0
    assert _json.loads((tmp_path / "r" / "config.json").read_text())["env_kwargs"] == {"reward_control_weight": 0.5}


# -- a saved policy in Stable-Baselines3 ---------------------------------------------------


def test_saved_policy_predict_works_with_sb3_evaluate_policy(tmp_path):
    import gymnasium as gym
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import DummyVecEnv

    from dfo.envs import get_env
    from dfo.policies.rollout import rollout

    pol = LinearPolicy(11, 3)
    params = 0.3 * np.random.default_rng(4).standard_normal(pol.n_params)  # large: actions get clipped
    norm = ObsNormalizer(11)
    norm.update(RunningStat.from_batch(np.random.default_rng(5).standard_normal((20, 11))))
    norm.refresh()
    save_policy(tmp_path / "pol", pol, params, norm, {"env_id": "Hopper-v5"})
    loaded = load_policy(tmp_path / "pol")
    obs = np.random.default_rng(6).standard_normal((4, 11))
    action, state = loaded.predict(obs, state=None, episode_start=np.ones(4, bool), deterministic=True)
    assert action.shape == (4, 3) and state is None and np.all(np.abs(action) <= 1.0)
    assert loaded.predict(obs[0])[0].shape == (3,)

    venv = DummyVecEnv([lambda: gym.make("Hopper-v5")])
    venv.seed(17)  # the first episode resets with seed 17
    rewards, lengths = evaluate_policy(loaded, venv, n_eval_episodes=1, return_episode_rewards=True, warn=False)
    ours = rollout(get_env("Hopper-v5"), pol, params, normalizer_state=norm.snapshot, seed=17, horizon=1000,
                   collect_stats=False)
    assert lengths[0] == ours.steps
    np.testing.assert_allclose(rewards[0], ours.true_ret, rtol=1e-5)  # SB3 stores rewards as float32


_SCRIPT = '''
import gymnasium as gym
import numpy as np


class Walk(gym.Env):
    observation_space = gym.spaces.Box(-np.inf, np.inf, (1,), np.float64)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float64)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = self.np_random.uniform(-1, 1, size=1)
        return self.x.copy(), {}

    def step(self, a):
        self.x = self.x + 0.2 * np.asarray(a)
        return self.x.copy(), -float(self.x[0] ** 2), False, False, {}


gym.register("ScriptWalk-v0", entry_point=ENTRY, max_episode_steps=20)

if __name__ == "__main__":
    from dfo.policies.training import TrainConfig, Trainer

    cfg = TrainConfig(env_id="ScriptWalk-v0", method="ars-v1", episodes=16, n_directions=2, top_b=2,
                      n_eval_episodes=2, backend="loky", n_jobs=2)
    with Trainer(cfg) as tr:
        print("episodes", tr.run().episodes)
'''


@pytest.mark.parametrize("entry", ["Walk", "'__main__:Walk'"])
def test_env_registered_in_the_users_script_trains_on_loky(tmp_path, entry):
    """No module to import: the registration travels to the workers with the rollout spec."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "train_walk.py"
    script.write_text(_SCRIPT.replace("ENTRY", entry))
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": root, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "episodes 16" in out.stdout
