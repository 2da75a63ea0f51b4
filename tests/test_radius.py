"""Radius rules (Berahas et al. 2022) and the two derived central rules."""

import numpy as np
import pytest

from dfo.estimators import ESTIMATORS
from dfo.radius import RadiusRule, rule, sampling_radius


def test_radius_rules():
    eps, L, M, n = 1e-6, 4.0, 2.0, 10
    assert sampling_radius("ffd", eps, L=L) == pytest.approx(2 * np.sqrt(eps / L))
    assert sampling_radius("interpolation", eps, L=L) == pytest.approx(2 * np.sqrt(eps / L))
    assert sampling_radius("cfd", eps, M=M) == pytest.approx((3 * eps / M) ** (1 / 3))
    assert sampling_radius("gaussian", eps, L=L) == pytest.approx(np.sqrt(eps / L))
    assert sampling_radius("sphere", eps, L=L, n=n) == pytest.approx(np.sqrt(n * eps / L))
    with pytest.raises(ValueError, match="needs L"):
        sampling_radius("ffd", eps)
    with pytest.raises(ValueError, match="eps_f"):
        sampling_radius("ffd", -1.0, L=1.0)


@pytest.mark.parametrize("n", [1, 3, 10, 100, 1000])
def test_central_gaussian_and_sphere_closed_forms(n):
    eps, M = 1e-6, 2.5
    cfd = (3 * eps / M) ** (1 / 3)
    cg = sampling_radius("central-gaussian", eps, M=M, n=n)
    cs = sampling_radius("central-sphere", eps, M=M, n=n)
    assert cg == pytest.approx((eps / (np.sqrt(n) * M)) ** (1 / 3), rel=1e-12)
    assert cs == pytest.approx((n * eps / M) ** (1 / 3), rel=1e-12)
    assert cfd / cg == pytest.approx((3 * np.sqrt(n)) ** (1 / 3), rel=1e-12)   # ∛(3√n) smaller
    assert cs / cfd == pytest.approx((n / 3) ** (1 / 3), rel=1e-12)            # ∛(n/3) larger
    with pytest.raises(ValueError, match="dimension"):
        sampling_radius("central-gaussian", eps, M=M)


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_every_rule_minimizes_its_bound(name):
    r = rule(name)
    eps, K, n = 3e-7, 7.0, 17
    s = sampling_radius(name, eps, L=K, M=K, n=n)
    grid = s * np.exp(np.linspace(-3, 3, 601))
    bounds = [r.bound(t, eps, K, n) for t in grid]
    assert grid[int(np.argmin(bounds))] == pytest.approx(s, rel=0.011)
    assert r.bound(s, eps, K, n) <= min(bounds) * (1 + 1e-12)


def test_rules_say_which_constant_they_need():
    for name, entry in ESTIMATORS.items():
        assert entry.radius.needs == ("M" if entry.central else "L"), name
    assert rule("sphere").uses_n and rule("central-gaussian").uses_n and not rule("cfd").uses_n
    with pytest.raises(ValueError, match="needs M"):
        sampling_radius("central-sphere", 1e-6, L=1.0, n=4)


def test_missing_rule_is_an_error_not_a_fallback():
    with pytest.raises(ValueError, match="no radius rule for estimator 'nope'"):
        sampling_radius("nope", 1e-6, L=1.0, M=1.0, n=3)
    with pytest.raises(TypeError, match="preset name"):
        rule(object())
    with pytest.raises(ValueError):
        RadiusRule("H", 1.0, 0.0, 1.0, 0.0)


def test_central_gaussian_bias_bound_holds_on_a_cubic():
    """φ = Σ x_i³/6 has ∇²φ = diag(x), M = 1, ∇φ(0) = 0. The central Gaussian estimator's
    mean at 0 is the smoothing bias σ²/2 · 1 (E u_i⁴/6 = 1/2), inside the bound n M σ²/2."""
    from dfo import estimate_gradient

    n, sigma, N = 6, 0.1, 40000
    est = estimate_gradient(lambda z: float(np.sum(z**3) / 6), np.zeros(n), estimator="central-gaussian",
                            n_directions=N, sigma=sigma, rng=0)
    mc_std = sigma**2 * np.sqrt((105 + 15 * (n - 1)) / 36 / N)  # std of the mean, per coordinate
    assert np.allclose(est.grad, sigma**2 / 2, atol=6 * mc_std)
    assert np.linalg.norm(np.full(n, sigma**2 / 2)) <= rule("central-gaussian").bound(sigma, 1e-300, 1.0, n)
