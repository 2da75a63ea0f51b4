"""Box bounds lb ≤ x ≤ ub: parsing (scipy ``Bounds`` or (low, high) pairs), projection,
and the longest feasible step along a direction.

The optimizer never evaluates outside the box: estimation points are moved inside
(see :meth:`Box.plan_query`) and line-search trials follow the projected path
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
        """``None``, a scipy ``Bounds`` or a sequence of n ``(low, high)`` pairs (``None`` =
        unbounded) -> :class:`Box` or None: the two forms ``scipy.optimize.minimize`` takes.

        An ``(lb, ub)`` pair of arrays is not one of them: at n = 2 it cannot be told from two
        (low, high) pairs (``([-2, -2], [2, 2])`` is read as scipy reads it, x₀ ∈ [−2, −2],
        x₁ ∈ [2, 2]), so elsewhere it is refused rather than guessed.

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
            if len(seq) != n or not all(np.ndim(b) == 1 and len(b) == 2 for b in seq):
                raise ValueError(f"bounds must be scipy.optimize.Bounds(lb, ub) or {n} (low, high) pairs, got "
                                 f"{len(seq)} entries (an (lb, ub) pair of arrays: use Bounds(lb, ub))")
            lb = [-np.inf if b[0] is None else b[0] for b in seq]
            ub = [np.inf if b[1] is None else b[1] for b in seq]
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

    def plan_query(self, query) -> tuple[np.ndarray, list]:
        """Points inside the box and a matrix W with query values ≈ W @ [evaluated values, f(x)].

        Forward: x + h u with |h| ≤ σ (flipped or shortened at a face); the value at
        x + σu is rebuilt as f(x) + (σ/h)(f(x+hu) − f(x)). Central: the pair ±t u with
        t ≤ σ, rebuilt as c ± (σ/t)(f₊ − f₋)/2; when no symmetric room is left, two
        points on the inner side give the slope. A direction blocked on both sides (x in
        a corner) uses the projected point P(x ± σu): only its blocked components err.
        """
        x, sig, box = query.x, query.sigma, self
        n_dir = query.directions.n_directions
        central = len(query.signs) == 2
        pts: list = []
        rows: list = []  # one row per query value: list of (point index, coefficient)

        def add(p):
            pts.append(np.asarray(p, dtype=float))
            return len(pts) - 1

        c0 = -1  # -1 stands for the known f(x) = query.fx (a constant term)
        if query.needs_fx:
            c0 = add(x)
            rows.append([(c0, 1.0)])
        pos_rows, neg_rows = [], []
        for i in range(n_dir):
            u = query.directions.row(i)
            up, down = box.step_limits(x, u)
            if not central:
                if up >= sig or down >= sig or max(up, down) > 1e-3 * sig:
                    h = sig if up >= sig else -sig if down >= sig else (up if up >= down else -down)
                    k = add(x + h * u)
                    pos_rows.append([(c0, 1.0 - sig / h), (k, sig / h)])
                else:  # cornered: the projected point (only the blocked components are lost)
                    pos_rows.append([(add(box.project(x + sig * u)), 1.0)])
                continue
            t = min(up, down, sig)
            if t >= 1e-3 * sig:
                kp, km = add(x + t * u), add(x - t * u)
                r = sig / t
                pos_rows.append([(kp, 0.5 + 0.5 * r), (km, 0.5 - 0.5 * r)])
                neg_rows.append([(kp, 0.5 - 0.5 * r), (km, 0.5 + 0.5 * r)])
                continue
            s, room = (1.0, up) if up >= down else (-1.0, down)
            h = min(sig, 0.5 * room)
            if h < 1e-3 * sig:  # cornered: the projected pair
                pos_rows.append([(add(box.project(x + sig * u)), 1.0)])
                neg_rows.append([(add(box.project(x - sig * u)), 1.0)])
                continue
            k1, k2 = add(x + s * h * u), add(x + 2 * s * h * u)
            slope = s * sig / h  # σ·(directional slope) = slope·(f2 − f1)
            pos_rows.append([(k1, 0.5 - slope), (k2, 0.5 + slope)])
            neg_rows.append([(k1, 0.5 + slope), (k2, 0.5 - slope)])
        rows += pos_rows + neg_rows
        W = np.zeros((len(rows), len(pts) + 1))  # last column: the constant f(x)
        for r, row in enumerate(rows):
            for k, c in row:
                W[r, k] += c
        return W, pts
