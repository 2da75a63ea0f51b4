"""Shaping of the evaluated values before they are assembled into a gradient.

A shaper maps the table of perturbed values ``F`` (shape ``(N, k)``, column j is
sign ``signs[j]``: k = 1 forward, k = 2 central ``(f+, f-)``) and the centre
value ``f0`` to a subset of kept rows and transformed values. Shapers compose
left to right; any estimator accepts a tuple of them.

* :class:`TopDirections` (ARS V1-t/V2-t, Mania, Guy & Recht 2018): keep the b
  directions whose better side is best. ARS maximizes reward and keeps the
  largest max(r+, r-); we minimize, so we keep the smallest min(f+, f-).
* :class:`StdNormalize` (ARS V1/V2): divide by the standard deviation σ_R of
  the values kept, so the step size is invariant to the scale of the returns.
* :class:`CenteredRanks` (Salimans et al. 2017): replace the values by their
  ranks, mapped to [-0.5, 0.5]; robust to outliers and monotone transforms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


class Shaper(Protocol):
    def __call__(
        self, keep: np.ndarray, values: np.ndarray, f0: float | None
    ) -> tuple[np.ndarray, np.ndarray, float | None]:  # pragma: no cover - protocol
        """Return (kept row indices, values table of all rows, centre value)."""


@dataclass(frozen=True)
class TopDirections:
    """Keep the ``b`` directions whose best side has the lowest value (ARS top-b).

    Example:
        >>> keep, v, _ = TopDirections(1)(np.arange(2), np.array([[3., 1.], [0., 5.]]), None)
        >>> keep.tolist()
        [1]
    """

    b: int

    def __post_init__(self) -> None:
        if self.b < 1:
            raise ValueError(f"top-b needs b >= 1, got {self.b}")

    def __call__(self, keep, values, f0):
        if self.b >= keep.size:
            return keep, values, f0
        best = values[keep].min(axis=1)
        order = np.argsort(best, kind="stable")[: self.b]
        return np.sort(keep[order]), values, f0


@dataclass(frozen=True)
class StdNormalize:
    """Divide by the standard deviation of the kept values (ARS σ_R); no-op if it is 0."""

    def __call__(self, keep, values, f0):
        std = float(np.std(values[keep]))
        if std <= 0.0 or not np.isfinite(std):
            return keep, values, f0
        return keep, values / std, None if f0 is None else f0 / std


@dataclass(frozen=True)
class CenteredRanks:
    """Replace the kept values (and f0) by centered ranks in [-0.5, 0.5]."""

    def __call__(self, keep, values, f0):
        kept = values[keep]
        flat = kept.ravel() if f0 is None else np.append(kept.ravel(), f0)
        ranks = np.empty(flat.size)
        ranks[np.argsort(flat, kind="stable")] = np.arange(flat.size)
        ranks = ranks / max(flat.size - 1, 1) - 0.5
        out = values.astype(float).copy()
        out[keep] = ranks[: kept.size].reshape(kept.shape)
        return keep, out, None if f0 is None else float(ranks[-1])


def apply_shaping(
    shaping: tuple[Shaper, ...], values: np.ndarray, f0: float | None
) -> tuple[np.ndarray, np.ndarray, float | None]:
    """Run the shapers in order; returns (kept rows, values, f0)."""
    keep = np.arange(values.shape[0])
    for shaper in shaping:
        keep, values, f0 = shaper(keep, values, f0)
    return keep, values, f0
