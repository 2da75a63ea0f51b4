"""Tests of dfo.study: metrics, the vectorized runner, theory, reports, profiles."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from dfo.study.functions import Noise, from_callable, linear_function, quadratic_function, rosenbrock_function
from dfo.study.metrics import cosines, estimate_metrics, relative_errors
from dfo.study.runner import STANDARD, StudySpec, run_cell, run_study
from dfo.study import theory


# -- metrics on constructed inputs ---------------------------------------------------
def test_metrics_on_constructed_estimates():
    g = np.array([3.0, 4.0])  # ‖g‖ = 5
    G = np.array([[3.0, 4.0], [3.0, 4.0 + 1.0], [3.0, 4.0 + 2.0], [3.0 + 4.0, 4.0]])  # errors 0, .2, .4, .8
    np.testing.assert_allclose(relative_errors(G, g), [0.0, 0.2, 0.4, 0.8])
    m = estimate_metrics(G, g)
    assert m["p_theta_0.1"] == 0.25 and m["p_theta_0.25"] == 0.5 and m["p_theta_0.5"] == 0.75
    assert m["rel_error_mean"] == pytest.approx(0.35)
    assert m["rel_second_moment"] == pytest.approx((0 + 0.04 + 0.16 + 0.64) / 4)
    mean = G.mean(axis=0)
    assert m["bias"] == pytest.approx(np.linalg.norm(mean - g))
    assert m["variance"] == pytest.approx(np.trace(np.cov(G.T)))
    expected_cos = [1.0, (9 + 20) / (5 * np.hypot(3, 5)), (9 + 24) / (5 * np.hypot(3, 6)), (21 + 16) / (5 * np.hypot(7, 4))]
    np.testing.assert_allclose(cosines(G, g), expected_cos)
    assert m["cosine_mean"] == pytest.approx(np.mean(expected_cos))
    # quantiles of log10 error: the q90 of (0 -> tiny, .2, .4, .8) lies between .4 and .8
    assert 0.4 < m["rel_error_q90"] < 0.8


def test_metrics_reject_bad_input():
    g = np.ones(3)
    with pytest.raises(ValueError, match=r"shape \(R, 3\)"):
        estimate_metrics(np.ones((5, 4)), g)
    with pytest.raises(ValueError, match="NaN or inf"):
        estimate_metrics(np.array([[1.0, np.nan, 0], [1, 1, 1]]), g)
    with pytest.raises(ValueError, match="is zero"):
        estimate_metrics(np.ones((3, 3)), np.zeros(3))
    with pytest.raises(ValueError, match="at least 2"):
        estimate_metrics(np.ones((1, 3)), g)


# -- the runner ----------------------------------------------------------------------
def test_gaussian_second_moment_matches_theory_on_linear():
    """E‖g − ∇f‖²/‖∇f‖² = (n+1)/N exactly for Gaussian smoothing on a linear f.

    With R = 400 repeats the sample mean of e² has relative standard error about
    √(2/N + ...)/√R ≈ 5 %; we allow 15 % at the fixed seed."""
    n, N = 30, 15
    row = run_cell(linear_function(n, rng=1), "gaussian", n_directions=N, sigma=1e-2, repeats=400, seed=3)
    assert row["theory_rel_second_moment"] == pytest.approx((n + 1) / N)
    assert row["rel_second_moment"] == pytest.approx((n + 1) / N, rel=0.15)
    sph = run_cell(linear_function(n, rng=1), "sphere", n_directions=N, sigma=1e-2, repeats=400, seed=3)
    assert sph["rel_second_moment"] == pytest.approx((n - 1) / N, rel=0.15)


def test_exact_estimators_have_no_error_where_math_says_so():
    q = quadratic_function(12, cond=50.0, rng=2)
    cfd = run_cell(q, "cfd", n_directions=12, sigma=1e-2, repeats=5)
    assert cfd["rel_error_q90"] < 1e-9 and cfd["p_theta_0.1"] == 1.0 and cfd["nfev"] == 24
    lin = linear_function(12)
    for name in ("interpolation", "orthogonal"):  # orthogonal with N = n is exact on linear f
        row = run_cell(lin, name, n_directions=12, sigma=1e-3, repeats=5)
        assert row["rel_error_q90"] < 1e-9, name
    ortho = run_cell(lin, "orthogonal", n_directions=6, sigma=1e-3, repeats=300)
    assert ortho["rel_second_moment"] == pytest.approx(theory.relative_second_moment("orthogonal", 12, 6), rel=0.15)


@pytest.mark.parametrize("name", STANDARD)
def test_vectorized_equals_ask_tell(name):
    f = rosenbrock_function(8)
    N = 8 if name in ("ffd", "cfd") else 11
    kw = dict(n_directions=N, sigma=1e-3, noise="uniform:1e-4", repeats=7, seed=5, return_estimates=True)
    fast = run_cell(f, name, **kw)
    slow = run_cell(f, name, vectorized=False, **kw)
    np.testing.assert_allclose(fast["_estimates"], slow["_estimates"], rtol=1e-10, atol=1e-12)
    # and the reference path really is ask/tell: rebuild repeat 0 by hand
    import dfo
    from dfo.study.runner import _cell_seed
    label = f"{f.name}|{name}|{N}|{1e-3!r}|uniform:0.0001"
    ask_ss, noise_ss = _cell_seed(5, label).spawn(2)
    est = dfo.get_estimator(name, n_directions=N, sigma=1e-3)
    query = est.ask(f.x, np.random.default_rng(ask_ss.spawn(7)[0]))
    pts = query.points
    vals = Noise.parse("uniform:1e-4").apply(f.batch(pts), pts, np.random.default_rng(noise_ss))
    np.testing.assert_allclose(est.tell(query, vals).grad, slow["_estimates"][0], rtol=1e-12)


def test_lowrank_cell_reports_conditional_error():
    f = linear_function(24, rng=0)
    row = run_cell(f, "subzero", n_directions=4, sigma=1e-3, repeats=50)
    assert {"cond_rel_error_median", "cond_p_theta_0.5", "subspace_rel_error_median"} <= set(row)
    # the subspace mean is far from ∇f (rank-2 projection), the estimate is closer to it
    assert row["cond_rel_error_median"] < row["rel_error_median"]


def test_runner_bad_input_is_clear():
    with pytest.raises(ValueError, match="gradient of user must have shape"):
        from_callable(lambda x: float(x.sum()), np.ones(4), np.zeros(3))
    f = from_callable(lambda x: float("nan"), np.ones(3), np.zeros(3))
    with pytest.raises(ValueError, match="non-finite"):
        run_cell(f, "gaussian", n_directions=3, sigma=1e-3, repeats=3)
    with pytest.raises(ValueError, match="interpolation needs N >= n"):
        run_cell(linear_function(10), "interpolation", n_directions=5, sigma=1e-3, repeats=3)
    with pytest.raises(ValueError, match="N >= n = 10"):
        StudySpec(estimators=("interpolation",), n_directions=(5, 20)).cells(10)
    with pytest.raises(ValueError, match="unknown estimator"):
        StudySpec(estimators=("nope",))
    with pytest.raises(ValueError, match="noise must look like"):
        StudySpec(noises=("loud",))


def test_study_grid_and_reproducibility():
    spec = StudySpec(estimators=("ffd", "gaussian"), n_directions=(4, 8), sigmas=(1e-3, "rule"),
                     noises=("none", "uniform:1e-5"), repeats=10, seed=1)
    f = rosenbrock_function(6)
    rows = run_study(f, spec)
    assert len(rows) == 2 * 2 * 2 + 1 * 2 * 2  # ffd collapses to N = n
    again = run_study(f, spec)
    assert [r["rel_error_median"] for r in rows] == [r["rel_error_median"] for r in again]


def test_auto_radius_is_the_default_and_beats_a_blind_rule():
    """σ = "auto" (the default) measures the observed noise and curvature. A function whose
    noise the study does not know (an RL objective, here a noisy quadratic) gets ε_f =
    rounding and L = M = 1 from "rule", and that radius drowns in the noise."""
    assert StudySpec().sigmas == ("auto",)
    x = np.linspace(-1, 1, 8)

    def noisy_quadratic():
        gen = np.random.default_rng(7)
        batch = lambda X: np.einsum("ij,ij->i", X, X) + 1e-3 * gen.uniform(-1, 1, X.shape[0])  # noqa: E731
        return from_callable(lambda z: float(z @ z), lambda z: 2 * z, x, batch=batch)

    rows = {s: run_cell(noisy_quadratic(), "cfd", n_directions=8, sigma=s, repeats=20, seed=0) for s in ("auto", "rule")}
    auto = rows["auto"]
    assert auto["sigma_mode"] == "auto" and auto["auto_noise_kind"] == "stochastic"
    assert 2e-4 < auto["auto_eps_f"] < 2e-3 and auto["auto_nfev"] > 0
    assert auto["rel_error_median"] < 0.05
    assert rows["rule"]["rel_error_median"] > 10
    again = run_cell(noisy_quadratic(), "cfd", n_directions=8, sigma="auto", repeats=20, seed=0)
    assert again["sigma"] == auto["sigma"] and again["rel_error_median"] == auto["rel_error_median"]


# -- theory -------------------------------------------------------------------------
def test_theory_formulas():
    assert theory.relative_second_moment("gaussian", 10, 5) == pytest.approx(11 / 5)
    assert theory.relative_second_moment("sphere", 10, 5) == pytest.approx(9 / 5)
    assert theory.relative_second_moment("orthogonal", 10, 10) == 0.0
    assert theory.relative_second_moment("orthogonal", 10, 4) == pytest.approx(10 / 4 - 1)
    assert theory.relative_second_moment("orthogonal", 10, 13) == pytest.approx(3 * 7 / 169)
    # Chebyshev: s(N) <= δθ² = 0.025 -> N >= 11 / 0.025 = 440 for gaussian at n = 10
    assert theory.chebyshev_directions("gaussian", 10) == 440
    assert theory.theoretical_evaluations("gaussian", 10) == 441
    assert theory.theoretical_evaluations("cfd", 10) == 20
    # the forward-difference bound at the rule radius σ = 2√(ε/L) is 2√(n L ε)
    n, L, eps = 25, 4.0, 1e-6
    b = theory.error_bound("ffd", n=n, sigma=2 * np.sqrt(eps / L), eps_f=eps, L=L)
    assert b == pytest.approx(2 * np.sqrt(n * L * eps))


# -- reports -------------------------------------------------------------------------
def test_write_study_outputs(tmp_path):
    from dfo.study.report import REQUIRED_COLUMNS, write_csv, write_study

    spec = StudySpec(estimators=("gaussian", "orthogonal", "cfd"), n_directions=(3, 6), repeats=5,
                     noises=("none", "uniform:1e-6"))
    rows = run_study(rosenbrock_function(6), spec)
    paths = write_study(rows, tmp_path, stem="s")
    with open(tmp_path / "s.csv") as fh:
        header = next(csv.reader(fh))
        body = list(csv.DictReader(open(tmp_path / "s.csv")))
    assert tuple(header[:len(REQUIRED_COLUMNS)]) == REQUIRED_COLUMNS
    assert len(body) == len(rows) == 2 * 2 * 2 + 2
    assert float(body[0]["rel_error_median"]) == pytest.approx(rows[0]["rel_error_median"])
    pngs = [p for p in paths if p.suffix == ".png"]
    assert len(pngs) == 2 and all(p.stat().st_size > 1000 for p in pngs)
    assert "| estimator |" in (tmp_path / "s.md").read_text()
    with pytest.raises(ValueError, match="required columns"):
        write_csv([{"estimator": "x"}], tmp_path / "bad.csv")


def test_cli_generic(tmp_path, capsys):
    from dfo.cli import main

    code = main(["study", "--problem", "quadratic", "--dim", "5", "--estimators", "cfd,sphere",
                 "--n-directions", "5,10", "--repeats", "4", "--noise", "none", "--out", str(tmp_path),
                 "--no-progress"])
    assert code == 0
    rows = list(csv.DictReader(open(tmp_path / "study.csv")))
    assert [(r["estimator"], r["n_directions"]) for r in rows] == [("cfd", "5"), ("sphere", "5"), ("sphere", "10")]
    assert float(rows[0]["rel_error_median"]) < 1e-8  # cfd is exact on a quadratic
    assert (tmp_path / "command.txt").exists()
    assert all(r["sigma_mode"] == "auto" for r in rows)  # no --sigma: the automatic radius
    assert "sigma " in capsys.readouterr().out  # the chosen σ is reported


# -- reference gradients of seeded objectives ----------------------------------------
def test_reference_gradient_common_random_numbers():
    from dfo.study.reference import reference_gradient, seeded_study_function

    g_true = np.array([1.0, -2.0, 0.5, 3.0])

    def f(x, seed):  # seed-dependent offset and slope noise: CRN cancels the offset exactly
        r = np.random.default_rng(seed)
        return float(g_true @ x + 0.5 * (x @ x) + 10.0 * r.standard_normal() + 0.01 * r.standard_normal() * x.sum())

    x = np.zeros(4)
    ref = reference_gradient(f, x, n_seeds=50, n_bases=3, sigma=1e-2, rng=0)
    assert ref.nfev == 50 * (2 * 4 * 3 + 1)
    assert 6.0 < ref.eps_f < 14.0  # std of the offset noise (10) at x
    # remaining error: the mean slope noise over 50 seeds, ~0.01/√50 per coordinate
    np.testing.assert_allclose(ref.grad, g_true, atol=0.01)
    func = seeded_study_function(f, x, ref, name="toy", rng=1)
    row = run_cell(func, "central-orthogonal", n_directions=4, sigma=1e-1, repeats=5)
    assert row["rel_error_median"] > 1.0  # without CRN, the offset noise (10/0.2 per quotient) dominates
    crn = seeded_study_function(f, x, ref, name="toy", rng=1, crn=True)
    row = run_cell(crn, "central-orthogonal", n_directions=4, sigma=1e-1, repeats=5)
    assert row["rel_error_median"] < 0.05  # one seed per estimate: the offset cancels in every difference


# -- profiles -------------------------------------------------------------------------
def test_tiny_profile_run(tmp_path):
    from dfo.study.profiles import (BudgetExhausted, CountingObjective, ProfileConfig, data_profile,
                                    performance_profile, run_profiles, solve_times, write_profiles)

    obj = CountingObjective(lambda x: float(x @ x), 2)
    obj(np.ones(2)), obj(np.zeros(2))
    with pytest.raises(BudgetExhausted):
        obj(np.ones(2))
    assert obj.values == [2.0, 0.0]
    # the incumbent (lowest observed value) and the true value along the run
    obj = CountingObjective(lambda x: float(x @ x) + 0.5, 5, truth=lambda x: float(x @ x))
    for v in (2.0, 3.0, 1.0, 1.5):
        obj(np.array([np.sqrt(v)]))
    assert obj.best_x.tolist() == [1.0] and obj.trajectory == [(1, pytest.approx(2.0)), (3, pytest.approx(1.0))]

    cfg = ProfileConfig(budget_gradients=10, problems=(0, 4, 12), solvers=("ls-orthogonal", "neldermead"),
                        settings=("smooth", "noisy"), taus=(1e-1, 1e-3), jobs=1)
    runs = run_profiles(cfg)
    assert len(runs) == 2 * 2 * 3
    assert all(r["nfev"] <= 10 * (r["n"] + 1) for r in runs)
    times = solve_times(runs, 1e-1)
    smooth = {k[1]: v for k, v in times.items() if k[0] == "smooth"}
    dims = {r["problem"]: r["n"] for r in runs}
    alphas = np.array([1.0, 5.0, 10.0])
    for s in ("ls-orthogonal", "neldermead"):
        d = data_profile(smooth, dims, s, alphas)
        assert np.all(np.diff(d) >= 0) and 0 <= d[0] and d[-1] <= 1
    # the solver that found f_L solves each problem at every τ, so some solver is best on each
    best = sum(performance_profile(smooth, s, np.array([1.0]))[0] for s in ("ls-orthogonal", "neldermead"))
    assert best >= 1.0
    paths = write_profiles(runs, cfg, tmp_path)
    assert (tmp_path / "runs.csv").exists() and len([p for p in paths if p.suffix == ".png"]) == 4


def test_berahas_small():
    from dfo.study.berahas import BerahasConfig, run_berahas

    cfg = BerahasConfig(dims=(10,), estimators=("ffd", "orthogonal", "gaussian"), noises=("none",), repeats=40)
    cells, summary = run_berahas(cfg)
    by = {s["estimator"]: s for s in summary}
    assert by["ffd"]["measured_nfev"] == 11 and by["ffd"]["theory_nfev"] == 11
    assert by["orthogonal"]["measured_nfev"] <= 11
    # Gaussian smoothing needs several n, and fewer than the Chebyshev count 40 (n + 1) + 1
    assert 3 * 10 < by["gaussian"]["measured_nfev"] < by["gaussian"]["theory_nfev"] == 441
    assert all(c["repeats"] == 40 for c in cells)


def test_missing_pybobyqa_is_a_printed_warning_not_a_silent_omission(monkeypatch):
    import importlib.util

    from dfo.study.profiles import MissingPeerWarning, default_solvers

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pybobyqa" else real(name, *a))
    with pytest.warns(MissingPeerWarning, match="Py-BOBYQA is not installed"):
        names = [s.name for s in default_solvers()]
    assert "pybobyqa" not in names and "ls-orthogonal" in names
