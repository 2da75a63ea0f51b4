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

#: Names reached lazily, on first attribute access: ``name -> "module:attribute"`` (``"module:"``
#: for the module itself). This table is the one route from the core to the packages above it
#: (``dfo.train`` lives in ``policies``) and to its optional subpackages (``dfo.torch`` needs
#: torch): the core imports none of them, and tests/test_package_edges.py checks the table.
LAZY: dict[str, str] = {
    "train": "dfo.policies.api:train",
    "torch": "dfo.torch:",
    "study": "dfo.study:",
    "problems": "dfo.problems:",
}


def __getattr__(name: str):
    """``dfo.train`` (RL policy search, ``rl`` extra) and the subpackages, imported on first use."""
    target = LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'dfo' has no attribute {name!r}")
    import importlib

    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        extra = {"train": "rl", "torch": "torch"}.get(name)
        hint = f" (pip install 'dfo-toolkit[{extra}]')" if extra else ""
        raise ImportError(f"dfo.{name} needs {exc.name!r}, which is not installed{hint}") from exc
    value = getattr(module, attr) if attr else module
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *LAZY})

__all__ = [
    "ESTIMATORS", "GradEstimate", "NonFiniteValueError", "RankDeficientError",
    "estimate_gradient", "get_estimator", "minimize", "Minimizer",
    "sampling_radius", "estimate_noise",
]
