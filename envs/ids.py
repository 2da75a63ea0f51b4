"""Env ids: user modules, ``module:Env-v0`` ids, ids for env factories and instances, and how
rollout workers learn the ids the caller registered.

An env reaches a rollout worker as an id string, never as an object: the worker builds its own
env from the id (``dfo.envs.cache.get_env``). This module turns every way a user can name an env
into such an id:

- a registered gymnasium id (``"Hopper-v5"``);
- ``"module:Env-v0"`` (gymnasium's own convention): ``module`` is imported first, in the
  caller and in every worker, and is expected to register ``Env-v0``;
- a callable that returns an env, or an env instance (``register_env``): registered under a
  generated id whose entry point travels to the workers with the rollout spec
  (``script_registration`` / ``ensure_registered``).

Example:
    >>> split_env_id("mypkg.envs:Maze-v0")
    ('mypkg.envs', 'Maze-v0')
    >>> split_env_id("Hopper-v5")
    (None, 'Hopper-v5')
"""

from __future__ import annotations

import copy
import difflib
import importlib
import os
import sys
from collections.abc import Callable, Iterable
from typing import Any

#: namespace of the ids :func:`register_env` generates
FACTORY_NAMESPACE = "dfo"


class UnknownEnvError(ValueError):
    """An env id that is not registered (after importing its module, for ``module:Env-v0``)."""


def split_env_id(env_id: str) -> tuple[str | None, str]:
    """``"module:Env-v0"`` -> ``("module", "Env-v0")``; an id without a module -> ``(None, id)``."""
    module, sep, name = str(env_id).rpartition(":")
    return (module, name) if sep else (None, name)


def _module_error(name: str, exc: BaseException) -> ValueError:
    """The one-line error for a user module whose import failed (``--import`` or an id prefix)."""
    if isinstance(exc, _OsExitCalled):
        return ValueError(f"module {name!r} called os._exit({exc.code!r}) while being imported (--import); "
                          "a module named with --import must only define and register envs")
    if isinstance(exc, SystemExit):
        return ValueError(f"module {name!r} called sys.exit({exc.code!r}) while being imported (--import); "
                          "a module named with --import must only define and register envs")
    if isinstance(exc, SyntaxError):
        where = f"{os.path.basename(exc.filename or '?')}, line {exc.lineno}"
        return ValueError(f"cannot import module {name!r} (--import): SyntaxError: {exc.msg} ({where})")
    if isinstance(exc, ImportError):
        return ValueError(f"cannot import module {name!r} (--import): {exc}; is its folder on PYTHONPATH?")
    return ValueError(f"module {name!r} raised {type(exc).__name__} while being imported (--import): {exc}")


class _OsExitCalled(SystemExit):
    """A user module called ``os._exit`` while being imported."""


def _refuse_os_exit(status: int = 0) -> None:
    """Stands in for ``os._exit`` while a user module is imported: ``os._exit`` cannot be caught, so a
    module body calling it would end dfo with status 0 and nothing written (case I6b)."""
    raise _OsExitCalled(status)


def import_modules(modules: Iterable[str]) -> None:
    """Import user modules by name (e.g. ones that call ``gymnasium.register``).

    Every rollout worker calls this before building its env, so an env registered in
    a user module is known in loky, Dask and Ray workers too. The current directory
    is searched last (as ``python -m`` would), after ``sys.path``.

    Raises:
        ValueError: a name that is not a dotted module name, or a module whose import fails
            in any way (missing, a syntax error, an exception in its body, ``sys.exit``):
            one line naming the module and the cause.
    """
    for name in modules:
        if name in sys.modules:
            continue
        if not isinstance(name, str) or not all(p.isidentifier() for p in name.split(".")):
            raise ValueError(f"--import expects a module name like 'mypkg.envs', got {name!r}")
        cwd = os.getcwd()
        if cwd not in sys.path:
            sys.path.append(cwd)
        real_exit = os._exit
        os._exit = _refuse_os_exit  # I6b: a module body that ends the process is reported, not obeyed
        try:
            importlib.import_module(name)
        except (Exception, SystemExit) as exc:  # user code: any failure is one line, never a traceback
            sys.modules.pop(name, None)
            raise _module_error(name, exc) from None
        finally:
            os._exit = real_exit


