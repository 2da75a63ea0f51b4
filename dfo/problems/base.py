"""The :class:`Problem` record shared by every test problem.

A problem is a smooth objective ``f: R^n -> R`` with its analytic gradient, a
starting point and, where it is known, the optimal value. Least-squares
problems ``f(x) = sum_i r_i(x)^2`` also carry the residual vector ``r`` and its
Jacobian ``J``, so that ``grad f(x) = 2 J(x)^T r(x)``.

Every callable stored in a problem is built from module-level functions (and
:func:`functools.partial`), so a problem pickles and can be shipped to joblib
workers.

Example:
    >>> import numpy as np
    >>> from dfo.problems import rosenbrock
    >>> p = rosenbrock(4)
    >>> p(np.ones(4)), p.gradient(np.ones(4)).tolist()
    (0.0, [0.0, 0.0, 0.0, 0.0])
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

__all__ = ["Problem", "SumOfSquares", "SumOfSquaresGradient", "check_point"]


def check_point(x: np.ndarray, n: int, name: str) -> np.ndarray:
    """Return ``x`` as a float vector of shape ``(n,)`` or raise a clear error.

    Args:
        x: the point to check.
        n: the dimension the problem expects.
        name: problem name, used in the error message.

    Raises:
        ValueError: when ``x`` does not have shape ``(n,)``.
    """
    arr = np.asarray(x, dtype=float)
    if arr.shape != (n,):
        raise ValueError(
            f"problem {name!r} expects x of shape ({n},), got shape {arr.shape}"
        )
    return arr


class SumOfSquares:
    """Picklable callable ``x -> sum_i r_i(x)^2`` for a residual function ``r``."""

    def __init__(self, residual: Callable[[np.ndarray], np.ndarray]) -> None:
        self.residual = residual

    def __call__(self, x: np.ndarray) -> float:
        r = self.residual(x)
        return float(r @ r)


class SumOfSquaresGradient:
    """Picklable callable ``x -> 2 J(x)^T r(x)``, the gradient of a sum of squares."""

    def __init__(
        self,
        residual: Callable[[np.ndarray], np.ndarray],
        jacobian: Callable[[np.ndarray], np.ndarray],
    ) -> None:
        self.residual = residual
        self.jacobian = jacobian

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return 2.0 * (self.jacobian(x).T @ self.residual(x))


@dataclass(frozen=True, kw_only=True, eq=False)
class Problem:
    """A smooth test problem with a known gradient.

    Attributes:
        name: unique identifier, e.g. ``"mw04_rosenbrock_n2_m2_s0"``.
        n: dimension of ``x``.
        x0: starting point, shape ``(n,)`` (stored as a read-only copy).
        fun: objective ``x -> f(x)`` (no shape check; use ``problem(x)`` for one).
        grad: analytic gradient ``x -> grad f(x)``, shape ``(n,)``.
        f_opt: the known (published) minimum value, or ``None``.
        L: an estimate of the Lipschitz constant of the gradient, where easy
            to state (quadratics, linear least squares), else ``None``.
        residual: for least squares ``f = ||r||^2``: ``x -> r(x)``, shape ``(m,)``.
        jacobian: for least squares: ``x -> J(x)``, shape ``(m, n)``.
        m: number of residuals for least-squares problems, else ``None``.
        hess: analytic Hessian ``x -> H(x)`` where provided, else ``None``.
        x_opt: a known minimizer, where provided, else ``None``.
    """

    name: str
    n: int
    x0: np.ndarray
    fun: Callable[[np.ndarray], float]
    grad: Callable[[np.ndarray], np.ndarray]
    f_opt: float | None = None
    L: float | None = None
    residual: Callable[[np.ndarray], np.ndarray] | None = field(default=None, repr=False)
    jacobian: Callable[[np.ndarray], np.ndarray] | None = field(default=None, repr=False)
    m: int | None = None
    hess: Callable[[np.ndarray], np.ndarray] | None = field(default=None, repr=False)
    x_opt: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.n, (int, np.integer)) or self.n < 1:
            raise ValueError(f"problem {self.name!r}: n must be a positive int, got {self.n!r}")
        x0 = check_point(self.x0, int(self.n), self.name).copy()
        x0.flags.writeable = False
        object.__setattr__(self, "n", int(self.n))
        object.__setattr__(self, "x0", x0)
        if self.x_opt is not None:
            xs = check_point(self.x_opt, self.n, self.name).copy()
            xs.flags.writeable = False
            object.__setattr__(self, "x_opt", xs)
        if (self.residual is None) != (self.jacobian is None):
            raise ValueError(
                f"problem {self.name!r}: residual and jacobian must be given together"
            )

    @property
    def is_least_squares(self) -> bool:
        """Whether the problem is ``f = ||r(x)||^2`` with residual and Jacobian."""
        return self.residual is not None

    def __call__(self, x: np.ndarray) -> float:
        """Evaluate ``f(x)`` after checking that ``x`` has shape ``(n,)``."""
        return float(self.fun(check_point(x, self.n, self.name)))

    def gradient(self, x: np.ndarray) -> np.ndarray:
        """Evaluate the analytic gradient after checking the shape of ``x``."""
        return np.asarray(self.grad(check_point(x, self.n, self.name)), dtype=float)

    def residuals(self, x: np.ndarray) -> np.ndarray:
        """Evaluate ``r(x)`` (least-squares problems only)."""
        if self.residual is None:
            raise TypeError(f"problem {self.name!r} is not a least-squares problem")
        return np.asarray(self.residual(check_point(x, self.n, self.name)), dtype=float)

    def jac(self, x: np.ndarray) -> np.ndarray:
        """Evaluate the Jacobian ``J(x)`` of the residuals (least-squares only)."""
        if self.jacobian is None:
            raise TypeError(f"problem {self.name!r} is not a least-squares problem")
        return np.asarray(self.jacobian(check_point(x, self.n, self.name)), dtype=float)

    def hessian(self, x: np.ndarray) -> np.ndarray:
        """Evaluate the analytic Hessian, where the problem provides one."""
        if self.hess is None:
            raise TypeError(f"problem {self.name!r} provides no Hessian")
        return np.asarray(self.hess(check_point(x, self.n, self.name)), dtype=float)
