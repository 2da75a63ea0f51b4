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
