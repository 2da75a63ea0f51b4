"""Step rules on an estimated gradient, in one registry: the noise-tolerant line search
(``armijo``), fixed-step SGD, momentum, Adam.

Each rule is a frozen dataclass of hyperparameters with an explicit state. An *update*
rule moves x without evaluating f:

    state = rule.init(n)
    x, state = rule.update(x, g, state)

The *searching* rule (``armijo``, :class:`dfo.linesearch.ArmijoLineSearch`, Berahas,
Cao & Scheinberg 2021) proposes trial points x + α d and judges each by its value
(``rule.evaluates`` is True): its state is the step α, grown after an accepted trial
and shrunk after a rejected one. :class:`dfo.Minimizer` drives both kinds; a new rule
is one class and one :data:`STEP_RULES` entry, and the registry-driven tests then run
it with every estimator.

* :class:`SGD`: x ← x − η g.
* :class:`Momentum` (heavy ball, Polyak 1964): m ← β m + g; x ← x − η m.
* :class:`Adam` (Kingma & Ba 2015): bias-corrected first/second moments.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .linesearch import ArmijoLineSearch


def _check_lr(lr: float) -> None:
    if not (np.isfinite(lr) and lr > 0):
        raise ValueError(f"learning rate must be a positive number, got {lr}")


@dataclass(frozen=True, kw_only=True)
class SGD:
    """Fixed step: x ← x − lr · g."""

    lr: float = 1e-2
    evaluates = False

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
    evaluates = False

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
    evaluates = False

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


#: the update rules (they move x without evaluating f)
UPDATE_RULES = {"sgd": SGD, "fixed": SGD, "momentum": Momentum, "adam": Adam}
#: every step rule by name: the line search and the update rules
STEP_RULES = {"armijo": ArmijoLineSearch, **UPDATE_RULES}


def step_rule_names() -> tuple[str, ...]:
    """Every registered step rule (a rule added to :data:`STEP_RULES` or, as before the line
    search joined them, to :data:`UPDATE_RULES`)."""
    return tuple(dict.fromkeys([*STEP_RULES, *UPDATE_RULES]))


def make_step_rule(name: str, *, lr: float | None = None, line_search=None):
    """The rule ``name`` of :data:`STEP_RULES` with its options: ``line_search`` (an
    :class:`ArmijoLineSearch` or a dict of its fields) for ``armijo``, ``lr`` for the others."""
    if name not in step_rule_names():
        raise ValueError(f"unknown step {name!r}; known: {', '.join(step_rule_names())}")
    cls = STEP_RULES.get(name) or UPDATE_RULES[name]
    if getattr(cls, "evaluates", False):
        if isinstance(line_search, cls):
            return line_search
        return cls(**(line_search if isinstance(line_search, dict) else {}))
    return cls(**({} if lr is None else {"lr": lr}))
