"""Tests for the training layer: ARS mapping, methods, serial == parallel, resume, faults."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from dfo.parallel import make_evaluator
from dfo.policies.checkpoint import CheckpointError, list_checkpoints
from dfo.policies.methods import METHODS, get_method
from dfo.policies.objective import RLObjective, RolloutSpec, kill_hook_path
from dfo.policies.training import DETERMINISTIC_COLUMNS, TrainConfig, Trainer, read_progress
from dfo.run.checkpoint import decode, encode

PENDULUM = dict(env_id="InvertedPendulum-v5", horizon=100, n_eval_episodes=2, eval_every=1, backend="serial")


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**{**PENDULUM, **kw})


def _det(rows):
    return [{c: r[c] for c in DETERMINISTIC_COLUMNS if c in r} for r in rows]


def _same(a, b) -> bool:
    """Row lists equal, NaN == NaN."""
    if len(a) != len(b):
        return False
    for ra, rb in zip(a, b):
        for k in ra:
            x, y = ra[k], rb.get(k)
            if isinstance(x, float) and math.isnan(x):
                if not (isinstance(y, float) and math.isnan(y)):
                    return False
            elif x != y:
                return False
    return True


@pytest.fixture(scope="module")
def loky2():
    ev = make_evaluator("loky", n_jobs=2)
    yield ev
    ev.close()


# -- the ARS mapping -----------------------------------------------------------------------
@pytest.mark.parametrize("name,b", [("ars-v1", 6), ("ars-v1t", 2), ("ars-v2t", 3)])
def test_ars_update_equals_the_paper_formula(name, b):
    """θ − lr·g with lr = 2να equals θ + α/(b σ_R) Σ_top-b (r+ − r−) u_i (Mania et al. 2018)."""
    method = get_method(name)
    n, n_dir, alpha, nu = 7, 6, 0.03, 0.05
    top_b = n_dir if not method.top else b
    rng = np.random.default_rng(3)
    c = rng.standard_normal(n)
    reward = lambda th: -float(np.sum((th - c) ** 2)) + 0.1 * float(np.sin(5 * th).sum())  # noqa: E731
    est = method.make_estimator(n, n_directions=n_dir, top_b=top_b, noise=nu)
    theta = rng.standard_normal(n)
    q = est.ask(theta, rng)
    values = np.array([-reward(p) for p in q.points])
    new = theta - method.learning_rate(alpha, nu) * est.tell(q, values).grad
    u = q.directions.matrix()
    r_plus = np.array([reward(theta + nu * ui) for ui in u])
    r_minus = np.array([reward(theta - nu * ui) for ui in u])
    keep = np.argsort(-np.maximum(r_plus, r_minus), kind="stable")[:top_b]
    sigma_r = np.std(np.concatenate([r_plus[keep], r_minus[keep]]))
    ars = theta + alpha / (top_b * sigma_r) * ((r_plus - r_minus)[keep] @ u[keep])
    np.testing.assert_allclose(new, ars, rtol=1e-12, atol=1e-14)


def test_trainer_step_equals_the_ars_formula():
    """One Trainer iteration (dfo.Minimizer, sgd rule, lr = 2να) against ARS V1-t written out:
    θ' = θ + α/(b σ_R) Σ_top-b (r+ − r−) u_i, the returns r± of θ ± ν u_i computed here from
    explicit points with each direction's episode seed (common random numbers)."""
    from dfo.policies.objective import RolloutBatch, rollout_worker

    alpha, nu, b = 0.05, 0.1, 2
    cfg = _cfg(method="ars-v1t", n_directions=4, top_b=b, step_size=alpha, noise=nu, max_iterations=1,
               episodes=10**6)
    with Trainer(cfg) as tr:
        tr.params = tr.params + 0.05 * np.arange(tr.params.size) / tr.params.size  # a non-zero start
        tr.minimizer = tr._make_minimizer()
        theta = tr.params.copy()
        req = tr.minimizer.request
        u = req.query.directions.matrix()
        seed_of = {i: int(s) for (i, _), s in zip(req.items, req.seeds)}

        def ret(point, seed):
            batch = RolloutBatch(spec=tr.spec, center=point, snapshot=None, training=True)
            return rollout_worker(batch, (-1, 0, seed)).ret

        r_plus = np.array([ret(theta + nu * ui, seed_of[i]) for i, ui in enumerate(u)])
        r_minus = np.array([ret(theta - nu * ui, seed_of[i]) for i, ui in enumerate(u)])
        tr.step()
        keep = np.argsort(-np.maximum(r_plus, r_minus), kind="stable")[:b]
        sigma_r = np.std(np.concatenate([r_plus[keep], r_minus[keep]]))
        ars = theta + alpha / (b * sigma_r) * ((r_plus - r_minus)[keep] @ u[keep])
        assert np.any(ars != theta)
        np.testing.assert_allclose(tr.params, ars, rtol=1e-12, atol=1e-12)