def resolve_env_id(env_id: str) -> str:
    """The registered id behind ``env_id``, importing the module of a ``module:Env-v0`` id first.

    Raises:
        ValueError: the module cannot be imported, or (:class:`UnknownEnvError`) the id is not
            registered; the message names the closest registered ids.
    """
    import gymnasium as gym

    if not isinstance(env_id, str) or not env_id:
        raise ValueError(f"an env id must be a non-empty string, got {env_id!r}")
    if env_id in gym.registry:
        return env_id
    module, name = split_env_id(env_id)
    if module is not None:
        import_modules([module])
    if name not in gym.registry:
        close = difflib.get_close_matches(name, list(gym.registry), n=3, cutoff=0.7)
        hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
        where = f"module {module!r} did not register it" if module else "not in gymnasium's registry"
        raise UnknownEnvError(f"unknown env id {env_id!r} ({where}){hint}")
    return name


class _CopiesOf:
    """Entry point of an env instance given to :func:`register_env`: each call returns a deep
    copy, so every rollout slot and worker steps its own env and the caller's stays untouched."""

    def __init__(self, template: Any) -> None:
        self.template = template

    def __call__(self, **kwargs: Any) -> Any:
        if kwargs:
            raise ValueError(f"an env instance takes no env_kwargs (got {sorted(kwargs)}); pass a factory instead")
        return copy.deepcopy(self.template)


def register_env(env: Callable[..., Any] | Any) -> str:
    """Register an env factory (a callable returning an env) or an env instance; return its id.

    The id is ``"dfo/<name>-vK"``; the same factory or instance registered twice gets the same id.
    The factory (or the instance, pickled) travels to rollout workers with the rollout spec,
    so it must be picklable by cloudpickle; an instance is deep-copied for each env built from it.

    Raises:
        ValueError: an object that is neither callable nor a gymnasium env.
    """
    import gymnasium as gym

    if isinstance(env, gym.Env):
        entry, name = _CopiesOf(env), type(env.unwrapped).__name__
    elif callable(env):
        entry, name = env, getattr(env, "__qualname__", type(env).__name__)
    else:
        raise ValueError(f"env must be an id, a callable returning an env, or a gymnasium.Env; got {env!r}")
    name = "".join(c if c.isalnum() or c in "_." else "_" for c in name).strip("_.") or "env"
    for version in range(1000):
        env_id = f"{FACTORY_NAMESPACE}/{name}-v{version}"
        spec = gym.registry.get(env_id)
        if spec is None:
            gym.register(env_id, entry_point=entry, disable_env_checker=True, order_enforce=False)
            return env_id
        same = spec.entry_point is env or getattr(spec.entry_point, "template", None) is env
        if same:
            return env_id
    raise ValueError(f"too many envs registered under the name {name!r}")


def script_registration(env_id: str) -> dict[str, Any] | None:
    """How a worker can register ``env_id`` itself when it was registered in the caller's
    script (``__main__``) or with a callable entry point, which no worker can import by name.

    Returns ``None`` when the id is unknown here, names its module (``module:Env-v0``: the
    worker imports it), or its entry point is a ``"module:attr"`` string of an importable
    module (gymnasium's own tasks, or a module named in ``imports``). The returned dict (entry
    point object, ``max_episode_steps``, kwargs) travels to workers pickled with the rollout
    spec (cloudpickle sends ``__main__`` classes by value) and is given to
    :func:`ensure_registered` there.
    """
    import gymnasium as gym

    if split_env_id(env_id)[0] is not None:
        return None
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
