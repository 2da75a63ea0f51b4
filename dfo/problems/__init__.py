"""Test problems with known gradients, the Moré–Wild set, and noise models.

Example:
    >>> from dfo.problems import get_problem, Wild3
    >>> p = get_problem("mw04_rosenbrock_n2_m2_s0")
    >>> noisy = Wild3(p, eps_f=1e-3)
    >>> abs(noisy(p.x0) - p(p.x0)) <= noisy.noise_bound(p(p.x0))
    True
"""

from .base import Problem
from .classic import linear, quadratic, rosenbrock
from .more_wild import (
    MORE_WILD_FUNCTIONS,
    MORE_WILD_TABLE,
    MoreWildSpec,
    get_problem,
    more_wild_problem,
    more_wild_problems,
)
from .noise import (
    NOISE_MODELS,
    AdditiveGaussian,
    AdditiveUniform,
    NoiseModel,
    RelativeUniform,
    Wild3,
    wild3_psi,
)

__all__ = [
    "Problem",
    "quadratic",
    "linear",
    "rosenbrock",
    "MORE_WILD_TABLE",
    "MORE_WILD_FUNCTIONS",
    "MoreWildSpec",
    "more_wild_problem",
    "more_wild_problems",
    "get_problem",
    "NoiseModel",
    "AdditiveUniform",
    "AdditiveGaussian",
    "RelativeUniform",
    "Wild3",
    "wild3_psi",
    "NOISE_MODELS",
]
