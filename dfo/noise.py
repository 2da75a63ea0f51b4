"""Noise-level estimation for an observed f = φ + noise.

Stochastic noise shows up as differing values at one point; its level is their
standard deviation. Deterministic noise (the same x always gives the same
value) is measured with the difference table of Moré & Wild (2011),
"Estimating computational noise" (ECNoise), along a random line.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import factorial

import numpy as np

from .estimators.base import as_point, check_finite
from .radius import CENTRAL_FD, FORWARD_FD
from .rng import as_generator


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


# -- pieces for an optimizer that requests its own evaluations ---------------------

def ecnoise_verdict(values: np.ndarray) -> tuple[str, float, int | None]:
    """ECNoise on one line of values, with the Moré–Wild diagnosis when it fails.

    Returns ``("noise", ε_f, order)``; ``("h-too-small", 0, None)`` when fewer than
    half of the values are distinct (the spacing h is below the noise's resolution);
    ``("h-too-large", 0, None)`` otherwise (the differences are dominated by the
    smooth part: no sign change or orders that disagree).
    """
    values = np.asarray(values, dtype=float)
    if np.unique(values).size < max(2, (values.size + 1) // 2):
        return "h-too-small", 0.0, None
    found = ecnoise(values)
    if found is None:
        return "h-too-large", 0.0, None
    return "noise", found[0], found[1]


def curvature_bounds(f_m2: float, f_m1: float, f0: float, f_p1: float, f_p2: float, h: float,
                     eps_f: float) -> tuple[float, float, float]:
    """Directional curvature bounds from five values f(x + t h p), t = −2..2.

    Second and third central differences (Moré & Wild 2012, "Estimating derivatives
    of noisy simulations"), each widened by its worst-case noise so that the result is
    an upper bound consistent with the data:

        L ≤ (|f₁ − 2f₀ + f₋₁| + 4 ε_f) / h²,
        M ≤ (|f₂ − 2f₁ + 2f₋₁ − f₋₂| + 6 ε_f) / (2 h³).

    When the noise dominates, the radius rules fed with these bounds return σ ≈ h:
    the probe width is the largest radius the data can justify.
    Also returns |slope| = |f₁ − f₋₁| / (2h), the directional derivative.
    """
    d2 = abs(f_p1 - 2.0 * f0 + f_m1)
    d3 = abs(f_p2 - 2.0 * f_p1 + 2.0 * f_m1 - f_m2)
    L = (d2 + 4.0 * eps_f) / h**2
    M = (d3 + 6.0 * eps_f) / (2.0 * h**3)
    return float(L), float(M), float(abs(f_p1 - f_m1) / (2.0 * h))


def difference_errors(eps_f: float, L: float, M: float) -> tuple[float, float]:
    """Per-direction error bounds at the optimal radius (Berahas et al. 2022):
    forward 2√(ε_f L) (σ = 2√(ε_f/L)), central ≈ 1.04 (ε_f² M)^{1/3} (σ = (3ε_f/M)^{1/3})."""
    fwd = FORWARD_FD.bound(FORWARD_FD.radius(eps_f, L), eps_f, L)
    cen = CENTRAL_FD.bound(CENTRAL_FD.radius(eps_f, M), eps_f, M)
    return fwd, cen
