"""Environment creation with clear errors and quiet MuJoCo model compilation."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterable
from typing import Any

from envs.actions import ActionMap

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
            space that is neither a ``Box`` nor a ``Discrete`` (see :mod:`envs.actions`).
    """
    import gymnasium as gym

    from envs.presets import known_presets

    _quiet_mujoco_warnings()
    if env_id not in gym.registry:
        raise ValueError(
            f"unknown env id {env_id!r}. Known presets: {', '.join(known_presets())} "
            "(any registered gymnasium env with a Box or Discrete action space also works)"
        )
    env = gym.make(env_id, **kwargs)
    try:
        ActionMap.of(env.action_space)
    except ValueError as exc:
        env.close()
        raise ValueError(f"{env_id}: {exc}") from None
    return env


def import_modules(modules: Iterable[str]) -> None:
    """Import user modules by name (e.g. ones that call ``gymnasium.register``).

    Every rollout worker calls this before building its env, so an env registered in
    a user module is known in loky, Dask and Ray workers too. The current directory
    is searched last (as ``python -m`` would), after ``sys.path``.

    Raises:
        ValueError: a module that cannot be imported (one line naming it).
    """
    for name in modules:
        if name in sys.modules:
            continue
        if not isinstance(name, str) or not all(p.isidentifier() for p in name.split(".")):
            raise ValueError(f"--import expects a module name like 'mypkg.envs', got {name!r}")
        cwd = os.getcwd()
        if cwd not in sys.path:
            sys.path.append(cwd)
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ValueError(f"cannot import module {name!r} (--import): {exc}; is its folder on PYTHONPATH?") from None


def env_dims(env_id: str, env_kwargs: dict[str, Any] | None = None, imports: Iterable[str] = ()) -> tuple[int, int]:
    """``(obs_dim, act_dim)`` a policy sees: the flattened observation size (gymnasium
    ``FlattenObservation`` semantics for Dict/Tuple/n-d spaces) and the policy's output size
    (:attr:`envs.actions.ActionMap.dim`: the Box's size, or one score per discrete action).

    Raises:
        ValueError: unknown id, unsupported action space, or an observation space that
            cannot be flattened.
    """
    import gymnasium as gym

    from envs.cache import get_env

    import_modules(imports)
    env = get_env(env_id, **dict(env_kwargs or {}))
    space = env.observation_space
    try:
        obs_dim = int(gym.spaces.flatdim(space))
    except (NotImplementedError, ValueError, TypeError) as exc:
        raise ValueError(f"{env_id}: observation space {space} cannot be flattened into a vector: {exc}") from None
    return obs_dim, ActionMap.of(env.action_space).dim


def script_registration(env_id: str) -> dict[str, Any] | None:
    """How a worker can register ``env_id`` itself when it was registered in the caller's
    script (``__main__``) or with a callable entry point, which no worker can import by name.

    Returns ``None`` when the id is unknown here or its entry point is a ``"module:attr"``
    string of an importable module (gymnasium's own tasks, or a module named in ``imports``).
    The returned dict (entry point object, ``max_episode_steps``, kwargs) travels to workers
    pickled with the rollout spec (cloudpickle sends ``__main__`` classes by value) and is
    given to :func:`ensure_registered` there.
    """
    import gymnasium as gym

    spec = gym.registry.get(env_id)
    if spec is None:
        return None
    entry = spec.entry_point
    if isinstance(entry, str):
        module_name, _, attr = entry.partition(":")
        if module_name != "__main__":
            return None
        entry = getattr(sys.modules["__main__"], attr)
    return {"entry_point": entry, "max_episode_steps": spec.max_episode_steps, "kwargs": dict(spec.kwargs),
            "reward_threshold": spec.reward_threshold, "nondeterministic": spec.nondeterministic,
            "order_enforce": spec.order_enforce, "disable_env_checker": spec.disable_env_checker}


def ensure_registered(env_id: str, registration: dict[str, Any] | None) -> None:
    """Register ``env_id`` from :func:`script_registration`'s dict unless it is known already."""
    if registration is None:
        return
    import gymnasium as gym

    if env_id not in gym.registry:
        gym.register(env_id, **registration)
