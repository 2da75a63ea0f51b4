"""Noise-level estimation: repeats (stochastic) and ECNoise (deterministic)."""

import numpy as np
import pytest

from dfo.noise import ecnoise, estimate_noise
from dfo.problems import AdditiveUniform, Wild3, rosenbrock


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
