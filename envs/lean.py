"""Lean steppers: ``mujoco.mj_step`` on the env's own model/data, without gymnasium's wrappers.

The gymnasium step path (wrappers, ``info`` dicts, ``mj_rnePostConstraint``, checks)
costs a large share of the time of a small task. A lean stepper reproduces the
gymnasium v5 ``step`` of a task exactly: same ``frame_skip``, same observation
(``qpos`` without the x (and y) positions, ``qvel``, clipped to [-10, 10] for Hopper and
Walker2d), same reward expression evaluated in the same order (forward velocity weight
times ``(x_after - x_before) / dt``, plus the healthy reward, minus
``ctrl_cost_weight * sum(a^2)``) and same termination. ``reset`` goes through
``env.reset(seed=...)`` so initial states are gymnasium's own. The test suite checks
observations, rewards and terminations for equality, step by step.

``mj_rnePostConstraint`` only fills ``cacc``/``cfrc_int``/``cfrc_ext``, which these
tasks never read and the integrator does not use, so it is skipped.

Supported: HalfCheetah-v5, Swimmer-v5, Hopper-v5, Walker2d-v5 (their gymnasium classes,
any constructor arguments, ``render_mode=None``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import mujoco
import numpy as np


@dataclasses.dataclass(frozen=True, kw_only=True)
class _LeanSpec:
    n_pos_excluded: int  # leading qpos entries dropped from the observation (x or x, y)
    clip_qvel: bool  # Hopper/Walker2d clip velocities to [-10, 10] in the observation
    health: str | None  # None, "hopper" (z, angle and state range) or "walker" (z, angle)


_SPECS: dict[str, _LeanSpec] = {
    "gymnasium.envs.mujoco.half_cheetah_v5.HalfCheetahEnv": _LeanSpec(n_pos_excluded=1, clip_qvel=False, health=None),
    "gymnasium.envs.mujoco.swimmer_v5.SwimmerEnv": _LeanSpec(n_pos_excluded=2, clip_qvel=False, health=None),
    "gymnasium.envs.mujoco.hopper_v5.HopperEnv": _LeanSpec(n_pos_excluded=1, clip_qvel=True, health="hopper"),
    "gymnasium.envs.mujoco.walker2d_v5.Walker2dEnv": _LeanSpec(n_pos_excluded=1, clip_qvel=True, health="walker"),
}


def _class_path(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def lean_supported(env: Any) -> bool:
    """Whether ``env`` (a gymnasium env, wrapped or not) has a lean stepper."""
    u = env.unwrapped
    return _class_path(u) in _SPECS and getattr(u, "render_mode", None) is None


class GymStepper:
    """The reference path: ``env.reset`` / ``env.step`` through gymnasium's wrappers."""

    lean = False

    def __init__(self, env: Any) -> None:
        self.env = env
        self.low = np.asarray(env.action_space.low, dtype=np.float64)
        self.high = np.asarray(env.action_space.high, dtype=np.float64)

    def reset(self, seed: int | None) -> np.ndarray:
        obs, _ = self.env.reset(seed=seed)
        return obs

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool]:
        obs, reward, terminated, truncated, _ = self.env.step(action)
        return obs, float(reward), bool(terminated), bool(truncated)


class LeanStepper(GymStepper):
    """Direct ``mj_step`` stepping for the supported locomotion tasks (see module doc).

    Raises:
        ValueError: ``env`` is not a supported task (check ``lean_supported`` first).
    """

    lean = True

    def __init__(self, env: Any) -> None:
        if not lean_supported(env):
            raise ValueError(
                f"no lean stepper for {_class_path(env.unwrapped)}; supported: {sorted(_SPECS)} with render_mode=None"
            )
        super().__init__(env)
        u = env.unwrapped
        spec = _SPECS[_class_path(u)]
        self.model, self.data = u.model, u.data
        self.frame_skip = int(u.frame_skip)
        self.dt = u.dt
        self.fw = u._forward_reward_weight
        self.cw = u._ctrl_cost_weight
        self.skip = spec.n_pos_excluded if u._exclude_current_positions_from_observation else 0
        self.clip_qvel = spec.clip_qvel
        self.health = spec.health
        if self.health is not None:
            self.healthy_reward = u._healthy_reward
            self.terminate_unhealthy = bool(u._terminate_when_unhealthy)
            self.z_range = u._healthy_z_range
            self.angle_range = u._healthy_angle_range
            self.state_range = getattr(u, "_healthy_state_range", None)
        spec_env = getattr(env, "spec", None)
        self.max_steps = spec_env.max_episode_steps if spec_env is not None else None
        self._t = 0

    def reset(self, seed: int | None) -> np.ndarray:
        self._t = 0
        return super().reset(seed)

    def _is_healthy(self) -> bool:
        qpos = self.data.qpos
        z, angle = qpos[1:3]
        ok = self.z_range[0] < z < self.z_range[1] and self.angle_range[0] < angle < self.angle_range[1]
        if self.health == "hopper":
            lo, hi = self.state_range
            state = np.concatenate((qpos, self.data.qvel))[2:]
            ok = bool(np.all(np.logical_and(lo < state, state < hi))) and ok
        return bool(ok)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool]:
        data = self.data
        x_before = data.qpos[0]
        data.ctrl[:] = action
        mujoco.mj_step(self.model, data, nstep=self.frame_skip)
        x_velocity = (data.qpos[0] - x_before) / self.dt
        qvel = np.clip(data.qvel, -10, 10) if self.clip_qvel else data.qvel
        obs = np.concatenate((data.qpos[self.skip :], qvel))
        forward = self.fw * x_velocity
        ctrl_cost = self.cw * np.sum(np.square(action))
        terminated = False
        if self.health is None:
            reward = forward - ctrl_cost
        else:
            healthy = self._is_healthy()
            reward = (forward + healthy * self.healthy_reward) - ctrl_cost
            terminated = (not healthy) and self.terminate_unhealthy
        self._t += 1
        truncated = self.max_steps is not None and self._t >= self.max_steps
        return obs, float(reward), terminated, bool(truncated)


def make_stepper(env: Any, lean: bool | None = None) -> GymStepper:
    """A stepper for ``env``: ``lean=None`` picks the lean path when supported.

    Raises:
        ValueError: ``lean=True`` for an unsupported env.
    """
    if lean is None:
        lean = lean_supported(env)
    return LeanStepper(env) if lean else GymStepper(env)


