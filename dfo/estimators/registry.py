"""The estimator registry: one entry per named preset, holding every fact about it.

An entry says how to build the preset (``factory``), whether its differences are
central, which radius rule it uses (:class:`dfo.radius.RadiusRule`: which Lipschitz
constant, which n-dependence), which exact second-moment curve the theory overlays
use (:mod:`dfo.study.theory`), whether the error is deterministic (exact on linear
functions) and whether it is a low-rank (matrix-block) estimator. Adding an estimator
is one file (its class) plus one :class:`Preset` here; an entry without a radius rule
cannot be built.

Example:
    >>> ESTIMATORS["central-sphere"].radius.needs, ESTIMATORS["central-sphere"].central
    ('M', True)
    >>> ESTIMATORS["interpolation"].nfev(10)  # N + 1 (forward: f(x) too)
    11
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable

from ..radius import (CENTRAL_FD, CENTRAL_GAUSSIAN, CENTRAL_SPHERE, FORWARD_FD, GAUSSIAN, SPHERE,
                      RadiusRule, name_rule)
from .finite_difference import FiniteDifferenceEstimator
from .lowrank import LowRankEstimator
from .lowrank_spec import LOWRANK_METHODS

#: second-moment curves known to :mod:`dfo.study.theory` (None: no formula)
THEORY_CURVES = ("gaussian", "sphere", "orthogonal", "exact")


@dataclass(frozen=True)
class Preset:
    """A named estimator preset.

    Attributes:
        name: the preset name.
        factory: ``factory(**options) -> estimator``.
        radius: its sampling-radius rule (required).
        central: central (antithetic) differences: 2N evaluations, no f(x).
        theory: the exact relative-second-moment curve on linear functions
            (``gaussian`` (n+1)/N, ``sphere`` (n−1)/N, ``orthogonal`` m(n−m)/N², ``exact`` 0),
            or None when no formula is given.
        low_rank: a matrix-block (low-rank) estimator.
        central_version: for a forward preset, the preset with the same directions and
            central differences (what an optimizer switches to when noise dominates).
        note: anything a user should know about the rule or the theory.
    """

    name: str
    factory: Callable[..., Any] = field(repr=False)
    radius: RadiusRule
    central: bool
    theory: str | None = None
    low_rank: bool = False
    central_version: str | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.radius, RadiusRule):
            raise TypeError(f"preset {self.name!r}: a radius rule (dfo.radius.RadiusRule) is required")
        if self.theory is not None and self.theory not in THEORY_CURVES:
            raise ValueError(f"preset {self.name!r}: unknown theory curve {self.theory!r}")

    def __call__(self, **options):
        """Build the estimator with ``options`` (n_directions, sigma, shaping, ...)."""
        return self.factory(**options)

    @property
    def deterministic(self) -> bool:
        """Exact on linear functions for N = n (its error bound is deterministic)."""
        return self.theory == "exact"

    def nfev(self, n_directions: int) -> int:
        """Evaluations of one estimate with N directions (f(x) counted for forward ones)."""
        return 2 * int(n_directions) if self.central else int(n_directions) + 1


_FD = FiniteDifferenceEstimator
_LOWRANK_NOTE = "CFD's per-direction rule, kept as before; no bound derived for matrix directions"


def _fd(name, directions, central, radius, theory, central_version=None, **kw) -> Preset:
    return Preset(name, partial(_FD, directions=directions, central=central, **kw), radius, central, theory,
                  central_version=central_version)


#: preset name -> :class:`Preset` (callable: ``ESTIMATORS[name](**options)`` builds it)
ESTIMATORS: dict[str, Preset] = {p.name: p for p in (
    _fd("ffd", "coordinate", False, FORWARD_FD, "exact", "cfd"),
    _fd("cfd", "coordinate", True, CENTRAL_FD, "exact"),
    _fd("gaussian", "gaussian", False, GAUSSIAN, "gaussian", "central-gaussian"),
    _fd("central-gaussian", "gaussian", True, CENTRAL_GAUSSIAN, "gaussian"),
    _fd("sphere", "sphere", False, SPHERE, "sphere", "central-sphere"),
    _fd("central-sphere", "sphere", True, CENTRAL_SPHERE, "sphere"),
    _fd("orthogonal", "orthogonal", False, FORWARD_FD, "orthogonal", "central-orthogonal"),
    _fd("central-orthogonal", "orthogonal", True, CENTRAL_FD, "orthogonal"),
    _fd("interpolation", "orthogonal", False, FORWARD_FD, "exact", "central-interpolation", interpolation=True),
    _fd("central-interpolation", "orthogonal", True, CENTRAL_FD, "exact", interpolation=True),
    Preset("subzero", partial(LowRankEstimator, kind="subzero"), CENTRAL_FD, True, low_rank=True, note=_LOWRANK_NOTE),
    Preset("lozo", partial(LowRankEstimator, kind="lozo"), CENTRAL_FD, True, low_rank=True, note=_LOWRANK_NOTE),
    Preset("lozo-m", partial(LowRankEstimator, kind="lozo", momentum=LOWRANK_METHODS["lozo-m"].momentum), CENTRAL_FD, True,
           low_rank=True, note=_LOWRANK_NOTE),
)}


def register(preset: Preset, *, replace: bool = False) -> Preset:
    """Add a preset (a user's own estimator) to :data:`ESTIMATORS`."""
    if not isinstance(preset, Preset):
        raise TypeError(f"register() takes a Preset, got {type(preset).__name__}")
    if preset.name in ESTIMATORS and not replace:
        raise ValueError(f"estimator {preset.name!r} is already registered (pass replace=True)")
    ESTIMATORS[preset.name] = preset
    name_rule(preset.name, preset.radius)
    return preset


for _preset in ESTIMATORS.values():
    name_rule(_preset.name, _preset.radius)
