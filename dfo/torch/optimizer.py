"""Zeroth-order optimizer for torch modules: MeZO, SubZero, LOZO, LOZO-M and the step rules of
:mod:`dfo.torch.methods` (``mezo-orth``: k orthonormal directions; ``mezo-ls``: noise-tolerant Armijo line
search on the step's batch; ``fzoo`` / ``fzoo-ls``: batched one-sided differences with a normalised step;
``mezo-interp``: least-norm linear interpolation reusing the step's queries, :mod:`dfo.torch.interp`),
whose formulas and papers are in that module; the rest of this docstring is about the spec's methods.

Every method estimates the gradient from two forward passes at ``theta +- eps P``
(two-sided SPSA), ``g = (L(theta + eps P) - L(theta - eps P)) / (2 eps)``, and the
update is ``theta <- theta - lr (w g P + wd theta)``. A method is a *direction
family* for P (dense Gaussian, SubZero, LOZO; LOZO-M adds factored momentum)
taken from :mod:`dfo.estimators.lowrank_spec`, which the numpy estimators use too:
the scales, the LOZO weight ``w = 1/r``, the momentum and its carry at a refresh,
the small-matrix rule, the refresh schedule, the random factor streams and the
defaults are defined there once (see that module for the formulas and papers).

Each tensor gets a *placement*:

* ``dense``: tensors that are not 2-D (biases, norm scales), and every tensor for
  MeZO: Gaussian ``z`` regenerated from a seed, added in place chunk by chunk
  (:mod:`dfo.torch.directions`). Restore and update are one fused pass
  (``+eps z``, ``-2 eps z``, then ``+(eps - lr g) z``).
* ``write``: low-rank directions ``D V^T`` written into the weight with ``addmm_``
  (no m x n temporary): 2-D tensors of modules other than ``nn.Linear`` (or of a
  linear layer and an embedding tied together), or every 2-D tensor when ``model``
  is not given.
* ``side``: with ``model=`` given, the weights of unshared ``nn.Linear`` layers are
  never touched during a step (nor that of a linear head tied to an ``nn.Embedding``):
  the perturbation and the updates of the current subspace ride along as a side path ``x (W + L V^T)^T = x W^T + (x V) L^T``
  (:mod:`dfo.torch.sidepath`) with ``L = A + offset * D``; ``A`` accumulates the
  updates and is folded into W (``W += A V^T``) when the subspace is refreshed, on
  :meth:`ZerothOrder.flush`, and before any ``state_dict`` of the layer or the optimizer.

Precision: the two-sided step writes ``+eps P``, ``-2 eps P`` and ``+eps P`` into
in-place tensors, and in float16 / bfloat16 each write rounds, so the weights take a
random walk even at lr 0 (after 200 steps on a small LM: relative change 9e-7 in
float32, 7e-3 in float16, 4e-2 in bfloat16; ``bench/results/torch_precision_drift.md``).
The optimizer warns once when it holds such tensors; keep float32 weights and run the
forward passes under ``torch.autocast`` instead (``dfo finetune --autocast bfloat16``).

Conventions: only parameters with ``requires_grad=True`` at the time of a step are
perturbed and updated (freezing after construction works), ``add_param_group``
works, lr / weight decay / eps must be finite, and with ``model=`` the closure runs
with the model in eval mode (dropout off), its train/eval flags restored afterwards.

Example:
    >>> import torch
    >>> model = torch.nn.Linear(8, 4)
    >>> x, y = torch.randn(32, 8), torch.randn(32, 4)
    >>> opt = ZerothOrder(model.parameters(), method="lozo", lr=1e-2, rank=2, model=model, seed=0)
    >>> closure = lambda: torch.nn.functional.mse_loss(model(x), y)
    >>> first = opt.step(closure)
    >>> for _ in range(200):
    ...     last = opt.step(closure)
    >>> last < first
    True
"""

from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Iterator

import torch
from torch import nn

import numpy as np

from dfo.estimators import lowrank_spec as spec
import dfo.torch.methods as registry
import dfo.torch.interp as interp
from dfo.torch.directions import Generators, mix, to_torch
from dfo.torch.sidepath import SidePath, linear_owners

NOISES = ("torch", "hash")
BASELINES = ("mean", "base")
#: settings added after the first checkpoints were written, with the values those checkpoints ran with
_LATER_FIELDS = {"noise": "torch", "ls_c": 0.25, "ls_trials": 2, "noise_every": 50, "baseline": "mean",
                 "ls_batch_slack": 1.0, "rounds": 1, "reuse": 0}
#: default budget of the per-step noise cache (see :mod:`dfo.torch.directions`)
NOISE_CACHE_BYTES = 16 * 2**20
_SEED_LIMIT = 2**63


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

    def max_forward_passes(self) -> int:
        """The most forward passes one step can take (a step of a line-search method may take fewer)."""
        e, k = self.entry, self.n_directions
        if e.step == "interp":  # every round fresh (a round with reuse takes fewer)
            return 2 * k * self.rounds
        evals = k if e.step == "fzoo" else 2 * k
        base = 1 if (e.line_search or (e.step == "fzoo" and self.baseline == "base")) else 0
        return evals + base + (self.ls_trials + 1 if e.line_search else 0)


