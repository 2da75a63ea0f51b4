"""The gradient estimate's request of :class:`dfo.Minimizer`: its points and seeds on the
way out, its values on the way back.

**Points.** The estimator's query (points x + σ u_i, or x ± σ u_i), then ``extra`` repeats
of x when the line search averages f(x) over ``repeats`` evaluations (or needs seeded
values of x): the estimate and f(x) come in one batch. Inside box bounds each point is
moved into the box and the query's values are rebuilt from the evaluated ones by a linear
plan, δ = W [values, f(x)] (:meth:`dfo.bounds.Box.plan_query`).

**Seeds: common random numbers** (``seeded=True``; Kleinman, Spall & Naiman 1999). A
stochastic f(x, seed) evaluated with the same seed at two nearby points has correlated
noise, which a difference cancels: f(x+σu, s) − f(x, s) has the variance of the smooth
change, not 2 Var(noise)/σ². So the ± points of a central direction share one seed, and
every forward point shares the seed of the centre value it is differenced with. The centre
repeats draw seeds of their own (their spread is the noise estimate with
``eps_f="repeats"``), and the line-search trials reuse the centre's seeds, so the Armijo
comparison f(x + αd) ≤ f(x) + … is a common-random-numbers comparison too.

**Values.** :func:`estimate_values` splits a batch back into the estimator's values and
the f(x) values; :func:`rank_nonfinite` applies ``nonfinite="worst"``: a non-finite value
ranks last, just above the worst finite one, so shaping and ranks stay defined.
"""

from __future__ import annotations

import numpy as np

from .bounds import Box
from .estimators.base import Query
from .noise import SEED_HIGH
from .runstate import Pending
from .values import check_finite

__all__ = ["centre_repeats", "crn_seeds", "estimate_points", "estimate_values", "rank_nonfinite"]


def centre_repeats(query: Query, *, repeats: int, seeded: bool, line_search: bool) -> int:
    """How many evaluations of x follow the query's own points (f(x) for the line search)."""
    return repeats - int(query.needs_fx) if line_search and (repeats > 1 or seeded) else 0


def crn_seeds(query: Query, rng: np.random.Generator, *, repeats: int, extra: int, line_search: bool
              ) -> tuple[np.ndarray, np.ndarray]:
    """``(seeds, centre)``: one seed per point of the request (query items, then the ``extra``
    centre repeats) and the seeds of the f(x) values, drawn from ``rng`` in a fixed order."""
    items = query.items

    def draw(k: int) -> list[int]:
        return [int(v) for v in rng.integers(0, SEED_HIGH, size=k)]

    if len(query.signs) == 2:  # central: one seed per direction, shared by its + and − points
        dirs = draw(query.directions.n_directions)
        seeds = [dirs[i] if i >= 0 else dirs[0] for i, _ in items]
        centre = draw(extra) if extra else []
    else:  # forward: the centre's seed for every direction
        own = draw(max(repeats if line_search else 1, 1))
        seeds = [own[0]] * len(items)
        centre = own[:repeats] if line_search else []
        centre = centre if query.needs_fx else centre[:extra]
    return np.array(seeds + (centre[-extra:] if extra else []), dtype=np.int64), np.array(centre, dtype=np.int64)


def estimate_points(query: Query, x: np.ndarray, *, extra: int, seeds: np.ndarray | None, box: Box | None
                    ) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """``(points, seeds, shape)`` of the request: ``shape`` holds the ``items`` (no bounds)
    or the ``plan`` (bounds) that :class:`dfo.runstate.Pending` keeps."""
    if box is None:
        points = query.points if not extra else np.vstack([query.points, np.repeat(x[None], extra, 0)])
        return points, seeds, {"items": list(query.items) + [(-1, 0)] * extra}
    plan, pts = box.plan_query(query)  # bounds: each point moved inside the box
    pts += [x] * extra
    return np.array(pts), None if seeds is None else np.full(len(pts), seeds[0], np.int64), {"plan": plan}


def estimate_values(req: Pending, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(query values, f(x) values)`` of an estimate request's ``values``."""
    query, own = req.query, values[:values.size - req.extra]
    est_vals = own if req.plan is None else req.plan[:, :-1] @ own
    if req.plan is not None and query.fx is not None:
        est_vals = est_vals + req.plan[:, -1] * query.fx
    centre = values[values.size - req.extra:] if req.extra else np.empty(0)
    if query.needs_fx:
        centre = np.concatenate([values[:1], centre])
    return est_vals, centre


def rank_nonfinite(values: np.ndarray, nonfinite: str) -> tuple[np.ndarray, int]:
    """``(values, count)``: with ``nonfinite="raise"`` a non-finite value raises
    :class:`dfo.NonFiniteValueError`; with ``"worst"`` each ranks last (all non-finite: all 0)."""
    bad = ~np.isfinite(values)
    if not bad.any():
        return values, 0
    if nonfinite == "raise":
        check_finite(values)
    good, values = values[~bad], values.copy()
    if good.size == 0:  # all tie: nothing to learn from this batch (a zero estimate)
        values[:] = 0.0
        return values, int(bad.sum())
    top = float(good.max())
    with np.errstate(over="ignore", invalid="ignore"):
        worst = top + max(float(np.ptp(good)), abs(top) * 1e-12, 1e-12)
    if not np.isfinite(worst):  # E8: finite values near the float limit; rank last without overflowing
        worst = float(np.nextafter(top, np.inf))
        worst = worst if np.isfinite(worst) else top
    values[bad] = worst
    return values, int(bad.sum())
