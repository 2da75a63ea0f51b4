"""Sampling radius rules.

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

The noise level ε_f comes from :mod:`dfo.noise`.
"""

from __future__ import annotations

import numpy as np

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


# Noise estimation moved to dfo/noise.py; re-exported here for old imports.
from .noise import NoiseEstimate, ecnoise, estimate_noise  # noqa: E402,F401
