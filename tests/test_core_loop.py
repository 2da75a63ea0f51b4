"""The Minimizer's loop and its parts: the noise probe alone, the step-rule registry against
the estimator registry, typed state (pickle, state_dict, the old layout), bounded per-iteration
cost, the ask/tell protocol, scipy-form bounds and vectorized objectives."""

from __future__ import annotations

import copy
import hashlib
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

import dfo
from dfo.estimators import ESTIMATORS, get_estimator
from dfo.minimizer import Minimizer
from dfo.noise import NoiseProbe, auto_radius, ecnoise
from dfo.optim import STEP_RULES

DATA = Path(__file__).parent / "data"


def _hash_noise(x: np.ndarray) -> float:
    """Deterministic noise: uniform on [−1, 1] from the bytes of x (std 1/√3)."""
    h = hashlib.sha256(np.ascontiguousarray(x, dtype=float).tobytes()).digest()
    return int.from_bytes(h[:8], "little") / 2**63 - 1.0


def _run_probe(f, x, seed: int, **kw) -> tuple[NoiseProbe, list]:
    probe, gen, told = NoiseProbe(np.asarray(x, float), **kw), np.random.default_rng(seed), []
    probe.start(gen)
    while not probe.done:
        stage, pts = probe.stage, probe.points.copy()
        vals = [f(p) for p in pts]
        told.append((stage, pts, np.array(vals)))
        probe.tell(vals, gen)
    return probe, told


# -- the probe alone --------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_probe_alone_reproduces_ecnoise_on_a_known_deterministic_noise(seed):
    eps = 1e-3
    f = lambda x: float(np.sum(x**2)) + eps * _hash_noise(x)  # noqa: E731
    probe, told = _run_probe(f, np.ones(4), seed)
    assert probe.kind == "deterministic"
    line = [t for t in told if t[0] == "line"][-1][2]
    fx = [t for t in told if t[0] == "repeats"][0][2][0]
    sigma, _ = ecnoise(np.concatenate([line[:3], [fx], line[3:]]))
    assert probe.eps_f == sigma  # the probe's level is ECNoise's on its own line, exactly
    assert eps / np.sqrt(3) / 3 < probe.eps_f < 3 * eps / np.sqrt(3)  # and near the true std 5.8e-4
    assert probe.L > 0 and probe.M > 0 and probe.h > 0


def test_probe_alone_measures_stochastic_noise_by_repeats():
    gen = np.random.default_rng(7)
    f = lambda x: float(np.sum(x**2)) + 1e-3 * gen.standard_normal()  # noqa: E731
    probe, told = _run_probe(f, np.ones(3), 0)
    repeats = np.concatenate([t[2] for t in told if t[0] in ("repeats", "more-repeats")])
    assert probe.kind == "stochastic" and repeats.size == 6
    assert probe.eps_f == float(np.std(repeats, ddof=1))
    assert 3e-4 < probe.eps_f < 3e-3


def test_minimizer_and_auto_radius_run_the_same_probe():
    f = lambda x: float(np.sum((x - 1) ** 2)) * (1 + 1e-3 * _hash_noise(x))  # noqa: E731
    x0 = np.zeros(5)
    opt = Minimizer(x0, estimator="orthogonal", rng=3)
    while opt.state.probe is not None:
        opt.tell([f(p) for p in opt.ask()])
    got = auto_radius(f, x0, "orthogonal", rng=3)
    assert got["sigma"] == opt.sigma and got["eps_f"] == opt.eps_f and got["nfev"] == opt.nfev
    assert got["L"] == opt.L and got["M"] == opt.M


# -- every step rule x every vector estimator, registry-driven ----------------------------
def _second_moment(name: str, n: int) -> float:
    """E‖g − ∇f‖² / ‖∇f‖² of the preset on a linear function (0 for the exact ones)."""
    g0, est, gen = np.arange(1.0, n + 1), get_estimator(name, sigma=1e-3), np.random.default_rng(0)
    errs = []
    for _ in range(100):
        q = est.ask(np.zeros(n), gen, fx=0.0)
        g = est.tell(q, q.points @ g0).grad
        errs.append(np.sum((g - g0) ** 2) / np.sum(g0**2))
    return float(np.mean(errs))


def _parabola(x):
    return float((x - 1) @ np.diag([1.0, 2.0, 3.0, 4.0]) @ (x - 1))


def _rosenbrock10(x):  # Rosenbrock's banana with b = 10 (condition ~ 50 at the minimum)
    return float((1 - x[0]) ** 2 + 10 * (x[1] - x[0] ** 2) ** 2)


