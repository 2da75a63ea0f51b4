"""Turning evaluated values into a gradient: differences, shaping, assembly.

Shared by every estimator (standard and low-rank directions alike):

    δ_i = (f(x + σ u_i) − f(x)) / σ                   forward
    δ_i = (f(x + σ u_i) − f(x − σ u_i)) / (2σ)         central
    g   = c · Σ_{i kept} δ_i (w ⊙ u_i)                 Monte-Carlo average
    g   = argmin_g ‖U g − δ‖²                          interpolation (least squares)
"""

from __future__ import annotations

import numpy as np

from .base import GradEstimate, Query, check_finite
from .shaping import apply_shaping


class RankDeficientError(ValueError):
    """The directions of an interpolation estimate do not span R^n."""


def values_table(query: Query, values) -> tuple[np.ndarray, float | None]:
    """Split ``values`` (in ``query.points`` order) into the ``(N, k)`` table and f(x)."""
    values = check_finite(np.asarray(values, dtype=float).ravel())
    if values.size != query.nfev:
        raise ValueError(f"expected {query.nfev} values for this query, got {values.size}")
    f0 = query.fx
    if query.needs_fx:
        f0, values = float(values[0]), values[1:]
    table = values.reshape(len(query.signs), query.directions.n_directions).T
    return table, f0


def differences(query: Query, table: np.ndarray, f0: float | None) -> np.ndarray:
    """Directional difference quotients δ_i from the (shaped) value table."""
    if len(query.signs) == 2:
        return (table[:, 0] - table[:, 1]) / (2.0 * query.sigma)
    if f0 is None:
        raise ValueError("forward differences need f(x): pass fx or let the query evaluate it")
    return (table[:, 0] - f0) / query.sigma


def assemble(
    query: Query, values, *, shaping=(), interpolation: bool = False, scale=None, weights=None
) -> GradEstimate:
    """The full tell step. ``scale(n_used)`` gives the Monte-Carlo constant c and
    ``weights`` (shape (n,) or None) the per-coordinate assembly weights w."""
    table, f0 = values_table(query, values)
    keep, shaped, f0_shaped = apply_shaping(tuple(shaping), table, f0)
    delta = differences(query, shaped[keep], f0_shaped)
    u = query.directions.matrix()
    if not (u.flags.c_contiguous and keep.size == u.shape[0] and np.array_equal(keep, np.arange(keep.size))):
        u = u[keep]  # the rows the shaping kept (a copy: skipped when it keeps every row in order)
    info: dict = {"n_used": int(keep.size), "kept": keep, "delta": delta}
    if interpolation:
        n = u.shape[1]
        if keep.size < n:
            raise RankDeficientError(
                f"interpolation needs at least n={n} directions, got {keep.size}"
            )
        grad, _, rank, s = np.linalg.lstsq(u, delta, rcond=None)  # s: singular values of U
        cond = float(s[0] / s[-1]) if s[-1] > 0 else np.inf
        if rank < n or not np.isfinite(cond):
            raise RankDeficientError(
                f"interpolation directions are rank-deficient (rank {rank} < n={n}, cond={cond:.3g}); "
                "use independent directions, e.g. orthogonal ones"
            )
        info["cond"] = cond
    else:
        c = scale(keep.size) if scale is not None else 1.0 / keep.size
        grad = c * (delta @ u)
        if weights is not None:
            grad = grad * weights
    return GradEstimate(grad=grad, fx=f0, nfev=query.nfev, info=info)
