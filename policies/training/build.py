"""What a training run is built from: its policy, the env's sizes, its evaluator and its step's rate."""

from __future__ import annotations

from typing import Any

from dfo.optim import Momentum
from dfo.parallel import make_evaluator
from dfo.policies.base import Policy
from dfo.policies.linear import LinearPolicy
from dfo.policies.methods import STEP_CONTROL
from dfo.policies.mlp import MLPPolicy
from dfo.policies.training.config import TrainConfig


def build_policy(config: TrainConfig, obs_dim: int, act_dim: int) -> Policy:
    """The policy of a run (linear as in ARS, or a tanh MLP)."""
    if config.policy == "linear":
        return LinearPolicy(obs_dim, act_dim)
    return MLPPolicy(obs_dim, act_dim, hidden=tuple(config.hidden))


def env_dims_of(config: TrainConfig) -> tuple[int, int]:
    from dfo.envs.make import env_dims

    return env_dims(config.env_id, config.env_kwargs, config.imports)


def build_evaluator(config: TrainConfig):
    """The evaluator for ``config.backend`` (serial for ``serial`` or loky with one job)."""
    if config.backend == "serial" or (config.backend == "loky" and config.n_jobs == 1):
        return make_evaluator("serial")
    kw: dict[str, Any] = {"n_jobs": config.n_jobs}
    if config.backend == "dask":
        kw["scheduler"] = config.scheduler
    return make_evaluator(config.backend, **kw)


def rule_learning_rate(step: str, sgd_lr: float, step_size: float) -> float:
    """``lr`` of an update rule from the method's SGD rate ``sgd_lr`` (2να, the ARS step).

    ``sgd``: ``sgd_lr``. ``momentum`` (m ← β m + g, θ ← θ − lr m): ``sgd_lr·(1 − β)``, so a
    steady gradient moves θ by an ARS step per iteration, not 1/(1 − β) of one. ``adam``:
    ``α`` itself, since Adam divides out the gradient's scale (|Δθ_j| ≲ lr per iteration).
    """
    if step == "sgd" or step in STEP_CONTROL:
        return sgd_lr
    if step == "momentum":
        return sgd_lr * (1.0 - Momentum().beta)
    if step == "adam":
        return float(step_size)
    raise ValueError(f"no learning rate for step {step!r}")
