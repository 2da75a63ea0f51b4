"""Aggregate learning curves over seeds: interquartile mean with a bootstrap interval.

With the few seeds an RL study can afford, the median is noisy and the mean is ruled by
one outlier; Agarwal et al. (2021), "Deep reinforcement learning at the edge of the
statistical precipice" (NeurIPS), recommend the **interquartile mean** (IQM: the mean of
the middle 50 % of the runs, ``scipy.stats.trim_mean(x, 0.25)``) with a **percentile
bootstrap** confidence interval over runs: draw the runs with replacement ``reps`` times,
take the IQM of each draw, and report the (1 − level)/2 and (1 + level)/2 quantiles of
those IQMs. (Their package ``rliable`` does this; its dependency ``arch`` 7.2 fails to
import beside pandas 3, so the two statistics are written here in NumPy.)

Curves of runs that stopped at different points are put on one grid by
:func:`carry_forward`: inside a run's range its evaluations are interpolated linearly; after
its last evaluation the run keeps its last value (a run that stopped at a return threshold
has that return, it did not vanish); before its first evaluation it has none (NaN).
Dropping finished runs instead would make the aggregate fall exactly when the successful
runs stop.

Example:
    >>> import numpy as np
    >>> float(iqm(np.array([0.0, 1.0, 2.0, 3.0, 100.0, -50.0, 1.5, 2.5])))
    1.75
"""

from __future__ import annotations

import numpy as np
from scipy import stats


def iqm(scores: np.ndarray, axis: int = 0) -> np.ndarray | float:
    """Interquartile mean along ``axis``: the mean after cutting 25 % of the runs at each end."""
    return stats.trim_mean(np.asarray(scores, dtype=float), 0.25, axis=axis)


def carry_forward(curves: list[tuple[np.ndarray, np.ndarray]], grid: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(grid, values): one row per run on a common x grid, last value carried past a run's end.

    ``curves`` are (x, y) pairs with increasing x. ``grid`` defaults to the union of all x.
    Values before a run's first x are NaN.
    """
    if not curves:
        raise ValueError("no curves to aggregate")
    if grid is None:
        grid = np.unique(np.concatenate([np.asarray(x, dtype=float) for x, _ in curves]))
    rows = []
    for x, y in curves:
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        if x.size == 0:
            rows.append(np.full(grid.shape, np.nan))
            continue
        row = np.interp(grid, x, y)            # np.interp holds the last value past x[-1]
        row[grid < x[0]] = np.nan
        rows.append(row)
    return grid, np.stack(rows)


def bootstrap_iqm(values: np.ndarray, *, reps: int = 2000, level: float = 0.95,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(IQM, low, high) per column of ``values`` (runs × points), percentile bootstrap over runs.

    Columns where some runs have no value yet (NaN) use the runs that have one. The
    resampling is seeded, so a figure is the same each time it is drawn.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"expected runs x points, got shape {values.shape}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    n_runs, n_points = values.shape
    draws = rng.integers(0, n_runs, size=(reps, n_runs))
    point = np.full(n_points, np.nan)
    low, high = point.copy(), point.copy()
    for j in range(n_points):
        col = values[:, j]
        ok = ~np.isnan(col)
        if not ok.any():
            continue
        point[j] = iqm(col[ok])
        if ok.all():
            sample = col[draws]
        else:  # resample among the runs that have a value here
            have = col[ok]
            sample = have[rng.integers(0, have.size, size=(reps, have.size))]
        boot = iqm(sample, axis=1)
        low[j], high[j] = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    return point, low, high


__all__ = ["bootstrap_iqm", "carry_forward", "iqm"]
