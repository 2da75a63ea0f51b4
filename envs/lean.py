"""Steppers: many episodes of one task advanced in lockstep, lean (``mj_step``) or through ``env.step``.

A stepper owns ``width`` slots. ``reset(slot, seed)`` starts an episode in a slot and
writes its first observation to ``stepper.obs[slot]``; ``step(slots, actions)``
advances the given slots (an index array, or a slice for "all of 0..W-1") by one env
step each, writes their observations to
``stepper.obs`` and returns ``(reward, terminated, truncated)`` arrays. The caller (a
rollout, :mod:`dfo.policies.rollout`) computes all the slots' actions at once.

* :class:`LeanStepper`: every slot is one row of an array of ``mjSTATE_INTEGRATION``
  states stepped in one scratch ``MjData``; the 11 MuJoCo tasks' ``step`` on those rows,
  bit for bit gymnasium v5's, is in :mod:`dfo.envs.lean_tasks`. ``reset`` runs the env's own ``reset(seed=...)`` and
  takes the slot's state from it, so initial states are gymnasium's; ``move`` hands an
  episode to another slot (a row copy), which lets a rollout keep its running episodes
  in slots ``0..k-1``. ``advance`` is ``step`` without the time limit (the rollout
  counts steps itself). The test suite checks observations, rewards, terminations and
  truncations for equality, step by step.
* :class:`GymStepper`: the reference path, ``env.reset`` / ``env.step`` of gymnasium env
  instances (one per slot), observations flattened with gymnasium's ``flatten``
  (``FlattenObservation`` semantics) when the space is not a 1-D ``Box``.

The lean path is taken only for an *unwrapped registered task* (:func:`lean_supported`):
one of the 11 ids, made by ``gymnasium.make`` from gymnasium's own entry point with the
registered (default) kwargs, carrying only ``make``'s standard wrappers and no render
mode. Anything wrapped, re-registered, custom or given env kwargs goes through
``env.step``, so user wrappers always act.

Example:
    >>> import numpy as np
    >>> from dfo.envs import make_env
    >>> st = make_stepper(make_env("HalfCheetah-v5"))
    >>> st.lean, st.obs.shape
    (True, (1, 17))
    >>> st.reset(0, seed=0)
    >>> reward, terminated, truncated = st.step(np.array([0]), np.zeros((1, 6)))
    >>> bool(terminated[0]), bool(truncated[0])
    (False, False)
"""

from __future__ import annotations

from typing import Any

import numpy as np

from dfo.envs.actions import ActionMap
from dfo.envs.lean_tasks import LEAN_TASKS, class_path, lean_supported

__all__ = ["GYM_MAX_WIDTH", "GymStepper", "LeanStepper", "make_stepper", "LEAN_TASKS", "lean_supported"]

#: most env instances a ``GymStepper`` builds per process (its slots)
GYM_MAX_WIDTH = 8


def _indices(slots: np.ndarray | slice) -> list[int]:
    """The slot numbers of an index array or a ``slice`` (the caller's cheap "all of 0..W-1")."""
    if isinstance(slots, slice):
        return list(range(slots.start or 0, slots.stop, slots.step or 1))
    return slots.tolist()


# -- the steppers -----------------------------------------------------------------------


