"""Training methods as data: each is a preset of a dfo estimator, shaping and a step rule.

ARS (Mania, Guy, Recht 2018, "Simple random search provides a competitive approach to
reinforcement learning") maps onto the core as follows. With values ``f = -return``,
antithetic Gaussian directions (``central-gaussian``, radius ν),
``δ_i = (f+_i − f−_i)/(2ν)`` and the shaping ``(TopDirections(b), StdNormalize())``, the
core's estimate is ``g = (1/b) Σ_{i∈top b} δ_i u_i / σ_R``, and the ARS update

    θ ← θ + α/(b σ_R) Σ_{i∈top b} (r+_i − r−_i) u_i

is exactly ``θ ← θ − (2 ν α) g``: the core's SGD step with ``lr = 2να``. So ARS step
sizes transfer unchanged. V1 uses raw observations, V2 the ARS observation normalizer;
the ``-t`` variants keep the top ``b`` directions, the others all ``N``.

The other methods keep the perturbation size of ARS so that the same (α, ν) defaults apply:

* ``orthogonal`` (Choromanski et al. 2018, structured exploration): N ≤ n orthonormal
  directions q_i. Their norm is 1 where a Gaussian u has norm ≈ √n, so the radius is
  σ = ν √n; with the estimator's n/N scaling, ``lr = 2να`` again gives an ARS-sized step.
* ``interpolation`` (Berahas, Cao, Choromanski, Scheinberg 2022): forward differences on
  N = n random unit directions (σ = ν√n, an ARS-sized perturbation), gradient by least squares, step by the noise-tolerant
  Armijo line search (Berahas, Cao, Scheinberg 2021) with ε_f estimated from repeated
  returns at the centre. No return shaping (the Armijo test needs f's own scale).
* ``subzero`` (Yu et al. 2024): P = √(mk)/r · U Z Vᵀ per policy matrix (Frobenius norm
  ≈ √(mk), as a Gaussian), σ = ν.
* ``lozo`` (Chen et al. 2024): P = U Vᵀ with Gaussian U, V (norm ≈ √(mk r)); σ = ν/√r and
  the estimator's 1/r weight give an ARS-sized step.
* ``reuse > 0`` or ``shrink < 1``: the gradient is fit by regression over this iteration's
  kept antithetic pairs and those of the last ``reuse`` iterations (Choromanski et al. 2019,
  RBO; :mod:`dfo.estimators.regression`), so each rollout is used ``reuse + 1`` times; the
  fit keeps the Monte-Carlo estimate's size, so the same α, ν apply.

Example:
    >>> get_method("ars-v2t").normalize, get_method("ars-v1").top
    (True, False)
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from dfo.estimators import StdNormalize, TopDirections

RADIUS_RULES = ("gaussian", "unit", "lowrank-lozo")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Method:
    """One training method.

    Attributes:
        name: registry name.
        estimator: dfo estimator preset.
        normalize: ARS V2 observation normalizer.
        top: keep the top-b directions (ARS ``-t``); b comes from the task preset.
        std_normalize: divide by σ_R, the std of the returns used (ARS).
        step: ``"sgd"`` (lr = 2να) or ``"armijo"`` (noise-tolerant line search).
        radius: how ν maps to the estimator radius σ: ``"gaussian"`` (σ = ν),
            ``"unit"`` (unit-norm directions, σ = ν√n), ``"lowrank-lozo"`` (σ = ν/√r).
        all_directions: use N = n directions (interpolation needs N ≥ n).
        rank: rank r of low-rank perturbations.
        refresh: subspace refresh period of low-rank methods (iterations).
        ls_repeats: centre episodes per line-search iteration (their spread gives ε_f).
        reuse: past iterations whose kept pairs join a regression gradient (0 = none).
        shrink: weight w of the isotropic second moment in that regression (1 = Monte
            Carlo average over the pooled pairs, 0 = least squares).
    """

    name: str
    estimator: str
    normalize: bool = True
    top: bool = True
    std_normalize: bool = True
    step: str = "sgd"
    radius: str = "gaussian"
    all_directions: bool = False
    rank: int = 2
    refresh: int = 10
    ls_repeats: int = 2
    reuse: int = 0
    shrink: float = 1.0

    def __post_init__(self) -> None:
        if self.step not in ("sgd", "armijo"):
            raise ValueError(f"method {self.name}: step must be 'sgd' or 'armijo', got {self.step!r}")
        if self.radius not in RADIUS_RULES:
            raise ValueError(f"method {self.name}: radius must be one of {RADIUS_RULES}, got {self.radius!r}")
        if self.ls_repeats < 2 and self.step == "armijo":
            raise ValueError(f"method {self.name}: the line search needs ls_repeats >= 2 to estimate eps_f")
        if (self.reuse or self.shrink < 1.0) and (self.lowrank or self.step != "sgd" or self.reuse < 0
                                                  or not 0.0 <= self.shrink <= 1.0):
            raise ValueError(f"method {self.name}: regression reuse needs a standard-direction SGD method, "
                             f"reuse >= 0 and 0 <= shrink <= 1")

    @property
    def lowrank(self) -> bool:
        return self.estimator in ("subzero", "lozo")

    def sigma(self, noise: float, n_params: int) -> float:
        """The estimator radius σ for the ARS exploration noise ν (see the module doc)."""
        if self.radius == "unit":
            return noise * math.sqrt(n_params)
        if self.radius == "lowrank-lozo":
            return noise / math.sqrt(self.rank)
        return noise

    def learning_rate(self, step_size: float, noise: float) -> float:
        """The core's SGD rate ``lr = 2να`` that reproduces the ARS step (module doc)."""
        return 2.0 * float(noise) * float(step_size)

    def n_directions_for(self, n_directions: int, n_params: int) -> int:
        return n_params if self.all_directions else int(n_directions)

    def make_estimator(self, n_params: int, *, n_directions: int, top_b: int, noise: float,
                       blocks: list | None = None):
        """The dfo estimator of this method for a policy with ``n_params`` parameters.

        Args:
            n_params: policy dimension n.
            n_directions: ARS N (ignored when the method uses N = n).
            top_b: ARS b.
            noise: ARS ν.
            blocks: ``policy.param_blocks()`` (low-rank methods perturb each matrix).
        """
        from dfo.estimators import get_estimator

        n_dir = self.n_directions_for(n_directions, n_params)
        opts: dict = {"n_directions": n_dir, "sigma": self.sigma(noise, n_params),
                      "shaping": self.shaping(top_b, n_dir)}
        if self.lowrank:
            opts.update(blocks=blocks, rank=self.rank, refresh=self.refresh)
        est = get_estimator(self.estimator, **opts)
        if self.reuse or self.shrink < 1.0:
            from dfo.estimators.regression import RegressionEstimator

            est = RegressionEstimator(base=est, memory=int(self.reuse), shrink=float(self.shrink))
        return est

    def shaping(self, top_b: int, n_directions: int) -> tuple:
        """The shapers, in order: top-b first (on raw values), then σ_R normalization."""
        out: list = []
        if self.top and top_b < n_directions:
            out.append(TopDirections(int(top_b)))
        if self.std_normalize:
            out.append(StdNormalize())
        return tuple(out)


