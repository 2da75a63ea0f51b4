"""Box bounds lb ≤ x ≤ ub: parsing (scipy ``Bounds`` or (low, high) pairs), projection,
and the longest feasible step along a direction.

The optimizer never evaluates outside the box: estimation points are moved inside
(see :meth:`Box.step_limits`) and line-search trials follow the projected path
P(x + α d) (Bertsekas 1976; the Armijo test then uses the projected step).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Box:
    """The box ``lb ≤ x ≤ ub`` (infinite entries allowed)."""

    lb: np.ndarray
    ub: np.ndarray

    @classmethod
    def parse(cls, bounds, n: int) -> Box | None:
        """``None``, a scipy ``Bounds``, an ``(lb, ub)`` pair of arrays or scalars, or a
        sequence of n ``(low, high)`` pairs (``None`` = unbounded) -> :class:`Box` or None.

        Example:
            >>> Box.parse([(0, 1), (None, 2)], 2).ub.tolist()
            [1.0, 2.0]
        """
        if bounds is None:
            return None
        if hasattr(bounds, "lb") and hasattr(bounds, "ub"):
            lb, ub = bounds.lb, bounds.ub
        else:
            try:
                seq = list(bounds)
            except TypeError:
                raise ValueError(f"bounds must be scipy.optimize.Bounds or (low, high) pairs, got {bounds!r}") from None
            if len(seq) == n and all(np.ndim(b) == 1 and len(b) == 2 for b in seq) and not (
                    n == 2 and all(np.ndim(b) == 0 for b in seq)):
                lb = [-np.inf if b[0] is None else b[0] for b in seq]
                ub = [np.inf if b[1] is None else b[1] for b in seq]
            elif len(seq) == 2:
                lb, ub = seq
            else:
                raise ValueError(f"bounds must hold {n} (low, high) pairs, got {len(seq)} entries")
        try:
            lb = np.broadcast_to(np.asarray(lb, dtype=float), (n,)).copy()
            ub = np.broadcast_to(np.asarray(ub, dtype=float), (n,)).copy()
        except (TypeError, ValueError) as exc:
            raise ValueError(f"bounds: {exc}") from None
        if np.isnan(lb).any() or np.isnan(ub).any():
            raise ValueError("bounds contain NaN")
        if np.any(lb > ub):
            i = int(np.flatnonzero(lb > ub)[0])
            raise ValueError(f"bounds: lower bound {lb[i]} > upper bound {ub[i]} at index {i}")
        if np.all(np.isinf(lb)) and np.all(np.isinf(ub)):
            return None
        return cls(lb, ub)

    def project(self, x: np.ndarray) -> np.ndarray:
        return np.minimum(np.maximum(x, self.lb), self.ub)

    def contains(self, x: np.ndarray) -> bool:
        return bool(np.all(x >= self.lb) and np.all(x <= self.ub))

    def step_limits(self, x: np.ndarray, u: np.ndarray) -> tuple[float, float]:
        """(t₊, t₋) ≥ 0: the longest steps with x + t u and x − t u inside the box."""
        with np.errstate(divide="ignore", invalid="ignore"):
            up = np.where(u > 0, (self.ub - x) / u, np.where(u < 0, (self.lb - x) / u, np.inf))
            down = np.where(u > 0, (x - self.lb) / u, np.where(u < 0, (x - self.ub) / u, np.inf))
        return float(max(up.min(), 0.0)), float(max(down.min(), 0.0))

    def width(self) -> float:
        """The smallest side of the box."""
        return float(np.min(self.ub - self.lb))
