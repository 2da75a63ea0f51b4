"""dfo: derivative-free optimization.

Gradient estimators (coordinate, Gaussian smoothing, sphere, orthogonal,
interpolation, SubZero, LOZO), a noise-tolerant line-search SGD, and evaluators
that run the objective serially or in parallel with joblib.

>>> import numpy as np, dfo
>>> res = dfo.minimize(lambda x: float(np.sum((x - 1) ** 2)), np.zeros(5), estimator="cfd", maxfev=500)
>>> bool(np.allclose(res.x, 1, atol=1e-4))
True
"""

from __future__ import annotations

from .estimators import (
    ESTIMATORS,
    GradEstimate,
    NonFiniteValueError,
    RankDeficientError,
    estimate_gradient,
    get_estimator,
)
from .minimize import minimize
from .minimizer import Minimizer
from .noise import estimate_noise
from .radius import sampling_radius

__version__ = "0.1.0"


def __getattr__(name: str):
    """``dfo.train``: RL policy search (the ``policies`` package, ``rl`` extra), imported on first use."""
    if name == "train":
        from policies.api import train

        return train
    raise AttributeError(f"module 'dfo' has no attribute {name!r}")

__all__ = [
    "ESTIMATORS", "GradEstimate", "NonFiniteValueError", "RankDeficientError",
    "estimate_gradient", "get_estimator", "minimize", "Minimizer",
    "sampling_radius", "estimate_noise",
]
