"""Per-process env cache: each worker process builds an env once and reuses it.

A rollout function shipped to joblib/loky workers calls ``get_env(env_id)``; the first
call in a process creates the env, later calls (later rollouts, later iterations, as
loky keeps its workers alive) return the same object. Rollouts reset the env with
their own seed, so reuse does not affect results.

Example:
    >>> get_env("InvertedPendulum-v5") is get_env("InvertedPendulum-v5")
    True
"""

from __future__ import annotations

import os
from typing import Any

from dfo.envs.make import make_env

_CACHE: dict[tuple, Any] = {}
_PID = os.getpid()


def _key(env_id: str, kwargs: dict[str, Any]) -> tuple:
    return (env_id, tuple(sorted((k, repr(v)) for k, v in kwargs.items())))


def get_env(env_id: str, **kwargs: Any):
    """The cached env for ``(env_id, kwargs)`` in this process, created on first use."""
    global _PID
    if os.getpid() != _PID:  # forked child: never share MuJoCo data with the parent
        _CACHE.clear()
        _PID = os.getpid()
    key = _key(env_id, kwargs)
    env = _CACHE.get(key)
    if env is None:
        env = _CACHE[key] = make_env(env_id, **kwargs)
    return env


def get_stepper(env_id: str, env_kwargs: dict[str, Any] | None = None, *, lean: bool | None = None):
    """The cached stepper (``dfo.envs.lean``) of ``(env_id, env_kwargs, lean)`` in this process.

    Slot 0 uses the cached env of :func:`get_env`; a stepper on the ``env.step`` path
    builds one more env per extra slot (``ensure_width``). The lean path is taken only
    for an unwrapped registered task (``dfo.envs.lean.lean_supported``).
    """
    from dfo.envs.lean import make_stepper  # imports mujoco: only when a stepper is asked for

    kwargs = dict(env_kwargs or {})
    env = get_env(env_id, **kwargs)  # also resets the caches in a forked child
    key = ("stepper", lean, *_key(env_id, kwargs))
    stepper = _CACHE.get(key)
    if stepper is None:
        stepper = _CACHE[key] = make_stepper(env, lean, factory=lambda: make_env(env_id, **kwargs))
    return stepper


def clear_env_cache() -> None:
    """Close and forget all cached envs (and steppers) of this process."""
    for key, obj in _CACHE.items():
        if key[0] == "stepper":
            for env in getattr(obj, "envs", [])[1:]:  # slot 0 is the cached env itself
                env.close()
        else:
            obj.close()
    _CACHE.clear()


def cache_size() -> int:
    """Number of envs cached in this process."""
    return sum(1 for k in _CACHE if k[0] != "stepper")