def test_unknown_method_and_bad_config_are_clear():
    with pytest.raises(ValueError, match="unknown method 'ars-v9'.*ars-v2t"):
        TrainConfig(method="ars-v9")
    with pytest.raises(ValueError, match="scheduler"):
        TrainConfig(backend="dask")
    with pytest.raises(ValueError, match="top_b"):
        TrainConfig(n_directions=2, top_b=3)


def test_unknown_env_is_clear():  # unsupported action spaces: tests/test_discrete_actions.py
    with pytest.raises(ValueError, match="unknown env id.*Swimmer-v5"):
        Trainer(TrainConfig(env_id="Swimer-v5", backend="serial"))


def test_rl_objective_is_seeded_and_pickles():
    import pickle

    spec = RolloutSpec(env_id="InvertedPendulum-v5", policy={"class": "LinearPolicy", "obs_dim": 4,
                                                              "act_dim": 1, "bias": False}, horizon=50)
    obj = pickle.loads(pickle.dumps(RLObjective(spec)))
    x = np.array([0.1, -0.2, 0.3, 0.1])
    assert obj(x, 5) == obj(x, 5)
    assert obj(x, 5) <= 0  # f = -return, pendulum rewards are positive


def test_checkpoint_tree_roundtrip():
    state = {"a": (np.arange(3.0), None, [1, 2.5, "x"]), "b": {"c": np.eye(2)}, "d": True}
    tree, arrays, tensors = encode(state)
    assert not tensors
    back = decode(tree, arrays)
    assert isinstance(back["a"], tuple) and back["a"][1] is None and back["a"][2] == [1, 2.5, "x"]
    np.testing.assert_array_equal(back["b"]["c"], np.eye(2))
    with pytest.raises(TypeError, match="cannot checkpoint"):
        encode({"f": object()})


# -- serial == parallel ---------------------------------------------------------------------
@pytest.mark.parametrize("method,extra", [("ars-v2t", {}), ("lozo", {}), ("interpolation", {}),
                                          ("interpolation", dict(direction="lbfgs", step_size=0.05, noise=0.05))])
def test_serial_and_parallel_runs_are_identical(method, extra, loky2):
    cfg = _cfg(method=method, episodes=40, n_directions=4, top_b=2, **extra)
    with Trainer(cfg) as a:
        ra = a.run()
    with Trainer(cfg, evaluator=loky2) as b:
        rb = b.run()
    assert _same(_det(ra.history), _det(rb.history))
    np.testing.assert_array_equal(ra.params, rb.params)
    assert rb.history[-1]["bytes_sent"] > 0  # it really went through workers


@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_method_runs_and_changes_the_policy(method):
    with Trainer(_cfg(method=method, episodes=24, n_directions=4, top_b=2)) as tr:
        res = tr.run()
    assert res.episodes >= 24 and res.iteration >= 1
    assert np.all(np.isfinite(res.params)) and np.any(res.params != 0)


# -- learning -------------------------------------------------------------------------------
def test_smoke_training_improves_inverted_pendulum():
    """ARS V2-t on InvertedPendulum-v5 (horizon 200): the zero policy falls after ~22 steps;
    96 training episodes must bring the evaluation return to at least 150."""
    cfg = _cfg(method="ars-v2t", horizon=200, episodes=96, n_directions=4, top_b=4, step_size=0.2, noise=0.1,
               n_eval_episodes=4, eval_every=4)
    with Trainer(cfg) as tr:
        res = tr.run()
    first, last = res.history[0]["eval_return"], res.eval_return
    assert first < 40
    assert last >= 150, [h["eval_return"] for h in res.history]


# -- checkpoints and resume -------------------------------------------------------------------
@pytest.mark.parametrize("method", ["ars-v2t", "subzero", "interpolation"])
def test_resume_continues_exactly(tmp_path, method):
    cfg = _cfg(method=method, episodes=10**6, max_iterations=6, checkpoint_every=2, n_directions=4, top_b=2)
    with Trainer(cfg, out_dir=tmp_path / "full") as tr:
        tr.run()
    with Trainer(dataclasses.replace(cfg, max_iterations=3), out_dir=tmp_path / "cut") as tr:
        tr.run()
    with Trainer.resume(tmp_path / "cut", overrides={"max_iterations": 6}) as tr:
        assert tr.iteration == 3
        tr.run()
    full = read_progress(tmp_path / "full" / "progress.csv")
    cut = read_progress(tmp_path / "cut" / "progress.csv")
    assert [r["iteration"] for r in cut] == list(range(7))
    assert _same(_det(full), _det(cut))


