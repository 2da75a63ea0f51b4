"""The step of the spec's methods (MeZO, SubZero, LOZO, LOZO-M): two-sided SPSA over the placements.

Every method estimates the gradient from two forward passes at ``theta +- eps P``,
``g = (L(theta + eps P) - L(theta - eps P)) / (2 eps)``, and the update is
``theta <- theta - lr (w g P + wd theta)``, averaged over ``n_directions`` directions. A method is a
*direction family* for P (dense Gaussian, SubZero, LOZO; LOZO-M adds factored momentum) taken from
:mod:`dfo.estimators.lowrank_spec`, which the numpy estimators use too: the scales, the LOZO weight
``w = 1/r``, the momentum and its carry at a refresh, the small-matrix rule, the refresh schedule, the
random factor streams and the defaults are defined there once (see that module for the formulas and papers).

Where each tensor takes ``P`` is its placement (:mod:`dfo.torch.placements`). Dense tensors restore and
update in one fused pass (``+eps z``, ``-2 eps z``, then ``+(eps - lr g) z``); written low-rank tensors share
one rank-r product for both; side paths move their factor ``A``.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from dfo.estimators import lowrank_spec as spec
from dfo.torch.config import ZOConfig
from dfo.torch.directions import Generators
from dfo.torch.placements import Placements, Slot, decay
from dfo.torch.stepinfo import StepInfo


def step(closure: Callable[[], Any], active: list[Slot], info: StepInfo, *, config: ZOConfig,
         placements: Placements, gens: Generators, evaluate: Callable[[Callable[[], Any], str, int], float]) -> float:
    """One two-sided step (subspaces already refreshed, ``placements.step_seed`` set); fills ``info``.

    Returns:
        The mean of the ``2 n_directions`` losses. Whatever happens, the parameters are back at
        ``theta`` (or updated) when it returns or raises.
    """
    cfg = config
    info.forward_passes = 2 * cfg.n_directions
    offset, cur = 0.0, 0
    try:
        for i in range(cfg.n_directions):
            cur = i
            placements.perturb(gens, active, i, cfg.eps)
            offset = cfg.eps
            lp = evaluate(closure, "+eps", i)
            placements.perturb(gens, active, i, -2 * cfg.eps)
            offset = -cfg.eps
            lm = evaluate(closure, "-eps", i)
            info.loss_plus.append(lp)
            info.loss_minus.append(lm)
            info.projected_grad.append((lp - lm) / (2 * cfg.eps))
            if i < cfg.n_directions - 1:
                placements.perturb(gens, active, i, cfg.eps)
                offset = 0.0
        restore_and_update(placements, gens, active, info.projected_grad)
        offset = 0.0
    finally:
        if offset != 0.0:
            placements.perturb(gens, active, cur, -offset)
        placements.offset.clear()
        placements.sync_side()
        placements.dcache.clear()
        gens.clear_cache()
    return (sum(info.loss_plus) + sum(info.loss_minus)) / (2 * cfg.n_directions)


def restore_and_update(placements: Placements, gens: Generators, active: list[Slot], grads: list[float]) -> None:
    """Undo the last ``-eps`` perturbation and apply the averaged update, fused per tensor."""
    cfg, state = placements.config, placements.state
    n, last = len(grads), len(grads) - 1
    beta = cfg.momentum
    seed = placements.dense_seed
    dense = [s for s in active if s.placement == "dense"]
    shrink = {s.k: 1.0 - s.group["lr"] * decay(s) for s in active}
    for s in active:
        if shrink[s.k] != 1.0:
            s.p.mul_(shrink[s.k])
    if beta > 0 and dense:  # momentum buffers for the dense tensors
        firsts = {s.k: "momentum_buffer" not in state[s.p] for s in dense}
        for s in dense:
            keep, _ = spec.momentum_coefficients(beta, firsts[s.k])
            buf = state[s.p].setdefault("momentum_buffer", torch.zeros_like(s.p))
            buf.mul_(keep)
        for i, g in enumerate(grads):
            gens.add_gaussian([
                (state[s.p]["momentum_buffer"], seed(s, i),
                 spec.momentum_coefficients(beta, firsts[s.k])[1] * g / n) for s in dense], cfg.noise)
        gens.add_gaussian([(s.p, seed(s, last), shrink[s.k] * cfg.eps) for s in dense], cfg.noise)
        for s in dense:
            s.p.add_(state[s.p]["momentum_buffer"], alpha=-s.group["lr"])
    elif dense:  # restore and update in one pass per direction
        gens.add_gaussian([(s.p, seed(s, last), shrink[s.k] * cfg.eps - s.group["lr"] * grads[last] / n)
                           for s in dense], cfg.noise)
        for i, g in enumerate(grads[:-1]):
            gens.add_gaussian([(s.p, seed(s, i), -s.group["lr"] * g / n) for s in dense], cfg.noise)
    for s in active:
        if s.placement != "dense":
            low_rank_update(placements, s, grads, shrink[s.k])


def low_rank_update(placements: Placements, s: Slot, grads: list[float], shrink: float) -> None:
    """Restore and update of one low-rank tensor (after its weight was shrunk by weight decay)."""
    cfg = placements.config
    n, last, lr, p = len(grads), len(grads) - 1, s.group["lr"], s.p
    st = placements.state[p]
    w = spec.estimate_weight(cfg.family, s.rank)
    est = placements.direction(s, 0) * (grads[0] * w / n)
    for i in range(1, n):
        est.add_(placements.direction(s, i), alpha=grads[i] * w / n)
    if cfg.momentum > 0:
        st["N"] = spec.momentum_update(st.get("N"), est, cfg.momentum)
        step_left = st["N"]
    else:
        step_left = est
    if s.placement == "write":  # restore and update share one rank-r product (one m x n pass)
        left = placements.direction(s, last) * (shrink * cfg.eps) - step_left * lr
        p.addmm_(left.to(p.dtype), st["V"].T.to(p.dtype))
    else:
        placements.offset.pop(s.k, None)
        if shrink != 1.0:
            st["A"].mul_(shrink)
        st["A"].add_(step_left, alpha=-lr)
        st["A_active"] = True
