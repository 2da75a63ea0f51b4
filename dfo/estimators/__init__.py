"""Gradient estimators: named presets of directions × differences × assembly.

Every preset has one entry in :data:`ESTIMATORS` (:mod:`.registry`) holding its
factory, radius rule, central flag, theory curve and low-rank flag.

>>> import numpy as np, dfo
>>> dfo.ESTIMATORS["cfd"].central, dfo.ESTIMATORS["cfd"].radius.needs
(True, 'M')
>>> r = dfo.estimate_gradient(lambda x: float(x @ x), np.ones(3), estimator="cfd", sigma=1e-3)
>>> np.allclose(r.grad, 2.0), r.nfev
(True, 6)
"""

from __future__ import annotations

import numpy as np

from ..noise import auto_radius
from ..rng import as_generator
from .assembly import RankDeficientError
from .base import GradEstimate, NonFiniteValueError, Query
from .directions import StandardDirections
from .finite_difference import FiniteDifferenceEstimator
from .lowrank import LowRankDirections, LowRankEstimator
from .registry import ESTIMATORS, Preset, register
from .shaping import CenteredRanks, StdNormalize, TopDirections


def get_estimator(name, **options):
    """Build the preset ``name`` with ``options`` (n_directions, sigma, shaping, ...).

    An estimator object (anything with ``ask``/``tell``) is returned unchanged; options
    left at None are ignored.
    """
    options = {k: v for k, v in options.items() if v is not None}
    if hasattr(name, "ask") and hasattr(name, "tell"):
        if options:
            raise ValueError("options cannot be applied to an estimator instance; build it with them")
        return name
    if name not in ESTIMATORS:
        raise ValueError(f"unknown estimator {name!r}; known: {', '.join(sorted(ESTIMATORS))}")
    try:
        return ESTIMATORS[name](**options)
    except TypeError as exc:
        raise TypeError(f"estimator {name!r}: {exc}") from None


def estimate_gradient(
    fun, x, *, estimator="orthogonal", n_directions: int | None = None, sigma: float | None = None,
    fx: float | None = None, rng=None, **options
) -> GradEstimate:
    """Estimate ∇f(x) with one call: ask, evaluate ``fun`` serially, tell.

    Args:
        fun: ``fun(x) -> float``.
        x: the point, a 1-D array.
        estimator: a preset name from :data:`ESTIMATORS` or an estimator object.
        n_directions: N (default n).
        sigma: sampling radius. None: the automatic radius of :func:`auto_radius` (the
            same default as :func:`dfo.minimize`): its evaluations count in ``nfev`` and
            ``info["auto_radius"]`` reports σ, ε_f, L, M and their cost.
        fx: f(x) if known (saves an evaluation for forward differences).
        rng: None, an int seed or a numpy Generator.

    Returns:
        :class:`GradEstimate` with ``grad``, ``fx`` (when evaluated), ``nfev``, ``info``.
    """
    if fx is not None:  # N-E1, N-E2: a given f(x) must be a finite number, as every evaluated value must
        if isinstance(fx, (bool, str, bytes)) or not np.isscalar(fx) and np.ndim(fx) != 0:
            raise ValueError(f"fx must be a finite number (f at x), got {fx!r}")
        try:
            fx = float(fx)
        except (TypeError, ValueError):
            raise ValueError(f"fx must be a finite number (f at x), got {fx!r}") from None
        if not np.isfinite(fx):
            raise ValueError(f"fx must be a finite number (f at x), got {fx}")
    gen = as_generator(rng)
    probe = None
    if sigma is None and isinstance(estimator, str):
        get_estimator(estimator, n_directions=n_directions, **options)  # bad names/options fail first
        probe = auto_radius(fun, x, estimator, n_directions=n_directions, rng=gen)
        sigma = probe["sigma"]
        if fx is None and probe["noise_kind"] == "deterministic":
            fx = probe["fx"]  # the same value a new evaluation would give
    est = get_estimator(estimator, n_directions=n_directions, sigma=sigma, **options)
    query = est.ask(x, gen, fx=fx)
    values = np.array([float(fun(p)) for p in query.points])
    result = est.tell(query, values)
    if probe is None:
        return result
    return GradEstimate(grad=result.grad, fx=result.fx, nfev=result.nfev + probe["nfev"],
                        info={**result.info, "auto_radius": probe})


__all__ = [
    "ESTIMATORS", "Preset", "register", "get_estimator", "estimate_gradient", "auto_radius", "GradEstimate", "Query",
    "FiniteDifferenceEstimator", "LowRankEstimator", "StandardDirections", "LowRankDirections",
    "TopDirections", "StdNormalize", "CenteredRanks", "NonFiniteValueError", "RankDeficientError",
]
