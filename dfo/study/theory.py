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
  (‖U⁻¹‖ = 1 for orthonormal U, N = n).

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

_GAUSS = ("gaussian", "central-gaussian")
_SPHERE = ("sphere", "central-sphere")
_ORTHO = ("orthogonal", "central-orthogonal")
_EXACT = ("ffd", "cfd", "interpolation", "central-interpolation")


def relative_second_moment(estimator: str, n: int, N: int) -> float:
    """E‖g − ∇f‖²/‖∇f‖² on a linear f without noise; NaN where no formula is given."""
    if estimator in _GAUSS:
        return (n + 1) / N
    if estimator in _SPHERE:
        return (n - 1) / N
    if estimator in _ORTHO:
        m = N % n
        return m * (n - m) / N**2
    if estimator in _EXACT:
        return 0.0
    return float("nan")


def evaluations(estimator: str, N: int) -> int:
    """Function evaluations of one estimate with N directions (f(x) counted for forward)."""
    central = estimator.startswith("central") or estimator == "cfd"
    return 2 * N if central else N + 1


def error_bound(estimator: str, *, n: int, sigma: float, eps_f: float, L: float = 0.0,
                M: float = 0.0, N: int | None = None, inv_norm: float = 1.0) -> float:
    """The deterministic bound on ‖g − ∇φ‖ above (NaN for the random estimators)."""
    if estimator == "ffd":
        return math.sqrt(n) * (L * sigma / 2 + 2 * eps_f / sigma)
    if estimator == "cfd":
        return math.sqrt(n) * (M * sigma**2 / 6 + eps_f / sigma)
    if estimator == "interpolation":
        return inv_norm * math.sqrt(N or n) * (L * sigma / 2 + 2 * eps_f / sigma)
    return float("nan")


def chebyshev_directions(estimator: str, n: int, *, theta: float = 0.5, delta: float = 0.1) -> int:
    """Smallest N whose exact second moment s(N) satisfies s(N) ≤ δθ² (see module doc)."""
    target = delta * theta**2
    if estimator in _GAUSS:
        return math.ceil((n + 1) / target)
    if estimator in _SPHERE:
        return max(1, math.ceil((n - 1) / target))
    if estimator in _ORTHO:
        N = 1
        while relative_second_moment(estimator, n, N) > target:
            N += 1
        return N
    if estimator in _EXACT:
        return n
    raise ValueError(f"no sample-count formula for estimator {estimator!r}")


def theoretical_evaluations(estimator: str, n: int, *, theta: float = 0.5, delta: float = 0.1) -> int:
    """Evaluations the bound asks for (see :func:`chebyshev_directions`)."""
    return evaluations(estimator, chebyshev_directions(estimator, n, theta=theta, delta=delta))


def rms_curve(estimator: str, n: int, Ns) -> np.ndarray:
    """√(second moment) for each N: the dashed theory line of error-vs-evaluations plots."""
    return np.sqrt([relative_second_moment(estimator, n, int(k)) for k in Ns])
