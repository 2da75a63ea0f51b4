"""Environments for policy search: creation, per-process cache, task presets, steppers.

Simulation only: nothing here imports ``policies`` (rollouts, which need a policy,
live in :mod:`dfo.policies.rollout`).

Example:
    >>> from dfo.envs import get_env, get_preset
    >>> env = get_env(get_preset("Swimmer-v5").env_id)
    >>> env.observation_space.shape
    (8,)
"""

from dfo.envs.actions import ActionMap
from dfo.envs.cache import clear_env_cache, get_env, get_stepper
from dfo.envs.ids import UnknownEnvError, import_modules, register_env, split_env_id
from dfo.envs.lean import GymStepper, LeanStepper, make_stepper
from dfo.envs.lean_tasks import LEAN_TASKS, lean_supported
from dfo.envs.make import env_dims, make_env
from dfo.envs.presets import PRESETS, TaskPreset, get_preset, known_presets

__all__ = [
    "ActionMap",
    "make_env",
    "env_dims",
    "import_modules",
    "register_env",
    "split_env_id",
    "UnknownEnvError",
    "get_stepper",
    "LEAN_TASKS",
    "get_env",
    "clear_env_cache",
    "TaskPreset",
    "PRESETS",
    "get_preset",
    "known_presets",
    "make_stepper",
    "lean_supported",
    "GymStepper",
    "LeanStepper",
]
