"""Regression gradients reusing past antithetic pairs (dfo.estimators.regression) and the
training method built on them (dfo.policies.methods ``reuse``/``shrink``)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from dfo.estimators import FiniteDifferenceEstimator, StdNormalize, TopDirections
from dfo.estimators.regression import RegressionEstimator
from dfo.parallel import make_evaluator
from dfo.policies.methods import get_method
from dfo.policies.training import DETERMINISTIC_COLUMNS, TrainConfig, Trainer, read_progress


def _run(est, f, xs, seed=0):
    """Estimates at the points ``xs`` in turn (iteration k draws with rng seed + k)."""
    out = []
    for k, x in enumerate(xs):
        q = est.ask(x, rng=seed + k)
        out.append(est.tell(q, [f(p) for p in q.points]))
    return out


def _linear(g):
    return lambda x: float(g @ x)


def test_no_memory_and_full_shrink_is_the_base_estimate_bit_for_bit():
    base = FiniteDifferenceEstimator(directions="gaussian", central=True, n_directions=6, sigma=0.1,
                                     shaping=(TopDirections(3), StdNormalize()))
    f = lambda x: float(np.sin(x).sum() + x @ x)
    x = np.linspace(-1, 1, 9)
    for k in range(3):
        q = base.ask(x, rng=k)
        vals = [f(p) for p in q.points]
        ref = base.tell(q, vals).grad
        got = RegressionEstimator(base=base, memory=0, shrink=1.0).tell(q, vals).grad
        np.testing.assert_array_equal(got, ref)


def test_no_memory_and_no_shrink_is_the_interpolation_assembly():
    """w = 0 with this iteration's rows only: the least-squares fit of ``interpolation``."""
    kw = dict(directions="orthogonal", central=True, n_directions=12, sigma=0.05)
    base, interp = FiniteDifferenceEstimator(**kw), FiniteDifferenceEstimator(interpolation=True, **kw)
    f = lambda x: float(np.cos(x) @ np.arange(1, 13) + (x @ x) ** 2)
    x = np.linspace(0.1, 1.2, 12)
    q = base.ask(x, rng=4)
    vals = [f(p) for p in q.points]
    got = RegressionEstimator(base=base, memory=0, shrink=0.0).tell(q, vals).grad
    np.testing.assert_allclose(got, interp.tell(q, vals).grad, rtol=1e-12, atol=1e-12)


def test_full_shrink_is_the_monte_carlo_average_over_the_pooled_rows():
    base = FiniteDifferenceEstimator(directions="gaussian", central=True, n_directions=3, sigma=0.1)
    f = lambda x: float((x**3).sum())
    xs = [np.full(5, 0.1 * k) for k in range(4)]
    ests = _run(RegressionEstimator(base=base, memory=2, shrink=1.0), f, xs)
    singles = _run(base, f, xs)
    # the last estimate pools iterations 1, 2, 3 (3 rows each): the mean of their MC estimates
    np.testing.assert_allclose(ests[-1].grad, np.mean([e.grad for e in singles[1:]], axis=0), rtol=1e-12)


def test_least_squares_is_exact_on_a_linear_function_once_the_pooled_rows_span_the_space():
    """Central differences of a linear f do not depend on where they were taken, so rows from
    earlier points are as good as the current ones: exact once 3 x 4 rows span R^10."""
    g = np.arange(1.0, 11.0) * np.array([1, -1] * 5)
    base = FiniteDifferenceEstimator(directions="gaussian", central=True, n_directions=4, sigma=0.3)
    xs = [np.random.default_rng(k).normal(size=10) for k in range(3)]  # the point moves every iteration
    ests = _run(RegressionEstimator(base=base, memory=2, shrink=0.0), _linear(g), xs)
    assert np.linalg.norm(ests[1].grad - g) > 1.0  # 8 rows < 10: not determined yet
    np.testing.assert_allclose(ests[2].grad, g, rtol=1e-10, atol=1e-10)
    assert ests[2].info["n_pooled"] == 12


