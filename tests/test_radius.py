"""Radius rules (Berahas et al. 2022) and the noise-level estimate."""

import numpy as np
import pytest

from dfo.problems import AdditiveUniform, Wild3, rosenbrock
from dfo.radius import default_sigma, ecnoise, estimate_noise, sampling_radius


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
    assert default_sigma("ffd", 5) == pytest.approx(2 * np.sqrt(1e-15))


def test_estimate_noise_stochastic():
    p = rosenbrock(3)
    est = estimate_noise(AdditiveUniform(p.fun, 1e-3, rng=0), p.x0, n_repeats=400)
    assert est.kind == "stochastic"
    assert est.eps_f == pytest.approx(1e-3 / np.sqrt(3), rel=0.15)  # std of U(−ε, ε)


def test_estimate_noise_deterministic_ecnoise():
    p = rosenbrock(3)
    x = p.x0 + 0.1
    noisy = Wild3(p.fun, 1e-6)
    bound = 1e-6 * abs(p.fun(x))
    for seed in range(3):
        # h must be wide enough for wild3's oscillation (period ~ 2π/100) to look like noise
        est = estimate_noise(noisy, x, h=3e-2, rng=seed)
        assert est.kind == "deterministic"
        assert bound / 10 < est.eps_f < 3 * bound
    assert estimate_noise(p.fun, x, rng=0).eps_f < 1e-12 * abs(p.fun(x)) + 1e-12


def test_ecnoise_on_pure_noise():
    values = np.random.default_rng(0).normal(0, 1e-3, 9)
    sigma, _ = ecnoise(values)
    assert 3e-4 < sigma < 3e-3