RULES = {name: cls for name, cls in STEP_RULES.items() if name != "fixed"}  # "fixed" is sgd's alias
VECTOR_PRESETS = sorted(name for name, p in ESTIMATORS.items() if not p.low_rank)


@pytest.mark.parametrize("problem", ["parabola", "rosenbrock"])
@pytest.mark.parametrize("estimator", VECTOR_PRESETS)
@pytest.mark.parametrize("step", sorted(RULES))
def test_every_step_rule_with_every_estimator_converges(step, estimator, problem):
    """Fixed-step rules get lr = c / (L (1 + ρ)), ρ the estimator's relative second moment
    (the step that keeps E f decreasing for g = ∇f + e, E‖e‖² = ρ‖∇f‖²); the line search
    needs no step size. Solved: f ≤ 1e-6 f(x0) on the parabola (n = 4, 4000 evaluations),
    f ≤ 1e-2 f(x0) on the banana (n = 2, 6000 evaluations)."""
    f, x0, L, budget, tol = {"parabola": (_parabola, np.zeros(4), 8.0, 4000, 1e-6),
                             "rosenbrock": (_rosenbrock10, np.array([-1.2, 1.0]), 100.0, 6000, 1e-2)}[problem]
    kw: dict = {}
    if not RULES[step].evaluates:
        kw = dict(eps_f=0.0, sigma=1e-6)
        if step == "adam":
            kw["lr"] = 0.05 if problem == "parabola" else 0.02
        else:
            kw["lr"] = {"sgd": 0.5, "momentum": 0.05}[step] / (L * (1 + _second_moment(estimator, x0.size)))
    res = dfo.minimize(f, x0, estimator=estimator, step=step, maxfev=budget, rng=0, **kw)
    assert res.nfev <= budget
    assert res.fun <= tol * f(x0), (res.fun, res.message)


# -- typed state: pickle, state_dict, the old layout, the problem size ----------------------------
def _noisy(x):
    return float(np.sum((x - 2) ** 2) + np.sum(x**4)) * (1 + 1e-3 * _hash_noise(x))


@pytest.mark.parametrize("kw", [{}, {"step": "adam", "lr": 0.05, "estimator": "cfd"},
                                {"bounds": [(-1, 1.5)] * 3, "estimator": "central-orthogonal"},
                                {"seeded": True, "repeats": 2, "eps_f": "repeats", "estimator": "interpolation"}])
def test_pickled_and_state_dict_resumes_bit_exact_at_every_kind_of_request(kw):
    f = (lambda x, seed: _noisy(x) + 1e-4 * np.random.default_rng(seed).standard_normal()) if kw.get("seeded") \
        else (lambda x, seed=None: _noisy(x))
    seeds = lambda req: [None] * len(req) if req.seeds is None else list(req.seeds)  # noqa: E731

    def drive(opt, tells):
        for _ in range(tells):
            req = opt.request
            opt.tell([f(p, s) for p, s in zip(req.points, seeds(req))])

    ref = Minimizer(np.zeros(3), rng=11, **kw)
    drive(ref, 150)
    kinds = set()
    for cut in range(0, 150, 9):
        a = Minimizer(np.zeros(3), rng=11, **kw)
        drive(a, cut)
        kinds.add(a.state.pending.kind)
        b = pickle.loads(pickle.dumps(a))
        c = Minimizer(np.zeros(3), rng=11, **kw)
        c.load_state_dict(a.state_dict())
        for opt in (b, c):
            drive(opt, 150 - cut)
            np.testing.assert_array_equal(opt.x, ref.x)
            assert (opt.nfev, opt.nit, opt.fx, opt.eps_f, opt.sigma) == (ref.nfev, ref.nit, ref.fx, ref.eps_f, ref.sigma)
            np.testing.assert_array_equal(opt.result().history["fun"], ref.result().history["fun"])
    assert len(kinds) >= 2, kinds


