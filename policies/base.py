"""The flat-parameter policy interface shared by all numpy policies, and the table of policy classes.

A concrete subclass of :class:`Policy` registers itself under its class name when its module
is imported (``__init_subclass__``); :func:`policy_from_config` rebuilds a saved policy from
that table, so this module imports no policy class (``policies/__init__.py`` imports the
built-in ones, which fills the table for every ``import dfo.policies...``).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

import numpy as np

RngLike = None | int | np.random.Generator

#: ``Policy.config()["class"]`` -> the class; filled by :meth:`Policy.__init_subclass__`
POLICY_CLASSES: dict[str, type[Policy]] = {}


class Policy(abc.ABC):
    """A deterministic policy ``a = pi(params, obs)`` over a flat parameter vector.

    Subclasses define ``param_blocks`` (named matrix/vector blocks, in the order
    they are laid out in the flat vector) and ``act``. Low-rank estimators
    (SubZero, LOZO) use the blocks to perturb each matrix as a whole.

    Attributes:
        obs_dim: observation dimension.
        act_dim: action dimension.
    """

    obs_dim: int
    act_dim: int

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Register a concrete subclass in :data:`POLICY_CLASSES` under its class name."""
        super().__init_subclass__(**kwargs)
        # ABCMeta sets __abstractmethods__ only after this hook runs: look at the methods themselves
        names = {*Policy.__abstractmethods__, *vars(cls)}
        if not any(getattr(getattr(cls, name, None), "__isabstractmethod__", False) for name in names):
            known = POLICY_CLASSES.get(cls.__name__)
            here = (cls.__module__, cls.__qualname__)
            if known is not None and (known.__module__, known.__qualname__) != here:  # a reload replaces itself
                raise TypeError(f"two policy classes named {cls.__name__!r}: in {known.__module__} and {cls.__module__}")
            POLICY_CLASSES[cls.__name__] = cls

    @abc.abstractmethod
    def param_blocks(self) -> list[tuple[str, tuple[int, ...]]]:
        """Named blocks ``[(name, shape), ...]`` in flat-vector order (C order within a block)."""

    @abc.abstractmethod
    def init_params(self, rng: RngLike = None) -> np.ndarray:
        """A fresh float64 parameter vector of length ``n_params``."""

    @abc.abstractmethod
    def act(self, params: np.ndarray, obs: np.ndarray) -> np.ndarray:
        """Action for one observation (shape ``(obs_dim,)``) or a batch ``(B, obs_dim)``.

        No clipping: bounding the action to the env's action space is the rollout's job.
        """

    @abc.abstractmethod
    def config(self) -> dict[str, Any]:
        """JSON-serializable constructor arguments plus ``"class"`` (see ``policy_from_config``)."""

    def bind(self, params: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        """A fast ``obs -> action`` closure for fixed ``params`` (checked once, not per call).

        Rollouts call it every env step, so subclasses override it to skip per-call
        validation. ``policy.bind(params)(obs)`` equals ``policy.act(params, obs)``.
        """
        params = self.check_params(params)
        return lambda obs: self.act(params, obs)

    def batch_bind(self, params: np.ndarray) -> Callable[..., np.ndarray]:
        """A batched actor for ``k`` parameter vectors (rows of ``params``, shape ``(k, n_params)``).

        ``actor(obs)`` maps ``obs`` of shape ``(k, obs_dim)`` (row ``i`` for policy ``i``) to
        ``(k, act_dim)`` actions; ``actor(obs, rows)`` does the same for the policies
        ``rows`` only (``obs`` then has ``len(rows)`` rows). Row ``i`` of the result depends
        only on ``params[i]`` and ``obs[i]``, never on the other rows (rollouts rely on it
        for serial == parallel results). Subclasses override it with one stacked matrix
        product; this default calls :meth:`bind` row by row.
        """
        params = np.asarray(params, dtype=np.float64)
        actors = [self.bind(p) for p in params]

        def actor(obs: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
            idx = range(len(actors)) if rows is None else rows
            return np.array([actors[r](o) for r, o in zip(idx, obs)]).reshape(len(obs), self.act_dim)

        return actor

    @property
    def n_params(self) -> int:
        """Length of the flat parameter vector."""
        return int(sum(int(np.prod(shape)) for _, shape in self.param_blocks()))

    def unflatten(self, params: np.ndarray) -> dict[str, np.ndarray]:
        """Views of ``params`` as the named blocks (no copy; writing a view writes ``params``)."""
        params = self.check_params(params)
        out: dict[str, np.ndarray] = {}
        start = 0
        for name, shape in self.param_blocks():
            size = int(np.prod(shape))
            out[name] = params[start : start + size].reshape(shape)
            start += size
        return out

    def flatten(self, blocks: dict[str, np.ndarray]) -> np.ndarray:
        """Inverse of ``unflatten``: concatenate named blocks into a flat float64 vector."""
        parts = []
        for name, shape in self.param_blocks():
            if name not in blocks:
                raise ValueError(f"missing parameter block {name!r}; expected {[n for n, _ in self.param_blocks()]}")
            block = np.asarray(blocks[name], dtype=np.float64)
            if block.shape != tuple(shape):
                raise ValueError(f"block {name!r} has shape {block.shape}, expected {tuple(shape)}")
            parts.append(block.ravel())
        return np.concatenate(parts) if parts else np.zeros(0)

    def check_params(self, params: np.ndarray) -> np.ndarray:
        """Return ``params`` as a 1-D float array, raising a clear error on a length mismatch."""
        params = np.asarray(params)
        if params.ndim != 1 or params.shape[0] != self.n_params:
            raise ValueError(
                f"{type(self).__name__} expects a flat parameter vector of length {self.n_params}, "
                f"got shape {params.shape}"
            )
        return params

    def _check_obs(self, obs: np.ndarray) -> np.ndarray:
        obs = np.asarray(obs, dtype=np.float64)
        if obs.ndim not in (1, 2) or obs.shape[-1] != self.obs_dim:
            raise ValueError(
                f"{type(self).__name__} expects obs of shape ({self.obs_dim},) or (B, {self.obs_dim}), got {obs.shape}"
            )
        return obs

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "class")
        return f"{type(self).__name__}({args})"


def policy_from_config(config: dict[str, Any]) -> Policy:
    """Rebuild a policy from ``Policy.config()`` output.

    The class is looked up in :data:`POLICY_CLASSES` by its ``"class"`` name; a policy class of
    your own is found once the module defining it has been imported.

    Raises:
        ValueError: for an unknown ``"class"``.
    """
    cfg = dict(config)
    name = cfg.pop("class", None)
    if name not in POLICY_CLASSES:
        raise ValueError(f"unknown policy class {name!r}; known: {sorted(POLICY_CLASSES)}")
    if "hidden" in cfg:
        cfg["hidden"] = tuple(cfg["hidden"])
    return POLICY_CLASSES[name](**cfg)
