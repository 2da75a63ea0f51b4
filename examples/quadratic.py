"""The core alone: minimize a noisy quadratic with two gradient estimators, scipy style.

``f(x) = ½ (x − 1)ᵀ D (x − 1)`` in 20 dimensions with ``D = diag(1 … 10)``, observed with
additive uniform noise of level ``ε_f = 1e-6``. :func:`dfo.minimize` estimates the gradient
from function values only (here central differences and orthogonal directions), steps with
the noise-tolerant Armijo line search, and returns a ``scipy.optimize.OptimizeResult``.
Nothing outside ``dfo`` (numpy, scipy) is imported.

Run:
    python examples/quadratic.py
"""

from __future__ import annotations

import numpy as np

import dfo

N = 20
EPS_F = 1e-6
D = np.linspace(1.0, 10.0, N)


def noisy_quadratic(x: np.ndarray, rng: np.random.Generator = np.random.default_rng(0)) -> float:
    """The quadratic plus uniform noise in ``[-ε_f, ε_f]`` (a fresh draw on every call)."""
    return 0.5 * float(np.sum(D * (x - 1.0) ** 2)) + EPS_F * rng.uniform(-1.0, 1.0)


def main() -> None:
    x0 = np.zeros(N)
    seen = []
    for estimator in ("cfd", "central-orthogonal"):
        res = dfo.minimize(noisy_quadratic, x0, estimator=estimator, eps_f=EPS_F, maxfev=4000, rng=1,
                           callback=lambda intermediate_result: seen.append(intermediate_result.fun))
        print(f"{estimator:>18}: f = {res.fun:.2e} after {res.nfev} evaluations, {res.nit} iterations "
              f"({res.message})")
    print(f"callback calls: {len(seen)}")
    print(f"distance to the minimizer {np.linalg.norm(res.x - 1.0):.2e}")


if __name__ == "__main__":
    main()
