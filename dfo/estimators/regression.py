"""Regression gradients that reuse the differences of recent iterations.

Choromanski, Pacchiano, Parker-Holder, Tang, Jain, Yang, Iscen, Hsu, Sindhwani (2019),
"Provably robust blackbox optimization for reinforcement learning" (RBO), and
Choromanski, Pacchiano, Parker-Holder, Tang, Sindhwani (2019), "From complexity to
simplicity: adaptive ES-active subspaces for blackbox optimization", fit the gradient by
(regularized) least squares on value differences, and let the regression include the
perturbations of *past* iterations, so a rollout is used more than once.

Here the rows are antithetic pairs: δ_i = (f(x_p + σu_i) − f(x_p − σu_i)) / (2σ) ≈ u_iᵀ∇f(x_p)
does not depend on the offset x_p − x_t, only on how much the gradient moved since
iteration p; so the last ``memory`` iterations' kept rows (u_i, δ_i, after the base
estimator's shaping) are pooled with the current ones. With m pooled rows,
``A = (1/m) Σ u_i u_iᵀ``, ``b = (1/m) Σ δ_i u_i`` and ``s I = E[u uᵀ]`` of the direction
family (s = 1 for Gaussian, 1/n for unit directions; read off the family's Monte-Carlo
constant c(m) = 1/(m s)), the estimate is

    g = ((1 − w) A + w s I)⁻¹ b,     0 ≤ w ≤ 1 (``shrink``).

``w = 1`` is the Monte-Carlo average ``c(m) Σ δ_i u_i`` over the pooled rows (exactly the
base estimator when ``memory = 0``); ``w = 0`` is the least-squares fit min ‖U g − δ‖²
(the ``interpolation`` assembly when ``memory = 0`` and the rows span Rⁿ); in between it
is ridge regression shrunk toward the family's isotropic second moment (RBO's ℓ2
penalty, scaled so the estimate keeps the Monte-Carlo estimator's size). A solve costs
O(n³) once per iteration: meant for policies with up to a few thousand parameters.

Example:
    >>> import numpy as np
    >>> from dfo.estimators import FiniteDifferenceEstimator
    >>> base = FiniteDifferenceEstimator(directions="gaussian", central=True, n_directions=2, sigma=1e-3)
    >>> est = RegressionEstimator(base=base, memory=3, shrink=0.0)
    >>> f = lambda x: float(np.array([1.0, -2.0, 0.5]) @ x)
    >>> for k in range(2):  # 2 x 2 rows span R^3 after the second iteration
    ...     q = est.ask(np.zeros(3), rng=k)
    ...     g = est.tell(q, [f(p) for p in q.points]).grad
    >>> np.round(g, 6).tolist()
    [1.0, -2.0, 0.5]
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .base import GradEstimate, Query


@dataclass(kw_only=True)
class RegressionEstimator:
    """The base estimator's directions and shaping; the gradient by regression over recent rows.

    Args:
        base: a central-difference estimator with standard directions (its ``tell`` must
            report the kept rows and their differences in ``info``).
        memory: past iterations whose kept rows join the fit (0 = this iteration only).
        shrink: w in [0, 1], the weight of the isotropic second moment (1 = Monte Carlo,
            0 = least squares).
    """

    base: object
    memory: int = 4
    shrink: float = 0.0
    _rows: list = field(default_factory=list, repr=False)  # [(u (k, n), delta (k,))], oldest first

    def __post_init__(self) -> None:
        if int(self.memory) < 0:
            raise ValueError(f"memory must be >= 0, got {self.memory}")
        if not 0.0 <= float(self.shrink) <= 1.0:
            raise ValueError(f"shrink must be in [0, 1], got {self.shrink}")
        if not getattr(self.base, "central", False):
            raise ValueError("regression reuse needs central (antithetic) differences: a forward difference "
                             "f(x_p + σu) − f(x_p) depends on where x_p was")

    # the Minimizer reads these from the estimator it is given
    @property
    def sigma(self) -> float:
        return self.base.sigma

    @property
    def central(self) -> bool:
        return True

    @property
    def n_directions(self):
        return self.base.n_directions

    @property
    def shaping(self) -> tuple:
        return self.base.shaping

    def ask(self, x, rng=None, *, fx: float | None = None) -> Query:
        return self.base.ask(x, rng, fx=fx)

    def tell(self, query: Query, values) -> GradEstimate:
        est = self.base.tell(query, values)
        keep, delta = est.info["kept"], np.asarray(est.info["delta"], dtype=float)
        u = query.directions.matrix()[keep]
        rows = [*self._rows, (u, delta)]
        self._rows = rows[max(0, len(rows) - int(self.memory)):] if self.memory else []
        if len(rows) == 1 and self.shrink == 1.0:
            return est  # the base estimate itself
        grad = pooled_regression(np.vstack([r[0] for r in rows]), np.concatenate([r[1] for r in rows]),
                                 float(self.shrink), query.directions.mc_scale)
        info = {**est.info, "n_pooled": int(sum(r[1].size for r in rows))}
        return GradEstimate(grad=grad, fx=est.fx, nfev=est.nfev, info=info)

    def state_dict(self) -> dict:
        return {"rows": [[u.copy(), d.copy()] for u, d in self._rows]}

    def load_state_dict(self, state: dict) -> None:
        self._rows = [(np.array(u, dtype=float), np.array(d, dtype=float)) for u, d in state["rows"]]


def pooled_regression(u: np.ndarray, delta: np.ndarray, shrink: float, mc_scale) -> np.ndarray:
    """``g = ((1 − w) A + w s I)⁻¹ b`` for rows ``u`` (m, n) and differences ``delta`` (m,).

    ``mc_scale(m)`` is the family's Monte-Carlo constant c(m) = 1/(m s) (module doc).
    """
    m, n = u.shape
    s = 1.0 / (m * float(mc_scale(m)))
    b = (delta @ u) / m
    if shrink == 1.0:
        return b / s
    if shrink == 0.0:  # least squares; the minimum-norm fit while fewer than n rows are pooled
        return np.linalg.lstsq(u, delta, rcond=None)[0]
    a = (1.0 - shrink) * (u.T @ u) / m + shrink * s * np.eye(n)  # positive definite
    return np.linalg.solve(a, b)
