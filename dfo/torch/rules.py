"""The step rules on dense Gaussian directions of :mod:`dfo.torch.methods`: ``mezo-orth``, ``mezo-ls``, ``fzoo``
and ``fzoo-ls`` (``mezo-interp`` is :mod:`dfo.torch.interp`); the formulas and papers are in that module.

Every point of a step is ``theta + sum_i pos_i P_i`` with ``P_j = sum_i C_ij z_i`` (``C`` the identity, or for
``mezo-orth`` the orthonormalising ``sqrt(d) L^-T`` of the Gram matrix ``Z^T Z = L L^T``), the ``z_i`` regenerated
from seeds and never held whole: a move adds ``(target - pos)_i z_i`` seed by seed. The estimate is two-sided
(:func:`two_sided`) or FZOO's one-sided, normalised one (:func:`fzoo`); the step is then ``lr`` times it, or the
line search of :mod:`dfo.torch.linesearch`.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

import dfo.torch.linesearch as linesearch
from dfo.torch.config import ZOConfig
from dfo.torch.directions import Generators
from dfo.torch.stepinfo import StepInfo


def step(closure: Callable[[], Any], active: list[Any], info: StepInfo, *, config: ZOConfig, gens: Generators,
         dense_seed: Callable[[Any, int], int], evaluate: Callable[[Callable[[], Any], str, int], float],
         examples: Callable[[], np.ndarray | None], decay: Callable[[Any], float], rule: dict[str, Any],
         step_count: int) -> float:
    """One step of a rule (seed in ``info``); the parameters are back at ``theta`` or moved when it returns or raises.

    Args:
        closure, active, info, config, gens, dense_seed, evaluate, decay: as for :func:`dfo.torch.interp.step`.
        examples: the per-example losses of the last ``evaluate`` (None: a scalar loss).
        rule: the line search's state (:mod:`dfo.torch.linesearch`), updated here.
        step_count: the steps completed before this one.

    Returns:
        ``f(x)`` when measured, else the mean of the step's losses.
    """
    cfg = config
    e, k, eps = cfg.entry, cfg.n_directions, cfg.eps
    comb = combination(active, k, gens=gens, dense_seed=dense_seed, step_count=step_count) if e.step == "orth" \
        else np.eye(k)
    info.combination = comb.tolist()
    pos = np.zeros(k)  # where the parameters are, in z coordinates: theta_now = theta + sum_i pos_i z_i

    def move(target: np.ndarray) -> None:
        delta = target - pos
        for i in range(k):  # one call per seed: add_gaussian needs distinct targets within a call
            if delta[i] != 0.0:
                gens.add_gaussian([(s.p, dense_seed(s, i), float(delta[i])) for s in active], cfg.noise)
        pos[:] = target

    per_example: dict[str, np.ndarray] = {}

    def loss(side: str, j: int) -> float:
        info.forward_passes += 1
        value = evaluate(closure, side, j)
        if examples() is not None:
            per_example[f"{side}{j}"] = examples()
        return value

    done = False
    try:
        f0 = None
        if e.line_search or (e.step == "fzoo" and cfg.baseline == "base"):
            f0 = info.loss_base = loss("+0", 0)  # key "+00" in per_example
            if e.line_search:
                linesearch.measure_noise(rule, f0, step=step_count, every=cfg.noise_every, evaluate=loss)
        if e.step in ("spsa", "orth"):
            u, slope, curv, mean_loss = two_sided(comb, eps, info, f0=f0, move=move, evaluate=loss,
                                                  per_example=per_example, shrink_slopes=e.line_search)
        else:
            u, slope, curv, mean_loss = fzoo(comb, eps, info, f0=f0, baseline=cfg.baseline, move=move, evaluate=loss)
        lrs = {s.k: s.group["lr"] for s in active}
        if e.line_search:
            linesearch.search(u, slope, curv, f0, info, config=cfg, rule=rule, active=active, decay=decay,
                              move=move, evaluate=loss, per_example=per_example)
            done = True
        else:
            for s in active:  # restore (shrunk by weight decay) and update, per tensor: groups' lr
                shrink = 1.0 - lrs[s.k] * decay(s)
                if shrink != 1.0:
                    s.p.mul_(shrink)
            for i in range(k):
                gens.add_gaussian([(s.p, dense_seed(s, i),
                                    float((1.0 - lrs[s.k] * decay(s)) * -pos[i] - lrs[s.k] * u[i]))
                                   for s in active], cfg.noise)
            done = True
    finally:
        if not done:
            move(np.zeros(k))
        gens.clear_cache()
    return float(f0) if f0 is not None else mean_loss


def combination(active: list[Any], k: int, *, gens: Generators, dense_seed: Callable[[Any, int], int],
                step_count: int) -> np.ndarray:
    """``mezo-orth``'s weights: ``P_j = sqrt(d) sum_i z_i (L^-T)_ij`` with ``G = Z^T Z = L L^T``."""
    gram = gens.gram([(s.p, [dense_seed(s, i) for i in range(k)]) for s in active])
    try:
        chol = np.linalg.cholesky(gram)
    except np.linalg.LinAlgError:
        raise FloatingPointError(f"ZerothOrder step {step_count}: the {k} directions are linearly dependent "
                                 f"(fewer than {k} parameters?)") from None
    dim = sum(s.p.numel() for s in active)
    return math.sqrt(dim) * np.linalg.inv(chol).T


