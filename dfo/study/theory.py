"""Theory overlays: exact second moments, error bounds and sample counts.

Relative second moment E‖g − ∇f‖² / ‖∇f‖² of the Monte-Carlo estimators on a
*linear* f without noise (exact, any σ), N directions in R^n:

* Gaussian smoothing g = (1/N) Σ (uᵢᵀ∇f) uᵢ, u ~ N(0, I): one term has
  E‖(uᵀ∇f)u‖² = (n+2)‖∇f‖², so the second moment is **(n+1)/N**
  (Nesterov & Spokoiny 2017; Berahas et al. 2022, §3).
* sphere smoothing g = (n/N) Σ (uᵢᵀ∇f) uᵢ, u uniform on S^{n−1}: **(n−1)/N**.
* orthogonal (blocks of orthonormal rows): with N = b n + m (0 ≤ m < n) the b full
  blocks are exact and the remainder projects ∇f on a random m-dimensional subspace:
  **m (n − m) / N²** (n/N − 1 for N ≤ n; 0 when n divides N).
* ffd, cfd, interpolation: 0 (exact on linear functions).

Deterministic error bounds of Berahas, Cao, Choromanski & Scheinberg (2022) for
f = φ + ε, |ε| ≤ ε_f, ∇φ L-Lipschitz, ∇²φ M-Lipschitz:

* forward FD:    ‖g − ∇φ‖ ≤ √n L σ/2 + 2 √n ε_f/σ   (= 2 √(n L ε_f) at σ = 2√(ε_f/L));
* central FD:    ‖g − ∇φ‖ ≤ √n M σ²/6 + √n ε_f/σ;
* interpolation: ‖g − ∇φ‖ ≤ ‖U⁻¹‖ √N (L σ/2 + 2 ε_f/σ) for unit directions
  (‖U⁻¹‖ = 1 for orthonormal U, N = n), and with (M σ²/6 + ε_f/σ) when central.

These are the bounds of the presets' radius rules (:mod:`dfo.radius`); which curve
and which bound belong to a preset is said by its registry entry
(:data:`dfo.estimators.ESTIMATORS`).

Sample counts for the norm condition ‖g − ∇φ‖ ≤ θ‖∇φ‖ with probability 1 − δ:
the deterministic estimators need N = n (when their bound is ≤ θ‖∇φ‖); for the
random ones we apply Chebyshev's inequality to the exact second moment above,
P(‖g − ∇φ‖ > θ‖∇φ‖) ≤ s(N)/θ², and take the smallest N with s(N) ≤ δθ², which is
the route of Berahas et al. (their constants also carry σ- and noise-dependent
terms that vanish in the noise-free, small-σ limit used here).
"""

from __future__ import annotations

import math

import numpy as np

from ..estimators.registry import ESTIMATORS


def _entry(estimator: str):
    entry = ESTIMATORS.get(estimator)
    if entry is None:
        raise ValueError(f"unknown estimator {estimator!r}; known: {', '.join(sorted(ESTIMATORS))}")
    return entry


def _curve(kind: str | None, n: int, N: int) -> float:
    """The second-moment formulas above, by the curve name a registry entry gives."""
    if kind == "gaussian":
        return (n + 1) / N
    if kind == "sphere":
        return (n - 1) / N
    if kind == "orthogonal":
        m = N % n
        return m * (n - m) / N**2
    if kind == "exact":
        return 0.0
    return float("nan")


def relative_second_moment(estimator: str, n: int, N: int) -> float:
    """E‖g − ∇f‖²/‖∇f‖² on a linear f without noise; NaN where no formula is given."""
    return _curve(_entry(estimator).theory, n, N)


def evaluations(estimator: str, N: int) -> int:
    """Function evaluations of one estimate with N directions (f(x) counted for forward)."""
    return _entry(estimator).nfev(N)


def error_bound(estimator: str, *, n: int, sigma: float, eps_f: float, L: float = 0.0,
                M: float = 0.0, N: int | None = None, inv_norm: float = 1.0) -> float:
    """The deterministic bound on ‖g − ∇φ‖ of the exact estimators (NaN for the random ones):
    the preset's radius-rule bound (:class:`dfo.radius.RadiusRule`), with N in place of n and
    the factor ‖U⁻¹‖ for interpolation."""
    entry = _entry(estimator)
    if not entry.deterministic:
        return float("nan")
    rule = entry.radius
    K = L if rule.needs == "L" else M
    return inv_norm * rule.bound(sigma, eps_f, K, N or n)


def chebyshev_directions(estimator: str, n: int, *, theta: float = 0.5, delta: float = 0.1) -> int:
    """Smallest N whose exact second moment s(N) satisfies s(N) ≤ δθ² (see module doc)."""
    target = delta * theta**2
    kind = _entry(estimator).theory
    if kind == "gaussian":
        return math.ceil((n + 1) / target)
    if kind == "sphere":
        return max(1, math.ceil((n - 1) / target))
    if kind == "orthogonal":
        N = 1
        while _curve(kind, n, N) > target:
            N += 1
        return N
    if kind == "exact":
        return n
    raise ValueError(f"no sample-count formula for estimator {estimator!r}")


def theoretical_evaluations(estimator: str, n: int, *, theta: float = 0.5, delta: float = 0.1) -> int:
    """Evaluations the bound asks for (see :func:`chebyshev_directions`)."""
    return evaluations(estimator, chebyshev_directions(estimator, n, theta=theta, delta=delta))


def rms_curve(estimator: str, n: int, Ns) -> np.ndarray:
    """√(second moment) for each N: the dashed theory line of error-vs-evaluations plots."""
    return np.sqrt([relative_second_moment(estimator, n, int(k)) for k in Ns])
