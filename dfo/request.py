"""What an ask/tell optimizer asks for: a :class:`Request` that carries its own shape.

A request is one batch of evaluations. Its *shape* says how little a worker needs to
rebuild the points:

* ``"estimate"``: a gradient estimator's query plus ``(index, sign)`` items (and centre
  repeats as ``(-1, 0)``): a worker regenerates each point from the query's seed;
* ``"repeat"``: k evaluations of one point x (noise repeats, f(x), line-search trials);
* ``"points"``: distinct points that only exist as rows (noise/curvature lines, and
  estimates moved inside box bounds).

:meth:`Request.translate` is the one translation into ``(center, items)`` with
``items = [(index, sign, seed), ...]``, and :func:`point_of` the inverse a worker
applies, so every driver (``dfo.minimize``, the RL trainer) ships the same thing.

Example:
    >>> req = Request("trial", np.ones((3, 2)), seeds=np.array([5, 6, 7]))
    >>> req.shape, req.translate()[1]
    ('repeat', [(-1, 0, 5), (-1, 0, 6), (-1, 0, 7)])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .estimators.base import Query


@dataclass(frozen=True)
class Request:
    """One batch of evaluations an optimizer needs.

    Attributes:
        kind: ``"noise"`` (repeats or an ECNoise line), ``"curvature"``, ``"estimate"``
            (gradient-estimate points, then centre repeats), ``"center"`` (f(x) after a
            central estimate), ``"trial"`` (line search).
        points: the points, one per row, in the order the values are expected.
        seeds: one episode seed per point when the optimizer was built with
            ``seeded=True`` (common random numbers: a central direction's ± points share
            one seed, forward differences share the centre's; trials reuse the centre's).
        query: for ``estimate`` requests, the estimator's query (workers may regenerate a
            point from ``(index, sign)``); None when bounds moved some points.
        items: for ``estimate`` requests, ``(index, sign)`` of each point in
            ``query.items`` order followed by ``(-1, 0)`` for each extra centre repeat.
    """

    kind: str
    points: np.ndarray
    seeds: np.ndarray | None = None
    query: Query | None = None
    items: tuple = ()

    def __len__(self) -> int:
        return int(self.points.shape[0])

    @property
    def shape(self) -> str:
        """``"estimate"`` (query + items), ``"repeat"`` (one point k times) or ``"points"``."""
        if self.query is not None:
            return "estimate"
        return "repeat" if bool(np.all(self.points == self.points[:1])) else "points"

    def translate(self) -> tuple[Any, list[tuple[int, int, int | None]]]:
        """``(center, items)``: the query (estimate), the point (repeat) or the rows
        (points), with ``(index, sign, seed)`` per evaluation (seed None when unseeded)."""
        seeds = [None] * len(self) if self.seeds is None else [int(s) for s in self.seeds]
        shape = self.shape
        if shape == "estimate":
            return self.query, [(int(i), int(s), seed) for (i, s), seed in zip(self.items, seeds)]
        if shape == "repeat":
            return self.points[0], [(-1, 0, seed) for seed in seeds]
        return self.points, [(k, 0, seed) for k, seed in enumerate(seeds)]


def point_of(center: Any, index: int, sign: int) -> np.ndarray:
    """The point of one item of :meth:`Request.translate` (what a worker does)."""
    if isinstance(center, Query):
        return center.point(index, sign)
    center = np.asarray(center)
    return center if center.ndim == 1 else center[index]
