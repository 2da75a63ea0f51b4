"""Update rules on an estimated gradient: fixed-step SGD, momentum, Adam.

Each rule is a frozen dataclass of hyperparameters with an explicit state:

    state = rule.init(n)
    x, state = rule.update(x, g, state)

so the state can be saved and restored with the rest of a run.

* :class:`SGD`: x ← x − η g.
* :class:`Momentum` (heavy ball, Polyak 1964): m ← β m + g; x ← x − η m.
* :class:`Adam` (Kingma & Ba 2015): bias-corrected first/second moments.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _check_lr(lr: float) -> None:
    if not (np.isfinite(lr) and lr > 0):
        raise ValueError(f"learning rate must be a positive number, got {lr}")


@dataclass(frozen=True, kw_only=True)
class SGD:
    """Fixed step: x ← x − lr · g."""

    lr: float = 1e-2

    def __post_init__(self) -> None:
        _check_lr(self.lr)

    def init(self, n: int) -> dict:
        return {}

    def update(self, x: np.ndarray, g: np.ndarray, state: dict) -> tuple[np.ndarray, dict]:
        return x - self.lr * g, state


@dataclass(frozen=True, kw_only=True)
class Momentum:
    """Heavy-ball momentum: m ← β m + g, x ← x − lr · m."""

    lr: float = 1e-2
    beta: float = 0.9

    def __post_init__(self) -> None:
        _check_lr(self.lr)
        if not 0 <= self.beta < 1:
            raise ValueError(f"beta must be in [0, 1), got {self.beta}")

    def init(self, n: int) -> dict:
        return {"m": np.zeros(n)}

    def update(self, x, g, state):
        m = self.beta * state["m"] + g
        return x - self.lr * m, {"m": m}


@dataclass(frozen=True, kw_only=True)
class Adam:
    """Adam with bias correction (Kingma & Ba 2015)."""

    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8

    def __post_init__(self) -> None:
        _check_lr(self.lr)

    def init(self, n: int) -> dict:
        return {"m": np.zeros(n), "v": np.zeros(n), "t": 0}

    def update(self, x, g, state):
        t = state["t"] + 1
        m = self.beta1 * state["m"] + (1 - self.beta1) * g
        v = self.beta2 * state["v"] + (1 - self.beta2) * g * g
        m_hat = m / (1 - self.beta1**t)
        v_hat = v / (1 - self.beta2**t)
        return x - self.lr * m_hat / (np.sqrt(v_hat) + self.eps), {"m": m, "v": v, "t": t}


UPDATE_RULES = {"sgd": SGD, "fixed": SGD, "momentum": Momentum, "adam": Adam}
