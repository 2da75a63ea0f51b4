"""The settings of :class:`dfo.torch.ZerothOrder` shared by all parameter groups: :class:`ZOConfig`, its checks,
the checks of the per-group numbers and the seed, and how a checkpoint written before a setting existed is read.

Example:
    >>> ZOConfig(method="fzoo").n_directions, ZOConfig(method="mezo-interp").max_forward_passes()
    (8, 16)
    >>> with_later_fields({"method": "mezo"})["rounds"]  # a checkpoint older than the setting: the value it ran with
    1
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import dfo.torch.methods as registry

NOISES = ("torch", "hash")
BASELINES = ("mean", "base")
#: settings added after the first checkpoints were written, with the values those checkpoints ran with
LATER_FIELDS = {"noise": "torch", "ls_c": 0.25, "ls_trials": 2, "noise_every": 50, "baseline": "mean",
                "ls_batch_slack": 1.0, "rounds": 1, "reuse": 0}
#: default budget of the per-step noise cache (see :mod:`dfo.torch.directions`)
NOISE_CACHE_BYTES = 16 * 2**20
SEED_LIMIT = 2**63


@dataclass(frozen=True, kw_only=True)
class ZOConfig:
    """Hyperparameters shared by all parameter groups.

    Attributes:
        method: a name of :data:`dfo.torch.methods.ZO_METHODS`.
        eps: perturbation radius.
        rank: r of the low-rank methods (None: the method's spec default).
        refresh: steps between subspace redraws, SubZero's T, LOZO's nu (None: spec default).
        momentum: beta of the factored momentum, only methods whose default has one (None: spec default).
        n_directions: directions per step (2 forward passes each; 1 each for ``fzoo``; None: the method's).
        noise: generator of the dense Gaussian directions, ``"torch"`` or ``"hash"``
            (see :mod:`dfo.torch.directions`).
        ls_c: Armijo constant c of the line-search methods (accept ``f_0 - f_t >= c a s + 2 sigma``).
        ls_trials: trial points per step of the line search (halving the step after each rejection).
        ls_batch_slack: with per-example losses, the line search also asks for a decrease beyond this many
            standard errors of the batch's mean decrease (0: the shrinkage of the slopes only).
        noise_every: the line search repeats ``f(x)`` every this many steps to measure the noise.
        baseline: ``fzoo``'s baseline, ``"mean"`` of the perturbed losses or ``"base"`` (one more forward, f(x)).
        rounds: ``mezo-interp``'s estimate-and-move rounds per step, on the step's batch (None: the method's, 2;
            1 for every other method).
        reuse: ``mezo-interp``'s most reused queries per round after the first, below ``n_directions`` (None:
            ``n_directions // 2``; 0 for every other method). See :mod:`dfo.torch.interp`.
    """

    method: str = "mezo"
    eps: float = 1e-3
    rank: int | None = None
    refresh: int | None = None
    momentum: float | None = None
    n_directions: int | None = None
    noise: str = "torch"
    ls_c: float = 0.25
    ls_trials: int = 2
    noise_every: int = 50
    baseline: str = "mean"
    ls_batch_slack: float = 1.0
    rounds: int | None = None
    reuse: int | None = None

    def __post_init__(self) -> None:
        entry = registry.get(self.method)
        for name in ("rank", "refresh", "momentum", "n_directions", "rounds"):  # None: the method's default
            if getattr(self, name) is None:
                object.__setattr__(self, name, getattr(entry, name))
        if self.reuse is None:
            n = self.n_directions if isinstance(self.n_directions, int) else 0
            object.__setattr__(self, "reuse", n // 2 if entry.step == "interp" else 0)
        if self.noise not in NOISES:
            raise ValueError(f"noise must be one of {NOISES}, got {self.noise!r}")
        if isinstance(self.eps, bool) or not isinstance(self.eps, (int, float)) or not (
                math.isfinite(self.eps) and self.eps > 0):
            raise ValueError(f"eps must be a positive finite number, got {self.eps!r}")
        for name in ("rank", "refresh", "n_directions", "ls_trials", "noise_every", "rounds"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
        if isinstance(self.reuse, bool) or not isinstance(self.reuse, int) or self.reuse < 0:
            raise ValueError(f"reuse must be an integer >= 0, got {self.reuse!r}")
        if entry.step != "interp" and (self.rounds != 1 or self.reuse != 0):
            raise ValueError(f"rounds and reuse are only used by 'mezo-interp' (method is {self.method!r})")
        if self.reuse >= self.n_directions and self.reuse > 0:
            raise ValueError(f"reuse must be below n_directions ({self.n_directions}): each round draws a new "
                             f"direction, got {self.reuse}")
        if not (isinstance(self.momentum, (int, float)) and 0.0 <= self.momentum < 1.0):
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if self.momentum and not entry.momentum:
            raise ValueError(f"momentum is only used by 'lozo-m' (method is {self.method!r})")
        if not (isinstance(self.ls_batch_slack, (int, float)) and 0.0 <= self.ls_batch_slack < math.inf):
            raise ValueError(f"ls_batch_slack must be a finite number >= 0, got {self.ls_batch_slack!r}")
        if not (isinstance(self.ls_c, (int, float)) and 0.0 <= self.ls_c < 1.0):
            raise ValueError(f"ls_c must be in [0, 1), got {self.ls_c!r}")
        if self.baseline not in BASELINES:
            raise ValueError(f"baseline must be one of {BASELINES}, got {self.baseline!r}")
        if entry.step == "fzoo" and self.n_directions < 2:
            raise ValueError(f"{self.method!r} normalises by the spread of its losses: n_directions must be >= 2")
        if entry.step in ("orth", "interp") and self.noise != "torch":
            raise ValueError(f"{self.method!r} accumulates the Gram matrix of chunk-drawn directions: "
                             "it needs noise='torch'")

    @property
    def entry(self) -> registry.TorchMethod:
        return registry.get(self.method)

    @property
    def family(self) -> str:
        return self.entry.family

    @property
    def low_rank(self) -> bool:
        return self.entry.low_rank

    @property
    def variable_passes(self) -> bool:
        """Whether steps differ in forward passes: a line search's trials and noise repeats, or ``mezo-interp``'s
        reused queries (in the rounds after the first, when ``reuse`` > 0)."""
        e = self.entry
        return e.line_search or (e.step == "interp" and self.rounds > 1 and self.reuse > 0)

    def max_forward_passes(self) -> int:
        """The most forward passes one step can take (a step of a line-search method may take fewer)."""
        e, k = self.entry, self.n_directions
        if e.step == "interp":  # every round fresh (a round with reuse takes fewer)
            return 2 * k * self.rounds
        evals = k if e.step == "fzoo" else 2 * k
        base = 1 if (e.line_search or (e.step == "fzoo" and self.baseline == "base")) else 0
        return evals + base + (self.ls_trials + 1 if e.line_search else 0)


def with_later_fields(saved: Any) -> Any:
    """A checkpoint's saved config with the settings it predates filled in (what those runs used)."""
    if isinstance(saved, dict):
        return {**LATER_FIELDS, **saved}
    return saved


def finite_nonneg(name: str, value: Any) -> float:
    """``value`` as a float when it is a finite number >= 0 (lr, weight decay), else one clear error."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_seed(seed: Any) -> int:
    """``seed`` when it is an integer in [0, 2**63), else one clear error."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < SEED_LIMIT:
        raise ValueError(f"seed must be an integer in [0, 2**63), got {seed!r}")
    return seed
