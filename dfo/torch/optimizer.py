"""Zeroth-order optimizer for torch modules: :class:`ZerothOrder`, one ``torch.optim.Optimizer`` for every method of
the registry :mod:`dfo.torch.methods` (MeZO, SubZero, LOZO, LOZO-M and the step rules ``mezo-orth``, ``mezo-ls``,
``fzoo``, ``fzoo-ls``, ``mezo-interp``; the formulas and papers are in that module).

This module holds the optimizer's life cycle: the settings (:mod:`dfo.torch.config`), parameter groups, the
generator that draws each step's seed, the dispatch of a step to its rule, the step count and the forward-pass
count, and the checkpoint (:mod:`dfo.torch.state`). The parts, one job each:

* :mod:`dfo.torch.placements`: each tensor's placement (dense, low-rank written, low-rank side path), subspaces
  and the moves along the step's directions (and why float16 / bfloat16 weights drift);
* :mod:`dfo.torch.spsa`: the spec's two-sided step (``mezo``, ``subzero``, ``lozo``, ``lozo-m``);
* :mod:`dfo.torch.rules` (with :mod:`dfo.torch.linesearch`): ``mezo-orth``, ``mezo-ls``, ``fzoo``, ``fzoo-ls``;
* :mod:`dfo.torch.interp`: ``mezo-interp``;
* :mod:`dfo.torch.closure`: the model's mode during the forward passes and the checks on the loss;
* :mod:`dfo.torch.stepinfo`: :class:`StepInfo`, what the last step saw.

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

from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn

import dfo.torch.interp as interp
import dfo.torch.rules as rules
import dfo.torch.spsa as spsa
import dfo.torch.state as checkpoint
from dfo.torch.closure import ForwardMode, read_loss
from dfo.torch.config import NOISE_CACHE_BYTES, ZOConfig, check_seed, finite_nonneg
from dfo.torch.directions import Generators
from dfo.torch.methods import TorchMethod
from dfo.torch.placements import Placements, Slot, decay
from dfo.torch.sidepath import linear_owners
from dfo.torch.stepinfo import StepInfo

__all__ = ["ZerothOrder"]


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
        defaults = dict(lr=finite_nonneg("lr", lr), weight_decay=finite_nonneg("weight_decay", weight_decay),
                        decay_1d=False)
        self._forward_mode = ForwardMode(model, eval_mode)
        owners = linear_owners(model) if (model is not None and self.config.low_rank) else {}
        self._placements: Placements | None = None
        super().__init__(params, defaults)
        self._placements = Placements(self.config, self.state, owners)
        for group in self.param_groups:
            self._placements.register(group)
        self._gens = Generators(cache_bytes=noise_cache_bytes)
        self._master = torch.Generator()
        self._master.manual_seed(int(torch.randint(0, 2**62, ()).item()) if seed is None else check_seed(seed))
        self._step = 0
        self._rule = dict(checkpoint.FRESH_RULE)  # line-search state (dfo.torch.linesearch)
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
                finite_nonneg(key, param_group[key])
        super().add_param_group(param_group)
        if self._placements is not None:
            self._placements.register(self.param_groups[-1])

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor | float] | None = None) -> float:  # type: ignore[override]
        """One zeroth-order step; returns the mean of the ``2 n_directions`` losses (the step rules: see
        :mod:`dfo.torch.methods`).

        Raises:
            TypeError: no closure, or it returned something that is not a scalar.
            ValueError: a group's lr or weight_decay is not a finite number >= 0.
            FloatingPointError: a loss is NaN or infinite (parameters are restored).
        """
        if closure is None:
            raise TypeError("ZerothOrder.step needs a closure that runs a forward pass and returns the loss")
        for i, group in enumerate(self.param_groups):
            finite_nonneg(f"param group {i} lr", group["lr"])
            finite_nonneg(f"param group {i} weight_decay", group["weight_decay"])
        entry = self.config.entry
        active = [s for s in self._slots if s.p.requires_grad]
        with self._forward_mode():
            if not entry.new_rule:  # the spec's methods redraw their subspaces before the step's seed
                self._placements.refresh_due(active, self._step, self._master)
            seed = int(torch.randint(0, 2**62, (), generator=self._master).item())
            self._placements.step_seed = seed
            info = StepInfo(seed=seed)
            loss = self._run(entry, closure, active, info)
        self._step += 1
        self._forward_passes += info.forward_passes
        self.last_step = info
        return loss

    def _run(self, entry: TorchMethod, closure: Callable[[], Any], active: list[Slot], info: StepInfo) -> float:
        """The step of the registry ``entry``: the spec's two-sided step (:mod:`dfo.torch.spsa`) unless its
        ``new_rule``, then :mod:`dfo.torch.interp` for ``step="interp"``, else :mod:`dfo.torch.rules`."""
        common = dict(config=self.config, gens=self._gens, evaluate=self._evaluate)
        if not entry.new_rule:
            return spsa.step(closure, active, info, placements=self._placements, **common)
        if entry.step == "interp":
            return interp.step(closure, active, info, dense_seed=self._dense_seed, decay=decay, **common)
        return rules.step(closure, active, info, dense_seed=self._dense_seed, decay=decay, rule=self._rule,
                          examples=lambda: self._examples, step_count=self._step, **common)

    @torch.no_grad()
    def flush(self) -> None:
        """Fold the updates held in side-path factors into the weights (``W += A V^T``).

        Call before reading parameters directly; ``state_dict`` of the optimizer and
        of any side-pathed layer (hence of the model) calls it automatically.
        """
        self._placements.flush()

    def close(self) -> None:
        """Flush and remove the side-path hooks from the model."""
        self._placements.close()

    def state_dict(self) -> dict[str, Any]:
        """Step, generator state, hyperparameters, shapes, subspaces and momentum (after :meth:`flush`)."""
        self.flush()
        return checkpoint.to_dict(config=self.config, slots=self._slots, state=self.state,
                                  param_groups=self.param_groups, step=self._step, master=self._master,
                                  rule=self._rule, forward_passes=self._forward_passes)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved; a resumed run repeats the same losses.

        Raises:
            ValueError: the state is not a ZerothOrder state, or was made with other
                settings, parameter groups or parameter shapes (another model).
        """
        checkpoint.check(state_dict, config=self.config, slots=self._slots, param_groups=self.param_groups,
                         master=self._master)
        zo = state_dict["zo"]
        checkpoint.restore_groups(state_dict, self.param_groups)
        self.flush()
        checkpoint.restore_state(state_dict, self._slots, self.state)
        self._master.set_state(zo["rng"])
        self._step = int(zo["step"])
        self._rule = {**checkpoint.FRESH_RULE, **zo.get("rule", {})}
        self._forward_passes = int(zo.get("forward_passes", 0))
        self._placements.sync_side()

    # ----------------------------------------------------------------- private
    @property
    def _slots(self) -> list[Slot]:
        """The tensors with their placements (:mod:`dfo.torch.placements`)."""
        return self._placements.slots

    @property
    def _kind(self) -> dict[int, str]:
        """Placement of each tensor by index (a view of the slots, for inspection)."""
        return self._placements.kind

    def _dense_seed(self, s: Slot, i: int) -> int:
        """The seed of the step's Gaussian direction ``z_i`` for tensor ``s``."""
        return self._placements.dense_seed(s, i)

    def _evaluate(self, closure: Callable[[], Any], side: str, i: int) -> float:
        """Call the closure once and check its loss (per-example losses kept in ``_examples``)."""
        self._examples = None
        value, self._examples = read_loss(closure(), per_example=self.config.entry.line_search, step=self._step,
                                          side=side, i=i)
        return value
