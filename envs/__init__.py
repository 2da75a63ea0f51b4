"""Environments for policy search: creation, per-process cache, task presets, rollouts.

Example:
    >>> from envs import get_env, get_preset, rollout
    >>> from policies import LinearPolicy
    >>> preset = get_preset("Swimmer-v5")
    >>> env = get_env(preset.env_id)
    >>> pol = LinearPolicy(env.observation_space.shape[0], env.action_space.shape[0])
    >>> rollout(env, pol, pol.init_params(), seed=1, horizon=10).steps
    10
"""

from envs.cache import clear_env_cache, get_env
from envs.lean import GymStepper, LeanStepper, lean_supported, make_stepper
from envs.make import make_env
from envs.presets import PRESETS, TaskPreset, get_preset, known_presets
from envs.rollout import RolloutResult, rollout

__all__ = [
    "make_env",
    "get_env",
    "clear_env_cache",
    "TaskPreset",
    "PRESETS",
    "get_preset",
    "known_presets",
    "rollout",
    "RolloutResult",
    "make_stepper",
    "lean_supported",
    "GymStepper",
    "LeanStepper",
]
