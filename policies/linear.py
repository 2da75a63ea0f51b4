"""Linear policy of ARS (Mania, Guy, Recht 2018): ``a = M x`` (+ ``b`` optionally)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from dfo.policies.base import Policy, RngLike


class LinearPolicy(Policy):
    """Linear map ``a = M x + b`` with ``M`` of shape ``(act_dim, obs_dim)``.

    ARS uses ``M`` only and starts from ``M = 0``; ``init_params`` does the same.
    Flat layout: ``M`` in C order, then ``b`` when ``bias=True``.

    Args:
        obs_dim: observation dimension.
        act_dim: action dimension.
        bias: add a bias vector ``b`` (not in ARS).

    Example:
        >>> import numpy as np
        >>> pol = LinearPolicy(2, 1)
        >>> pol.act(np.array([1.0, 2.0]), np.array([3.0, 4.0])).tolist()
        [11.0]
    """

    def __init__(self, obs_dim: int, act_dim: int, *, bias: bool = False) -> None:
        if int(obs_dim) < 1 or int(act_dim) < 1:
            raise ValueError(f"obs_dim and act_dim must be >= 1, got {obs_dim}, {act_dim}")
        self.obs_dim = int(obs_dim)
        self.act_dim = int(act_dim)
        self.bias = bool(bias)

    def param_blocks(self) -> list[tuple[str, tuple[int, ...]]]:
        blocks: list[tuple[str, tuple[int, ...]]] = [("M", (self.act_dim, self.obs_dim))]
        if self.bias:
            blocks.append(("b", (self.act_dim,)))
        return blocks

    def init_params(self, rng: RngLike = None) -> np.ndarray:
        """Zeros, as in ARS (``rng`` is accepted for interface symmetry and unused)."""
        return np.zeros(self.n_params)

    def act(self, params: np.ndarray, obs: np.ndarray) -> np.ndarray:
        params = self.check_params(params)
        obs = self._check_obs(obs)
        n_m = self.act_dim * self.obs_dim
        m = params[:n_m].reshape(self.act_dim, self.obs_dim)
        out = m @ obs if obs.ndim == 1 else obs @ m.T
        if self.bias:
            out = out + params[n_m:]
        return out

    def bind(self, params: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        params = self.check_params(params)
        n_m = self.act_dim * self.obs_dim
        m = params[:n_m].reshape(self.act_dim, self.obs_dim)
        if not self.bias:
            return m.dot  # 1-D obs: M x (same as act)
        b = params[n_m:]
        return lambda obs: m.dot(obs) + b

    def batch_bind(self, params: np.ndarray) -> Callable[..., np.ndarray]:
        """Actions of ``k`` linear policies at once: ``a_i = M_i x_i (+ b_i)``, one stacked product."""
        params = np.asarray(params, dtype=np.float64)
        if params.ndim != 2 or params.shape[1] != self.n_params:
            raise ValueError(f"batch_bind expects shape (k, {self.n_params}), got {params.shape}")
        n_m = self.act_dim * self.obs_dim
        ms = params[:, :n_m].reshape(-1, self.act_dim, self.obs_dim)
        bs = params[:, n_m:] if self.bias else None

        def actor(obs: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
            m = ms if rows is None else ms[rows]
            out = np.matmul(m, obs[:, :, None])[:, :, 0]
            if bs is not None:
                out = out + (bs if rows is None else bs[rows])
            return out

        return actor

    def config(self) -> dict[str, Any]:
        return {"class": "LinearPolicy", "obs_dim": self.obs_dim, "act_dim": self.act_dim, "bias": self.bias}