@dataclass
class StepInfo:
    """What the last step saw: losses on both sides, projected gradients per direction, the step seed.

    The step rules of :mod:`dfo.torch.methods` fill more: ``loss_base`` (``f(x)``), ``curvature``
    (three-point ``(f_+ - 2 f_0 + f_-) / eps^2`` per direction), ``trials`` (``(a, f(x - a u))`` per
    trial point), ``accepted``, ``noise`` (the measured sigma used), ``combination`` (the k x k weights
    C of the directions ``P_j = sum_i C_ij z_i``), ``forward_passes``, and with per-example losses
    ``shrinkage`` (rho_j per direction) and ``batch_noise`` (standard error of each trial's mean decrease).
    ``mezo-interp`` (:mod:`dfo.torch.interp`) fills ``reused`` (queries reused in the step) and ``interpolation``,
    one dict per round: ``centre`` (C x m coefficients of the centre over the step's directions z_b, one row per
    distinct lr), ``rows`` (the displacements v_e, each C x m), ``values`` (y_e), ``reused`` and ``estimate``
    (C x m: ``g_V = Z estimate``).
    """

    loss_plus: list[float] = field(default_factory=list)
    loss_minus: list[float] = field(default_factory=list)
    projected_grad: list[float] = field(default_factory=list)
    seed: int | None = None
    loss_base: float | None = None
    curvature: list[float] = field(default_factory=list)
    trials: list[tuple[float, float]] = field(default_factory=list)
    accepted: bool | None = None
    noise: float | None = None
    combination: list[list[float]] | None = None
    forward_passes: int = 0
    shrinkage: list[float] = field(default_factory=list)
    batch_noise: list[float] = field(default_factory=list)
    reused: int = 0
    interpolation: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Slot:
    """One tensor: its index k (stable across groups), group, placement and rank."""

    k: int
    p: torch.Tensor
    group: dict[str, Any]
    placement: str  # "dense" | "write" | "side"
    rank: int


def _finite_nonneg(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < _SEED_LIMIT:
        raise ValueError(f"seed must be an integer in [0, 2**63), got {seed!r}")
    return seed


def _dropout_active(model: nn.Module) -> bool:
    """Whether a forward pass of ``model`` in its current mode would apply dropout."""
    for m in model.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd) and m.training and m.p > 0:
            return True
    cfg = getattr(model, "config", None)
    if model.training and cfg is not None:
        for key, v in vars(cfg).items():
            if "dropout" in key and isinstance(v, float) and v > 0:
                return True
    return False


