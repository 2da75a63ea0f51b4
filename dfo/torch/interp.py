"""``mezo-interp``: linear interpolation over regenerated directions, reusing the step's recent queries.

Paper: X. Wang, X. Qin, X. Yang, J. Yan, "ReLIZO: Sample reusable linear interpolation-based zeroth-order
optimization", NeurIPS 2024. ReLIZO estimates the gradient at ``x`` as the least-norm solution of the
interpolation conditions ``v_e . g = f(x + v_e) - f(x)`` over the displacements ``v_e`` of its queries, and
reuses a query of the previous iteration (no new forward pass) when it lies close to the new point.

Here, at inference memory and on the step's own batch:

*Directions and queries.* Every point the step visits is ``theta_0 + sum_b a_b z_b``: ``theta_0`` the
parameters when the step starts, ``z_b`` the step's Gaussian directions regenerated from seeds
(:mod:`dfo.torch.directions`, never stored whole) and ``a`` a short vector of scalars (one per parameter group
lr, see below). A query is ``(a, f(theta_0 + Z a))``; the Gram matrix ``G = Z^T Z`` (m x m, float64) is
accumulated chunk by chunk from the seeds, so lengths and angles of displacements are ``a^T G a'``.

*One round at the centre c.* ``k`` (``n_directions``) interpolation conditions, each a displacement ``v_e``
with its measured slope ``y_e = (f(c + v_e) - f(c - v_e)) / 2``:

- fresh: ``v = eps z_b`` for a new direction ``z_b``, two new forward passes;
- reused (at most ``reuse`` per round): ``v = q - c`` for a query ``q`` made earlier in this step, whose value is
  known; only its mirror ``c - v`` is evaluated (one forward pass; none when the mirror is itself a logged
  query). A query is eligible when ``eps sqrt(d) / 2 <= |v| <= 2 eps sqrt(d)`` (``|eps z| ~= eps sqrt(d)``:
  ReLIZO's closeness bound, plus a lower bound that keeps the difference above the loss's rounding), closest to
  ``eps sqrt(d)`` first, and only when at least half of its length is orthogonal (in ``G``) to the reused
  displacements already taken (the two sides of one old pair, ``w +- eps z``, would give a badly conditioned
  difference along the short ``w``).

With ``V = Z A^T`` (the k displacements as columns), the estimate is ReLIZO's least-norm interpolant
``g_V = V (V^T V)^{-1} y``, ``V^T V = A G A^T`` (k x k), so ``g_V = Z A^T (A G A^T)^{-1} y`` lives in the span of
the regenerated directions and is applied as coefficients. Both kinds of condition are central differences
about ``c``, so for a quadratic ``f`` (hence a linear one) ``y_e = grad f(c) . v_e`` exactly and
``g_V = P_V grad f(c)``: the exact gradient projected on ``span(V)``, and the exact gradient when the ``v_e`` span
the parameter space (``tests/test_torch_interp.py``). The step is ``c <- c - lr (d / k) g_V`` (d parameters),
the scaling of the orthogonal estimator (``mezo-orth``: ``(d/k) P_Q grad``, ``E[(d/k) P_Q] = I``), so ``lr``
means what it means for MeZO. ``rounds`` rounds per step: the first is fresh only (2k passes); each later one
at the moved centre takes up to ``reuse`` conditions from the step's queries (``2k - reused`` passes, fewer
when mirrors were logged), so a step costs at most ``2 k rounds`` passes.

*What is reused, and why only within a step.* The values reused are the step's own, on the step's batch: the
closure is the same function for every call of one step (the convention of :class:`dfo.torch.ZerothOrder`).
Reuse across steps (ReLIZO's setting, a fixed objective) is not built: with a new batch per step an old value
belongs to another function, and a mirror difference would carry the batch-to-batch change of the loss (about
the loss's spread over examples, orders of magnitude above ``eps grad . z``). Displacements stay exactly in the
span of the step's directions because everything else is kept out of the rounds: weight decay is applied once
at the end of the step (``theta <- (1 - lr wd)^rounds theta``), and parameter groups with different learning
rates get one coefficient vector each (``a`` is ``C x m`` for C distinct lrs, ``G`` one per group of tensors:
``|v|^2 = sum_c a_c^T G_c a_c``). Float32 weights take the moves in place, so a reused value is exact up to
the rounding of those writes.

Memory: the Gram matrices are accumulated like ``mezo-orth``'s (m chunks of 1 MB at a time); the queries are
``C x m`` scalars each; no direction is held whole.

Example:
    >>> import torch
    >>> from dfo.torch import ZerothOrder
    >>> x = torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))
    >>> opt = ZerothOrder([x], method="mezo-interp", n_directions=3, rounds=2, reuse=1, lr=1e-4, seed=0)
    >>> _ = opt.step(lambda: x @ torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    >>> [round(v, 9) for v in x.tolist()]  # d = k: each round's estimate is the exact gradient (1, 2, 3)
    [-0.0002, -0.0004, -0.0006]
    >>> opt.last_step.forward_passes, opt.last_step.reused  # 6 + (1 mirror + 2 x 2 fresh)
    (11, 1)
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

#: a query is reused when its distance to the centre is within this factor of eps sqrt(d), either way
REUSE_BAND = 2.0
#: ... and when at least this fraction of its length is orthogonal to the reused displacements already taken
MIN_ORTHOGONAL = 0.5


def step(closure: Callable[[], Any], active: list[Any], info: Any, *, config: Any, gens: Any,
         dense_seed: Callable[[Any, int], int], evaluate: Callable[[Callable[[], Any], str, int], float],
         decay: Callable[[Any], float]) -> float:
    """One ``mezo-interp`` step of :class:`dfo.torch.ZerothOrder` (see the module docstring).

    Args:
        closure: the step's loss (one batch for every call).
        active: the tensors' slots (``.k``, ``.p``, ``.group``) trained this step.
        info: the step's :class:`dfo.torch.StepInfo` (seed set), filled here.
        config: the optimizer's :class:`dfo.torch.ZOConfig`.
        gens: its :class:`dfo.torch.directions.Generators`.
        dense_seed: ``(slot, b) -> seed`` of direction ``b`` of the step for that tensor.
        evaluate: ``(closure, side, index) -> loss`` (checks the loss, raises on NaN).
        decay: ``slot -> weight decay`` of that tensor.

    Returns:
        The mean of the first round's losses (at ``theta_0 +- eps z``).
    """
    k, rounds, eps, max_reuse = config.n_directions, config.rounds, config.eps, config.reuse
    lrs = sorted({float(s.group["lr"]) for s in active})
    cls = {s.k: lrs.index(float(s.group["lr"])) for s in active}
    members = [[s for s in active if cls[s.k] == c] for c in range(len(lrs))]
    dim = sum(s.p.numel() for s in active)
    radius = eps * math.sqrt(dim)
    size = k * rounds  # the most directions a step draws
    pos = np.zeros((len(lrs), size))  # where the parameters are now, per lr class
    gram = [np.zeros((0, 0)) for _ in lrs]
    m = 0  # directions drawn so far
    log: list[tuple[np.ndarray, float]] = []  # the step's queries: (coefficients, loss)
    info.interpolation = []
    info.reused = 0

    def move(target: np.ndarray) -> None:
        delta = target - pos
        for b in range(m):
            jobs = [(s.p, dense_seed(s, b), float(delta[cls[s.k], b])) for s in active if delta[cls[s.k], b] != 0.0]
            if jobs:  # one call per seed: add_gaussian needs distinct targets within a call
                gens.add_gaussian(jobs, config.noise)
        pos[:] = target

    def query(point: np.ndarray, side: str, j: int) -> float:
        for a, value in log:  # a point visited before: its value is known
            if np.array_equal(a, point):
                return value
        move(point)
        info.forward_passes += 1
        value = evaluate(closure, side, j)
        log.append((point.copy(), value))
        return value

    def inner(u: np.ndarray, v: np.ndarray) -> float:
        return float(sum(u[c, :m] @ gram[c] @ v[c, :m] for c in range(len(lrs))))

    centre = np.zeros_like(pos)
    first: list[float] = []
    done = False
    try:
        for r in range(rounds):
            reused = _choose(log, centre, inner, radius, min(max_reuse, k - 1)) if r > 0 else []
            fresh = range(m, m + k - len(reused))
            m += len(fresh)
            gram = [gens.gram([(s.p, [dense_seed(s, b) for b in range(m)]) for s in group]) for group in members]
            rows, values = [], []
            for b in fresh:
                e = np.zeros_like(pos)
                e[:, b] = eps
                fp, fm = query(centre + e, "+eps", b), query(centre - e, "-eps", b)
                rows.append(e)
                values.append((fp - fm) / 2)
                info.loss_plus.append(fp)
                info.loss_minus.append(fm)
                info.projected_grad.append((fp - fm) / (2 * eps))
                if r == 0:
                    first += [fp, fm]
            for a, value in reused:
                v = a - centre
                fm = query(centre - v, "-v (the mirror of a reused query)", len(rows))
                rows.append(v)
                values.append((value - fm) / 2)
            info.reused += len(reused)
            s_mat = np.array([[inner(p, q) for q in rows] for p in rows])
            w = np.linalg.lstsq(s_mat, np.array(values), rcond=None)[0] if rows else np.zeros(0)
            coef = sum(wi * row for wi, row in zip(w, rows)) if rows else np.zeros_like(pos)  # g_V = Z coef
            scale = dim / len(rows) if rows else 0.0
            info.interpolation.append({
                "centre": centre[:, :m].tolist(), "rows": [row[:, :m].tolist() for row in rows], "values": values,
                "reused": len(reused), "estimate": coef[:, :m].tolist()})
            centre = centre - np.array(lrs)[:, None] * scale * coef
            move(centre)
        for s in active:  # weight decay once per step, after the rounds (their displacements stay in the span)
            shrink = (1.0 - s.group["lr"] * decay(s)) ** rounds
            if shrink != 1.0:
                s.p.mul_(shrink)
        done = True
    finally:
        if not done:
            move(np.zeros_like(pos))
        gens.clear_cache()
    return float(np.mean(first)) if first else float("nan")


def _choose(log: list[tuple[np.ndarray, float]], centre: np.ndarray, inner: Callable[[np.ndarray, np.ndarray], float],
            radius: float, most: int) -> list[tuple[np.ndarray, float]]:
    """The logged queries to reuse at ``centre``: within the band, closest to ``radius`` first, well apart."""
    if most <= 0 or radius <= 0:
        return []
    candidates = []
    for i, (a, value) in enumerate(log):
        v = a - centre
        length = math.sqrt(max(inner(v, v), 0.0))
        if radius / REUSE_BAND <= length <= REUSE_BAND * radius:
            candidates.append((abs(math.log(length / radius)), i, length))
    candidates.sort()
    chosen: list[int] = []
    for _, i, length in candidates:
        if len(chosen) == most:
            break
        v = log[i][0] - centre
        if chosen:  # the part of v orthogonal to the chosen displacements, in the metric G
            basis = [log[j][0] - centre for j in chosen]
            gb = np.array([[inner(p, q) for q in basis] for p in basis])
            rhs = np.array([inner(p, v) for p in basis])
            left = length**2 - float(rhs @ np.linalg.lstsq(gb, rhs, rcond=None)[0])
        else:
            left = length**2
        if left >= (MIN_ORTHOGONAL * length) ** 2:
            chosen.append(i)
    return [log[i] for i in chosen]