class GymStepper:
    """The reference path: ``env.reset`` / ``env.step`` on one gymnasium env per slot.

    Args:
        env: the env of slot 0.
        factory: builds the env of each further slot (``None``: one slot only).

    Actions: the rollout's clipped output rows go through :class:`dfo.envs.actions.ActionMap`
    (reshaped for a Box, ``argmax`` for a Discrete space).

    Raises:
        ValueError: an observation space gymnasium cannot flatten, or an action space that
            is neither Box nor Discrete.
    """

    lean = False

    def __init__(self, env: Any, factory: Any = None) -> None:
        import gymnasium as gym

        self.envs = [env]  # in creation order: envs[0] is the caller's (e.g. the per-process cached) env
        self.slot_env = [0]  # slot -> index into envs (``move`` swaps entries)
        self.factory = factory
        self.space = env.observation_space
        self.flat = isinstance(self.space, gym.spaces.Box) and len(self.space.shape) == 1
        try:
            self.obs_dim = int(self.space.shape[0]) if self.flat else int(gym.spaces.flatdim(self.space))
        except (NotImplementedError, ValueError, TypeError) as exc:
            raise ValueError(
                f"observation space {self.space} cannot be flattened into a vector for a policy: {exc}"
            ) from None
        self.actions = ActionMap.of(env.action_space)
        self.act_dim, self.low, self.high = self.actions.dim, self.actions.low, self.actions.high
        self.obs = np.zeros((1, self.obs_dim))

    @property
    def max_width(self) -> int:
        """One slot per env instance: at most :data:`GYM_MAX_WIDTH` (``env.step`` dominates anyway)."""
        return 1 if self.factory is None else GYM_MAX_WIDTH

    @property
    def width(self) -> int:
        return len(self.envs)

    def ensure_width(self, width: int) -> None:
        """Have at least ``min(width, max_width)`` slots."""
        while len(self.envs) < min(width, self.max_width):
            self.slot_env.append(len(self.envs))
            self.envs.append(self.factory())
        if self.obs.shape[0] < len(self.envs):
            self.obs = np.vstack([self.obs, np.zeros((len(self.envs) - self.obs.shape[0], self.obs_dim))])

    def _flatten(self, obs: Any) -> np.ndarray:
        if self.flat:
            return obs
        import gymnasium as gym

        return gym.spaces.flatten(self.space, obs)

    def reset(self, slot: int, seed: int | None) -> None:
        obs, _ = self.envs[self.slot_env[slot]].reset(seed=seed)
        self.obs[slot] = self._flatten(obs)

    def move(self, src: int, dst: int) -> None:
        """Move the episode of slot ``src`` to slot ``dst`` (the two slots swap env instances)."""
        e = self.slot_env
        e[src], e[dst] = e[dst], e[src]
        self.obs[dst] = self.obs[src]

    def step(self, slots: np.ndarray | slice, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Step ``slots`` (index array or slice) with ``actions`` (one row each)."""
        idx = _indices(slots)
        k = len(idx)
        reward = np.empty(k)
        terminated, truncated = np.zeros(k, dtype=bool), np.zeros(k, dtype=bool)
        to_env = self.actions.to_env
        for i, j in enumerate(idx):
            obs, reward[i], terminated[i], truncated[i], _ = self.envs[self.slot_env[j]].step(to_env(actions[i]))
            self.obs[j] = self._flatten(obs)
        return reward, terminated, truncated


class LeanStepper:
    """Direct ``mj_step`` stepping of the 11 MuJoCo v5 tasks (see the module doc).

    Raises:
        ValueError: ``env`` is not an unwrapped registered task (see :func:`lean_supported`).
    """

    lean = True
    max_width = 1 << 30

    def __init__(self, env: Any) -> None:
        if not lean_supported(env):
            spec = getattr(env, "spec", None)
            raise ValueError(
                f"no lean stepper for {spec.id if spec else class_path(env)}: the lean path needs an unwrapped "
                f"registered task without env kwargs or render mode, one of {sorted(LEAN_TASKS)}"
            )
        self.env = env
        self.u = env.unwrapped
        self.task = LEAN_TASKS[env.spec.id][1](self.u)
        self.model = self.u.model
        self.obs_dim = self.task.obs_dim
        self.act_dim = int(env.action_space.shape[0])
        self.low = np.asarray(env.action_space.low, dtype=np.float64)
        self.high = np.asarray(env.action_space.high, dtype=np.float64)
        self.max_steps = env.spec.max_episode_steps
        self.t = np.zeros(0, dtype=np.int64)
        #: seed -> initial states prepared by :meth:`prefetch`: (staging slot, the env's generator after them)
        self._staged: dict[int, list[tuple[int, Any, Any]]] = {}
        #: ``step`` without the time limit: ``advance(slots, actions) -> (reward, terminated)``,
        #: ``terminated`` ``None`` for a task that never terminates; the caller ends episodes at
        #: ``max_steps`` (``dfo.policies.rollout`` does) and ``t`` is not counted
        self.advance = self.task.step
        self.ensure_width(1)

    @property
    def width(self) -> int:
        return self.task.width

    @property
    def obs(self) -> np.ndarray:
        return self.task.obs

    def ensure_width(self, width: int) -> None:
        """Have at least ``width`` slots (one state row each)."""
        if self.width < width:
            self.task.add_slots(width - self.width)
            self.t = np.concatenate([self.t, np.zeros(width - self.t.shape[0], dtype=np.int64)])

    def reset(self, slot: int, seed: int | None) -> None:
        """Start an episode in ``slot``: gymnasium's initial state for ``seed`` (and the env's generator
        left as ``env.reset(seed=seed)`` leaves it). A task whose initial observation depends on
        ``qpos``/``qvel`` only draws them itself (``task.fast_reset``: the same numbers without the
        env's Python around them); the others, and ``seed=None``, run the env's own ``reset``."""
        staged = self._staged.get(seed) if seed is not None else None
        if staged:  # prepared by prefetch: a row copy, and the env's generator as that reset left it
            src, self.u._np_random, self.u._np_random_seed = staged.pop()
            self.task.move(src, slot)
        elif seed is None or not self.task.fast_reset(slot, seed):
            obs, _ = self.u.reset(seed=seed)
            self.task.load(slot, self.u.data)
            self.obs[slot] = obs
        self.t[slot] = 0

    #: most initial states one :meth:`prefetch` prepares
    PREFETCH_MAX = 512

    def prefetch(self, seeds: Any, first: int) -> None:
        """Prepare the initial states of the episodes of ``seeds`` now, one after another, in staging
        slots from ``first`` on (the caller runs its episodes in slots below ``first``); a later
        ``reset(slot, seed)`` of one of them is a row copy (``move``).

        The same computation as :meth:`reset`'s, so the same numbers; done back to back it runs on warm
        caches, where a reset between two lockstep iterations runs cold (after the simulator has been
        through every slot: several times slower). Each prepared state keeps the generator its reset
        left on the env, handed to the env when it is used, so the env's generator is where
        ``env.reset(seed=seed)`` would leave it. Tasks without a fast reset prepare nothing."""
        self._staged = {}
        if self.task.qvel_noise is None:
            return
        todo = [s for s in seeds if isinstance(s, int)][:self.PREFETCH_MAX]  # others: reset's own checks
        if not todo:
            return
        self.ensure_width(first + len(todo))
        u = self.u
        keep = u._np_random, u._np_random_seed
        try:
            for i, seed in enumerate(todo):
                self.task.fast_reset(first + i, seed)
                self._staged.setdefault(seed, []).append((first + i, u._np_random, u._np_random_seed))
        except Exception:  # e.g. a seed gymnasium refuses: its reset raises when the episode starts
            pass
        finally:
            u._np_random, u._np_random_seed = keep

    def move(self, src: int, dst: int) -> None:
        """Move the episode of slot ``src`` to slot ``dst`` (``src`` is free afterwards)."""
        self.task.move(src, dst)
        self.t[dst] = self.t[src]

    def step(self, slots: np.ndarray | slice, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Step ``slots`` (index array or slice) with ``actions`` (one row each)."""
        reward, terminated = self.task.step(slots, actions)
        if terminated is None:
            terminated = np.zeros(len(reward), dtype=bool)
        self.t[slots] += 1
        if self.max_steps is None:
            truncated = np.zeros(len(reward), dtype=bool)
        else:
            truncated = self.t[slots] >= self.max_steps
        return reward, terminated, truncated


def make_stepper(env: Any, lean: bool | None = None, factory: Any = None) -> GymStepper | LeanStepper:
    """A stepper for ``env``: ``lean=None`` takes the lean path when :func:`lean_supported`.

    Args:
        env: a gymnasium env.
        lean: ``None`` (auto), ``True`` (require the lean path), ``False`` (``env.step``).
        factory: for the ``env.step`` path, builds more env instances (more slots).

    Raises:
        ValueError: ``lean=True`` for an env that is not an unwrapped registered task.
    """
    if lean is None:
        lean = lean_supported(env)
    return LeanStepper(env) if lean else GymStepper(env, factory)
