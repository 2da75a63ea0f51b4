"""Environment creation: checked ids and kwargs, clear errors, quiet MuJoCo model compilation.

``import_modules``, ``script_registration`` and ``ensure_registered`` live in :mod:`dfo.envs.ids`;
they are imported here too because rollout workers and commands have always found them here.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from dfo.envs.actions import ActionMap
from dfo.envs.ids import ensure_registered, import_modules, resolve_env_id, script_registration

__all__ = ["make_env", "make_render_env", "env_dims", "check_env_kwargs",
           "import_modules", "script_registration", "ensure_registered"]

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


def check_env_kwargs(env_id: str, kwargs: dict[str, Any]) -> None:
    """Refuse env kwargs that gymnasium accepts but that crash or silently break a run.

    ``frame_skip`` must be an integer >= 1 (0 divides by zero in MuJoCo's ``dt``; a negative
    value runs no physics at all); ``render_mode="human"`` opens a window per rollout worker
    (and aborts the process without a display), so training and evaluation refuse it.

    Raises:
        ValueError: one line naming the key.
    """
    skip = kwargs.get("frame_skip")
    if skip is not None and (isinstance(skip, bool) or not isinstance(skip, int) or skip < 1):
        raise ValueError(f"{env_id}: frame_skip must be an integer >= 1, got {skip!r}")
    if kwargs.get("render_mode") == "human":
        raise ValueError(f"{env_id}: render_mode 'human' opens a window in every rollout worker and is not "
                         "supported here; 'dfo render' writes a video (rgb_array)")


def make_env(env_id: str, **kwargs: Any):
    """``gymnasium.make(env_id, **kwargs)`` for tasks with a Box or Discrete action space.

    Args:
        env_id: a registered gymnasium id, e.g. ``"HalfCheetah-v5"``, or ``"module:Env-v0"``
            (``module`` is imported first; see :mod:`dfo.envs.ids`).
        **kwargs: passed to ``gymnasium.make`` (checked by :func:`check_env_kwargs`).

    Returns:
        The gymnasium env (with its standard wrappers).

    Raises:
        ValueError: unknown id (the message names the closest registered ids), a module that
            cannot be imported, a refused kwarg, or an action space that is neither a ``Box``
            nor a ``Discrete`` (see :mod:`dfo.envs.actions`).
    """
    import gymnasium as gym

    _quiet_mujoco_warnings()
    name = resolve_env_id(env_id)
    check_env_kwargs(env_id, kwargs)
    env = gym.make(name, **kwargs)
    try:
        ActionMap.of(env.action_space)
    except ValueError as exc:
        env.close()
        raise ValueError(f"{env_id}: {exc}") from None
    return env


def env_dims(env_id: str, env_kwargs: dict[str, Any] | None = None, imports: Iterable[str] = ()) -> tuple[int, int]:
    """``(obs_dim, act_dim)`` a policy sees: the flattened observation size (gymnasium
    ``FlattenObservation`` semantics for Dict/Tuple/n-d spaces) and the policy's output size
    (:attr:`dfo.envs.actions.ActionMap.dim`: the Box's size, or one score per discrete action).

    Builds one env and closes it (the per-process cache sits above this module).

    Raises:
        ValueError: unknown id, unsupported action space, or an observation space that
            cannot be flattened.
    """
    import gymnasium as gym

    import_modules(imports)
    env = make_env(env_id, **dict(env_kwargs or {}))
    try:
        space = env.observation_space
        try:
            obs_dim = int(gym.spaces.flatdim(space))
        except (NotImplementedError, ValueError, TypeError) as exc:
            raise ValueError(f"{env_id}: observation space {space} cannot be flattened into a vector: {exc}") from None
        return obs_dim, ActionMap.of(env.action_space).dim
    finally:
        env.close()


def make_render_env(env_id: str, env_kwargs: dict[str, Any] | None = None, *, width: int, height: int):
    """An env of ``env_id`` (with the run's ``env_kwargs``) that renders ``rgb_array`` frames.

    ``width`` and ``height`` are passed only to an env whose constructor takes them (MuJoCo's do;
    classic control's draw at their own size), so asking for a size never fails on such an env.

    Raises:
        ValueError: as :func:`make_env`.
    """
    import inspect

    import gymnasium as gym

    name = resolve_env_id(env_id)
    entry = gym.registry[name].entry_point
    creator = gym.envs.registration.load_env_creator(entry) if isinstance(entry, str) else entry
    try:
        params = inspect.signature(creator).parameters.values()
    except (TypeError, ValueError):  # a builtin or an object without a signature: do not guess
        params = []
    takes = {p.name for p in params} | ({"width", "height"} if any(p.kind is p.VAR_KEYWORD for p in params) else set())
    size = {"width": int(width), "height": int(height)} if {"width", "height"} <= takes else {}
    return make_env(env_id, **{**dict(env_kwargs or {}), "render_mode": "rgb_array", **size})
