"""Objectives for studies: batched values, a known (or reference) gradient, noise.

A study evaluates R × k points per cell, so the objective is evaluated on a whole
``(m, n)`` array at once. :class:`StudyFunction` holds

* ``batch(X) -> (m,)`` values of the smooth function (vectorized where we can:
  linear, quadratic and Rosenbrock below; any :class:`dfo.problems.Problem` falls
  back to a row loop);
* ``grad`` (∇f at ``x``), ``x`` the study point, and the Lipschitz constants
  L (of ∇f) and M (of ∇²f) when known, for the radius rules.

Noise is added by :class:`Noise` (vectorized: one draw per evaluated point from the
cell's generator), mirroring :mod:`dfo.problems.noise`: ``uniform`` f + ε u,
``gaussian`` f + ε z, ``relative`` f (1 + ε u), ``wild3`` f (1 + ε ψ(x)).

Example:
    >>> import numpy as np
    >>> f = linear_function(3, rng=0)
    >>> X = np.ones((2, 3))
    >>> np.allclose(f.batch(X), [f.value(X[0])] * 2)
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..problems import Problem, get_problem, more_wild_problems
from ..problems import linear as _linear_problem
from ..problems import quadratic as _quadratic_problem
from ..problems import rosenbrock as _rosenbrock_problem
from ..problems.noise import wild3_psi
from .metrics import check_gradient


@dataclass(frozen=True, eq=False)
class StudyFunction:
    """A smooth function with a batch evaluator, a point and its gradient there.

    Attributes:
        name: label used in tables.
        n: dimension.
        x: the point at which gradients are estimated.
        grad: ∇f(x) (exact, or a reference estimate for RL objectives).
        batch: ``X (m, n) -> (m,)`` smooth values.
        L, M: Lipschitz constants of ∇f and ∇²f where known (radius rules).
        fx: f(x).
    """

    name: str
    n: int
    x: np.ndarray
    grad: np.ndarray
    batch: Callable[[np.ndarray], np.ndarray]
    L: float | None = None
    M: float | None = None

    def __post_init__(self) -> None:
        x = np.asarray(self.x, dtype=float)
        if x.shape != (self.n,) or not np.all(np.isfinite(x)):
            raise ValueError(f"{self.name}: x must be a finite array of shape ({self.n},), got {x.shape}")
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "grad", check_gradient(self.grad, self.n, f"gradient of {self.name}"))

    def value(self, x: np.ndarray) -> float:
        return float(self.batch(np.asarray(x, dtype=float)[None, :])[0])

    @property
    def fx(self) -> float:
        return self.value(self.x)


def _rows(fun: Callable[[np.ndarray], float]) -> Callable[[np.ndarray], np.ndarray]:
    def batch(X: np.ndarray) -> np.ndarray:
        return np.fromiter((fun(row) for row in X), dtype=float, count=X.shape[0])
    return batch


def from_problem(problem: Problem, x: np.ndarray | None = None) -> StudyFunction:
    """Wrap a :class:`Problem` (row loop over ``problem.fun``) at ``x`` (default x0)."""
    x = problem.x0 if x is None else np.asarray(x, dtype=float)
    return StudyFunction(problem.name, problem.n, x, problem.gradient(x), _rows(problem.fun), L=problem.L)


def from_callable(fun: Callable[[np.ndarray], float], grad, x, *, name: str = "user",
                  batch: Callable | None = None, L: float | None = None, M: float | None = None) -> StudyFunction:
    """A user function with its gradient: ``grad`` is ∇f(x) (array) or a callable ``x -> ∇f(x)``."""
    x = np.asarray(x, dtype=float)
    g = grad(x) if callable(grad) else grad
    return StudyFunction(name, x.size, x, g, batch or _rows(fun), L=L, M=M)


def linear_function(n: int, *, rng=0) -> StudyFunction:
    """f(x) = gᵀx + c (random g, c); every difference quotient is exact, L = M = 0."""
    p = _linear_problem(n, rng=rng)
    g = p.gradient(p.x0)
    c = p(np.zeros(n))
    return StudyFunction(f"linear_n{n}", n, p.x0, g, lambda X: X @ g + c, L=0.0, M=0.0)


def quadratic_function(n: int, *, cond: float = 10.0, rng=0) -> StudyFunction:
    """The random quadratic of :func:`dfo.problems.quadratic`: L = cond, M = 0 (cfd is exact)."""
    p = _quadratic_problem(n, cond=cond, rng=rng)
    A = p.hessian(p.x0)
    b = p.gradient(np.zeros(n))
    c = p(np.zeros(n))
    return StudyFunction(f"quadratic_n{n}", n, p.x0, p.gradient(p.x0),
                         lambda X: 0.5 * np.einsum("ij,ij->i", X @ A, X) + X @ b + c, L=p.L, M=0.0)


def _rosen_batch(X: np.ndarray) -> np.ndarray:
    head = X[:, :-1]
    d = X[:, 1:] - head * head
    e = 1.0 - head
    return 100.0 * np.einsum("ij,ij->i", d, d) + np.einsum("ij,ij->i", e, e)


def rosenbrock_function(n: int, x: np.ndarray | None = None) -> StudyFunction:
    """Chained Rosenbrock at x (default x0 = (−1.2, 1, ...)), vectorized over rows."""
    p = _rosenbrock_problem(n)
    x = p.x0 if x is None else np.asarray(x, dtype=float)
    L = float(np.linalg.norm(p.hessian(x), 2))  # local curvature at x (a radius rule input)
    return StudyFunction(f"rosenbrock_n{n}", n, x, p.gradient(x), _rosen_batch, L=L, M=2400.0 * max(1.0, float(np.abs(x).max())))


def make_function(spec: str, n: int | None = None, *, rng=0) -> StudyFunction:
    """Build a study function from a name: ``linear``, ``quadratic``, ``rosenbrock``
    (these need ``n``) or a Moré–Wild problem name (see ``dfo.problems.get_problem``)."""
    builders = {"linear": linear_function, "quadratic": quadratic_function}
    if spec in builders or spec == "rosenbrock":
        if n is None or n < (2 if spec == "rosenbrock" else 1):
            raise ValueError(f"problem {spec!r} needs a dimension: pass n (--dim)")
        return rosenbrock_function(n) if spec == "rosenbrock" else builders[spec](n, rng=rng)
    try:
        return from_problem(get_problem(spec))
    except (KeyError, ValueError):
        names = [p.name for p in more_wild_problems()[:3]]
        raise ValueError(f"unknown study problem {spec!r}; use linear, quadratic, rosenbrock or a "
                         f"Moré–Wild name such as {', '.join(names)}") from None


# -- noise ------------------------------------------------------------------------
NOISE_KINDS = ("none", "uniform", "gaussian", "relative", "wild3")


@dataclass(frozen=True)
class Noise:
    """A noise model for studies: ``kind`` and level ``eps``.

    ``parse("uniform:1e-3")``; ``"none"`` or ``"0"`` is no noise.
    """

    kind: str = "none"
    eps: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in NOISE_KINDS:
            raise ValueError(f"unknown noise kind {self.kind!r}; known: {', '.join(NOISE_KINDS)}")
        if not (np.isfinite(self.eps) and self.eps >= 0):
            raise ValueError(f"noise level must be finite and >= 0, got {self.eps}")

    @classmethod
    def parse(cls, text: str) -> "Noise":
        text = str(text).strip()
        if text in ("none", "0", ""):
            return cls()
        kind, sep, level = text.partition(":")
        if not sep:
            raise ValueError(f"noise must look like 'uniform:1e-3' (kinds: {', '.join(NOISE_KINDS)}), got {text!r}")
        try:
            eps = float(level)
        except ValueError:
            raise ValueError(f"noise level in {text!r} is not a number") from None
        return cls() if eps == 0 else cls(kind, eps)

    @property
    def label(self) -> str:
        return "none" if self.kind == "none" else f"{self.kind}:{self.eps:g}"

    def eps_f(self, fx: float) -> float:
        """The absolute noise level ε_f at a point with value ``fx``."""
        if self.kind == "none":
            return 0.0
        return self.eps * abs(fx) if self.kind in ("relative", "wild3") else self.eps

    def apply(self, values: np.ndarray, X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Observed values at the rows of ``X`` given smooth ``values``."""
        if self.kind == "none":
            return values
        if self.kind == "uniform":
            return values + self.eps * rng.uniform(-1.0, 1.0, values.shape)
        if self.kind == "gaussian":
            return values + self.eps * rng.standard_normal(values.shape)
        if self.kind == "relative":
            return values * (1.0 + self.eps * rng.uniform(-1.0, 1.0, values.shape))
        psi = np.fromiter((wild3_psi(row) for row in X), dtype=float, count=X.shape[0])
        return values * (1.0 + self.eps * psi)
