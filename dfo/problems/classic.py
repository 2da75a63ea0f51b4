"""Classic smooth test functions: quadratics, linear functions, Rosenbrock.

* ``quadratic``: ``f(x) = 0.5 x^T A x + b^T x + c`` with ``A`` symmetric positive
  definite of prescribed condition number, so the minimizer
  ``x* = -A^{-1} b``, the minimum ``c - 0.5 b^T A^{-1} b`` and the gradient
  Lipschitz constant ``L = lambda_max(A)`` are all exact.
* ``linear``: ``f(x) = g^T x + c`` (unbounded below; finite differences of any
  order are exact on it, which estimator tests use).
* ``rosenbrock``: the chained (generalized) Rosenbrock function
  ``f(x) = sum_{i=1}^{n-1} 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2``
  (Rosenbrock 1960; chained form as in scipy.optimize.rosen), minimum 0 at
  ``x = 1``, written as a least-squares problem with residuals
  ``10 (x_{i+1} - x_i^2)`` and ``1 - x_i``.

Example:
    >>> from dfo.problems import quadratic
    >>> p = quadratic(5, cond=100.0, rng=0)
    >>> bool(abs(p(p.x_opt) - p.f_opt) < 1e-12), p.L
    (True, 100.0)
"""

from __future__ import annotations

from functools import partial

import numpy as np

from .base import Problem, SumOfSquares, SumOfSquaresGradient

__all__ = ["quadratic", "linear", "rosenbrock"]

RngLike = None | int | np.random.Generator


def _quad_fun(x: np.ndarray, A: np.ndarray, b: np.ndarray, c: float) -> float:
    return float(0.5 * x @ (A @ x) + b @ x + c)


def _quad_grad(x: np.ndarray, A: np.ndarray, b: np.ndarray) -> np.ndarray:
    return A @ x + b


def _const_matrix(x: np.ndarray, M: np.ndarray) -> np.ndarray:
    return M.copy()


def _linear_fun(x: np.ndarray, g: np.ndarray, c: float) -> float:
    return float(g @ x + c)


def _linear_grad(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    return g.copy()


def _check_n(n: int, minimum: int, what: str) -> int:
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < minimum:
        raise ValueError(f"{what} needs an integer n >= {minimum}, got {n!r}")
    return int(n)


def quadratic(
    n: int,
    *,
    cond: float = 10.0,
    rng: RngLike = None,
    x0: np.ndarray | None = None,
) -> Problem:
    """Random strongly convex quadratic ``0.5 x^T A x + b^T x + c``.

    ``A = Q diag(lambda) Q^T`` with ``Q`` a random orthogonal matrix (QR of a
    Gaussian matrix) and eigenvalues log-spaced in ``[1, cond]``; ``b`` and
    ``c`` are standard normal.

    Args:
        n: dimension (>= 1).
        cond: condition number of ``A`` (>= 1); ``L = cond``, ``mu = 1``.
        rng: seed or generator for ``Q``, ``b``, ``c``.
        x0: starting point; default ``x* + 1`` (a unit offset in every coordinate).

    Returns:
        A :class:`Problem` with ``hess``, ``x_opt``, ``f_opt`` and ``L`` set.
    """
    n = _check_n(n, 1, "quadratic")
    if not np.isfinite(cond) or cond < 1.0:
        raise ValueError(f"quadratic needs cond >= 1, got {cond!r}")
    gen = np.random.default_rng(rng)
    Q, _ = np.linalg.qr(gen.standard_normal((n, n)))
    eig = np.logspace(0.0, np.log10(cond), n) if n > 1 else np.array([1.0])
    A = (Q * eig) @ Q.T
    A = 0.5 * (A + A.T)
    b = gen.standard_normal(n)
    c = float(gen.standard_normal())
    x_opt = -np.linalg.solve(A, b)
    f_opt = c + 0.5 * float(b @ x_opt)
    start = x_opt + 1.0 if x0 is None else np.asarray(x0, dtype=float)
    return Problem(
        name=f"quadratic_n{n}_cond{cond:g}",
        n=n,
        x0=start,
        fun=partial(_quad_fun, A=A, b=b, c=c),
        grad=partial(_quad_grad, A=A, b=b),
        hess=partial(_const_matrix, M=A),
        f_opt=f_opt,
        x_opt=x_opt,
        L=float(eig.max()),
    )


def linear(n: int, *, rng: RngLike = None) -> Problem:
    """Random linear function ``g^T x + c`` (``g``, ``c`` standard normal).

    Unbounded below, so ``f_opt`` is ``None``; ``L = 0`` and the Hessian is zero.
    Starting point: the origin.
    """
    n = _check_n(n, 1, "linear")
    gen = np.random.default_rng(rng)
    g = gen.standard_normal(n)
    c = float(gen.standard_normal())
    return Problem(
        name=f"linear_n{n}",
        n=n,
        x0=np.zeros(n),
        fun=partial(_linear_fun, g=g, c=c),
        grad=partial(_linear_grad, g=g),
        hess=partial(_const_matrix, M=np.zeros((n, n))),
        L=0.0,
    )


def _rosen_residual(x: np.ndarray) -> np.ndarray:
    r = np.empty(2 * (x.size - 1))
    r[0::2] = 10.0 * (x[1:] - x[:-1] ** 2)
    r[1::2] = 1.0 - x[:-1]
    return r


def _rosen_jacobian(x: np.ndarray) -> np.ndarray:
    k = x.size - 1
    J = np.zeros((2 * k, x.size))
    i = np.arange(k)
    J[2 * i, i] = -20.0 * x[:-1]
    J[2 * i, i + 1] = 10.0
    J[2 * i + 1, i] = -1.0
    return J


def _rosen_hess(x: np.ndarray) -> np.ndarray:
    # Hessian of sum 100 (x_{i+1} - x_i^2)^2 + (1 - x_i)^2.
    n = x.size
    H = np.zeros((n, n))
    i = np.arange(n - 1)
    H[i, i] += 1200.0 * x[:-1] ** 2 - 400.0 * x[1:] + 2.0
    H[i + 1, i + 1] += 200.0
    H[i, i + 1] = -400.0 * x[:-1]
    H[i + 1, i] = -400.0 * x[:-1]
    return H


def rosenbrock(n: int = 2) -> Problem:
    """Chained Rosenbrock function in dimension ``n >= 2``.

    Starting point: the classic ``(-1.2, 1, -1.2, 1, ...)``; minimum 0 at ones.
    """
    n = _check_n(n, 2, "rosenbrock")
    x0 = np.where(np.arange(n) % 2 == 0, -1.2, 1.0)
    return Problem(
        name=f"rosenbrock_n{n}",
        n=n,
        x0=x0,
        fun=SumOfSquares(_rosen_residual),
        grad=SumOfSquaresGradient(_rosen_residual, _rosen_jacobian),
        residual=_rosen_residual,
        jacobian=_rosen_jacobian,
        m=2 * (n - 1),
        hess=_rosen_hess,
        f_opt=0.0,
        x_opt=np.ones(n),
    )
