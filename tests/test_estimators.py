"""The estimator math of ARCHITECTURE.md: exactness, statistics, regeneration, errors."""

import pickle

import numpy as np
import pytest

import dfo
from dfo.estimators import (
    CenteredRanks,
    FiniteDifferenceEstimator,
    LowRankEstimator,
    StandardDirections,
    StdNormalize,
    TopDirections,
)
from dfo.problems import quadratic, rosenbrock

LOWRANK = {"subzero", "lozo", "lozo-m"}


def _quadratic(n, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n, n))
    A = a @ a.T + n * np.eye(n)
    b = rng.standard_normal(n)
    return (lambda x: 0.5 * x @ A @ x + b @ x + 3.0), (lambda x: A @ x + b)


def _linear(n, seed=0):
    a = np.random.default_rng(seed).standard_normal(n)
    return (lambda x: float(a @ x) - 2.0), a


@pytest.mark.parametrize("name", sorted(dfo.ESTIMATORS))
def test_every_preset_runs_and_counts(name):
    f, _ = _quadratic(6)
    x = np.linspace(-1, 1, 6)
    res = dfo.estimate_gradient(f, x, estimator=name, sigma=1e-3, rng=3, **({"blocks": [("W", (3, 2))]} if name in LOWRANK else {}))
    assert res.grad.shape == (6,) and np.all(np.isfinite(res.grad))
    est = dfo.get_estimator(name, sigma=1e-3)
    q = est.ask(x, 3)
    assert res.nfev == q.nfev == len(q.points)
    again = dfo.estimate_gradient(f, x, estimator=name, sigma=1e-3, rng=3, **({"blocks": [("W", (3, 2))]} if name in LOWRANK else {}))
    assert np.array_equal(res.grad, again.grad)  # same seed, same numbers


