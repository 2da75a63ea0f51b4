"""Checks on the values and points that cross the objective boundary (one home, used by
the estimators, the noise probe and the Minimizer)."""

from __future__ import annotations

from typing import Any

import numpy as np


class NonFiniteValueError(ValueError):
    """The objective returned NaN or inf where a finite value was needed."""


def check_finite(values: np.ndarray, what: str = "objective") -> np.ndarray:
    """Return ``values`` as a float array, raising a clear error on NaN/inf."""
    values = np.asarray(values, dtype=float)
    bad = ~np.isfinite(values)
    if bad.any():
        idx = np.flatnonzero(bad.ravel())
        raise NonFiniteValueError(
            f"the {what} returned a non-finite value ({values.ravel()[idx[0]]}) at "
            f"{idx.size} of {values.size} evaluations (first at index {idx[0]}); "
            "dfo does not guess a replacement: fix or clip the objective"
        )
    return values


def as_point(x: Any, n: int | None = None, name: str = "x") -> np.ndarray:
    """Validate a point: a finite 1-D float array (of length ``n`` when given)."""
    arr = np.asarray(x, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    return arr
