"""Small numpy MLP policy with tanh hidden layers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from dfo.policies.base import Policy, RngLike


class MLPPolicy(Policy):
    """``a = W_L tanh(... tanh(W_0 x + b_0) ...) + b_L`` (tanh hidden layers, linear output).

    Blocks, in flat order: ``W0 (h0, obs_dim), b0 (h0,), W1 (h1, h0), b1, ..., WL (act_dim, h_last), bL``.
    ``init_params`` draws hidden weights ~ N(0, 1/fan_in) and biases 0, and sets the
    output layer to zero so the initial policy outputs zero actions, like ARS's ``M = 0``
    (while the hidden features are already non-trivial, so perturbing the output layer
    has a non-zero first-order effect).

    Args:
        obs_dim: observation dimension.
        act_dim: action dimension.
        hidden: hidden layer widths.

    Example:
        >>> import numpy as np
        >>> pol = MLPPolicy(3, 2, hidden=(4,))
        >>> pol.n_params
        26
        >>> pol.act(pol.init_params(0), np.ones((5, 3))).shape
        (5, 2)
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: tuple[int, ...] = (32, 32)) -> None:
        if int(obs_dim) < 1 or int(act_dim) < 1:
            raise ValueError(f"obs_dim and act_dim must be >= 1, got {obs_dim}, {act_dim}")
        hidden = tuple(int(h) for h in hidden)
        if any(h < 1 for h in hidden):
            raise ValueError(f"hidden widths must be >= 1, got {hidden}")
        self.obs_dim = int(obs_dim)
        self.act_dim = int(act_dim)
        self.hidden = hidden

    @property
    def _sizes(self) -> list[int]:
        return [self.obs_dim, *self.hidden, self.act_dim]

    def param_blocks(self) -> list[tuple[str, tuple[int, ...]]]:
        sizes = self._sizes
        blocks: list[tuple[str, tuple[int, ...]]] = []
        for i in range(len(sizes) - 1):
            blocks.append((f"W{i}", (sizes[i + 1], sizes[i])))
            blocks.append((f"b{i}", (sizes[i + 1],)))
        return blocks

    def init_params(self, rng: RngLike = None) -> np.ndarray:
        gen = np.random.default_rng(rng)
        sizes = self._sizes
        n_layers = len(sizes) - 1
        blocks = {}
        for i in range(n_layers):
            fan_in, fan_out = sizes[i], sizes[i + 1]
            if i < n_layers - 1:
                blocks[f"W{i}"] = gen.standard_normal((fan_out, fan_in)) / np.sqrt(fan_in)
            else:
                blocks[f"W{i}"] = np.zeros((fan_out, fan_in))
            blocks[f"b{i}"] = np.zeros(fan_out)
        return self.flatten(blocks)

    def act(self, params: np.ndarray, obs: np.ndarray) -> np.ndarray:
        return self._forward(self._layers(params), self._check_obs(obs))

    def _layers(self, params: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        blocks = self.unflatten(params)
        return [(blocks[f"W{i}"], blocks[f"b{i}"]) for i in range(len(self._sizes) - 1)]

    @staticmethod
    def _forward(layers: list[tuple[np.ndarray, np.ndarray]], h: np.ndarray) -> np.ndarray:
        last = len(layers) - 1
        for i, (w, b) in enumerate(layers):
            h = (w @ h if h.ndim == 1 else h @ w.T) + b
            if i < last:
                h = np.tanh(h)
        return h

    def bind(self, params: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        layers = self._layers(params)
        forward = self._forward
        return lambda obs: forward(layers, obs)

    def batch_bind(self, params: np.ndarray) -> Callable[..., np.ndarray]:
        """Actions of ``k`` MLPs at once: each layer is one stacked matrix product."""
        params = np.asarray(params, dtype=np.float64)
        if params.ndim != 2 or params.shape[1] != self.n_params:
            raise ValueError(f"batch_bind expects shape (k, {self.n_params}), got {params.shape}")
        layers, start = [], 0
        for i in range(len(self._sizes) - 1):
            (_, w_shape), (_, b_shape) = self.param_blocks()[2 * i: 2 * i + 2]
            n_w, n_b = int(np.prod(w_shape)), int(b_shape[0])
            w = params[:, start:start + n_w].reshape(-1, *w_shape)
            b = params[:, start + n_w:start + n_w + n_b]
            layers.append((w, b))
            start += n_w + n_b
        last = len(layers) - 1

        def actor(obs: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
            h = obs
            for i, (w, b) in enumerate(layers):
                if rows is not None:
                    w, b = w[rows], b[rows]
                h = np.matmul(w, h[:, :, None])[:, :, 0] + b
                if i < last:
                    h = np.tanh(h)
            return h

        return actor

    def config(self) -> dict[str, Any]:
        return {"class": "MLPPolicy", "obs_dim": self.obs_dim, "act_dim": self.act_dim, "hidden": list(self.hidden)}