def two_sided(comb: np.ndarray, eps: float, info: StepInfo, *, f0: float | None, move: Callable[[np.ndarray], None],
              evaluate: Callable[[str, int], float], per_example: dict[str, np.ndarray],
              shrink_slopes: bool) -> tuple[np.ndarray, float, float | None, float]:
    """Two-sided differences along each ``P_j``; returns the estimate ``u`` (z coordinates), its slope, ``u^T H u``
    (with ``f0``) and the mean loss. ``shrink_slopes``: James-Stein shrinkage from per-example losses."""
    k = comb.shape[0]
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
        if shrink_slopes and ep is not None and em is not None and ep.size == em.size > 1:
            ge = (ep - em) / (2 * eps)  # per-example slopes: positive-part James-Stein shrinkage of g_j
            se2 = float(ge.var(ddof=1)) / ge.size
            shrink[j] = max(0.0, 1.0 - se2 / g[j] ** 2) if g[j] != 0 else 0.0
    info.shrinkage = shrink.tolist()
    u = comb @ (shrink * g) / k  # the estimate (1/k) sum_j rho_j g_j P_j, in z coordinates
    slope = float(shrink @ g**2) / k  # grad . u, with grad . P_j ~= g_j
    curv = (float(np.dot(shrink**2 * g**2, info.curvature)) / k**2  # u^T H u
            if info.curvature else None)
    mean_loss = (sum(info.loss_plus) + sum(info.loss_minus)) / (2 * k)
    return u, slope, curv, mean_loss


def fzoo(comb: np.ndarray, eps: float, info: StepInfo, *, f0: float | None, baseline: str,
         move: Callable[[np.ndarray], None],
         evaluate: Callable[[str, int], float]) -> tuple[np.ndarray, float, None, float]:
    """One-sided differences with a shared baseline, normalised by the spread of the losses; returns ``u``, its
    slope, no curvature and the mean loss."""
    k = comb.shape[0]
    f = np.zeros(k)
    for i in range(k):
        move(eps * comb[:, i])
        f[i] = evaluate("+eps", i)
        info.loss_plus.append(float(f[i]))
    base, denom = (float(f.mean()), k - 1) if baseline == "mean" else (f0, k)
    sigma = float(f.std(ddof=1))
    a = (f - base) / eps
    info.projected_grad = a.tolist()
    u = (f - base) / sigma / denom if sigma > 0 else np.zeros(k)
    return u, float(u @ a), None, float(f.mean())