def test_pooling_cuts_the_error_on_a_noisy_linear_function():
    """Fixed seeds: gradient (1,..,1) in R^20, noise N(0, 0.5²) on every value, N = 4 Gaussian
    directions per iteration, σ = 0.5. Relative mean squared error over 150 trials: the plain
    Monte-Carlo estimate ≈ (n+1)/N ≈ 5; pooling 10 iterations (40 rows) with w = 0.5 must be
    below 1/5 of it, and least squares (w = 0) below 1/10."""
    n, g = 20, np.ones(20)
    noise = np.random.default_rng(123)
    f = lambda x: float(g @ x + 0.5 * noise.normal())
    base = FiniteDifferenceEstimator(directions="gaussian", central=True, n_directions=4, sigma=0.5)

    def mse(make):
        errs = []
        for t in range(150):
            ests = _run(make(), f, [np.zeros(n)] * 10, seed=1000 * t)
            errs.append(np.sum((ests[-1].grad - g) ** 2) / np.sum(g**2))
        return float(np.mean(errs))

    mc = mse(lambda: base)
    half = mse(lambda: RegressionEstimator(base=base, memory=9, shrink=0.5))
    ls = mse(lambda: RegressionEstimator(base=base, memory=9, shrink=0.0))
    assert 3.5 < mc < 7.0
    assert half < mc / 5, (mc, half)
    assert ls < mc / 10, (mc, ls)


def test_state_dict_continues_the_sequence_exactly():
    base = FiniteDifferenceEstimator(directions="gaussian", central=True, n_directions=3, sigma=0.1,
                                     shaping=(TopDirections(2), StdNormalize()))
    f = lambda x: float(np.sin(3 * x).sum())
    xs = [np.full(6, 0.2 * k) for k in range(6)]
    full = _run(RegressionEstimator(base=base, memory=3, shrink=0.3), f, xs)
    first = RegressionEstimator(base=base, memory=3, shrink=0.3)
    _run(first, f, xs[:3])
    second = RegressionEstimator(base=base, memory=3, shrink=0.3)
    second.load_state_dict(first.state_dict())
    rest = _run(second, f, xs[3:], seed=3)
    for a, b in zip(full[3:], rest):
        np.testing.assert_array_equal(a.grad, b.grad)


def test_bad_settings_are_clear():
    central = FiniteDifferenceEstimator(directions="gaussian", central=True, n_directions=2)
    with pytest.raises(ValueError, match="central"):
        RegressionEstimator(base=FiniteDifferenceEstimator(directions="gaussian"), memory=2)
    with pytest.raises(ValueError, match="shrink"):
        RegressionEstimator(base=central, shrink=1.5)
    with pytest.raises(ValueError, match="memory"):
        RegressionEstimator(base=central, memory=-1)
    with pytest.raises(ValueError, match="regression reuse"):
        dataclasses.replace(get_method("lozo"), reuse=2)


# -- the training method ------------------------------------------------------------------------
PENDULUM = dict(env_id="InvertedPendulum-v5", method="ars-v2t-reuse", horizon=100, n_eval_episodes=2,
                eval_every=1, backend="serial", n_directions=4, top_b=2)


def _det(rows):
    return [{c: r[c] for c in DETERMINISTIC_COLUMNS if c in r} for r in rows]


def _same(a, b):
    return len(a) == len(b) and all(
        all((isinstance(x, float) and math.isnan(x) and isinstance(rb[k], float) and math.isnan(rb[k]))
            or x == rb[k] for k, x in ra.items()) for ra, rb in zip(a, b))


def test_reuse_method_builds_the_regression_estimator():
    m = get_method("ars-v2t-reuse")
    est = m.make_estimator(20, n_directions=8, top_b=4, noise=0.03)
    assert isinstance(est, RegressionEstimator) and est.memory == m.reuse and est.shrink == m.shrink
    assert est.sigma == 0.03 and est.central


def test_reuse_method_serial_equals_parallel_and_resumes_exactly(tmp_path):
    cfg = TrainConfig(**PENDULUM, episodes=10**6, max_iterations=6, checkpoint_every=2)
    with Trainer(cfg, out_dir=tmp_path / "full") as tr:
        full = tr.run()
    ev = make_evaluator("loky", n_jobs=2)
    try:
        with Trainer(cfg, evaluator=ev) as tr:
            par = tr.run()
    finally:
        ev.close()
    np.testing.assert_array_equal(full.params, par.params)
    assert _same(_det(full.history), _det(par.history))
    with Trainer(dataclasses.replace(cfg, max_iterations=3), out_dir=tmp_path / "cut") as tr:
        tr.run()
    with Trainer.resume(tmp_path / "cut", overrides={"max_iterations": 6}) as tr:
        resumed = tr.run()
    np.testing.assert_array_equal(resumed.params, full.params)
    assert _same(_det(read_progress(tmp_path / "full" / "progress.csv")),
                 _det(read_progress(tmp_path / "cut" / "progress.csv")))
