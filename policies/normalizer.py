"""Running observation statistics with an exact parallel merge, and the ARS V2 normalizer.

Statistics are kept as ``(count, mean, M2)`` with ``M2 = sum_i (x_i - mean)^2`` per
coordinate. Two sets merge with the formula of Chan, Golub, LeVeque (1979), as used
by Welford-style parallel variance:

    n = n_a + n_b,  d = mean_b - mean_a,
    mean = mean_a + d n_b / n,  M2 = M2_a + M2_b + d^2 n_a n_b / n.

ARS V2 (Mania, Guy, Recht 2018) acts on ``diag(Sigma)^{-1/2} (x - mu)``, where
``mu``/``Sigma`` are the mean/variance of all states seen so far; coordinates whose
variance is below 1e-8 are treated as having infinite variance, i.e. they are zeroed
after centering. (The ARS reference code applies the threshold to the std; we follow
the paper text and apply it to the variance.) The variance is the sample variance
``M2 / (n - 1)`` (``0`` when ``n = 1``, so that coordinate is zeroed). With no data at
all the normalizer is the identity, as in the ARS code.

Training uses a *frozen snapshot* during an iteration: rollouts normalize with the
snapshot and return fresh statistics; the trainer merges them (in a fixed order, so
serial and parallel runs agree bit for bit) and then refreshes the snapshot.

Example:
    >>> import numpy as np
    >>> norm = ObsNormalizer(2)
    >>> norm.update(RunningStat.from_batch(np.array([[0.0, 1.0], [2.0, 1.0]])))
    >>> _ = norm.refresh()
    >>> norm.normalize(np.array([1.0, 5.0])).tolist()
    [0.0, 0.0]
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import numpy as np

VAR_FLOOR = 1e-8


def _as_vec(x: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
    arr = np.array(x, dtype=np.float64)
    if arr.shape != shape:
        raise ValueError(f"{name} has shape {arr.shape}, expected {shape}")
    return arr


class RunningStat:
    """Count, mean and sum of squared deviations (``M2``) of a stream of vectors.

    Args:
        dim: vector dimension.

    Example:
        >>> import numpy as np
        >>> a = RunningStat.from_batch(np.arange(6.0).reshape(3, 2))
        >>> a.count, a.mean.tolist(), a.var.tolist()
        (3, [2.0, 3.0], [4.0, 4.0])
    """

    def __init__(self, dim: int) -> None:
        self.dim = int(dim)
        self.count = 0
        self.mean = np.zeros(self.dim)
        self.m2 = np.zeros(self.dim)

    @classmethod
    def from_batch(cls, x: np.ndarray) -> RunningStat:
        """Statistics of the rows of ``x`` (shape ``(n, dim)``), computed in two passes."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"from_batch expects a 2-D array (n, dim), got shape {x.shape}")
        out = cls(x.shape[1])
        if x.shape[0]:
            out.count = int(x.shape[0])
            out.mean = x.mean(axis=0)
            out.m2 = np.square(x - out.mean).sum(axis=0)
        return out

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> RunningStat:
        """Inverse of ``state``: ``{"count": int array (), "mean": (dim,), "m2": (dim,)}``."""
        mean = np.array(state["mean"], dtype=np.float64)
        out = cls(mean.shape[0])
        out.count = int(np.asarray(state["count"]))
        out.mean = mean
        out.m2 = _as_vec(state["m2"], mean.shape, "m2")
        if out.count < 0:
            raise ValueError(f"count must be >= 0, got {out.count}")
        return out

    @property
    def state(self) -> dict[str, np.ndarray]:
        """Plain arrays (copies), suitable for ``np.savez`` and for sending between processes."""
        return {"count": np.array(self.count, dtype=np.int64), "mean": self.mean.copy(), "m2": self.m2.copy()}

    def copy(self) -> RunningStat:
        return RunningStat.from_state(self.state)

    def push_batch(self, x: np.ndarray) -> None:
        """Add the rows of ``x`` (``(n, dim)``) or one vector (``(dim,)``)."""
        x = np.asarray(x, dtype=np.float64)
        self.merge(RunningStat.from_batch(x[None, :] if x.ndim == 1 else x))

    def merge(self, other: RunningStat) -> None:
        """In place: ``self`` becomes the statistics of both streams (Chan et al. 1979)."""
        if other.dim != self.dim:
            raise ValueError(f"cannot merge stats of dim {other.dim} into dim {self.dim}")
        if other.count == 0:
            return
        if self.count == 0:
            self.count, self.mean, self.m2 = other.count, other.mean.copy(), other.m2.copy()
            return
        n_a, n_b = self.count, other.count
        n = n_a + n_b
        delta = other.mean - self.mean
        self.mean = self.mean + delta * (n_b / n)
        self.m2 = self.m2 + other.m2 + np.square(delta) * (n_a * n_b / n)
        self.count = n

    @property
    def var(self) -> np.ndarray:
        """Sample variance ``M2 / (n - 1)``; zeros when ``n < 2``."""
        if self.count < 2:
            return np.zeros(self.dim)
        return self.m2 / (self.count - 1)

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.var)

    def __repr__(self) -> str:
        return f"RunningStat(dim={self.dim}, count={self.count})"


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class NormalizerSnapshot:
    """Frozen ``x -> (x - mean) * inv_std`` used by rollouts; cheap to pickle to workers.

    Attributes:
        mean: per-coordinate shift.
        inv_std: per-coordinate scale, ``0`` where the variance is below ``VAR_FLOOR``.
        count: number of observations the snapshot was computed from.
    """

    mean: np.ndarray
    inv_std: np.ndarray
    count: int = 0

    @classmethod
    def identity(cls, dim: int) -> NormalizerSnapshot:
        return cls(mean=np.zeros(dim), inv_std=np.ones(dim), count=0)

    @classmethod
    def from_stat(cls, stat: RunningStat) -> NormalizerSnapshot:
        """ARS V2 normalizer from statistics (identity when there is no data)."""
        if stat.count == 0:
            return cls.identity(stat.dim)
        var = stat.var
        inv_std = np.zeros(stat.dim)
        ok = var >= VAR_FLOOR
        inv_std[ok] = 1.0 / np.sqrt(var[ok])
        return cls(mean=stat.mean.copy(), inv_std=inv_std, count=stat.count)

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        """``(obs - mean) * inv_std`` for one observation or a batch (rows)."""
        return (obs - self.mean) * self.inv_std