@dataclasses.dataclass(frozen=True, kw_only=True)
class StepControlRule:
    """How :class:`StepControl` sizes the ARS step (one of :data:`STEP_CONTROL`).

    Attributes:
        name: the ``--step`` name.
        rollback: go back to the best policy seen when the centre return falls more than
            ``kappa`` standard errors below the best.
        kappa: the margin of a rollback, in standard errors of the centre return.
        shrink: step multiplier on a rollback (``rollback``) or after ``patience``
            iterations without a new best (``decay``).
        grow: step multiplier on a new best (capped at the full ARS step).
        floor: the smallest step multiplier.
        patience: iterations without a new best before the step shrinks (0 = never).
    """

    name: str
    rollback: bool = False
    kappa: float = 2.0
    shrink: float = 1.0
    grow: float = 1.0
    floor: float = 1.0
    patience: int = 0

    def __post_init__(self) -> None:
        if not (0 < self.floor <= 1 and 0 < self.shrink <= 1 and self.grow >= 1 and self.kappa > 0
                and self.patience >= 0):
            raise ValueError(f"step control {self.name}: need 0 < floor, shrink <= 1, grow >= 1, kappa > 0")


#: step rules that keep the ARS (SGD, lr = 2να) step and control its length (see :class:`StepControl`)
STEP_CONTROL: dict[str, StepControlRule] = {
    "rollback": StepControlRule(name="rollback", rollback=True),
    "trust": StepControlRule(name="trust", rollback=True, shrink=0.5, grow=2.0, floor=1.0 / 16),
    "decay": StepControlRule(name="decay", shrink=0.5, floor=1.0 / 8, patience=25),
}


