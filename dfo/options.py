"""Validation of numeric options, with one-line errors (shared by the Minimizer and
:func:`dfo.minimize`)."""

from __future__ import annotations

import numbers

import numpy as np


def int_option(name: str, value, *, low: int = 1, none_ok: bool = True) -> int | None:
    """An integer option (not a bool, float or string), at least ``low``."""
    if value is None and none_ok:
        return None
    if isinstance(value, numbers.Real) and not isinstance(value, bool | numbers.Integral) and \
            float(value).is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


def float_option(name: str, value, *, positive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not np.isfinite(value) or (value <= 0 if positive else value < 0):
        raise ValueError(f"{name} must be a {'positive' if positive else 'non-negative'} finite number, got {value}")
    return value