class ObsNormalizer:
    """ARS V2 observation normalizer: accumulating statistics plus a frozen snapshot.

    ``normalize`` always uses the snapshot; ``update`` only accumulates; ``refresh``
    moves the snapshot to the accumulated statistics. A trainer does, per iteration::

        snap = norm.snapshot            # sent to workers
        results = [rollout(..., normalizer_state=snap) for ...]
        norm.update(*(r.obs_stats for r in results))   # fixed order
        norm.refresh()

    Args:
        dim: observation dimension.
    """

    def __init__(self, dim: int) -> None:
        self.dim = int(dim)
        self.stat = RunningStat(self.dim)
        self._snapshot_stat = RunningStat(self.dim)
        self.snapshot = NormalizerSnapshot.identity(self.dim)

    def update(self, *stats: RunningStat | None) -> None:
        """Merge worker statistics into the accumulator, in the given order (``None`` is skipped)."""
        for s in stats:
            if s is not None:
                self.stat.merge(s)

    def refresh(self) -> NormalizerSnapshot:
        """Freeze the accumulated statistics into a new snapshot and return it."""
        self._snapshot_stat = self.stat.copy()
        self.snapshot = NormalizerSnapshot.from_stat(self._snapshot_stat)
        return self.snapshot

    def normalize(self, obs: np.ndarray) -> np.ndarray:
        return self.snapshot.normalize(obs)

    @property
    def state(self) -> dict[str, np.ndarray]:
        """Plain arrays: accumulated stats (``count, mean, m2``) and the snapshot's (``snap_*``)."""
        out = self.stat.state
        out.update({f"snap_{k}": v for k, v in self._snapshot_stat.state.items()})
        return out

    @classmethod
    def from_state(cls, state: dict[str, np.ndarray]) -> ObsNormalizer:
        """Inverse of ``state``; the snapshot is rebuilt exactly from its own statistics."""
        stat = RunningStat.from_state(state)
        snap_stat = RunningStat.from_state({k[5:]: state[k] for k in ("snap_count", "snap_mean", "snap_m2")})
        if snap_stat.dim != stat.dim:
            raise ValueError(f"snapshot dim {snap_stat.dim} != stats dim {stat.dim}")
        out = cls(stat.dim)
        out.stat = stat
        out._snapshot_stat = snap_stat
        out.snapshot = NormalizerSnapshot.from_stat(snap_stat)
        return out

    def __repr__(self) -> str:
        return f"ObsNormalizer(dim={self.dim}, count={self.stat.count}, snapshot_count={self.snapshot.count})"


def merge_stats(stats: Iterable[RunningStat], dim: int) -> RunningStat:
    """Merge several statistics, left to right, into a new ``RunningStat``."""
    out = RunningStat(dim)
    for s in stats:
        out.merge(s)
    return out
