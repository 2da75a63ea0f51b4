"""Where each tensor of :class:`dfo.torch.ZerothOrder` takes its perturbations: its *placement*, its subspace
and side path, and the moves ``theta += alpha P_i`` along direction ``i`` of the step.

Each tensor gets a placement:

* ``dense``: tensors that are not 2-D (biases, norm scales), and every tensor for
  MeZO and the step rules: Gaussian ``z`` regenerated from a seed, added in place chunk by chunk
  (:mod:`dfo.torch.directions`).
* ``write``: low-rank directions ``D V^T`` written into the weight with ``addmm_``
  (no m x n temporary): 2-D tensors of modules other than ``nn.Linear`` (or of a
  linear layer and an embedding tied together), or every 2-D tensor when ``model``
  is not given.
* ``side``: with ``model=`` given, the weights of unshared ``nn.Linear`` layers are
  never touched during a step (nor that of a linear head tied to an ``nn.Embedding``):
  the perturbation and the updates of the current subspace ride along as a side path
  ``x (W + L V^T)^T = x W^T + (x V) L^T`` (:mod:`dfo.torch.sidepath`) with ``L = A + offset * D``; ``A``
  accumulates the updates and is folded into W (``W += A V^T``) when the subspace is refreshed, on
  :meth:`Placements.flush` (``ZerothOrder.flush``), and before any ``state_dict`` of the layer or the optimizer.

The low-rank formulas (ranks, subspaces, left factors, refresh schedule) are those of
:mod:`dfo.estimators.lowrank_spec`; the per-tensor state (``U``, ``V``, ``A``, ``N``, ...) lives in the
optimizer's ``state``, which this object reads and writes.

Precision: the two-sided step writes ``+eps P``, ``-2 eps P`` and ``+eps P`` into
in-place tensors, and in float16 / bfloat16 each write rounds, so the weights take a
random walk even at lr 0 (after 200 steps on a small LM: relative change 9e-7 in
float32, 7e-3 in float16, 4e-2 in bfloat16; ``bench/results/torch_precision_drift.md``).
:meth:`Placements.register` warns once when it gets such tensors; keep float32 weights and run the
forward passes under ``torch.autocast`` instead (``dfo finetune --autocast bfloat16``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, MutableMapping

import torch

from dfo.estimators import lowrank_spec as spec
from dfo.torch.config import ZOConfig
from dfo.torch.directions import Generators, mix, to_torch
from dfo.torch.sidepath import SidePath


@dataclass
class Slot:
    """One tensor: its index k (stable across groups), group, placement and rank."""

    k: int
    p: torch.Tensor
    group: dict[str, Any]
    placement: str  # "dense" | "write" | "side"
    rank: int


def decay(s: Slot) -> float:
    """Weight decay of tensor ``s``: its group's, except 0 for tensors below 2-D unless ``decay_1d``."""
    return 0.0 if (s.p.ndim < 2 and not s.group["decay_1d"]) else s.group["weight_decay"]


