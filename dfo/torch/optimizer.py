"""Zeroth-order optimizers for torch modules: MeZO, SubZero, LOZO and LOZO-M.

All four estimate the gradient from two forward passes at ``theta +- eps P``
(two-sided SPSA) and differ in the distribution of the direction ``P``:

* ``mezo`` (Malladi et al. 2023, "Fine-Tuning Language Models with Just Forward
  Passes"): ``P = z ~ N(0, I)`` for every tensor. Projected gradient
  ``g = (L(theta + eps z) - L(theta - eps z)) / (2 eps)``, update
  ``theta <- theta - lr (g z + wd theta)``.
* ``subzero`` (Yu et al. 2024, "Random Subspace Zeroth-order Optimization for
  Memory-Efficient LLM Fine-Tuning"): for each 2-D weight W (m x n),
  ``P = sqrt(m n) / r * U Z V^T`` with column-orthonormal U (m x r), V (n x r)
  redrawn every ``refresh`` steps and ``Z ~ N(0, I_{r x r})`` each step; the update
  is ``W <- W - lr g P``. Its mean is ``(m n / r^2) U U^T grad V V^T``: the gradient
  projected onto the subspace.
* ``lozo`` (Chen et al. 2024, "Enhancing Zeroth-order Fine-tuning for Language
  Models with Low-rank Structures"): ``P = U V^T`` with Gaussian U (m x r) new each
  step and Gaussian V (n x r) redrawn every ``refresh`` steps (the paper's nu); the
  estimate is ``g U V^T / r``, whose mean given V is ``grad V V^T / r``.
* ``lozo-m``: LOZO with momentum kept as an m x r factor N (the full momentum is
  ``N V^T``): ``N <- beta N + (1 - beta) g U / r`` and ``W <- W - lr N V^T``. When V is
  redrawn the momentum ``N V_old^T`` is projected onto the row space of the new
  ``V^T``: ``N <- N V_old^T V_new (V_new^T V_new)^{-1}``.

Tensors that are not 2-D (biases, norm scales) and 2-D tensors smaller than the
rank get dense Gaussian directions in every method. Weight decay is applied to
tensors with at least two dimensions only (set ``decay_1d=True`` in a group to
decay the others too).

Memory design: directions are regenerated from seeds by a private generator per
device (:mod:`dfo.torch.directions`) and applied in place with
``empty_like(p).normal_``; the restore after the second forward pass and the
update are one fused pass (MeZO: ``+eps z``, ``-2 eps z``, then
``+(eps - lr g) z``). With ``model=`` given, the low-rank methods never touch the
weights of unshared ``nn.Linear`` layers during a step: the perturbation and the
updates of the current subspace ride along as a side path
``x (W + L V^T)^T = x W^T + (x V) L^T`` (:mod:`dfo.torch.sidepath`), where the
m x r factor ``L = A + eps D`` holds the accumulated update ``A`` (for SubZero
``A = U C`` with the r x r core C) and the direction ``D``. ``A V^T`` is folded into
W when the subspace is refreshed, on :meth:`ZerothOrder.flush`, and before any
``state_dict`` of the layer or the optimizer is taken. Other 2-D weights (tied
embeddings, layers of modules other than ``nn.Linear``) get the low-rank
perturbation written in place with ``addmm_``.

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

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable

import torch
from torch import nn

from dfo.torch.directions import Generators, factor_dtype, gaussian, gaussian_like, mix, orthonormal
from dfo.torch.sidepath import SidePath, linear_owners

METHODS = ("mezo", "subzero", "lozo", "lozo-m")


@dataclass(frozen=True, kw_only=True)
class ZOConfig:
    """Hyperparameters shared by all parameter groups.

    Attributes:
        method: ``"mezo"``, ``"subzero"``, ``"lozo"`` or ``"lozo-m"``.
        eps: perturbation radius.
        rank: r of the low-rank methods.
        refresh: steps between subspace redraws (SubZero's T, LOZO's nu).
        momentum: beta of LOZO-M (only ``lozo-m`` accepts a non-zero value).
        n_directions: directions averaged per step (2 forward passes each).
    """

    method: str = "mezo"
    eps: float = 1e-3
    rank: int = 8
    refresh: int = 50
    momentum: float = 0.0
    n_directions: int = 1

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose one of {METHODS}")
        if not (self.eps > 0 and math.isfinite(self.eps)):
            raise ValueError(f"eps must be a positive finite number, got {self.eps}")
        if self.rank < 1 or self.refresh < 1 or self.n_directions < 1:
            raise ValueError(
                f"rank, refresh and n_directions must be >= 1, got {self.rank}, {self.refresh}, {self.n_directions}"
            )
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.momentum and self.method != "lozo-m":
            raise ValueError(f"momentum is only used by 'lozo-m' (method is {self.method!r})")

    @property
    def low_rank(self) -> bool:
        return self.method != "mezo"


@dataclass
class StepInfo:
    """What the last step saw: losses on both sides and projected gradients per direction."""

    loss_plus: list[float] = field(default_factory=list)
    loss_minus: list[float] = field(default_factory=list)
    projected_grad: list[float] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)


class ZerothOrder(torch.optim.Optimizer):
    """Forward-pass-only optimizer (MeZO / SubZero / LOZO / LOZO-M), see the module docstring.

    Args:
        params: parameters or parameter groups (dicts with ``params`` and optional
            ``lr``, ``weight_decay``, ``decay_1d``). Parameters with
            ``requires_grad=False`` are never perturbed or updated.
        method: ``"mezo"``, ``"subzero"``, ``"lozo"`` or ``"lozo-m"``.
        lr: learning rate.
        eps: perturbation radius.
        rank: rank r of the low-rank directions.
        refresh: steps between subspace redraws.
        momentum: LOZO-M's beta (default 0.9 for ``lozo-m``, 0 otherwise).
        weight_decay: decoupled from nothing: ``theta <- theta - lr wd theta`` each step,
            on tensors with >= 2 dimensions unless the group sets ``decay_1d``.
        n_directions: directions per step; the update averages their estimates.
        model: the module owning the parameters; enables side paths on
            ``nn.Linear`` weights for the low-rank methods.
        seed: seed of the optimizer's generator (``None``: fresh entropy).

    ``step(closure)`` calls ``closure`` ``2 * n_directions`` times, under
    ``torch.no_grad``. The closure returns a scalar (tensor or float); it may
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
        rank: int = 8,
        refresh: int = 50,
        momentum: float | None = None,
        weight_decay: float = 0.0,
        n_directions: int = 1,
        *,
        model: nn.Module | None = None,
        seed: int | None = None,
    ) -> None:
        if momentum is None:
            momentum = 0.9 if method == "lozo-m" else 0.0
        self.config = ZOConfig(
            method=method, eps=eps, rank=rank, refresh=refresh, momentum=momentum, n_directions=n_directions
        )
        if lr < 0 or weight_decay < 0:
            raise ValueError(f"lr and weight_decay must be >= 0, got {lr}, {weight_decay}")
        super().__init__(params, dict(lr=lr, weight_decay=weight_decay, decay_1d=False))
        self._params: list[tuple[int, torch.Tensor, dict[str, Any]]] = []
        for group in self.param_groups:
            for p in group["params"]:
                if p.requires_grad:
                    self._params.append((len(self._params), p, group))
        self._gens = Generators()
        self._master = torch.Generator()
        self._master.manual_seed(int(torch.randint(0, 2**62, ()).item()) if seed is None else int(seed))
        self._step = 0
        self.last_step = StepInfo()
        self._kind: dict[int, str] = {}
        self._side: dict[int, SidePath] = {}
        owners = linear_owners(model) if (model is not None and self.config.low_rank) else {}
        for k, p, _ in self._params:
            if self.config.low_rank and p.ndim == 2 and min(p.shape) > self.config.rank:
                self._kind[k] = "side" if id(p) in owners else "write"
                if id(p) in owners:
                    self._side[k] = SidePath(owners[id(p)], on_state_dict=self.flush)
            else:
                self._kind[k] = "dense"
        self._dcache: dict[tuple[int, int], torch.Tensor] = {}

    # ------------------------------------------------------------------ public
    @property
    def step_count(self) -> int:
        """Number of completed steps."""
        return self._step

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor | float] | None = None) -> float:  # type: ignore[override]
        """One zeroth-order step; returns the mean of the ``2 n_directions`` losses.

        Raises:
            TypeError: no closure, or it returned something that is not a scalar.
            FloatingPointError: a loss is NaN or infinite (parameters are restored).
        """
        if closure is None:
            raise TypeError("ZerothOrder.step needs a closure that runs a forward pass and returns the loss")
        cfg = self.config
        self._refresh_due()
        seeds = [int(torch.randint(0, 2**62, (), generator=self._master).item()) for _ in range(cfg.n_directions)]
        info = StepInfo(seeds=list(seeds))
        offset, cur = 0.0, seeds[0]
        try:
            for i, seed in enumerate(seeds):
                cur = seed
                self._perturb(seed, cfg.eps)
                offset = cfg.eps
                lp = self._evaluate(closure, "+eps", i)
                self._perturb(seed, -2 * cfg.eps)
                offset = -cfg.eps
                lm = self._evaluate(closure, "-eps", i)
                g = (lp - lm) / (2 * cfg.eps)
                info.loss_plus.append(lp)
                info.loss_minus.append(lm)
                info.projected_grad.append(g)
                if i < len(seeds) - 1:
                    self._perturb(seed, cfg.eps)
                    offset = 0.0
            self._restore_and_update(seeds, info.projected_grad)
            offset = 0.0
        finally:
            if offset != 0.0:
                self._perturb(cur, -offset)
            self._sync_side()
            self._dcache.clear()
        self._step += 1
        self.last_step = info
        return (sum(info.loss_plus) + sum(info.loss_minus)) / (2 * len(seeds))

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

    def state_dict(self) -> dict[str, Any]:
        """Step, generator state, hyperparameters, subspaces and momentum (after :meth:`flush`)."""
        self.flush()
        state = {
            k: {key: (v.detach().clone() if torch.is_tensor(v) else v) for key, v in self.state[p].items()}
            for k, p, _ in self._params
            if p in self.state
        }
        groups = []
        for group in self.param_groups:
            g = {key: v for key, v in group.items() if key != "params"}
            g["n_params"] = len(group["params"])
            groups.append(g)
        return {
            "zo": {"step": self._step, "rng": self._master.get_state(), "config": asdict(self.config)},
            "param_groups": groups,
            "state": state,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved; a resumed run repeats the same losses."""
        zo = state_dict["zo"]
        if zo["config"] != asdict(self.config):
            raise ValueError(f"optimizer config differs from the checkpoint: {zo['config']} vs {asdict(self.config)}")
        if len(state_dict["param_groups"]) != len(self.param_groups):
            raise ValueError("checkpoint has a different number of parameter groups")
        for group, saved in zip(self.param_groups, state_dict["param_groups"]):
            if saved["n_params"] != len(group["params"]):
                raise ValueError("checkpoint has a different number of parameters in a group")
            group.update({key: v for key, v in saved.items() if key != "n_params"})
        self.flush()
        self.state.clear()
        for k, p, _ in self._params:
            saved = state_dict["state"].get(k)
            if saved is None:
                continue
            self.state[p] = {key: (v.to(p.device).clone() if torch.is_tensor(v) else v) for key, v in saved.items()}
        self._master.set_state(zo["rng"])
        self._step = int(zo["step"])
        self._sync_side()

    # ----------------------------------------------------------------- private
    def _param(self, k: int) -> torch.Tensor:
        return self._params[k][1]

    def _evaluate(self, closure: Callable[[], Any], side: str, i: int) -> float:
        out = closure()
        if torch.is_tensor(out):
            if out.numel() != 1:
                raise TypeError(f"the closure must return a scalar loss, got a tensor of shape {tuple(out.shape)}")
            value = float(out.detach().float().item())
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

    def _refresh_due(self) -> None:
        """Redraw the subspaces whose ``refresh`` steps are over; fold side-path updates first."""
        cfg = self.config
        if not cfg.low_rank:
            return
        seed = None
        for k, p, _ in self._params:
            if self._kind[k] == "dense":
                continue
            st = self.state[p]
            if "V" in st and self._step - st["refreshed_at"] < cfg.refresh:
                continue
            if seed is None:
                seed = int(torch.randint(0, 2**62, (), generator=self._master).item())
            self._fold(k)
            m, n = p.shape
            fd = factor_dtype(p)
            old_v = st.get("V")
            if cfg.method == "subzero":
                st["U"] = orthonormal(m, cfg.rank, p.device, self._gens, mix(seed, 2 * k), fd)
                st["V"] = orthonormal(n, cfg.rank, p.device, self._gens, mix(seed, 2 * k + 1), fd)
            else:
                st["V"] = gaussian((n, cfg.rank), p.device, self._gens, mix(seed, 2 * k + 1), fd)
            if cfg.method == "lozo-m":
                if "N" not in st:
                    st["N"] = torch.zeros(m, cfg.rank, device=p.device, dtype=fd)
                elif old_v is not None:
                    new_v = st["V"]
                    coef = torch.linalg.solve(new_v.T @ new_v, new_v.T @ old_v)  # r x r: (V'^T V')^-1 V'^T V
                    st["N"] = st["N"] @ coef.T
            st["refreshed_at"] = self._step
            if self._kind[k] == "side":
                st.setdefault("A", torch.zeros(m, cfg.rank, device=p.device, dtype=fd))
                st["A_active"] = False

    def _fold(self, k: int) -> None:
        st = self.state[self._param(k)]
        if self._kind[k] == "side" and st.get("A_active"):
            w = self._param(k)
            w.addmm_(st["A"].to(w.dtype), st["V"].T.to(w.dtype))
            st["A"].zero_()
            st["A_active"] = False

    def _direction(self, k: int, seed: int) -> torch.Tensor:
        """The m x r left factor D of the low-rank direction ``D V^T`` of tensor ``k``."""
        key = (seed, k)
        d = self._dcache.get(key)
        if d is None:
            p = self._param(k)
            st = self.state[p]
            r = self.config.rank
            if self.config.method == "subzero":
                z = gaussian((r, r), p.device, self._gens, mix(seed, k), factor_dtype(p))
                d = st["U"] @ z * (math.sqrt(p.shape[0] * p.shape[1]) / r)
            else:
                d = gaussian((p.shape[0], r), p.device, self._gens, mix(seed, k), factor_dtype(p))
            self._dcache[key] = d
        return d

    def _perturb(self, seed: int, alpha: float) -> None:
        """Move every tensor by ``alpha`` times its direction (side paths: change the factor)."""
        for k, p, _ in self._params:
            kind = self._kind[k]
            if kind == "dense":
                p.add_(gaussian_like(p, self._gens, mix(seed, k)), alpha=alpha)
            elif kind == "write":
                v = self.state[p]["V"]
                p.addmm_(self._direction(k, seed).to(p.dtype), v.T.to(p.dtype), alpha=alpha)
            else:
                st = self.state[p]
                st["offset"] = st.get("offset", 0.0) + alpha
                st["offset_seed"] = seed
        self._sync_side()

    def _sync_side(self) -> None:
        """Set each side path to ``A + offset D`` (or off when both are zero)."""
        for k, side in self._side.items():
            p = self._param(k)
            st = self.state[p]
            off = st.get("offset", 0.0)
            if abs(off) < 1e-300:
                off = st["offset"] = 0.0
            if "V" not in st:
                side.set(None, None)
                continue
            left = st["A"] if st.get("A_active") else None
            if off != 0.0:
                d = self._direction(k, st["offset_seed"]) * off
                left = d if left is None else left + d
            side.set(left, st["V"] if left is not None else None)

    def _restore_and_update(self, seeds: list[int], grads: list[float]) -> None:
        """Undo the last ``-eps`` perturbation and apply the averaged update, fused per tensor."""
        cfg = self.config
        n = len(seeds)
        last = seeds[-1]
        beta = cfg.momentum
        for k, p, group in self._params:
            lr, wd = group["lr"], group["weight_decay"]
            if p.ndim < 2 and not group["decay_1d"]:
                wd = 0.0
            shrink = 1.0 - lr * wd
            kind = self._kind[k]
            st = self.state[p]
            if kind == "dense":
                use_momentum = beta > 0
                z = gaussian_like(p, self._gens, mix(last, k))
                if shrink != 1.0:
                    p.mul_(shrink)
                if use_momentum:
                    buf = st.get("momentum_buffer")
                    if buf is None:
                        buf = st["momentum_buffer"] = torch.zeros_like(p)
                    buf.mul_(beta).add_(z, alpha=(1 - beta) * grads[-1] / n)
                    p.add_(z, alpha=shrink * cfg.eps)
                    for seed, g in zip(seeds[:-1], grads[:-1]):
                        buf.add_(gaussian_like(p, self._gens, mix(seed, k)), alpha=(1 - beta) * g / n)
                    p.add_(buf, alpha=-lr)
                else:
                    p.add_(z, alpha=shrink * cfg.eps - lr * grads[-1] / n)
                    for seed, g in zip(seeds[:-1], grads[:-1]):
                        p.add_(gaussian_like(p, self._gens, mix(seed, k)), alpha=-lr * g / n)
                continue
            scale = 1.0 if cfg.method == "subzero" else 1.0 / cfg.rank
            if kind == "side":
                st["offset"] = 0.0
            # estimate's left factor: sum_i g_i scale D_i / n (an m x r matrix)
            est = torch.zeros_like(self._direction(k, last))
            for seed, g in zip(seeds, grads):
                est.add_(self._direction(k, seed), alpha=g * scale / n)
            if cfg.method == "lozo-m":
                st["N"].mul_(beta).add_(est, alpha=1 - beta)
                step_left = st["N"]
            else:
                step_left = est
            if kind == "write":
                v_t = st["V"].T.to(p.dtype)
                if shrink != 1.0:
                    p.mul_(shrink)
                if cfg.method == "lozo-m":
                    p.addmm_(self._direction(k, last).to(p.dtype), v_t, alpha=shrink * cfg.eps)
                    p.addmm_(step_left.to(p.dtype), v_t, alpha=-lr)
                else:  # restore and update share one rank-r product
                    left = self._direction(k, last) * (shrink * cfg.eps) - step_left * lr
                    p.addmm_(left.to(p.dtype), v_t)
            else:
                if shrink != 1.0:
                    p.mul_(shrink)
                    st["A"].mul_(shrink)
                st["A"].add_(step_left, alpha=-lr)
                st["A_active"] = True
