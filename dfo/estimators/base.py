"""Shared types of the gradient estimators: the query they ask, the estimate they return.

An estimator never calls the objective itself (ask/tell, as in the design map):

    query = estimator.ask(x, rng)             # the points to evaluate
    values = [f(p) for p in query.points]    # anyone may evaluate them, anywhere
    estimate = estimator.tell(query, values) # -> GradEstimate(grad, fx, nfev, info)

Each perturbation is identified by ``(seed, index)``: ``query.directions.row(i)``
regenerates direction ``i`` from the seed alone, so a remote worker needs only
the seed and the index, never the direction itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from ..values import NonFiniteValueError, as_point, check_finite  # noqa: F401  (their home is dfo.values)


class DirectionSet(Protocol):
    """N directions in R^n, regenerable from a seed (picklable, small)."""

    n: int
    n_directions: int

    def row(self, i: int) -> np.ndarray:  # pragma: no cover - protocol
        """Direction ``i`` (shape ``(n,)``)."""

    def matrix(self) -> np.ndarray:  # pragma: no cover - protocol
        """All directions as rows, shape ``(n_directions, n)``."""


@dataclass(frozen=True)
class Query:
    """What an estimator asks for: evaluations at ``x + sign * sigma * u_i``.

    Attributes:
        x: the centre point.
        sigma: sampling radius.
        directions: the direction set (regenerable from its seed).
        signs: ``(1,)`` for forward differences, ``(1, -1)`` for central ones.
        needs_fx: whether ``f(x)`` itself is the first point to evaluate.
        fx: ``f(x)`` when the caller already knew it.
    """

    x: np.ndarray
    sigma: float
    directions: Any
    signs: tuple[int, ...]
    needs_fx: bool
    fx: float | None = None

    @property
    def items(self) -> list[tuple[int, int]]:
        """``(index, sign)`` of each perturbed evaluation, in the order of ``points``
        (after the centre, if ``needs_fx``); ``index == -1`` stands for the centre."""
        head = [(-1, 0)] if self.needs_fx else []
        n_dir = self.directions.n_directions
        return head + [(i, s) for s in self.signs for i in range(n_dir)]

    @property
    def points(self) -> np.ndarray:
        """All points to evaluate, one per row (centre first when ``needs_fx``)."""
        u = self.directions.matrix()
        head = int(self.needs_fx)
        out = np.empty((head + len(self.signs) * u.shape[0], self.x.size))
        if head:
            out[0] = self.x
        for k, s in enumerate(self.signs):  # x + s σ u, written in place (one pass each)
            block = out[head + k * u.shape[0]: head + (k + 1) * u.shape[0]]
            np.multiply(u, s * self.sigma, out=block)
            block += self.x
        return out

    @property
    def nfev(self) -> int:
        return len(self.signs) * self.directions.n_directions + int(self.needs_fx)

    def point(self, index: int, sign: int) -> np.ndarray:
        """One point, regenerated from ``(index, sign)`` (what a remote worker does)."""
        if index < 0:
            return self.x.copy()
        return self.x + sign * self.sigma * self.directions.row(index)


@dataclass(frozen=True)
class GradEstimate:
    """The result of one gradient estimate.

    Attributes:
        grad: the estimated gradient, shape ``(n,)``.
        fx: ``f(x)`` when it was evaluated or supplied, else None.
        nfev: the function evaluations this estimate used.
        info: diagnostics: ``cond`` (interpolation), ``n_used``, ``kept`` (rows kept by
            the shaping) and ``delta`` (their difference quotients δ_i).
    """

    grad: np.ndarray
    fx: float | None
    nfev: int
    info: dict = field(default_factory=dict)