class Placements:
    """The optimizer's tensors (:class:`Slot`), their side paths and the current step's directions.

    Args:
        config: the optimizer's settings.
        state: the optimizer's per-parameter state (``torch.optim.Optimizer.state``).
        owners: ``id(weight) -> (linear, embedding)`` of the weights that get side paths
            (:func:`dfo.torch.sidepath.linear_owners`; empty: none).
    """

    def __init__(self, config: ZOConfig, state: MutableMapping[torch.Tensor, dict[str, Any]],
                 owners: dict[int, Any]) -> None:
        self.config = config
        self.state = state
        self.owners = owners
        self.slots: list[Slot] = []
        self.side: dict[int, SidePath] = {}
        self.offset: dict[int, tuple[float, int]] = {}  # side paths: (alpha, direction) of the current move
        self.dcache: dict[tuple[int, int], torch.Tensor] = {}  # left factors D of the step's directions
        self.step_seed = 0
        self.warned_precision = False

    def register(self, group: dict[str, Any]) -> None:
        """Give each tensor of ``group`` its slot: index, placement, rank (and a side path)."""
        cfg = self.config
        for p in group["params"]:
            k = len(self.slots)
            r = spec.block_rank(tuple(p.shape), cfg.rank) if cfg.low_rank else 0
            placement = "dense" if r == 0 else ("side" if id(p) in self.owners else "write")
            self.slots.append(Slot(k, p, group, placement, r))
            self._warn_half_precision(p, placement)
            if placement == "side":
                linear, embedding = self.owners[id(p)]
                self.side[k] = SidePath(linear, on_state_dict=self.flush, embedding=embedding)

    def _warn_half_precision(self, p: torch.Tensor, placement: str) -> None:
        """Warn once for a float16 / bfloat16 tensor perturbed in place (see "Precision" in the module docstring)."""
        if self.warned_precision or placement == "side" or p.dtype not in (torch.float16, torch.bfloat16):
            return
        self.warned_precision = True
        warnings.warn(f"ZerothOrder perturbs {p.dtype} parameters in place: each +eps/-2eps/+eps round trip "
                      "rounds, so the weights drift even at lr 0 (bench/results/torch_precision_drift.md); keep "
                      "float32 weights and run the forward under torch.autocast (dfo finetune --autocast bfloat16)",
                      RuntimeWarning, stacklevel=4)

    @property
    def kind(self) -> dict[int, str]:
        """Placement of each tensor by index."""
        return {s.k: s.placement for s in self.slots}

    def refresh_due(self, active: list[Slot], step: int, master: torch.Generator) -> None:
        """Redraw the subspaces whose ``refresh`` steps are over at ``step``; fold side-path updates first."""
        cfg = self.config
        seed = None
        for s in active:
            if s.placement == "dense":
                continue
            st = self.state[s.p]
            if not spec.refresh_due(step, st.get("refreshed_at"), cfg.refresh):
                continue
            if seed is None:
                seed = int(torch.randint(0, 2**62, (), generator=master).item())
            self.fold(s.k)
            u, v = spec.draw_subspace(cfg.family, tuple(s.p.shape), s.rank, seed, s.k)
            v = to_torch(v, s.p)
            if "N" in st and "V" in st:
                st["N"] = spec.carry_momentum(st["N"], st["V"], v)
            if u is not None:
                st["U"] = to_torch(u, s.p)
            st["V"] = v
            st["refreshed_at"] = step
            st["subspace_seed"] = seed
            if s.placement == "side":
                st.setdefault("A", torch.zeros(s.p.shape[0], s.rank, device=s.p.device, dtype=v.dtype))
                st["A_active"] = False

    def fold(self, k: int) -> None:
        """Fold the updates held in tensor ``k``'s side path into its weight (``W += A V^T``)."""
        st = self.state[self.slots[k].p]
        if self.slots[k].placement == "side" and st.get("A_active"):
            w = self.slots[k].p
            w.addmm_(st["A"].to(w.dtype), st["V"].T.to(w.dtype))
            st["A"].zero_()
            st["A_active"] = False

    def direction(self, s: Slot, i: int) -> torch.Tensor:
        """The m x r left factor D of direction ``i`` of tensor ``s`` (P = D V^T), from the spec's stream."""
        key = (s.k, i)
        d = self.dcache.get(key)
        if d is None:
            fam, shape = self.config.family, tuple(s.p.shape)
            core = to_torch(spec.draw_core(fam, shape, s.rank, self.step_seed, s.k, i), s.p)
            d = spec.left_factor(fam, shape, s.rank, core, self.state[s.p].get("U"))
            self.dcache[key] = d
        return d

    def dense_seed(self, s: Slot, i: int) -> int:
        """The seed of the Gaussian direction ``z_i`` of the step for tensor ``s``."""
        return mix(mix(self.step_seed, i), s.k)

    def perturb(self, gens: Generators, active: list[Slot], i: int, alpha: float) -> None:
        """Move every active tensor by ``alpha`` times direction ``i`` (side paths: change the factor)."""
        dense = []
        for s in active:
            if s.placement == "dense":
                dense.append((s.p, self.dense_seed(s, i), alpha))
            elif s.placement == "write":
                v = self.state[s.p]["V"]
                s.p.addmm_(self.direction(s, i).to(s.p.dtype), v.T.to(s.p.dtype), alpha=alpha)
            else:
                self.offset[s.k] = (self.offset.get(s.k, (0.0, i))[0] + alpha, i)
        gens.add_gaussian(dense, self.config.noise)
        self.sync_side()

    def sync_side(self) -> None:
        """Set each side path to ``A + offset D`` (or off when both are zero)."""
        for k, side in self.side.items():
            s = self.slots[k]
            st = self.state[s.p]
            if "V" not in st:
                side.set(None, None)
                continue
            left = st["A"] if st.get("A_active") else None
            off, i = self.offset.get(k, (0.0, 0))
            if off != 0.0:
                d = self.direction(s, i) * off
                left = d if left is None else left + d
            side.set(left, st["V"] if left is not None else None)

    @torch.no_grad()
    def flush(self) -> None:
        """Fold every side path's updates into its weight (``ZerothOrder.flush``; the side paths' state_dict hook)."""
        for k in self.side:
            self.fold(k)
        self.sync_side()

    def close(self) -> None:
        """Flush and remove the side-path hooks; their tensors are written from then on."""
        self.flush()
        for side in self.side.values():
            side.remove()
        self.side.clear()
        for s in self.slots:
            if s.placement == "side":
                s.placement = "write"
