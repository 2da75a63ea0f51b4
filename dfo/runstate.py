"""The typed state of a :class:`dfo.Minimizer` run: :class:`RunState` and its parts.

``Minimizer.state_dict()`` is generated from these fields (:func:`dfo.state.to_tree`), so a
field added here is saved and restored with no further code.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .estimators.base import Query
from .lbfgs import LBFGSMemory
from .noise import NoiseProbe


@dataclass
class StallWindow:
    """The rounding-level stall test on the last ``size`` recorded f values, in O(size):
    the best value older than the window is kept as one number."""

    size: int
    recent: list = field(default_factory=list)
    best_before: float = float("inf")
    older: int = 0

    def push(self, f: float) -> None:
        self.recent.append(f)
        if len(self.recent) > self.size:
            old = self.recent.pop(0)
            self.older += 1
            if np.isfinite(old):
                self.best_before = min(self.best_before, old)

    def stalled(self, eps_f: float) -> bool:
        """The window's best is not 2ε_f below every earlier value."""
        recent = np.asarray(self.recent, dtype=float)
        if not (self.older and np.isfinite(self.best_before) and np.isfinite(recent).any()):
            return False
        return bool(np.nanmin(recent) > self.best_before - 2.0 * eps_f)


@dataclass
class Pending:
    """The pending request and what its tell needs (estimate: how it was drawn)."""

    kind: str
    points: np.ndarray
    seeds: np.ndarray | None = None
    items: list = field(default_factory=list)
    asked: bool = False
    extra: int = 0  # centre repeats after an estimate's own points
    plan: np.ndarray | None = None  # bounds: query values = plan @ [values, f(x)]
    ask_rng: dict | None = None  # generator and estimator state before the query was drawn
    ask_estimator: dict | None = None
    query: Query | None = field(default=None, metadata={"save": False})  # redrawn on load


@dataclass
class RunState:
    """Everything a run knows; ``state_dict`` is generated from these fields."""

    x: np.ndarray
    rng: np.random.Generator
    pending: Pending | None = None
    probe: NoiseProbe | None = None
    window: StallWindow | None = None
    fx: float | None = None
    grad: np.ndarray | None = None
    direction: np.ndarray | None = None
    pair_s: np.ndarray | None = None  # the last accepted step and the gradient before it (L-BFGS)
    pair_g: np.ndarray | None = None
    centre_seeds: np.ndarray | None = None
    trials: int = 0
    rule_state: dict = field(default_factory=dict)
    memory: LBFGSMemory | None = None
    eps_f: float = 0.0
    noise_kind: str | None = None
    ecnoise_h: float | None = None
    L: float | None = None
    M: float | None = None
    slope: float | None = None
    sigma: float = float("nan")
    use_central: bool = False
    nfev: int = 0
    nit: int = 0
    n_nonfinite: int = 0
    recoveries: int = 0
    restarts: int = 0
    samples: int = 1  # evaluations averaged per point (sample averaging, Minimizer averaging=True)
    failed_streak: int = 0
    floor_hits: int = 0
    stall_hits: int = 0
    stopped: str | None = None
    status: int | None = None