class StepControl:
    """An estimator wrapper that controls the length of the SGD (ARS) step.

    ARS (Mania, Guy, Recht 2018) divides its step by σ_R, the spread of the returns, so the
    step never shrinks: at an optimum, where the return differences are mostly noise, the
    policy keeps moving by about α·√(n/b) per iteration and a run that solved the task can
    walk away from it. This wrapper measures the return at the centre for free, as the mean
    ``m_t`` of the iteration's 2N training returns around θ_t (``se_t`` its standard error),
    and returns the base estimate ``g`` times a multiplier ``s`` (so the Minimizer's step is
    ``lr·s·g``), with three rules (:data:`STEP_CONTROL`):

    * ``rollback`` (keep-best): when ``m_t < m_best − κ·se_t`` (κ = 2), the returned
      "gradient" is ``(θ_t − θ_best)/lr``, so the SGD step lands on the best policy seen;
      the next iteration re-measures it there and that value replaces ``m_best`` (so one
      lucky measurement cannot hold the run). Otherwise the ARS step.
    * ``trust``: ``rollback``, and the step multiplier halves on every rollback (down to
      1/16) and doubles on every new best (up to 1): a trust-region-like step that shrinks
      where steps keep failing.
    * ``decay``: no rollback; the multiplier halves after 25 iterations without a new best
      (down to 1/8).

    Only training rollouts are used (no evaluation episodes), so the episode count stays
    the ARS count. All state is in :meth:`state_dict` (checkpoints resume it exactly) and
    depends only on the values, merged in item order (serial and parallel runs agree).
    The observation normalizer is not rolled back.

    Args:
        base: the method's estimator.
        rule: a :class:`StepControlRule`.
        lr: the Minimizer's SGD rate (2να), to express the rollback as a step.
    """

    def __init__(self, base, rule: StepControlRule, lr: float) -> None:
        self.base = base
        self.rule = rule
        self.lr = float(lr)
        self.scale = 1.0
        self.best_x: np.ndarray | None = None
        self.best_m: float | None = None
        self.since_best = 0
        self.returned = False  # the last step was a rollback: this iteration re-measures the best
        self.rollbacks = 0

    def __getattr__(self, name):  # sigma, n_directions, shaping, central, ... of the base estimator
        if name == "base":
            raise AttributeError(name)
        return getattr(self.base, name)

    def ask(self, x, rng=None, *, fx=None):
        return self.base.ask(x, rng, fx=fx)

    def tell(self, query, values):
        est = self.base.tell(query, values)
        v = np.asarray(values, dtype=float)
        m = -float(v.mean())
        se = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else 0.0
        x = np.asarray(query.x, dtype=float)
        r = self.rule
        grad = est.grad
        if self.returned:  # at the best policy again: its fresh value replaces the old one
            self.returned = False
            self.best_m = m
            self.since_best = 0
        elif self.best_m is None or m > self.best_m:
            self.best_x, self.best_m, self.since_best = x.copy(), m, 0
            self.scale = min(1.0, self.scale * r.grow)
        elif r.rollback and m < self.best_m - r.kappa * se:
            self.scale = max(r.floor, self.scale * r.shrink)
            self.returned = True
            self.rollbacks += 1
            info = {**est.info, "rollback": True}
            return dataclasses.replace(est, grad=(x - self.best_x) / self.lr, info=info)
        else:
            self.since_best += 1
            if r.patience and self.since_best >= r.patience:
                self.scale = max(r.floor, self.scale * r.shrink)
                self.since_best = 0
        return dataclasses.replace(est, grad=self.scale * grad, info={**est.info, "step_scale": self.scale})

    def state_dict(self) -> dict:
        base = self.base.state_dict() if hasattr(self.base, "state_dict") else None
        return {"base": base, "scale": self.scale, "best_x": None if self.best_x is None else self.best_x.copy(),
                "best_m": self.best_m, "since_best": self.since_best, "returned": self.returned,
                "rollbacks": self.rollbacks}

    def load_state_dict(self, state: dict) -> None:
        if state.get("base") is not None:
            self.base.load_state_dict(state["base"])
        self.scale = float(state["scale"])
        self.best_x = None if state["best_x"] is None else np.array(state["best_x"], dtype=float)
        self.best_m = None if state["best_m"] is None else float(state["best_m"])
        self.since_best = int(state["since_best"])
        self.returned = bool(state["returned"])
        self.rollbacks = int(state["rollbacks"])


def _m(name: str, **kw) -> tuple[str, Method]:
    return name, Method(name=name, **kw)


METHODS: dict[str, Method] = dict(
    [
        _m("ars-v1", estimator="central-gaussian", normalize=False, top=False),
        _m("ars-v1t", estimator="central-gaussian", normalize=False, top=True),
        _m("ars-v2", estimator="central-gaussian", normalize=True, top=False),
        _m("ars-v2t", estimator="central-gaussian", normalize=True, top=True),
        _m("orthogonal", estimator="central-orthogonal", radius="unit"),
        _m("interpolation", estimator="interpolation", step="armijo", top=False, std_normalize=False,
           radius="unit", all_directions=True),
        _m("subzero", estimator="subzero"),
        _m("lozo", estimator="lozo", radius="lowrank-lozo"),
        _m("ars-v2t-reuse", estimator="central-gaussian", reuse=4, shrink=0.5),
    ]
)


def get_method(name: str | Method) -> Method:
    """The method preset ``name`` (a :class:`Method` passes through).

    Raises:
        ValueError: unknown name (the message lists the known methods).
    """
    if isinstance(name, Method):
        return name
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; known: {', '.join(METHODS)}")
    return METHODS[name]
