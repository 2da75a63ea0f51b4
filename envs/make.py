"""Environment creation with clear errors and quiet MuJoCo model compilation."""

from __future__ import annotations

import sys
from typing import Any

_SILENCED = ("settotalmass",)
_installed = False


def _quiet_mujoco_warnings() -> None:
    """Drop MuJoCo's ``settotalmass`` deprecation message (printed for HalfCheetah's XML on
    every model compile); every other MuJoCo warning is still printed to stderr."""
    global _installed
    if _installed:
        return
    try:
        import mujoco
    except ImportError:
        return

    def handler(msg: str) -> None:
        if not any(s in msg for s in _SILENCED):
            print(f"WARNING: {msg}", file=sys.stderr)

    mujoco.set_mju_user_warning(handler)
    _installed = True


def make_env(env_id: str, **kwargs: Any):
    """``gymnasium.make(env_id, **kwargs)`` for continuous-control tasks.

    Args:
        env_id: a registered gymnasium id, e.g. ``"HalfCheetah-v5"``.
        **kwargs: passed to ``gymnasium.make``.

    Returns:
        The gymnasium env (with its standard wrappers).

    Raises:
        ValueError: unknown id (the message lists the built-in presets) or an action
            space that is not a ``gymnasium.spaces.Box`` (e.g. discrete CartPole).
    """
    import gymnasium as gym

    from envs.presets import known_presets

    _quiet_mujoco_warnings()
    if env_id not in gym.registry:
        raise ValueError(
            f"unknown env id {env_id!r}. Known presets: {', '.join(known_presets())} "
            "(any registered gymnasium env with a Box action space also works)"
        )
    env = gym.make(env_id, **kwargs)
    if not isinstance(env.action_space, gym.spaces.Box):
        space = env.action_space
        env.close()
        raise ValueError(
            f"{env_id} has action space {space}; policy search here needs a continuous "
            "gymnasium.spaces.Box action space (discrete action spaces are not supported)"
        )
    return env
