"""Sampling radius rules and noise-level estimation.

Radius rules from Berahas, Cao, Choromanski & Scheinberg (2022), "A theoretical
and empirical comparison of gradient approximations in derivative-free
optimization" (FoCM), for an observed f = φ + noise with |noise| ≤ ε_f, ∇φ
L-Lipschitz and ∇²φ M-Lipschitz:

====================================  =====================
forward FD, interpolation, orthogonal  σ = 2 √(ε_f / L)
central differences (any directions)   σ = (3 ε_f / M)^{1/3}
Gaussian smoothing (forward)           σ = √(ε_f / L)
sphere smoothing (forward)             σ = √(n ε_f / L)
====================================  =====================

The noise level ε_f is estimated by :func:`estimate_noise`: from repeated
evaluations at one point when the noise is stochastic, and otherwise from the
difference table of Moré & Wild (2011), "Estimating computational noise"
(ECNoise), along a random line.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import factorial

import numpy as np

from .estimators.base import as_point, check_finite
from .rng import as_generator

_FORWARD_LI = {"ffd", "orthogonal", "interpolation"}
_GAUSSIAN = {"gaussian"}
_SPHERE = {"sphere"}
_CENTRAL = {"cfd", "central-gaussian", "central-sphere", "central-orthogonal",
            "central-interpolation", "subzero", "lozo", "lozo-m"}


def sampling_radius(estimator: str, eps_f: float, *, L: float | None = None,
                    M: float | None = None, n: int | None = None) -> float:
    """The sampling radius σ for ``estimator`` at noise level ``eps_f``.

    Example:
        >>> round(sampling_radius("ffd", 1e-6, L=1.0), 6)
        0.002
        >>> round(sampling_radius("cfd", 1e-6, M=3.0), 6)
        0.01
    """
    if not (np.isfinite(eps_f) and eps_f > 0):
        raise ValueError(f"eps_f must be a positive number, got {eps_f}")
    if estimator in _CENTRAL:
        if M is None or M <= 0:
            raise ValueError(f"{estimator}: the central-difference rule needs M > 0 (Lipschitz constant of the Hessian)")
        return float((3.0 * eps_f / M) ** (1.0 / 3.0))
    if L is None or L <= 0:
        raise ValueError(f"{estimator}: the forward rule needs L > 0 (Lipschitz constant of the gradient)")
    if estimator in _FORWARD_LI:
        return float(2.0 * np.sqrt(eps_f / L))
    if estimator in _GAUSSIAN:
        return float(np.sqrt(eps_f / L))
    if estimator in _SPHERE:
        if n is None or n < 1:
            raise ValueError("sphere: the rule needs the dimension n")
        return float(np.sqrt(n * eps_f / L))
    raise ValueError(f"no radius rule for estimator {estimator!r}")


def default_sigma(estimator: str, n: int, eps_f: float = 0.0) -> float:
    """σ when the user gives none: the rule above with L = M = 1 and ε_f at least
    the rounding level 1e-15 (so noise-free problems get the classical √eps / eps^{1/3})."""
    name = estimator if isinstance(estimator, str) else "cfd"
    if name not in _FORWARD_LI | _GAUSSIAN | _SPHERE | _CENTRAL:
        name = "cfd"
    return sampling_radius(name, max(float(eps_f), 1e-15), L=1.0, M=1.0, n=n)


@dataclass(frozen=True)
class NoiseEstimate:
    """ε_f with how it was found: ``kind`` is 'stochastic', 'deterministic' or 'none'."""

    eps_f: float
    kind: str
    nfev: int
    level: int | None = None


def ecnoise(values: np.ndarray) -> tuple[float, int] | None:
    """Moré–Wild noise estimate from f at m+1 equally spaced points on a line.

    σ_k = sqrt(γ_k · mean((Δ^k f)²)), γ_k = (k!)² / (2k)!; the first order k whose
    differences change sign and whose estimate agrees within a factor 4 with the
    next two orders is returned as (σ_k, k); None if no order qualifies.
    """
    diffs = np.asarray(values, dtype=float)
    m = diffs.size - 1
    sigmas, signs = [], []
    for k in range(1, m + 1):
        diffs = np.diff(diffs)
        gamma = factorial(k) ** 2 / factorial(2 * k)
        sigmas.append(np.sqrt(gamma * np.mean(diffs**2)))
        signs.append(diffs.min() < 0 < diffs.max())
    for k in range(len(sigmas) - 2):
        trio = sigmas[k:k + 3]
        if signs[k] and min(trio) > 0 and max(trio) <= 4 * min(trio):
            return float(sigmas[k]), k + 1
    return None


def estimate_noise(fun, x, *, n_repeats: int = 10, n_line: int = 8, h: float | None = None,
                   rng=None) -> NoiseEstimate:
    """Estimate the noise level ε_f of ``fun`` near ``x``.

    First ``n_repeats`` evaluations at x: if they differ, the noise is stochastic
    and ε_f is their standard deviation. Otherwise the noise (if any) is
    deterministic, and ECNoise runs on ``n_line + 1`` points x + t h p along a
    random unit direction p.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> est = estimate_noise(lambda x: float(x @ x) + 1e-3 * rng.uniform(-1, 1), np.ones(3), n_repeats=200)
        >>> 0.4e-3 < est.eps_f < 0.8e-3  # std of U(-1e-3, 1e-3) is 5.8e-4
        True
    """
    x = as_point(x)
    gen = as_generator(rng)
    repeated = check_finite([float(fun(x)) for _ in range(n_repeats)])
    if n_repeats > 1 and np.ptp(repeated) > 0:
        return NoiseEstimate(float(np.std(repeated, ddof=1)), "stochastic", n_repeats)
    p = gen.standard_normal(x.size)
    p /= np.linalg.norm(p)
    h = 1e-6 * max(1.0, float(np.linalg.norm(x))) if h is None else float(h)
    ts = np.arange(n_line + 1) - n_line / 2
    line = check_finite([float(fun(x + t * h * p)) for t in ts])
    found = ecnoise(line)
    nfev = n_repeats + line.size
    if found is None:
        return NoiseEstimate(0.0, "none", nfev)
    return NoiseEstimate(found[0], "deterministic", nfev, level=found[1])