def test_keyboard_interrupt_saves_and_resumes_exactly(tmp_path):
    cfg = _cfg(episodes=10**6, max_iterations=5, checkpoint_every=100, n_directions=4, top_b=2)
    with Trainer(cfg, out_dir=tmp_path / "full") as tr:
        tr.run()

    def interrupt(row):
        if row["iteration"] == 2:
            raise KeyboardInterrupt

    with Trainer(cfg, out_dir=tmp_path / "int", callback=interrupt) as tr:
        with pytest.raises(KeyboardInterrupt):
            tr.run()
    assert [p.name for p in list_checkpoints(tmp_path / "int")] == ["iter_000002"]
    with Trainer.resume(tmp_path / "int") as tr:
        tr.run()
    assert _same(_det(read_progress(tmp_path / "full" / "progress.csv")),
                 _det(read_progress(tmp_path / "int" / "progress.csv")))


def test_corrupt_checkpoint_is_reported_and_the_previous_one_is_kept(tmp_path):
    cfg = _cfg(episodes=10**6, max_iterations=4, checkpoint_every=1, n_directions=2, top_b=2)
    with Trainer(cfg, out_dir=tmp_path) as tr:
        tr.run()
    ckpts = list_checkpoints(tmp_path)
    assert [p.name for p in ckpts] == ["iter_000003", "iter_000004"]  # the last two are kept
    npz = ckpts[-1] / "arrays.npz"
    good = npz.read_bytes()
    npz.write_bytes(good[:100])  # truncate
    with pytest.raises(CheckpointError, match=r"iter_000004.*checksum.*previous checkpoint .*iter_000003"):
        Trainer.resume(tmp_path)
    with Trainer.resume(ckpts[0]) as tr:  # the previous good one still works
        assert tr.iteration == 3
    npz.write_bytes(good)
    (ckpts[-1] / "state.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt state.json"):
        Trainer.resume(tmp_path)


def test_resume_refuses_to_change_the_numbers(tmp_path):
    with Trainer(_cfg(episodes=8, n_directions=2, top_b=2), out_dir=tmp_path) as tr:
        tr.run()
    with pytest.raises(ValueError, match="cannot change.*step_size"):
        Trainer.resume(tmp_path, overrides={"step_size": 1.0})


# -- faults ---------------------------------------------------------------------------------
class _NaNEnv:
    """A Box env whose observation turns NaN at step 3 for odd reset seeds."""

    def __new__(cls, **kw):
        import gymnasium as gym

        class NaNEnv(gym.Env):
            observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float64)
            action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float64)

            def reset(self, *, seed=None, options=None):
                super().reset(seed=seed)
                self.t, self.bad = 0, seed is not None and seed % 2 == 1
                return np.array([0.5, -0.5]), {}

            def step(self, action):
                self.t += 1
                obs = np.array([np.nan, 0.0]) if self.bad and self.t == 3 else np.array([0.1 * self.t, float(action[0])])
                return obs, 1.0 + float(action[0]), False, False, {}

        return NaNEnv()


def test_nonfinite_episodes_end_are_counted_and_the_run_goes_on():
    import gymnasium as gym

    if "DfoTestNaN-v0" not in gym.registry:
        gym.register("DfoTestNaN-v0", entry_point=_NaNEnv, max_episode_steps=20)
    cfg = TrainConfig(env_id="DfoTestNaN-v0", episodes=40, n_directions=4, top_b=4, backend="serial",
                      n_eval_episodes=2)
    with Trainer(cfg) as tr:
        res = tr.run()
    bad = res.history[-1]["nonfinite_episodes"]
    assert 0 < bad < res.episodes  # about half the episodes hit a NaN, and training went on
    assert res.iteration == 5 and np.all(np.isfinite(res.params))
    # a NaN episode stops at the NaN: fewer steps than 20 per episode on average
    assert res.env_steps < 20 * res.episodes


def test_worker_death_mid_iteration_is_rerun_with_identical_numbers(tmp_path):
    cfg = _cfg(episodes=10**6, max_iterations=3, n_directions=8, top_b=4)
    with Trainer(cfg) as tr:
        ref = tr.run()
    hook = kill_hook_path()

    def arm(row):  # after iteration 1, the next rollout in a worker kills its process
        if row["iteration"] == 1:
            hook.touch()

    ev = make_evaluator("loky", n_jobs=2)
    try:
        with Trainer(cfg, evaluator=ev, callback=arm) as tr:
            got = tr.run()
    finally:
        ev.close()
        hook.unlink(missing_ok=True)
    assert not hook.exists()
    assert got.history[2]["retries"] >= 1  # a worker really died in iteration 2
    assert got.history[2]["episodes"] == ref.history[2]["episodes"]  # nothing counted twice
    assert _same(_det(ref.history), _det(got.history))
    np.testing.assert_array_equal(ref.params, got.params)