class ZerothOrder(torch.optim.Optimizer):
    """Forward-pass-only optimizer (MeZO / SubZero / LOZO / LOZO-M), see the module docstring.

    Args:
        params: parameters or parameter groups (dicts with ``params`` and optional
            ``lr``, ``weight_decay``, ``decay_1d``). Parameters with
            ``requires_grad=False`` when a step starts are neither perturbed nor updated.
        method: a name of :data:`dfo.torch.methods.ZO_METHODS` (``"mezo"``, ``"subzero"``, ``"lozo"``, ``"lozo-m"``, and the step
            rules ``"mezo-orth"``, ``"mezo-ls"``, ``"fzoo"``, ``"fzoo-ls"``, ``"mezo-interp"`` of
            :mod:`dfo.torch.methods`).
        lr: learning rate (finite, >= 0).
        eps: perturbation radius (finite, > 0).
        rank: rank r of the low-rank directions (None: the method's default).
        refresh: steps between subspace redraws (None: the method's default).
        momentum: beta of the factored momentum (None: the method's default, 0.9 for ``lozo-m``).
        weight_decay: ``theta <- theta - lr wd theta`` each step, on tensors with >= 2
            dimensions unless the group sets ``decay_1d``.
        n_directions: directions per step; the update averages their estimates (None: the method's default,
            1 for the spec's methods and ``mezo-ls``, 4 for ``mezo-orth``, 8 for ``fzoo``).
        ls_c, ls_trials, noise_every, ls_batch_slack: line search of ``mezo-ls`` / ``fzoo-ls`` (see :class:`ZOConfig`).
        rounds, reuse: ``mezo-interp``'s rounds per step and reused queries per round (see :class:`ZOConfig`).
        baseline: ``fzoo``'s baseline, ``"mean"`` (n passes) or ``"base"`` (n + 1 passes, FZOO's ``f(x)``).
        model: the module owning the parameters; enables side paths on ``nn.Linear``
            weights for the low-rank methods and eval-mode forward passes.
        seed: seed of the optimizer's generator, an integer in [0, 2**63) (None: fresh entropy).
        eval_mode: with ``model`` given, run the closure with the model in eval mode
            (dropout off, as the MeZO/LOZO reference trainers do); False keeps the
            caller's mode and warns once if dropout is active.
        noise: ``"torch"`` (default: chunked ``normal_`` from torch generators, drawn by a
            thread pool) or ``"hash"`` (counter-based generator compiled with
            ``torch.compile``: faster on CPU, see :mod:`dfo.torch.directions`).
        noise_cache_bytes: with ``noise="torch"`` on CPU, keep dense directions that fit in
            this many bytes for the rest of the step (one Gaussian draw per step instead of
            three; the numbers do not change). The default, :data:`NOISE_CACHE_BYTES`
            (16 MiB), covers models of up to 4M float32 parameters and bounds the extra
            memory for larger ones; 0 turns it off.

    ``step(closure)`` calls ``closure`` ``2 * n_directions`` times (the step rules: see
    :mod:`dfo.torch.methods`; :attr:`forward_passes` counts them), under
    ``torch.no_grad``. The closure returns a scalar (tensor or float; the line-search methods also take a
    1-D tensor of per-example losses, whose mean is the loss and whose spread is the batch noise); it may
    loop over micro-batches and return their mean: the perturbation is the same
    for all of them (gradient accumulation). A non-finite loss raises
    ``FloatingPointError``; parameters are restored whatever the closure does.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        method: str = "mezo",
        lr: float = 1e-6,
        eps: float = 1e-3,
        rank: int | None = None,
        refresh: int | None = None,
        momentum: float | None = None,
        weight_decay: float = 0.0,
        n_directions: int | None = None,
        *,
        model: nn.Module | None = None,
        seed: int | None = None,
        eval_mode: bool = True,
        noise: str = "torch",
        noise_cache_bytes: int | None = None,
        ls_c: float = 0.25,
        ls_trials: int = 2,
        noise_every: int = 50,
        baseline: str = "mean",
        ls_batch_slack: float = 1.0,
        rounds: int | None = None,
        reuse: int | None = None,
    ) -> None:
        if noise_cache_bytes is None:
            noise_cache_bytes = NOISE_CACHE_BYTES
        if isinstance(noise_cache_bytes, bool) or not isinstance(noise_cache_bytes, int) or noise_cache_bytes < 0:
            raise ValueError(f"noise_cache_bytes must be an integer >= 0, got {noise_cache_bytes!r}")
        self.config = ZOConfig(method=method, eps=eps, rank=rank, refresh=refresh, momentum=momentum,
                               n_directions=n_directions, noise=noise, ls_c=ls_c, ls_trials=ls_trials,
                               noise_every=noise_every, baseline=baseline, ls_batch_slack=ls_batch_slack,
                               rounds=rounds, reuse=reuse)
        defaults = dict(lr=_finite_nonneg("lr", lr), weight_decay=_finite_nonneg("weight_decay", weight_decay),
                        decay_1d=False)
        self._model = model
        self._eval_mode = bool(eval_mode)
        self._warned_dropout = False
        self._warned_precision = False
        self._owners = linear_owners(model) if (model is not None and self.config.low_rank) else {}
        self._slots: list[_Slot] = []
        self._side: dict[int, SidePath] = {}
        self._offset: dict[int, tuple[float, int]] = {}
        self._dcache: dict[tuple[int, int], torch.Tensor] = {}
        self._step_seed = 0
        self._ready = False
        super().__init__(params, defaults)
        self._ready = True
        for group in self.param_groups:
            self._register(group)
        self._gens = Generators(cache_bytes=noise_cache_bytes)
        self._master = torch.Generator()
        self._master.manual_seed(int(torch.randint(0, 2**62, ()).item()) if seed is None else _check_seed(seed))
        self._step = 0
        self._rule = {"alpha": None, "noise_sq": 0.0, "noise_n": 0}  # line-search state (dfo.torch.methods)
        self._forward_passes = 0
        self._examples: np.ndarray | None = None  # per-example losses of the last closure call (line search)
        self.last_step = StepInfo()

    # ------------------------------------------------------------------ public
    @property
    def step_count(self) -> int:
        """Number of completed steps."""
        return self._step

    @property
    def forward_passes(self) -> int:
        """Closure calls of all completed steps (the query count that budgets compare)."""
        return self._forward_passes

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group (torch semantics); its tensors get placements and are trained from the next step."""
        for key in ("lr", "weight_decay"):
            if key in param_group:
                _finite_nonneg(key, param_group[key])
        super().add_param_group(param_group)
        if self._ready:
            self._register(self.param_groups[-1])

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor | float] | None = None) -> float:  # type: ignore[override]
        """One zeroth-order step; returns the mean of the ``2 n_directions`` losses.

        Raises:
            TypeError: no closure, or it returned something that is not a scalar.
            ValueError: a group's lr or weight_decay is not a finite number >= 0.
            FloatingPointError: a loss is NaN or infinite (parameters are restored).
        """
        if closure is None:
            raise TypeError("ZerothOrder.step needs a closure that runs a forward pass and returns the loss")
        for i, group in enumerate(self.param_groups):
            _finite_nonneg(f"param group {i} lr", group["lr"])
            _finite_nonneg(f"param group {i} weight_decay", group["weight_decay"])
        cfg = self.config
        active = [s for s in self._slots if s.p.requires_grad]
        with self._forward_mode():
            if cfg.entry.new_rule:
                return self._rule_step(closure, active)
            self._refresh_due(active)
            seed = int(torch.randint(0, 2**62, (), generator=self._master).item())
            self._step_seed = seed
            info = StepInfo(seed=seed, forward_passes=2 * cfg.n_directions)
            offset, cur = 0.0, 0
            try:
                for i in range(cfg.n_directions):
                    cur = i
                    self._perturb(active, i, cfg.eps)
                    offset = cfg.eps
                    lp = self._evaluate(closure, "+eps", i)
                    self._perturb(active, i, -2 * cfg.eps)
                    offset = -cfg.eps
                    lm = self._evaluate(closure, "-eps", i)
                    info.loss_plus.append(lp)
                    info.loss_minus.append(lm)
                    info.projected_grad.append((lp - lm) / (2 * cfg.eps))
                    if i < cfg.n_directions - 1:
                        self._perturb(active, i, cfg.eps)
                        offset = 0.0
                self._restore_and_update(active, info.projected_grad)
                offset = 0.0
            finally:
                if offset != 0.0:
                    self._perturb(active, cur, -offset)
                self._offset.clear()
                self._sync_side()
                self._dcache.clear()
                self._gens.clear_cache()
        self._step += 1
        self._forward_passes += info.forward_passes
        self.last_step = info
        return (sum(info.loss_plus) + sum(info.loss_minus)) / (2 * cfg.n_directions)

    def _rule_step(self, closure: Callable[[], Any], active: list[_Slot]) -> float:
        """One step of a rule of :mod:`dfo.torch.methods` (dense directions; see that module for the formulas)."""
        cfg = self.config
        e, k, eps = cfg.entry, cfg.n_directions, cfg.eps
        seed = int(torch.randint(0, 2**62, (), generator=self._master).item())
        self._step_seed = seed
        info = StepInfo(seed=seed)
        if e.step == "interp":
            loss = interp.step(closure, active, info, config=cfg, gens=self._gens, dense_seed=self._dense_seed,
                               evaluate=self._evaluate, decay=self._decay)
            self._step += 1
            self._forward_passes += info.forward_passes
            self.last_step = info
            return loss
        if e.step == "orth":  # P_j = sqrt(d) sum_i z_i (L^-T)_ij with G = Z^T Z = L L^T
            gram = self._gens.gram([(s.p, [self._dense_seed(s, i) for i in range(k)]) for s in active])
            try:
                chol = np.linalg.cholesky(gram)
            except np.linalg.LinAlgError:
                raise FloatingPointError(f"ZerothOrder step {self._step}: the {k} directions are linearly dependent "
                                         f"(fewer than {k} parameters?)") from None
            dim = sum(s.p.numel() for s in active)
            comb = math.sqrt(dim) * np.linalg.inv(chol).T
        else:
            comb = np.eye(k)
        info.combination = comb.tolist()
        pos = np.zeros(k)  # where the parameters are, in z coordinates: theta_now = theta + sum_i pos_i z_i
        moved = [False]

        def move(target: np.ndarray) -> None:
            delta = target - pos
            for i in range(k):  # one call per seed: add_gaussian needs distinct targets within a call
                if delta[i] != 0.0:
                    self._gens.add_gaussian([(s.p, self._dense_seed(s, i), float(delta[i])) for s in active],
                                            cfg.noise)
            pos[:] = target

        per_example: dict[str, np.ndarray] = {}

        def evaluate(side: str, j: int) -> float:
            info.forward_passes += 1
            value = self._evaluate(closure, side, j)
            if self._examples is not None:
                per_example[f"{side}{j}"] = self._examples
            return value

        done = False
        try:
            f0 = None
            if e.line_search or (e.step == "fzoo" and cfg.baseline == "base"):
                f0 = info.loss_base = evaluate("+0", 0)  # key "+00" in per_example
                if e.line_search and (self._rule["noise_n"] == 0 or self._step % cfg.noise_every == 0):
                    again = evaluate("+0 (repeat)", 0)  # the noise of f on this batch, measured
                    self._rule["noise_sq"] += (f0 - again) ** 2 / 2
                    self._rule["noise_n"] += 1
            if e.step in ("spsa", "orth"):
                g, shrink = np.zeros(k), np.ones(k)
                for j in range(k):
                    move(eps * comb[:, j])
                    lp = evaluate("+eps", j)
                    move(-eps * comb[:, j])
                    lm = evaluate("-eps", j)
                    g[j] = (lp - lm) / (2 * eps)
                    info.loss_plus.append(lp)
                    info.loss_minus.append(lm)
                    info.projected_grad.append(float(g[j]))
                    if f0 is not None:
                        info.curvature.append((lp - 2 * f0 + lm) / eps**2)
                    ep, em = per_example.get(f"+eps{j}"), per_example.get(f"-eps{j}")
                    if e.line_search and ep is not None and em is not None and ep.size == em.size > 1:
                        ge = (ep - em) / (2 * eps)  # per-example slopes: positive-part James-Stein shrinkage of g_j
                        se2 = float(ge.var(ddof=1)) / ge.size
                        shrink[j] = max(0.0, 1.0 - se2 / g[j] ** 2) if g[j] != 0 else 0.0
                info.shrinkage = shrink.tolist()
                u = comb @ (shrink * g) / k  # the estimate (1/k) sum_j rho_j g_j P_j, in z coordinates
                slope = float(shrink @ g**2) / k  # grad . u, with grad . P_j ~= g_j
                curv = (float(np.dot(shrink**2 * g**2, info.curvature)) / k**2  # u^T H u
                        if info.curvature else None)
                mean_loss = (sum(info.loss_plus) + sum(info.loss_minus)) / (2 * k)
            else:  # fzoo: one-sided, shared baseline, normalised by the spread of the losses
                f = np.zeros(k)
                for i in range(k):
                    move(eps * comb[:, i])
                    f[i] = evaluate("+eps", i)
                    info.loss_plus.append(float(f[i]))
                base, denom = (float(f.mean()), k - 1) if cfg.baseline == "mean" else (f0, k)
                sigma = float(f.std(ddof=1))
                a = (f - base) / eps
                info.projected_grad = a.tolist()
                u = (f - base) / sigma / denom if sigma > 0 else np.zeros(k)
                slope, curv = float(u @ a), None
                mean_loss = float(f.mean())
            lrs = {s.k: s.group["lr"] for s in active}
            if e.line_search:
                sigma_f = math.sqrt(self._rule["noise_sq"] / self._rule["noise_n"])
                info.noise = sigma_f
                alpha = self._rule["alpha"] if self._rule["alpha"] is not None else (active[0].group["lr"] if active else 0.0)
                a_try = min(alpha, slope / curv) if (curv is not None and curv > 0 and slope > 0) else alpha
                info.accepted = False
                if slope > 0 and a_try > 0:
                    for t in range(cfg.ls_trials):
                        move(-a_try * u)
                        ft = evaluate("-a u", t)
                        info.trials.append((a_try, ft))
                        e0, et = per_example.get("+00"), per_example.get(f"-a u{t}")
                        se = 0.0  # standard error of the batch's mean decrease, from the per-example decreases
                        if e0 is not None and et is not None and e0.size == et.size > 1:
                            se = float((e0 - et).std(ddof=1)) / math.sqrt(e0.size)
                        info.batch_noise.append(se)
                        if f0 - ft >= cfg.ls_c * a_try * slope + 2 * sigma_f + cfg.ls_batch_slack * se:
                            info.accepted = True
                            break
                        a_try /= 2
                if info.accepted:
                    self._rule["alpha"] = 2 * a_try
                    for s in active:
                        shrink = 1.0 - s.group["lr"] * self._decay(s)
                        if shrink != 1.0:
                            s.p.mul_(shrink)
                else:
                    move(np.zeros(k))
                    self._rule["alpha"] = a_try if a_try > 0 else alpha
                done = True
            else:
                for s in active:  # restore (shrunk by weight decay) and update, per tensor: groups' lr
                    shrink = 1.0 - lrs[s.k] * self._decay(s)
                    if shrink != 1.0:
                        s.p.mul_(shrink)
                for i in range(k):
                    self._gens.add_gaussian([(s.p, self._dense_seed(s, i),
                                              float((1.0 - lrs[s.k] * self._decay(s)) * -pos[i] - lrs[s.k] * u[i]))
                                             for s in active], cfg.noise)
                done = True
        finally:
            if not done:
                move(np.zeros(k))
            self._gens.clear_cache()
        self._step += 1
        self._forward_passes += info.forward_passes
        self.last_step = info
        return float(f0) if f0 is not None else mean_loss

    @torch.no_grad()
    def flush(self) -> None:
        """Fold the updates held in side-path factors into the weights (``W += A V^T``).

        Call before reading parameters directly; ``state_dict`` of the optimizer and
        of any side-pathed layer (hence of the model) calls it automatically.
        """
        for k in self._side:
            self._fold(k)
        self._sync_side()

    def close(self) -> None:
        """Flush and remove the side-path hooks from the model."""
        self.flush()
        for side in self._side.values():
            side.remove()
        self._side.clear()
        for s in self._slots:
            if s.placement == "side":
                s.placement = "write"

    def state_dict(self) -> dict[str, Any]:
        """Step, generator state, hyperparameters, shapes, subspaces and momentum (after :meth:`flush`)."""
        self.flush()
        state = {
            s.k: {key: (v.detach().clone() if torch.is_tensor(v) else v) for key, v in self.state[s.p].items()}
            for s in self._slots
            if s.p in self.state and self.state[s.p]
        }
        groups = []
        for group in self.param_groups:
            g = {key: v for key, v in group.items() if key != "params"}
            g["n_params"] = len(group["params"])
            groups.append(g)
        return {
            "zo": {"step": self._step, "rng": self._master.get_state(), "config": asdict(self.config),
                   "shapes": [list(s.p.shape) for s in self._slots], "rule": dict(self._rule),
                   "forward_passes": self._forward_passes},
            "param_groups": groups,
            "state": state,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved; a resumed run repeats the same losses.

        Raises:
            ValueError: the state is not a ZerothOrder state, or was made with other
                settings, parameter groups or parameter shapes (another model).
        """
        self._validate_state(state_dict)
        zo = state_dict["zo"]
        for group, saved in zip(self.param_groups, state_dict["param_groups"]):
            group.update({key: v for key, v in saved.items() if key not in ("n_params", "params")})
        self.flush()
        self.state.clear()
        for s in self._slots:
            saved = state_dict["state"].get(s.k)
            if saved is None:
                continue
            self.state[s.p] = {key: (v.to(s.p.device).clone() if torch.is_tensor(v) else v)
                               for key, v in saved.items()}
        self._master.set_state(zo["rng"])
        self._step = int(zo["step"])
        self._rule = {"alpha": None, "noise_sq": 0.0, "noise_n": 0, **zo.get("rule", {})}
        self._forward_passes = int(zo.get("forward_passes", 0))
        self._sync_side()

    @property
    def _kind(self) -> dict[int, str]:
        """Placement of each tensor by index (a view of the slots, for inspection)."""
        return {s.k: s.placement for s in self._slots}

    # ----------------------------------------------------------------- private
    def _register(self, group: dict[str, Any]) -> None:
        cfg = self.config
        for p in group["params"]:
            k = len(self._slots)
            r = spec.block_rank(tuple(p.shape), cfg.rank) if cfg.low_rank else 0
            placement = "dense" if r == 0 else ("side" if id(p) in self._owners else "write")
            self._slots.append(_Slot(k, p, group, placement, r))
            self._warn_half_precision(p, placement)
            if placement == "side":
                linear, embedding = self._owners[id(p)]
                self._side[k] = SidePath(linear, on_state_dict=self.flush, embedding=embedding)

    def _warn_half_precision(self, p: torch.Tensor, placement: str) -> None:
        """Warn once for a float16 / bfloat16 tensor perturbed in place (see "Precision" in the module docstring)."""
        if self._warned_precision or placement == "side" or p.dtype not in (torch.float16, torch.bfloat16):
            return
        self._warned_precision = True
        warnings.warn(f"ZerothOrder perturbs {p.dtype} parameters in place: each +eps/-2eps/+eps round trip "
                      "rounds, so the weights drift even at lr 0 (bench/results/torch_precision_drift.md); keep "
                      "float32 weights and run the forward under torch.autocast (dfo finetune --autocast bfloat16)",
                      RuntimeWarning, stacklevel=4)

    def _validate_state(self, sd: Any) -> None:
        foreign = "cannot load it into ZerothOrder"
        if not isinstance(sd, dict) or not isinstance(sd.get("zo"), dict) or "param_groups" not in sd \
                or "state" not in sd:
            keys = sorted(map(str, sd)) if isinstance(sd, dict) else type(sd).__name__
            raise ValueError(f"not a ZerothOrder state_dict (keys {keys}; another optimizer's state?): {foreign}")
        zo = sd["zo"]
        saved = zo.get("config")
        if isinstance(saved, dict):  # written before these options: the values those runs used
            saved = {**_LATER_FIELDS, **saved}
        if saved != asdict(self.config):
            raise ValueError(f"optimizer config differs from the checkpoint: {zo.get('config')} vs {asdict(self.config)}")
        groups = sd["param_groups"]
        if len(groups) != len(self.param_groups) or any(
                g.get("n_params") != len(mine["params"]) for g, mine in zip(groups, self.param_groups)):
            raise ValueError("the checkpoint has other parameter groups (another model or parameter selection): "
                             f"{[g.get('n_params') for g in groups]} parameters per group vs "
                             f"{[len(g['params']) for g in self.param_groups]}")
        shapes = zo.get("shapes")
        mine = [list(s.p.shape) for s in self._slots]
        if shapes is not None and [list(x) for x in shapes] != mine:
            bad = next(i for i, (a, b) in enumerate(zip(shapes, mine)) if list(a) != b)
            raise ValueError(f"the checkpoint was made for another model: parameter {bad} has shape "
                             f"{tuple(shapes[bad])} there and {tuple(mine[bad])} here")
        for k, st in sd["state"].items():
            if not isinstance(k, int) or not 0 <= k < len(self._slots) or not isinstance(st, dict):
                raise ValueError(f"the checkpoint holds state for parameter {k!r}, which this optimizer does not have")
            s = self._slots[k]
            m = s.p.shape[0] if s.p.ndim else 1
            n = s.p.shape[1] if s.p.ndim == 2 else None
            want = {"U": (m, s.rank), "V": (n, s.rank), "N": (m, s.rank), "A": (m, s.rank),
                    "momentum_buffer": tuple(s.p.shape)}
            for key, v in st.items():
                if key in want and (not torch.is_tensor(v) or tuple(v.shape) != want[key]):
                    got = tuple(v.shape) if torch.is_tensor(v) else type(v).__name__
                    raise ValueError(f"the checkpoint was made for another model: state {key!r} of parameter {k} "
                                     f"has shape {got}, expected {want[key]}")
        if not (torch.is_tensor(zo.get("rng")) and zo["rng"].dtype == torch.uint8):
            raise ValueError("the checkpoint's generator state is not a uint8 tensor")
        expected = self._master.get_state()
        if zo["rng"].shape != expected.shape:  # N-T21: a truncated or foreign generator state
            raise ValueError(f"the checkpoint's generator state has {zo['rng'].numel()} bytes, a torch CPU generator "
                             f"{expected.numel()}: truncated or not from ZerothOrder")
        if type(zo.get("step")) is not int or zo["step"] < 0:  # N-T23
            raise ValueError(f"the checkpoint's step is {zo.get('step')!r}, not an integer >= 0")
        passes = zo.get("forward_passes", 0)
        if type(passes) is not int or passes < 0:
            raise ValueError(f"the checkpoint's forward_passes is {passes!r}, not an integer >= 0")

    @contextlib.contextmanager
    def _forward_mode(self) -> Iterator[None]:
        """Eval mode for the closure (flags restored after), or a one-time warning when dropout stays on."""
        model = self._model
        if model is None:
            yield
            return
        if not self._eval_mode:
            if not self._warned_dropout and _dropout_active(model):
                self._warned_dropout = True
                warnings.warn("ZerothOrder(eval_mode=False): dropout is active, so the two forward passes of a step "
                              "see different networks and the loss difference is mostly dropout noise; put the "
                              "model in eval mode or use eval_mode=True", RuntimeWarning, stacklevel=3)
            yield
            return
        modes = [(m, m.training) for m in model.modules()]
        model.eval()
        try:
            yield
        finally:
            for m, mode in modes:
                m.training = mode

    def _evaluate(self, closure: Callable[[], Any], side: str, i: int) -> float:
        self._examples = None
        out = closure()
        if torch.is_tensor(out):
            if out.numel() != 1 and not (self.config.entry.line_search and out.ndim == 1):
                raise TypeError(f"the closure must return a scalar loss, got a tensor of shape {tuple(out.shape)}"
                                + (" (per-example losses, a 1-D tensor, only for the line-search methods)"
                                   if out.ndim == 1 else ""))
            if out.numel() != 1:  # per-example losses: the loss is their mean, the spread is the batch noise
                self._examples = out.detach().double().cpu().numpy()
                value = float(self._examples.mean())
            else:
                value = float(out.detach().item())  # exact for every dtype (float64 losses keep their digits)
        elif isinstance(out, (int, float)):
            value = float(out)
        else:
            raise TypeError(f"the closure must return a scalar tensor or a float, got {type(out).__name__}")
        if not math.isfinite(value):
            raise FloatingPointError(
                f"ZerothOrder step {self._step}: loss at theta {side} * z (direction {i}) is {value}; "
                "parameters were restored (lower eps or lr, or check the closure)"
            )
        return value

    def _refresh_due(self, active: list[_Slot]) -> None:
        """Redraw the subspaces whose ``refresh`` steps are over; fold side-path updates first."""
        cfg = self.config
        seed = None
        for s in active:
            if s.placement == "dense":
                continue
            st = self.state[s.p]
            if not spec.refresh_due(self._step, st.get("refreshed_at"), cfg.refresh):
                continue
            if seed is None:
                seed = int(torch.randint(0, 2**62, (), generator=self._master).item())
            self._fold(s.k)
            u, v = spec.draw_subspace(cfg.family, tuple(s.p.shape), s.rank, seed, s.k)
            v = to_torch(v, s.p)
            if "N" in st and "V" in st:
                st["N"] = spec.carry_momentum(st["N"], st["V"], v)
            if u is not None:
                st["U"] = to_torch(u, s.p)
            st["V"] = v
            st["refreshed_at"] = self._step
            st["subspace_seed"] = seed
            if s.placement == "side":
                st.setdefault("A", torch.zeros(s.p.shape[0], s.rank, device=s.p.device, dtype=v.dtype))
                st["A_active"] = False

    def _fold(self, k: int) -> None:
        st = self.state[self._slots[k].p]
        if self._slots[k].placement == "side" and st.get("A_active"):
            w = self._slots[k].p
            w.addmm_(st["A"].to(w.dtype), st["V"].T.to(w.dtype))
            st["A"].zero_()
            st["A_active"] = False

    def _direction(self, s: _Slot, i: int) -> torch.Tensor:
        """The m x r left factor D of direction ``i`` of tensor ``s`` (P = D V^T), from the spec's stream."""
        key = (s.k, i)
        d = self._dcache.get(key)
        if d is None:
            fam, shape = self.config.family, tuple(s.p.shape)
            core = to_torch(spec.draw_core(fam, shape, s.rank, self._step_seed, s.k, i), s.p)
            d = spec.left_factor(fam, shape, s.rank, core, self.state[s.p].get("U"))
            self._dcache[key] = d
        return d

    def _dense_seed(self, s: _Slot, i: int) -> int:
        return mix(mix(self._step_seed, i), s.k)

    def _perturb(self, active: list[_Slot], i: int, alpha: float) -> None:
        """Move every active tensor by ``alpha`` times direction ``i`` (side paths: change the factor)."""
        dense = []
        for s in active:
            if s.placement == "dense":
                dense.append((s.p, self._dense_seed(s, i), alpha))
            elif s.placement == "write":
                v = self.state[s.p]["V"]
                s.p.addmm_(self._direction(s, i).to(s.p.dtype), v.T.to(s.p.dtype), alpha=alpha)
            else:
                self._offset[s.k] = (self._offset.get(s.k, (0.0, i))[0] + alpha, i)
        self._gens.add_gaussian(dense, self.config.noise)
        self._sync_side()

    def _sync_side(self) -> None:
        """Set each side path to ``A + offset D`` (or off when both are zero)."""
        for k, side in self._side.items():
            s = self._slots[k]
            st = self.state[s.p]
            if "V" not in st:
                side.set(None, None)
                continue
            left = st["A"] if st.get("A_active") else None
            off, i = self._offset.get(k, (0.0, 0))
            if off != 0.0:
                d = self._direction(s, i) * off
                left = d if left is None else left + d
            side.set(left, st["V"] if left is not None else None)

    def _restore_and_update(self, active: list[_Slot], grads: list[float]) -> None:
        """Undo the last ``-eps`` perturbation and apply the averaged update, fused per tensor."""
        cfg = self.config
        n, last = len(grads), len(grads) - 1
        beta = cfg.momentum
        dense = [s for s in active if s.placement == "dense"]
        shrink = {s.k: 1.0 - s.group["lr"] * self._decay(s) for s in active}
        for s in active:
            if shrink[s.k] != 1.0:
                s.p.mul_(shrink[s.k])
        if beta > 0 and dense:  # momentum buffers for the dense tensors
            firsts = {s.k: "momentum_buffer" not in self.state[s.p] for s in dense}
            for s in dense:
                keep, _ = spec.momentum_coefficients(beta, firsts[s.k])
                buf = self.state[s.p].setdefault("momentum_buffer", torch.zeros_like(s.p))
                buf.mul_(keep)
            for i, g in enumerate(grads):
                self._gens.add_gaussian([
                    (self.state[s.p]["momentum_buffer"], self._dense_seed(s, i),
                     spec.momentum_coefficients(beta, firsts[s.k])[1] * g / n) for s in dense], cfg.noise)
            self._gens.add_gaussian([(s.p, self._dense_seed(s, last), shrink[s.k] * cfg.eps) for s in dense],
                                    cfg.noise)
            for s in dense:
                s.p.add_(self.state[s.p]["momentum_buffer"], alpha=-s.group["lr"])
        elif dense:  # restore and update in one pass per direction
            self._gens.add_gaussian([(s.p, self._dense_seed(s, last),
                                      shrink[s.k] * cfg.eps - s.group["lr"] * grads[last] / n) for s in dense],
                                    cfg.noise)
            for i, g in enumerate(grads[:-1]):
                self._gens.add_gaussian([(s.p, self._dense_seed(s, i), -s.group["lr"] * g / n) for s in dense],
                                        cfg.noise)
        for s in active:
            if s.placement != "dense":
                self._low_rank_update(s, grads, shrink[s.k])

    def _decay(self, s: _Slot) -> float:
        """Weight decay of tensor ``s``: its group's, except 0 for tensors below 2-D unless ``decay_1d``."""
        return 0.0 if (s.p.ndim < 2 and not s.group["decay_1d"]) else s.group["weight_decay"]

    def _low_rank_update(self, s: _Slot, grads: list[float], shrink: float) -> None:
        """Restore and update of one low-rank tensor (after its weight was shrunk by weight decay)."""
        cfg = self.config
        n, last, lr, p = len(grads), len(grads) - 1, s.group["lr"], s.p
        st = self.state[p]
        w = spec.estimate_weight(cfg.family, s.rank)
        est = self._direction(s, 0) * (grads[0] * w / n)
        for i in range(1, n):
            est.add_(self._direction(s, i), alpha=grads[i] * w / n)
        if cfg.momentum > 0:
            st["N"] = spec.momentum_update(st.get("N"), est, cfg.momentum)
            step_left = st["N"]
        else:
            step_left = est
        if s.placement == "write":  # restore and update share one rank-r product (one m x n pass)
            left = self._direction(s, last) * (shrink * cfg.eps) - step_left * lr
            p.addmm_(left.to(p.dtype), st["V"].T.to(p.dtype))
        else:
            self._offset.pop(s.k, None)
            if shrink != 1.0:
                st["A"].mul_(shrink)
            st["A"].add_(step_left, alpha=-lr)
            st["A_active"] = True
