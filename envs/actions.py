"""How a policy's output vector becomes an env action: the one home of the action convention.

A policy outputs a real vector ``y`` of length :attr:`ActionMap.dim`. Rollouts clip it to
``[low, high]`` row by row (``dfo.policies.rollout`` with these bounds tiled per slot, the others
with :meth:`ActionMap.clip`; a NaN stays NaN and ends the episode) and hand each row to
:meth:`ActionMap.to_env`:

* ``Box(shape)``: ``dim = prod(shape)``; ``y`` is clipped to the space's bounds and reshaped.
* ``Discrete(n, start)``: ``dim = n`` scores, one per action; the action is
  ``start + argmax_i y_i`` (ties go to the lowest index, so the all-zero initial policy
  of ARS takes ``start``). Bounds are infinite: clipping does nothing. This is how
  linear ES policies act in discrete spaces (e.g. SB3-contrib's ARS policy).

Example:
    >>> import numpy as np
    >>> from gymnasium.spaces import Box, Discrete
    >>> ActionMap.of(Discrete(3, start=-1)).to_env(np.array([0.2, 0.9, -1.0]))
    0
    >>> m = ActionMap.of(Box(-1.0, 1.0, (2,)))
    >>> m.to_env(m.clip(np.array([[3.0, -0.5]]))[0]).tolist()
    [1.0, -0.5]
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True, eq=False)
class ActionMap:
    """The action convention of one gymnasium action space (build with :meth:`of`).

    Attributes:
        dim: length of the policy's output vector.
        low, high: clip bounds of that vector (``-inf`` / ``inf`` for a discrete space).
        shape: the Box's action shape (``None`` for a discrete space).
        n_choices: number of discrete actions (``None`` for a Box).
        start: the first discrete action (``Discrete.start``).
    """

    dim: int
    low: np.ndarray
    high: np.ndarray
    shape: tuple[int, ...] | None
    n_choices: int | None = None
    start: int = 0

    @classmethod
    def of(cls, space: Any) -> ActionMap:
        """The map of ``space``.

        Raises:
            ValueError: a space that is neither a ``Box`` nor a ``Discrete`` (one line naming it).
        """
        import gymnasium as gym

        if isinstance(space, gym.spaces.Box):
            low = np.asarray(space.low, dtype=np.float64).reshape(-1)
            high = np.asarray(space.high, dtype=np.float64).reshape(-1)
            return cls(dim=int(low.size), low=low, high=high, shape=tuple(space.shape))
        if isinstance(space, gym.spaces.Discrete):
            n = int(space.n)
            return cls(dim=n, low=np.full(n, -np.inf), high=np.full(n, np.inf), shape=None, n_choices=n,
                       start=int(space.start))
        raise ValueError(f"action space {space} is not supported: policy search here needs a gymnasium "
                         "Box (continuous) or Discrete action space")

    @property
    def discrete(self) -> bool:
        return self.n_choices is not None

    def clip(self, y: np.ndarray) -> np.ndarray:
        """``y`` (one output or a batch of rows) clipped to ``[low, high]``; NaN stays NaN."""
        return np.minimum(np.maximum(y, self.low), self.high)

    def to_env(self, row: np.ndarray) -> Any:
        """The env action of one (clipped) output row."""
        if self.discrete:
            return int(self.start + int(np.argmax(row)))
        return row if len(self.shape) == 1 else row.reshape(self.shape)

    def to_env_batch(self, y: np.ndarray) -> np.ndarray:
        """Env actions of a batch of outputs (rows), clipped: what SB3's ``predict`` returns."""
        y = self.clip(np.asarray(y, dtype=np.float64))
        if self.discrete:
            return self.start + np.argmax(y, axis=-1)
        if len(self.shape) == 1:
            return y
        return y.reshape(self.shape) if y.ndim == 1 else y.reshape((y.shape[0], *self.shape))