# -- step rules (TrainConfig.step / .direction) ------------------------------------------------
STEP_RULES = [("ars-v2t", "momentum", "gradient"), ("ars-v2t", "adam", "gradient"),
              ("interpolation", "armijo", "lbfgs")]


def test_step_defaults_to_the_method_and_bad_combinations_are_clear(tmp_path, capsys):
    from dfo.cli import main

    assert _cfg(method="ars-v2t").resolved().step == "sgd"
    assert _cfg(method="interpolation").resolved().step == "armijo"
    with pytest.raises(ValueError, match="step must be one of"):
        TrainConfig(step="rmsprop")
    with pytest.raises(ValueError, match="direction 'lbfgs' needs step 'armijo'.*'momentum'"):
        TrainConfig(step="momentum", direction="lbfgs")
    with pytest.raises(ValueError, match="direction 'lbfgs' needs step 'armijo'.*method 'ars-v1'"):
        TrainConfig(method="ars-v1", direction="lbfgs")
    with pytest.raises(ValueError, match="step 'armijo' needs a method without return shaping"):
        TrainConfig(method="lozo", step="armijo")
    with pytest.raises(ValueError, match="direction 'lbfgs'"):  # method from the preset, checked on resolve
        _cfg(direction="lbfgs").resolved()
    assert main(["train", "InvertedPendulum-v5", "--method", "ars-v2t", "--step", "armijo",
                 "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "step 'armijo' needs" in err and "Traceback" not in err
    assert not (tmp_path / "x").exists()


def test_first_step_of_each_rule_has_the_documented_length():
    """One iteration from the same state and seeds: momentum's first step is (1 − β) = 0.1 of
    the SGD step (m = g, lr = 2να(1 − β)); Adam's moves every coordinate by α·sign(−g)
    (m̂ = g, v̂ = g², lr = α) up to its ε."""
    alpha, nu = 0.05, 0.1
    moves = {}
    for step in ("sgd", "momentum", "adam"):
        cfg = _cfg(method="ars-v1t", n_directions=4, top_b=2, step_size=alpha, noise=nu, max_iterations=1,
                   episodes=10**6, step=step)
        with Trainer(cfg) as tr:
            theta = tr.params.copy()
            tr.step()
            moves[step] = tr.params - theta
            if step == "adam":
                g = tr.minimizer.grad
    assert np.all(moves["sgd"] != 0)
    np.testing.assert_allclose(moves["momentum"], 0.1 * moves["sgd"], rtol=1e-12, atol=0)
    np.testing.assert_allclose(moves["adam"], -alpha * np.sign(g), rtol=1e-6)
    assert np.array_equal(np.sign(moves["adam"]), np.sign(moves["sgd"]))


@pytest.mark.parametrize("method,step,direction", STEP_RULES)
def test_step_rules_run_save_their_state_and_resume_exactly(tmp_path, method, step, direction):
    cfg = _cfg(method=method, step=step, direction=direction, episodes=10**6, max_iterations=6,
               checkpoint_every=3, n_directions=4, top_b=2, step_size=0.05, noise=0.05)
    with Trainer(cfg, out_dir=tmp_path / "full") as tr:
        full = tr.run()
        live = tr.minimizer
    with Trainer(dataclasses.replace(cfg, step=None, direction="gradient")) as tr:
        default = tr.run()
    assert np.all(np.isfinite(full.params)) and not np.array_equal(full.params, default.params)
    with Trainer(dataclasses.replace(cfg, max_iterations=3), out_dir=tmp_path / "cut") as tr:
        tr.run()
    with Trainer.resume(tmp_path / "cut", overrides={"max_iterations": 6}) as tr:
        assert tr.config.step == step and tr.config.direction == direction
        # the optimizer state came back from the checkpoint: moments / momentum / L-BFGS pairs
        if step == "armijo":
            assert tr.minimizer.memory is not None and len(tr.minimizer.memory.pairs) >= 1
        else:
            assert np.any(tr.minimizer.rule_state["m"] != 0)
        with pytest.raises(ValueError, match="cannot change.*step"):
            Trainer.resume(tmp_path / "cut", overrides={"step": "sgd"})
        resumed = tr.run()
    np.testing.assert_array_equal(resumed.params, full.params)
    assert _same(_det(read_progress(tmp_path / "full" / "progress.csv")),
                 _det(read_progress(tmp_path / "cut" / "progress.csv")))
    if step == "armijo":
        assert len(live.memory.pairs) >= 1  # L-BFGS really had curvature pairs