def _decode(v):
    if isinstance(v, dict) and "__array__" in v:
        return np.array(v["__array__"], dtype=v["dtype"])
    if isinstance(v, dict):
        return {k: _decode(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_decode(x) for x in v]
    return v


@pytest.mark.parametrize("case", ["lbfgs", "seeded_momentum"])
def test_old_layout_state_loads_at_an_estimate_and_continues_as_before(case):
    """States written by the Minimizer of commit 3ba119a (free-form layout) at iteration 12;
    that code's x and nfev at iteration 30 are stored beside them."""
    from dfo.problems import rosenbrock

    saved = json.loads((DATA / "core_minimizer_layout1.json").read_text())[case]
    p = rosenbrock(3)
    opt = Minimizer(p.x0, rng=0, **saved["kw"])  # another seed: everything comes from the state
    opt.load_state_dict(_decode(saved["state"]))
    assert opt.nit == 12
    while opt.nit < 30:
        opt.tell([p.fun(x) for x in opt.ask()])
    assert opt.x.tolist() == saved["x30"] and opt.nfev == saved["nfev30"]


def test_old_layout_state_in_a_trial_is_refused_in_one_line():
    from dfo.problems import rosenbrock

    saved = json.loads((DATA / "core_minimizer_layout1.json").read_text())["trial_phase"]
    opt = Minimizer(rosenbrock(3).x0, rng=0)
    with pytest.raises(ValueError, match="old layout loads only between iterations") as info:
        opt.load_state_dict(_decode(saved["state"]))
    assert "\n" not in str(info.value)


def test_state_of_another_problem_size_is_refused():
    state = Minimizer(np.zeros(4), rng=0).state_dict()
    with pytest.raises(ValueError, match="size n=4, the Minimizer's is n=3"):
        Minimizer(np.zeros(3), rng=0).load_state_dict(state)


def test_tell_twice_without_ask_raises():
    opt = Minimizer(np.zeros(2), estimator="cfd", sigma=1e-3, eps_f=0.0, rng=0)
    pts = opt.ask()
    opt.tell([float(p @ p) for p in pts])
    with pytest.raises(RuntimeError, match="without ask"):
        opt.tell([float(p @ p) for p in pts])
    opt.tell([float(p @ p) for p in opt.ask()])  # asking again is all it takes
    assert opt.nfev == len(pts) + 1  # the estimate, then f(x) for the line search (no step yet)


# -- per-iteration cost does not grow with the run ------------------------------------------
def test_copy_and_state_cost_do_not_grow_over_2000_iterations():
    """Counted, not timed: the objects ``copy.deepcopy`` visits (what the RL trainer's atomic
    commit copies each iteration) and the size of the loop state are the same at iteration
    100 and 2000; the history is shared by copies, not copied."""
    gen = np.random.default_rng(0)
    f = lambda x: float(x @ x) + 1e-6 * gen.standard_normal()  # noqa: E731
    opt = Minimizer(np.ones(2), estimator="cfd", step="sgd", lr=0.01, rng=0)  # periodic noise probes too
    counts = {}
    while opt.nit < 2000:
        opt.tell([f(p) for p in opt.ask()])
        if opt.nit in (100, 2000) and opt.nit not in counts:
            memo: dict = {}
            twin = copy.deepcopy(opt, memo)
            assert twin.history._cols is opt.history._cols
            counts[opt.nit] = (len(memo), len(pickle.dumps(opt.state_dict(history=False))))
    assert len(opt.history) == 2000 and len(opt.noise_history) >= 200
    assert counts[2000][0] == counts[100][0]
    assert abs(counts[2000][1] - counts[100][1]) <= 64  # a few integers grow by digits


def test_a_copy_that_diverges_forks_the_shared_history():
    opt = Minimizer(np.ones(2), estimator="cfd", step="sgd", lr=0.1, sigma=1e-4, eps_f=0.0, rng=0)
    for _ in range(5):
        opt.tell([float(p @ p) for p in opt.ask()])
    twin = copy.deepcopy(opt)
    twin.tell([float(p @ p) for p in twin.ask()])  # the twin moves on (a trainer iteration)
    opt.tell([1.0 + float(p @ p) for p in opt.ask()])  # the original takes another path
    assert len(opt.history) == len(twin.history) == 6
    assert opt.history["fun"][:5] == twin.history["fun"][:5]
    assert opt.result().history["nfev"].tolist() == twin.result().history["nfev"].tolist()


# -- bounds: scipy's forms only ---------------------------------------------------------------
def test_N_B10_bounds_take_scipy_forms_only():
    from scipy.optimize import Bounds

    f = lambda x: float(np.sum((x - 3) ** 2))  # noqa: E731
    # at n = 2 a pair of arrays reads as two (low, high) pairs, as scipy.optimize.minimize reads it
    opt = Minimizer(np.zeros(2), bounds=([-2, -2], [2, 2]), rng=0)
    np.testing.assert_array_equal(opt.box.lb, [-2, 2])
    np.testing.assert_array_equal(opt.box.ub, [-2, 2])
    with pytest.raises(ValueError, match=r"Bounds\(lb, ub\) or 3 \(low, high\) pairs, got 2 entries") as info:
        dfo.minimize(f, np.zeros(3), bounds=([-2, -2, -2], [2, 2, 2]))
    assert "\n" not in str(info.value)
    res = dfo.minimize(f, np.zeros(2), bounds=Bounds([-2, -2], [2, 2]), maxfev=300, rng=0)
    np.testing.assert_allclose(res.x, [2, 2], atol=1e-6)


# -- vectorized objectives ------------------------------------------------------------------------
@pytest.mark.parametrize("kw", [{}, {"estimator": "central-orthogonal", "bounds": [(-1, 0.9)] * 4},
                                {"seeded": True, "estimator": "central-gaussian", "repeats": 3}])
def test_vectorized_equals_serial(kw):
    seeded = kw.get("seeded", False)

    def one(x, seed=None):
        noise = 0.0 if seed is None else 1e-4 * np.random.default_rng(seed).standard_normal()
        return _noisy(x) + noise

    calls = []

    def batch(X, seeds=None):
        calls.append(X.shape)
        return [one(x, None if seeds is None else s) for x, s in zip(X, seeds if seeded else [None] * len(X))]

    x0 = np.full(4, 0.5)
    serial = dfo.minimize(one, x0, maxfev=800, rng=2, **kw)
    vec = dfo.minimize(batch, x0, maxfev=800, rng=2, vectorized=True, **kw)
    np.testing.assert_array_equal(vec.x, serial.x)
    assert (vec.nfev, vec.nit, vec.fun, vec.message) == (serial.nfev, serial.nit, serial.fun, serial.message)
    assert sum(c[0] for c in calls) == vec.nfev - (1 if len(calls) and vec.nfev > sum(c[0] for c in calls) else 0)
    assert max(c[0] for c in calls) >= 4  # whole estimates in one call
    with pytest.raises(ValueError, match="no evaluator"):
        dfo.minimize(batch, x0, vectorized=True, evaluator=1)


# -- orthogonal directions in high dimension ------------------------------------------------
def test_high_dimensional_orthogonal_directions_are_orthonormal_and_isotropic():
    """n ≥ 512 with N ≥ n/2: randomized DCT rows (O(N n)) instead of a QR; still orthonormal,
    and E[q qᵀ] = I/n over draws (the diagonal is checked: mean of n·q_j² over rows and draws)."""
    from dfo.estimators.directions import FAST_ORTHOGONAL_N, StandardDirections

    n = FAST_ORTHOGONAL_N
    diag = np.zeros(n)
    for seed in range(20):
        u = StandardDirections("orthogonal", n=n, n_directions=n // 2, seed=seed).matrix()
        np.testing.assert_allclose(u @ u.T, np.eye(n // 2), atol=1e-12)
        diag += n * np.mean(u**2, axis=0) / 20
    assert abs(diag.mean() - 1.0) < 1e-12  # each row has unit length: the mean is exact
    assert np.all(np.abs(diag - 1.0) < 0.5)  # no coordinate is left out or doubled
    # below the threshold the Haar QR construction is kept (small problems unchanged)
    q = StandardDirections("orthogonal", n=n - 1, n_directions=n - 1, seed=0).matrix()
    np.testing.assert_allclose(q @ q.T, np.eye(n - 1), atol=1e-10)


# -- restarts ------------------------------------------------------------------------------------
@pytest.mark.parametrize("maxfev", [1200, 1777, 2500])
def test_restarts_after_the_noise_floor_keep_nfev_within_maxfev(maxfev):
    from dfo.problems import rosenbrock

    p = rosenbrock(4)
    once = dfo.minimize(p.fun, p.x0, maxfev=maxfev, rng=0)
    again = dfo.minimize(p.fun, p.x0, maxfev=maxfev, rng=0, restarts=10)
    assert once.message.startswith("noise floor") and once.nfev < maxfev  # the floor fires early
    assert again.restarts >= 1 and once.nfev < again.nfev <= maxfev
    assert again.fun <= once.fun * (1 + 1e-12)  # a restart starts at the point the run stopped at
    assert len(again.history["nfev"]) == again.nit and np.all(np.diff(again.history["nfev"]) > 0)


# -- one translation of a request ----------------------------------------------------------------
def test_minimize_ships_an_estimate_to_an_evaluator_as_its_query_and_index_items():
    from dfo.estimators.base import Query

    class Recorder:
        """An evaluator that evaluates in-process and records what it was sent."""

        n_workers = 1

        def __init__(self):
            self.sent = []

        def map(self, fn, items, shared=None):
            self.sent.append((shared[1], list(items)))
            return [fn(shared, item) for item in items]

    f = lambda x: float(np.sum((x - 1) ** 2 * np.arange(1, 6)))  # noqa: E731
    rec = Recorder()
    serial = dfo.minimize(f, np.zeros(5), maxfev=400, rng=0)
    shipped = dfo.minimize(f, np.zeros(5), maxfev=400, rng=0, evaluator=rec)
    np.testing.assert_array_equal(shipped.x, serial.x)
    assert shipped.nfev == serial.nfev == sum(len(items) for _, items in rec.sent)
    estimates = [(c, items) for c, items in rec.sent if isinstance(c, Query)]
    assert len(estimates) == serial.nit  # every estimate went out as a query (seed), not as points
    for query, items in estimates:
        assert all(len(i) == 3 and i[2] is None for i in items)
        assert {i for i, _, _ in items} >= set(range(query.directions.n_directions))
    assert all(np.ndim(c) in (1, 2) for c, _ in rec.sent if not isinstance(c, Query))  # a repeat or a line


# -- sample averaging (averaging=True) ----------------------------------------------------------
def _counted_noise(scale: float):
    """Stochastic noise, reproducible: the k-th evaluation at x draws from hash(x, k); the
    counts travel with a copy so that a resumed run sees the values the straight run saw."""
    counts: dict = {}

    def f(x):
        key = np.asarray(x, float).tobytes()
        k = counts.get(key, 0)
        counts[key] = k + 1
        return float(np.sum((x - 2) ** 2) + np.sum(x**4)) + scale * _hash_noise(np.append(x, k))
    return f, counts


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_averaging_grows_the_sample_at_the_noise_floor_and_gets_closer(seed):
    """A quadratic under additive noise that does not shrink at the optimum: the run stalls at
    the noise level, averaging k values per point lets it go on (deterministic given the seeds)."""
    from dfo.problems import AdditiveUniform

    q = lambda x: float(np.sum((x - 1) ** 2 * np.arange(1, 5)))  # noqa: E731
    runs = {av: dfo.minimize(AdditiveUniform(q, 1e-2, rng=seed), np.zeros(4), maxfev=1000, rng=seed, averaging=av)
            for av in (False, True)}
    assert runs[False].samples == 1 and runs[True].samples > 1
    assert runs[True].nfev <= 1000
    assert q(runs[True].x) < 0.5 * q(runs[False].x)


def test_averaging_needs_measured_stochastic_noise():
    with pytest.raises(ValueError, match="averaging=True needs"):
        Minimizer(np.zeros(2), averaging=True, seeded=True)
    with pytest.raises(ValueError, match="averaging=True needs"):
        Minimizer(np.zeros(2), averaging=True, eps_f=1e-3)
    det = dfo.minimize(lambda x: float(x @ x) * (1 + 1e-3 * _hash_noise(x)), np.ones(3), maxfev=400, rng=0,
                       averaging=True)
    assert det.samples == 1  # deterministic noise: repeats would return the same value


def test_averaging_run_resumes_bit_exact_and_old_states_load_with_one_sample():
    f, counts = _counted_noise(1e-3)
    ref = Minimizer(np.zeros(3), rng=5, averaging=True)
    for _ in range(400):
        ref.tell([f(p) for p in ref.ask()])
    assert ref.samples > 1
    for cut in (60, 170, 333):
        fa, ca = _counted_noise(1e-3)
        a = Minimizer(np.zeros(3), rng=5, averaging=True)
        for _ in range(cut):
            a.tell([fa(p) for p in a.ask()])
        b = pickle.loads(pickle.dumps(a))
        c = Minimizer(np.zeros(3), rng=5, averaging=True)
        c.load_state_dict(a.state_dict())
        for opt in (b, c):
            fo, co = _counted_noise(1e-3)
            co.update(ca)
            for _ in range(400 - cut):
                opt.tell([fo(p) for p in opt.ask()])
            np.testing.assert_array_equal(opt.x, ref.x)
            assert (opt.nfev, opt.nit, opt.fx, opt.samples, opt.sigma) == (ref.nfev, ref.nit, ref.fx, ref.samples,
                                                                          ref.sigma)
    old = Minimizer(np.zeros(3), rng=5).state_dict()  # a layout-2 state saved before sample averaging
    del old["state"]["samples"]
    again = Minimizer(np.zeros(3), rng=5)
    again.load_state_dict(old)
    assert again.samples == 1
