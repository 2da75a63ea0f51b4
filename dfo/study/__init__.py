"""Estimator studies: how accurate each gradient estimator is, at what cost.

* :mod:`.metrics`: relative error quantiles, p_θ, cosine, bias, variance.
* :mod:`.functions`: batched study functions with known gradients, noise models.
* :mod:`.runner`: the estimator × N × σ × noise × repeats grid (vectorized).
* :mod:`.theory`: exact second moments, Berahas et al. bounds and sample counts.
* :mod:`.reference`: reference gradients of seeded objectives (RL) by common random numbers.
* :mod:`.report`: tidy CSV, markdown tables, plots.
* :mod:`.profiles`: data and performance profiles (Moré & Wild 2009).
* :mod:`.presets`: the ``berahas`` and ``profiles`` studies of ``dfo study``.
"""

from .functions import Noise, StudyFunction, from_callable, from_problem, make_function
from .metrics import estimate_metrics, relative_errors
from .runner import STANDARD, StudySpec, run_cell, run_study

__all__ = ["Noise", "StudyFunction", "from_callable", "from_problem", "make_function",
           "estimate_metrics", "relative_errors", "STANDARD", "StudySpec", "run_cell", "run_study"]