@pytest.mark.parametrize("name", ["cfd", "central-orthogonal", "central-interpolation"])
def test_central_differences_exact_on_quadratics(name):
    n = 8
    f, grad = _quadratic(n)
    x = np.random.default_rng(1).standard_normal(n)
    kw = {"n_directions": 12} if name == "central-interpolation" else {}
    g = dfo.estimate_gradient(f, x, estimator=name, sigma=0.1, rng=0, **kw).grad
    np.testing.assert_allclose(g, grad(x), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name,N", [("ffd", None), ("interpolation", 10), ("interpolation", 25), ("orthogonal", None)])
def test_forward_schemes_exact_on_linear(name, N):
    f, a = _linear(10)
    g = dfo.estimate_gradient(f, np.ones(10), estimator=name, n_directions=N, sigma=0.5, rng=2).grad
    np.testing.assert_allclose(g, a, rtol=1e-10, atol=1e-10)


def test_orthogonal_directions_are_orthonormal():
    for n, N in [(7, 7), (50, 20), (5, 12)]:
        u = StandardDirections("orthogonal", n, N, seed=4).matrix()
        for start in range(0, N, n):
            block = u[start:start + n]
            np.testing.assert_allclose(block @ block.T, np.eye(len(block)), atol=1e-12)


def test_directions_regenerate_from_seed_and_pickle():
    for family in ("gaussian", "sphere", "orthogonal", "coordinate"):
        d = StandardDirections(family, 9, 9, seed=123)
        clone = pickle.loads(pickle.dumps(d))
        assert len(pickle.dumps(d)) < 300  # only the seed travels, not the matrix
        for i in range(9):
            assert np.array_equal(clone.row(i), d.matrix()[i])
    est = dfo.get_estimator("central-gaussian", n_directions=4, sigma=0.1)
    q = est.ask(np.zeros(5), 0)
    for row, (i, s) in zip(q.points, q.items):
        assert np.array_equal(row, q.point(i, s))


def test_gaussian_smoothing_second_moment_tracks_theory():
    """On a linear f, E‖g − ∇f‖²/‖∇f‖² = (n+1)/N exactly (Gaussian u, any σ)."""
    n, reps = 20, 2000
    f, a = _linear(n)
    rng = np.random.default_rng(0)
    for N in (5, 20, 80):
        est = dfo.get_estimator("central-gaussian", n_directions=N, sigma=1e-2)
        err = []
        for _ in range(reps):
            q = est.ask(np.zeros(n), rng)
            values = q.points @ a - 2.0  # f on all points at once
            err.append(np.sum((est.tell(q, values).grad - a) ** 2))
        ratio = np.mean(err) / (a @ a) / ((n + 1) / N)
        assert 0.9 < ratio < 1.1, (N, ratio)


def test_orthogonal_and_interpolation_beat_gaussian_at_equal_budget():
    p = rosenbrock(10)
    x = p.x0 + 0.3
    true = p.grad(x)
    rng = np.random.default_rng(5)

    def median_error(name):
        errs = [np.linalg.norm(dfo.estimate_gradient(p.fun, x, estimator=name, sigma=1e-6, rng=rng).grad - true) / np.linalg.norm(true) for _ in range(200)]
        return np.median(errs)

    gauss = median_error("gaussian")
    assert gauss > 0.5  # sqrt((n+1)/N) ≈ 1.05 in theory
    assert median_error("orthogonal") < 0.01 * gauss
    assert median_error("interpolation") < 0.01 * gauss


def _mean_lowrank_estimate(kind, m, k, r, seed):
    """Mean of 5 estimates of N = 4000 directions (= 20000 one-direction estimates) on a
    linear f, with the subspace held fixed; returns (mean, E[g | subspace], last query)."""
    est = LowRankEstimator(kind=kind, blocks=[("W", (m, k))], rank=r, refresh=10**9, n_directions=4000, sigma=1e-2)
    f, a = _linear(m * k, seed=seed)
    rng = np.random.default_rng(seed)
    total, reps = np.zeros(m * k), 5
    for _ in range(reps):
        q = est.ask(np.zeros(m * k), rng)
        total += est.tell(q, [f(p) for p in q.points]).grad
    return total / reps, est.expected_given_subspace(a, q), q


def test_subzero_subspace_orthonormal_and_unbiased_within_it():
    m, k, r = 6, 5, 2
    mean, target, q = _mean_lowrank_estimate("subzero", m, k, r, seed=7)
    u, v = q.directions.factors[0]
    np.testing.assert_allclose(u.T @ u, np.eye(r), atol=1e-12)
    np.testing.assert_allclose(v.T @ v, np.eye(r), atol=1e-12)
    assert np.linalg.norm(mean - target) < 0.05 * np.linalg.norm(target)
    # the estimate lies in the subspace: U Uᵀ G V Vᵀ = G
    G = mean.reshape(m, k)
    np.testing.assert_allclose(u @ u.T @ G @ v @ v.T, G, atol=1e-10)


def test_lozo_unbiased_given_v_and_refreshes():
    m, k, r = 4, 6, 3
    mean, target, _ = _mean_lowrank_estimate("lozo", m, k, r, seed=8)
    assert np.linalg.norm(mean - target) < 0.05 * np.linalg.norm(target)
    rng = np.random.default_rng(1)
    est2 = LowRankEstimator(kind="lozo", blocks=[("W", (m, k))], rank=r, refresh=3)
    vs = [est2.ask(np.zeros(m * k), rng).directions.factors[0][1] for _ in range(6)]
    assert np.array_equal(vs[0], vs[2]) and not np.array_equal(vs[2], vs[3])


def test_lowrank_vector_blocks_fall_back_to_gaussian_and_state_resumes():
    blocks = [("W", (3, 4)), ("b", (3,))]
    est = dfo.get_estimator("lozo-m", blocks=blocks, rank=2, refresh=2, n_directions=2, sigma=1e-2)
    f, _ = _quadratic(15)
    rng = np.random.default_rng(0)
    x = np.zeros(15)
    for _ in range(3):
        q = est.ask(x, rng)
        est.tell(q, [f(p) for p in q.points])
    state, rng_state = pickle.loads(pickle.dumps(est.state_dict())), pickle.dumps(rng)
    q = est.ask(x, rng)
    g1 = est.tell(q, [f(p) for p in q.points]).grad
    fresh = dfo.get_estimator("lozo-m", blocks=blocks, rank=2, refresh=2, n_directions=2, sigma=1e-2)
    fresh.load_state_dict(state)
    q2 = fresh.ask(x, pickle.loads(rng_state))
    assert np.array_equal(g1, fresh.tell(q2, [f(p) for p in q2.points]).grad)
    assert not np.allclose(q.points[0][12:], 0)  # the bias block is perturbed too


def test_shaping():
    # top-b keeps the directions whose better side is lowest
    keep, _, _ = TopDirections(2)(np.arange(4), np.array([[5, 6], [1, 9], [7, 0.5], [3, 3]], float), None)
    assert keep.tolist() == [1, 2]
    f, _ = _quadratic(6)
    x = np.ones(6)
    base = dict(directions="gaussian", central=True, n_directions=8, sigma=1e-2)
    est = FiniteDifferenceEstimator(**base, shaping=(TopDirections(4), StdNormalize()))
    q = est.ask(x, 9)
    vals = np.array([f(p) for p in q.points])
    g1, g2 = est.tell(q, vals).grad, est.tell(q, 10 * vals + 7).grad
    np.testing.assert_allclose(g1, g2, rtol=1e-10)  # σ_R makes the step scale-free
    ranks = FiniteDifferenceEstimator(**base, shaping=(CenteredRanks(),))
    np.testing.assert_array_equal(ranks.tell(q, vals).grad, ranks.tell(q, np.exp(vals)).grad)


def test_bad_input_errors():
    f, _ = _quadratic(4)
    with pytest.raises(ValueError, match="shape"):
        dfo.estimate_gradient(f, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="unknown estimator 'nope'.*cfd"):
        dfo.estimate_gradient(f, np.zeros(4), estimator="nope")
    with pytest.raises(ValueError, match="interpolation needs N >= n"):
        dfo.estimate_gradient(f, np.zeros(4), estimator="interpolation", n_directions=3)
    with pytest.raises(dfo.NonFiniteValueError, match="non-finite"):
        dfo.estimate_gradient(lambda x: np.nan, np.zeros(4), estimator="cfd")
    est = FiniteDifferenceEstimator(directions="coordinate", interpolation=True, sigma=1e-3)
    q = est.ask(np.zeros(3), 0)
    degenerate = type(q)(x=q.x, sigma=q.sigma, directions=StandardDirections("coordinate", 3, 2, 0), signs=(1,), needs_fx=True)
    with pytest.raises(dfo.RankDeficientError):
        est.tell(degenerate, np.zeros(3))
    with pytest.raises(ValueError, match="sigma"):
        dfo.get_estimator("gaussian", sigma=-1.0)
    with pytest.raises(ValueError, match="blocks"):
        dfo.estimate_gradient(f, np.zeros(4), estimator="subzero", blocks=[("W", (3, 3))])


def test_interpolation_reports_conditioning():
    f, _ = _quadratic(5)
    r = dfo.estimate_gradient(f, np.zeros(5), estimator="interpolation", n_directions=8, sigma=1e-4, rng=0)
    assert r.info["cond"] >= 1.0 and np.isfinite(r.info["cond"])


def test_quadratic_problem_gradient_via_cfd():
    p = quadratic(12, cond=100.0, rng=0)
    g = dfo.estimate_gradient(p.fun, p.x0, estimator="cfd", sigma=1e-2).grad
    np.testing.assert_allclose(g, p.grad(p.x0), rtol=1e-9, atol=1e-9)


# -- registry and interpolation directions ----------------------------------------------
@pytest.mark.parametrize("name", sorted(dfo.ESTIMATORS))
def test_registry_entry_matches_the_built_estimator(name):
    entry = dfo.ESTIMATORS[name]
    opts = {"blocks": [("W", (3, 2))]} if entry.low_rank else {}
    est = entry(sigma=1e-3, **opts)
    q = est.ask(np.linspace(-1, 1, 6), 0)
    assert (q.signs == (1, -1)) == entry.central
    assert entry.nfev(q.directions.n_directions) == q.nfev
    assert entry.radius.needs in ("L", "M")
    assert entry.low_rank == (name in LOWRANK)
    assert isinstance(est, LowRankEstimator) == entry.low_rank
    if entry.central_version is not None:  # same directions and assembly, central differences
        cen = dfo.ESTIMATORS[entry.central_version]
        assert not entry.central and cen.central
        a, b = entry(sigma=1e-3), cen(sigma=1e-3)
        assert (a.directions, a.interpolation) == (b.directions, b.interpolation)


def test_register_needs_a_radius_rule():
    from functools import partial

    from dfo.estimators import Preset, register
    from dfo.radius import FORWARD_FD, sampling_radius

    with pytest.raises(TypeError, match="radius rule"):
        Preset("mine", partial(FiniteDifferenceEstimator, directions="orthogonal"), None, False)
    p = Preset("test-mine", partial(FiniteDifferenceEstimator, directions="orthogonal"), FORWARD_FD, False, "orthogonal")
    try:
        register(p)
        with pytest.raises(ValueError, match="already registered"):
            register(p)
        assert sampling_radius("test-mine", 1e-6, L=1.0) == pytest.approx(2e-3)
        assert dfo.estimate_gradient(lambda x: float(x.sum()), np.zeros(3), estimator="test-mine",
                                     sigma=1e-3, rng=0).grad == pytest.approx(np.ones(3))
    finally:
        dfo.ESTIMATORS.pop("test-mine", None)


@pytest.mark.parametrize("n", [10, 100])
@pytest.mark.parametrize("extra", [0, 3, 1.0, 1.5])
def test_interpolation_directions_are_well_conditioned(n, extra):
    """Orthonormal blocks: cond(U) = 1 at N = n and ≤ √2 for N > n (UᵀU = I + QᵀQ, QᵀQ ⪯ I);
    random unit vectors gave a median cond ≈ 26 (n = 10) and ≈ 325 (n = 100) at N = n."""
    N = n + int(extra * n if isinstance(extra, float) else extra)
    for seed in range(3):
        f, a = _linear(n, seed)
        r = dfo.estimate_gradient(f, np.zeros(n), estimator="interpolation", n_directions=N, sigma=1e-2, rng=seed)
        assert r.info["cond"] <= (1 + 1e-9 if N == n else np.sqrt(2) + 1e-9)
        np.testing.assert_allclose(r.grad, a, rtol=1e-9, atol=1e-9)  # exact on linear functions


def test_estimate_gradient_default_radius_is_measured():
    """No sigma: the automatic radius (the probe dfo.minimize runs), counted and reported."""
    n = 10
    noise = np.random.default_rng(5)
    noisy = lambda x: float(x @ x) + 1e-3 * noise.uniform(-1, 1)  # noqa: E731
    x = np.ones(n)
    for name in ("ffd", "cfd", "orthogonal"):
        r = dfo.estimate_gradient(noisy, x, estimator=name, rng=0)
        probe = r.info["auto_radius"]
        assert probe["noise_kind"] == "stochastic" and 2e-4 < probe["eps_f"] < 2e-3  # std of U(±1e-3) = 5.8e-4
        assert r.nfev == probe["nfev"] + dfo.ESTIMATORS[name].nfev(n)
        assert 1e-3 < probe["sigma"] < 0.5
        assert np.linalg.norm(r.grad - 2 * x) <= 0.2 * np.linalg.norm(2 * x)
        # the old fixed default radius (the rule at L = M = 1, ε_f = 1e-15) drowns in the noise
        old = dfo.sampling_radius(name, 1e-15, L=1.0, M=1.0, n=n)
        fixed = dfo.estimate_gradient(noisy, x, estimator=name, sigma=old, rng=0)
        assert np.linalg.norm(fixed.grad - 2 * x) > 5 * np.linalg.norm(2 * x)
    smooth = dfo.estimate_gradient(lambda z: float(z @ z), x, estimator="ffd", rng=0)
    np.testing.assert_allclose(smooth.grad, 2 * x, rtol=1e-5)
    assert dfo.estimate_gradient(lambda z: float(z @ z), x, estimator="cfd", sigma=1e-3).info.get("auto_radius") is None


def test_lowrank_small_matrix_rule_and_spec_defaults():
    """A 3×17 block at rank 8 uses rank 3 (the spec's rule, shared with dfo.torch); defaults come from the spec."""
    from dfo.estimators import lowrank_spec as spec

    for kind in spec.LOW_RANK_FAMILIES:
        est = LowRankEstimator(kind=kind, blocks=[("W", (3, 17)), ("b", (3,))], rank=8, sigma=1e-3)
        q = est.ask(np.zeros(54), rng=0)
        assert q.directions.ranks == (3, 0)
        assert q.directions.factors[0][1].shape == (17, 3)
        default = LowRankEstimator(kind=kind)
        assert (default.rank, default.refresh) == (spec.LOWRANK_METHODS[kind].rank, spec.LOWRANK_METHODS[kind].refresh)


def test_lowrank_momentum_starts_at_first_estimate_and_carries_by_least_squares():
    from dfo.estimators import lowrank_spec as spec

    blocks = [("W", (5, 7))]
    f, _ = _linear(35, seed=3)
    plain = dfo.get_estimator("lozo", blocks=blocks, rank=2, refresh=2, sigma=1e-3)
    mom = dfo.get_estimator("lozo-m", blocks=blocks, rank=2, refresh=2, sigma=1e-3)
    q1, q2 = plain.ask(np.zeros(35), 4), mom.ask(np.zeros(35), 4)
    g_plain = plain.tell(q1, [f(p) for p in q1.points]).grad
    np.testing.assert_allclose(mom.tell(q2, [f(p) for p in q2.points]).grad, g_plain, rtol=1e-13)  # no 0.1x
    rng = np.random.default_rng(1)
    q = mom.ask(np.zeros(35), rng)
    mom.tell(q, [f(p) for p in q.points])
    n_old, v_old = mom._moment[0].copy(), mom._factors[0][1]
    mom.ask(np.zeros(35), rng)  # step 2: refresh, momentum carried
    v_new = mom._factors[0][1]
    carried = mom._moment[0]
    # least squares: carried V_newᵀ is the projection of N V_oldᵀ onto the row space of V_newᵀ
    proj = n_old @ v_old.T @ v_new @ np.linalg.solve(v_new.T @ v_new, v_new.T)
    np.testing.assert_allclose(carried @ v_new.T, proj, atol=1e-12)
    # the LOZO paper's N V_oldᵀ V_new / n is the same map with V_newᵀ V_new replaced by n I
    paper = n_old @ v_old.T @ v_new / 7
    assert np.allclose(spec.carry_momentum(n_old, v_old, v_new) @ (v_new.T @ v_new) / 7, paper)
