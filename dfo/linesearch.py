"""Noise-tolerant Armijo backtracking.

Berahas, Cao & Scheinberg (2021), "Global convergence rate analysis of a generic
line search algorithm with noise" (SIAM J. Optim.): with an estimated gradient g
and function values accurate to ε_f, a step α is accepted when

    f(x − α g) ≤ f(x) − c1 α ‖g‖² + 2 ε_f.

Along a general descent direction d (L-BFGS, as in the experiments of Berahas,
Cao, Choromanski & Scheinberg 2022) the test reads f(x + α d) ≤ f(x) + c1 α gᵀd + 2 ε_f.

The 2ε_f slack keeps noise from rejecting every step. After an accepted step α
grows (α ← min(α_max, α / τ)); after a rejected trial it shrinks (α ← τ α). A trial
whose value is NaN or inf counts as rejected: overshooting into an overflow is the
usual cause, and a shorter step is the remedy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, kw_only=True)
class ArmijoLineSearch:
    """Hyperparameters of the noise-tolerant backtracking.

    The defaults τ = 0.3 and 12 trials (α may shrink by 0.3¹² ≈ 5e-7 in one search) were
    picked on the noisy Moré–Wild set (relative and wild3 noise 1e-3, 100 (n+1)
    evaluations), where they beat τ = 0.5 with 10, 20 or 30 trials and τ = 0.2.

    Args:
        alpha0: first trial step.
        alpha_max: cap on the step after successes.
        alpha_min: a step shorter than alpha_min·max(‖x‖∞, 1) counts as a failed search
            (the optimizer then re-measures the noise: a recovery).
        tau: shrink factor in (0, 1).
        c1: sufficient-decrease constant in (0, 1).
        eps_f: the noise bound ε_f (0 for noise-free functions).
        max_backtracks: trials per iteration before the search counts as failed
            (x is kept; α has shrunk by τ^max_backtracks).
    """

    alpha0: float = 1.0
    alpha_max: float = 1e3
    alpha_min: float = 1e-12
    tau: float = 0.3
    c1: float = 1e-4
    eps_f: float = 0.0
    max_backtracks: int = 12
    evaluates = True  # a searching step rule (dfo.optim.STEP_RULES): its trials are evaluated

    def __post_init__(self) -> None:
        for name in ("alpha0", "alpha_max", "alpha_min", "tau", "c1", "eps_f"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
                raise ValueError(f"line search {name} must be a number, got {value!r}")
        if not 0 < self.tau < 1:
            raise ValueError(f"tau must be in (0, 1), got {self.tau}")
        if not 0 < self.c1 < 1:
            raise ValueError(f"c1 must be in (0, 1), got {self.c1}")
        if not 0 < self.alpha0 <= self.alpha_max:
            raise ValueError(f"need 0 < alpha0 <= alpha_max, got {self.alpha0}, {self.alpha_max}")
        if isinstance(self.max_backtracks, bool) or not isinstance(self.max_backtracks, int) \
                or self.max_backtracks < 1:
            raise ValueError(f"max_backtracks must be an integer >= 1, got {self.max_backtracks!r}")
        if self.eps_f < 0:
            raise ValueError(f"eps_f must be >= 0, got {self.eps_f}")

    def accepts(self, f_trial: float, fx: float, alpha: float, decrease: float, eps_f: float | None = None) -> bool:
        """The noise-tolerant Armijo test; ``decrease`` = −gᵀd (= ‖g‖² for d = −g); ``eps_f``:
        the run's measured noise level in place of the rule's own."""
        eps = self.eps_f if eps_f is None else eps_f
        return bool(np.isfinite(f_trial)) and f_trial <= fx - self.c1 * alpha * decrease + 2.0 * eps

    def grow(self, alpha: float) -> float:
        return min(self.alpha_max, alpha / self.tau)

    def shrink(self, alpha: float) -> float:
        return alpha * self.tau

    def init(self, n: int) -> dict:
        """The rule's state: the trial step α (None: the Minimizer sizes the first step)."""
        return {"alpha": self.alpha0}
