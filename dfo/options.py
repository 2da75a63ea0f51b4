"""Validation of options, with one-line errors: numbers (shared by the Minimizer and
:func:`dfo.minimize`) and the Minimizer's named choices and estimator."""

from __future__ import annotations

import numbers

import numpy as np

from .estimators import ESTIMATORS, get_estimator
from .optim import STEP_RULES, step_rule_names

#: the estimator of estimator="auto" (with its central version beside it)
AUTO_ESTIMATOR = "orthogonal"


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


def loop_choices(*, step: str, direction: str, nonfinite: str, eps_f) -> tuple[str, str]:
    """``(direction, eps_mode)`` of the Minimizer's named options, checked. ``direction="auto"``
    is L-BFGS for a rule that evaluates f (the line search; measured:
    bench/results/noisy_profiles.md) and the gradient otherwise; ``eps_mode`` is ``"auto"``,
    ``"repeats"`` or ``"fixed"`` (ε_f given as a number)."""
    if direction not in ("auto", "gradient", "lbfgs"):
        raise ValueError(f"unknown direction {direction!r}; known: auto, gradient, lbfgs")
    if step not in step_rule_names():
        raise ValueError(f"unknown step {step!r}; known: {', '.join(step_rule_names())}")
    if direction == "auto":
        direction = "lbfgs" if step == "armijo" or getattr(STEP_RULES.get(step), "evaluates", False) else "gradient"
    if nonfinite not in ("raise", "worst"):
        raise ValueError(f"nonfinite must be 'raise' or 'worst', got {nonfinite!r}")
    eps_mode = eps_f if isinstance(eps_f, str) else "fixed"
    if eps_mode not in ("auto", "repeats", "fixed"):
        raise ValueError(f"eps_f must be a number, 'auto' or 'repeats', got {eps_f!r}")
    return direction, eps_mode


def estimator_choice(estimator, options: dict) -> tuple[str | None, object, object | None]:
    """``(preset, estimator, central)`` of the Minimizer's ``estimator`` option: a preset name
    builds that preset with ``options``; ``"auto"`` builds :data:`AUTO_ESTIMATOR` and, as
    ``central``, its central version (the noise probe switches to it while noise dominates
    the forward error); an estimator object is used as it is (``preset`` None; ``options``
    must all be None)."""
    auto = isinstance(estimator, str) and estimator == "auto"
    name = AUTO_ESTIMATOR if auto else estimator
    preset = name if isinstance(name, str) else None
    built = get_estimator(name, **(options if preset else {}))
    if preset is None and any(v is not None for v in options.values()):
        raise ValueError("options cannot be applied to an estimator instance; build it with them")
    central = ESTIMATORS[name].central_version if preset in ESTIMATORS else None
    return preset, built, get_estimator(central, **options) if auto and central else None
