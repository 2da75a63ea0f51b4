"""The 11 gymnasium v5 MuJoCo tasks' ``step`` on a batch of ``mj_step`` state rows (the lean path).

Each task class reproduces gymnasium v5's ``step`` exactly (same ``frame_skip``,
``mj_rnePostConstraint`` where the task reads contact forces, the same observation, reward and
termination expressions in the same order), without wrappers or ``info`` dicts. A slot is one row
of an array of ``mjSTATE_INTEGRATION`` states, stepped in one scratch ``MjData`` (``mj_setState``,
``mj_step``, ``mj_getState``), which gives bit for bit what the slot's own ``MjData`` would. For
InvertedPendulum, Swimmer, HalfCheetah, Hopper, Walker2d, Ant and Humanoid the observation, reward and
termination of all slots are computed as arrays; the other four evaluate gymnasium's expressions
slot by slot on the scratch data right after the slot's step.

:func:`lean_supported` says when an env may take this path: an *unwrapped registered task*, one of
:data:`LEAN_TASKS`, made by ``gymnasium.make`` from gymnasium's own entry point with the registered
kwargs, carrying only ``make``'s standard wrappers and no render mode. The steppers that use these
classes are in :mod:`dfo.envs.lean`.
"""

from __future__ import annotations

import math
from typing import Any

import mujoco
import numpy as np

#: wrappers ``gymnasium.make`` adds by itself (anything else is a user wrapper)
_MAKE_WRAPPERS = frozenset(
    f"gymnasium.wrappers.common.{n}" for n in ("TimeLimit", "OrderEnforcing", "PassiveEnvChecker")
)
#: everything ``mj_step`` reads from an ``MjData`` (time, qpos, qvel, act, warm start, ctrl, ...)
_INTEGRATION = int(mujoco.mjtState.mjSTATE_INTEGRATION)


def class_path(obj: Any) -> str:
    """``module.QualName`` of ``obj``'s class."""
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


# -- the tasks ----------------------------------------------------------------------------


def _state_columns(model: Any) -> dict[int, int]:
    """Column of each component in an ``mjSTATE_INTEGRATION`` row (components in bit order)."""
    cols, at = {}, 0
    for bit in range(_INTEGRATION.bit_length()):
        comp = 1 << bit
        if comp & _INTEGRATION:
            cols[comp] = at
            at += mujoco.mj_stateSize(model, comp)
    return cols


class _Task:
    """One gymnasium v5 MuJoCo task's ``step`` on a batch of slots.

    A slot is one row of ``X``: the ``mjSTATE_INTEGRATION`` state of its episode (time,
    qpos, qvel, act, warm start, ctrl, applied forces, ...), everything ``mj_step``
    reads, so ``mj_setState`` + ``mj_step`` + ``mj_getState`` on one scratch ``MjData``
    gives bit for bit what stepping the slot's own ``MjData`` would. One hot ``MjData``
    instead of one per slot; actions are written to all slots' ``ctrl`` columns in one
    array assignment, and moving an episode to another slot is a row copy.
    """

    rne = False  # gymnasium calls mj_rnePostConstraint after mj_step; needed where cfrc_ext is read

    def __init__(self, u: Any) -> None:
        self.u = u
        self.model = m = u.model
        self.frame_skip = int(u.frame_skip)
        self.dt = u.dt
        self.obs_dim = int(u.observation_space.shape[0])
        self.nq = m.nq
        self.d = mujoco.MjData(m)  # the scratch MjData every slot is stepped in
        cols = _state_columns(m)
        self.qpos = cols[int(mujoco.mjtState.mjSTATE_QPOS)]
        self.qvel = cols[int(mujoco.mjtState.mjSTATE_QVEL)]
        assert self.qvel == self.qpos + m.nq  # [qpos, qvel] is one block of a state row
        c = cols[int(mujoco.mjtState.mjSTATE_CTRL)]
        self.ctrl = slice(c, c + m.nu)
        self.X = np.zeros((0, mujoco.mj_stateSize(m, _INTEGRATION)))
        self.template: np.ndarray | None = None  # the integration state of reset data (fast_reset)
        if m.na:  # gymnasium's set_state then leaves act as reset; none of the 11 tasks has activations
            self.qvel_noise = None
        self.obs = np.zeros((0, self.obs_dim))  # observation of every slot (the stepper's ``obs``)
        self._views()

    def _views(self) -> None:
        self.rows = list(self.X)  # contiguous row views, one per slot
        self._first_views: dict[int, tuple] = {}  # views of slots 0..k-1 (tasks that keep them)
        self.S = self.X[:, self.qpos:self.qvel + self.model.nv]  # [qpos, qvel] of every slot
        # constant vectors of the task, one copy per slot: ``name_t[:n]`` against ``n`` rows is a
        # same-shape ufunc (cheaper than broadcasting the vector; the same numbers)
        for name, v in getattr(self, "consts", {}).items():
            setattr(self, name + "_t", np.tile(v, (self.X.shape[0], 1)))

    @property
    def width(self) -> int:
        return self.X.shape[0]

    def add_slots(self, n: int) -> None:
        self.X = np.vstack([self.X, np.zeros((n, self.X.shape[1]))])
        self.obs = np.vstack([self.obs, np.zeros((n, self.obs_dim))])
        self._views()

    def load(self, slot: int, data: Any) -> None:
        """Take slot ``slot``'s state from ``data`` (a freshly reset env's)."""
        mujoco.mj_getState(self.model, data, self.rows[slot], _INTEGRATION)

    #: how gymnasium's ``reset_model`` draws qvel: ``"uniform"`` (like qpos) or ``"normal"``;
    #: ``None``: no fast reset, the env's own ``reset`` runs (see :meth:`fast_reset`)
    qvel_noise: str | None = None

    def fast_reset(self, slot: int, seed: int) -> bool:
        """Start slot ``slot`` as ``env.reset(seed=seed)`` would, without running it; False where the
        task has none (:attr:`qvel_noise` ``None``).

        For tasks whose initial observation is a function of ``qpos``/``qvel`` alone: gymnasium's
        ``MujocoEnv.reset`` seeds the env's generator (``seeding.np_random``, kept on the env as
        ``Env.reset`` keeps it), resets the data, draws ``qpos``/``qvel`` noise in ``reset_model``'s
        order and runs ``mj_forward``, which leaves the integration state alone. So the slot's state
        row is the reset data's (a template taken once) with the drawn ``qpos``/``qvel``, bit for bit
        the row :meth:`load` would take; the env's own data is not touched (the lean path steps its
        scratch data only)."""
        if self.qvel_noise is None:
            return False
        from gymnasium.utils import seeding

        u, nq, nv = self.u, self.nq, self.model.nv
        if self.mirror_reset:  # gymnasium's reset replayed on the scratch data (see ``mirror_reset``)
            u._np_random, u._np_random_seed = seeding.np_random(seed)
            m, d = self.model, self.d
            mujoco.mj_resetData(m, d)
            qpos, qvel = self._draw(u, nq, nv)
            d.qpos[:], d.qvel[:] = qpos, qvel  # set_state (act is empty: na == 0 is asserted in __init__)
            mujoco.mj_forward(m, d)
            self.load(slot, d)
            self.obs[slot] = self.reset_observation(d)
            return True
        if self.template is None:
            d = mujoco.MjData(self.model)
            mujoco.mj_resetData(self.model, d)
            self.template = np.empty(self.X.shape[1])
            mujoco.mj_getState(self.model, d, self.template, _INTEGRATION)
        u._np_random, u._np_random_seed = seeding.np_random(seed)
        qpos, qvel = self._draw(u, nq, nv)
        row = self.rows[slot]
        row[:] = self.template
        row[self.qpos:self.qpos + nq] = qpos
        row[self.qvel:self.qvel + nv] = qvel
        self.reset_obs(slot)
        return True

    def _draw(self, u: Any, nq: int, nv: int) -> tuple[np.ndarray, np.ndarray]:
        """``reset_model``'s ``qpos``, ``qvel``: the same draws, in the same order, from the env's generator."""
        rng, scale = u._np_random, u._reset_noise_scale
        noise_low, noise_high = -scale, scale
        qpos = u.init_qpos + rng.uniform(low=noise_low, high=noise_high, size=nq)
        if self.qvel_noise == "uniform":
            qvel = u.init_qvel + rng.uniform(low=noise_low, high=noise_high, size=nv)
        else:
            qvel = u.init_qvel + scale * rng.standard_normal(nv)
        return qpos, qvel

    #: the initial observation reads more than qpos/qvel (contact forces, kinematics): ``fast_reset``
    #: replays gymnasium's reset (``mj_resetData``, the draws, ``mj_forward``) on the scratch data,
    #: which any slot's next step overwrites anyway, and reads the observation there
    mirror_reset = False

    def reset_obs(self, slot: int) -> None:
        """The observation of slot ``slot``'s freshly reset state (tasks with a :attr:`qvel_noise`)."""
        raise NotImplementedError

    def reset_observation(self, d: Any) -> np.ndarray:
        """gymnasium's ``_get_obs`` on ``d`` (tasks with :attr:`mirror_reset`)."""
        raise NotImplementedError

    def move(self, src: int, dst: int) -> None:
        self.X[dst] = self.X[src]
        self.obs[dst] = self.obs[src]

    def advance(self, slots: np.ndarray | slice, actions: np.ndarray) -> None:
        """``mj_step`` (× frame_skip) every slot of ``slots`` with its action."""
        m, d, fs, rne = self.model, self.d, self.frame_skip, self.rne
        setstate, step, getstate = mujoco.mj_setState, mujoco.mj_step, mujoco.mj_getState
        self.X[slots, self.ctrl] = actions
        rows = self.rows[slots] if isinstance(slots, slice) else [self.rows[j] for j in slots.tolist()]
        for r in rows:
            setstate(m, d, r, _INTEGRATION)
            step(m, d, fs)
            if rne:
                mujoco.mj_rnePostConstraint(m, d)
            getstate(m, d, r, _INTEGRATION)

    def step(self, slots: np.ndarray | slice, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Advance ``slots`` (index array or slice), write their observations into ``obs``;
        return (reward, terminated), ``terminated`` ``None`` where the task never terminates."""
        raise NotImplementedError


class _Forward(_Task):
    """Swimmer / HalfCheetah: ``w_f (x' - x)/dt - w_c |a|^2``, observation ``[qpos[skip:], qvel]``."""

    n_pos = 1  # x (HalfCheetah) or x, y (Swimmer) excluded from the observation

    def __init__(self, u: Any) -> None:
        super().__init__(u)
        self.fw, self.cw = u._forward_reward_weight, u._ctrl_cost_weight
        self.skip = self.n_pos if u._exclude_current_positions_from_observation else 0
        self.x = self.qpos  # column of x in a state row
        self.obs_cols = slice(self.qpos + self.skip, self.qvel + self.model.nv)  # [qpos[skip:], qvel]

    qvel_noise = "normal"  # HalfCheetah's reset_model (Swimmer, Hopper, Walker2d: uniform)

    def reset_obs(self, slot):
        self.obs[slot] = self.X[slot, self.obs_cols]  # gymnasium: concatenate([qpos[skip:], qvel])

    def forward(self, x_after: np.ndarray, x_before: np.ndarray) -> np.ndarray:
        """``w_f * (x' - x) / dt`` (``1.0 * v`` is ``v`` exactly: skipped for the default weight)."""
        v = (x_after - x_before) / self.dt
        return v if self.fw == 1.0 else self.fw * v

    def step(self, slots, actions):
        X, x = self.X, self.x
        x_before = X[slots, x]  # a copy unless ``slots`` is a slice
        x_before = x_before.copy() if isinstance(slots, slice) else x_before
        self.advance(slots, actions)
        self.obs[slots] = X[slots, self.obs_cols]
        reward = self.forward(X[slots, x], x_before) - self.cw * np.add.reduce(np.square(actions), axis=1)
        return reward, None


class _Swimmer(_Forward):
    n_pos = 2
    qvel_noise = "uniform"


class _Hopper(_Forward):
    """Hopper / Walker2d: forward reward plus healthy reward, qvel clipped to [-10, 10]
    in the observation, terminated when unhealthy (z, angle, and for Hopper every
    ``state_vector()[2:]`` entry, inside open ranges)."""

    check_state = True
    qvel_noise = "uniform"

    def reset_obs(self, slot):
        # gymnasium: concatenate([qpos[skip:], clip(qvel, -10, 10)]); the clip with infinite bounds on
        # qpos leaves it as it is, and maximum/minimum give np.clip's numbers (NaN included)
        self.obs[slot] = np.minimum(np.maximum(self.X[slot, self.obs_cols], self.obs_lo_t[0]), self.obs_hi_t[0])

    def __init__(self, u: Any) -> None:
        super().__init__(u)
        self.healthy_reward = u._healthy_reward
        self.terminate = bool(u._terminate_when_unhealthy)
        # healthy <=> lo < s[1:last] < hi entrywise, every range folded into one pair of
        # bound vectors (two strict bounds on one entry are the tighter one): z = qpos[1],
        # angle = qpos[2], and for Hopper every entry of state_vector()[2:]
        n = self.S.shape[1] if self.check_state else 3
        lo, hi = np.full(n, -np.inf), np.full(n, np.inf)
        lo[1], hi[1] = u._healthy_z_range
        lo[2], hi[2] = u._healthy_angle_range
        if self.check_state:
            lo[2:], hi[2:] = np.maximum(lo[2:], u._healthy_state_range[0]), np.minimum(hi[2:], u._healthy_state_range[1])
        self.h_cols = slice(self.qpos + 1, self.qpos + n)  # the entries the bounds apply to
        # observation [qpos[skip:], clip(qvel, -10, 10)] as one clip with infinite bounds on qpos
        n_pos = self.nq - self.skip
        obs_lo = np.concatenate([np.full(n_pos, -np.inf), np.full(self.model.nv, -10.0)])
        self.consts = {"lo": lo[1:], "hi": hi[1:], "obs_lo": obs_lo, "obs_hi": -obs_lo, "alive": [self.healthy_reward]}
        self._views()

    def _first(self, k: int) -> tuple:
        """Views of slots ``0..k-1`` (the rollout's running slots) that :meth:`step` reads and writes,
        kept per ``k`` until the arrays are reallocated (``add_slots``)."""
        v = self._first_views.get(k)
        if v is None:
            X = self.X
            v = self._first_views[k] = (X[:k, self.x], X[:k, self.obs_cols], self.obs[:k], X[:k, self.h_cols],
                                        self.lo_t[:k], self.hi_t[:k], self.obs_lo_t[:k], self.obs_hi_t[:k],
                                        self.alive_t[:k, 0])
        return v

    def step(self, slots, actions):
        if isinstance(slots, slice) and not slots.start and slots.step is None:
            # slots 0..k-1 (every lockstep iteration of a rollout): the same operations on kept views,
            # results written in place; fewer Python-level calls per iteration
            xv, sv, ov, hv, lo, hi, olo, ohi, alive = self._first(slots.stop)
            x_before = xv.copy()
            self.advance(slots, actions)
            np.maximum(sv, olo, out=ov)
            np.minimum(ov, ohi, out=ov)
            inside = (lo < hv) & (hv < hi)
            if np.count_nonzero(inside) == inside.size:  # all healthy (the usual case): healthy * w is w
                terminated = None
            else:
                healthy = np.logical_and.reduce(inside, axis=1)
                alive, terminated = healthy * self.healthy_reward, ~healthy if self.terminate else None
            v = (xv - x_before) / self.dt
            return ((v if self.fw == 1.0 else self.fw * v) + alive) - self.cw * np.add.reduce(np.square(actions), axis=1), \
                terminated
        X, x, n = self.X, self.x, actions.shape[0]
        x_before = X[slots, x]
        x_before = x_before.copy() if isinstance(slots, slice) else x_before
        self.advance(slots, actions)
        self.obs[slots] = np.minimum(np.maximum(X[slots, self.obs_cols], self.obs_lo_t[:n]), self.obs_hi_t[:n])
        h = X[slots, self.h_cols]
        inside = (self.lo_t[:n] < h) & (h < self.hi_t[:n])
        if np.count_nonzero(inside) == inside.size:  # all healthy (the usual case): healthy * w is w
            alive, terminated = self.alive_t[:n, 0], None
        else:
            healthy = np.logical_and.reduce(inside, axis=1)
            alive, terminated = healthy * self.healthy_reward, ~healthy if self.terminate else None
        reward = (self.forward(X[slots, x], x_before) + alive) - self.cw * np.add.reduce(np.square(actions), axis=1)
        return reward, terminated


class _Walker(_Hopper):
    check_state = False


class _Ant(_Task):
    """Ant: torso xy velocity, healthy reward (finite state, z in a closed range),
    control and contact costs; observation ``[qpos[2:], qvel, clip(cfrc_ext)[1:]]``.

    ``cfrc_ext`` and the torso's ``xpos`` (from the last substep's kinematics, not
    ``qpos``) are not part of the state: they are copied out of the scratch data after
    each slot's step into ``F`` and ``XY``."""

    rne = True

    def __init__(self, u: Any) -> None:
        super().__init__(u)
        self.fw, self.cw, self.kw = u._forward_reward_weight, u._ctrl_cost_weight, u._contact_cost_weight
        self.healthy_reward = u._healthy_reward
        self.terminate = bool(u._terminate_when_unhealthy)
        self.z_range, self.force_range = u._healthy_z_range, u._contact_force_range
        self.body = self.model.body(u._main_body).id
        self.skip = 2 if u._exclude_current_positions_from_observation else 0
        self.cfrc = bool(u._include_cfrc_ext_in_observation)
        self.nb6 = self.model.nbody * 6
        self.F = np.zeros((0, self.nb6))  # cfrc_ext of every slot
        self.XY = np.zeros((0, 2))  # main body xy of every slot
        self.f, self.xy = self.d.cfrc_ext.reshape(-1), self.d.xpos[self.body, :2]  # views into the scratch data
        self.obs_cols = slice(self.qpos + self.skip, self.qvel + self.model.nv)  # [qpos[skip:], qvel]
        self.n_state = self.model.nq + self.model.nv - self.skip
        self.consts = {"f_lo": np.full(self.nb6, float(self.force_range[0])),
                       "f_hi": np.full(self.nb6, float(self.force_range[1])), "alive": [self.healthy_reward]}
        self._views()

    qvel_noise, mirror_reset = "normal", True

    def reset_observation(self, d):
        position = d.qpos.flatten()[self.skip:]
        if self.cfrc:
            contact_force = np.clip(d.cfrc_ext, *self.force_range)[1:].flatten()
            return np.concatenate((position, d.qvel.flatten(), contact_force))
        return np.concatenate((position, d.qvel.flatten()))

    def add_slots(self, n):
        super().add_slots(n)
        self.F = np.vstack([self.F, np.zeros((n, self.nb6))])
        self.XY = np.vstack([self.XY, np.zeros((n, 2))])

    def load(self, slot, data):
        super().load(slot, data)
        self.F[slot], self.XY[slot] = data.cfrc_ext.reshape(-1), data.xpos[self.body, :2]

    def move(self, src, dst):
        super().move(src, dst)
        self.F[dst], self.XY[dst] = self.F[src], self.XY[src]

    def advance(self, slots, actions):
        m, d, fs = self.model, self.d, self.frame_skip
        setstate, step, getstate, rne = mujoco.mj_setState, mujoco.mj_step, mujoco.mj_getState, mujoco.mj_rnePostConstraint
        self.X[slots, self.ctrl] = actions
        f, xy, F, XY, rows = self.f, self.xy, self.F, self.XY, self.rows
        for j in (range(slots.start or 0, slots.stop) if isinstance(slots, slice) else slots.tolist()):
            r = rows[j]
            setstate(m, d, r, _INTEGRATION)
            step(m, d, fs)
            rne(m, d)
            getstate(m, d, r, _INTEGRATION)
            F[j], XY[j] = f, xy

    def step(self, slots, actions):
        k = actions.shape[0]
        x_before = self.XY[slots, 0]  # only x enters the reward (gymnasium: xy velocity, then [0])
        x_before = x_before.copy() if isinstance(slots, slice) else x_before
        self.advance(slots, actions)
        s = self.S[slots]
        x_velocity = (self.XY[slots, 0] - x_before) / self.dt
        forces = np.minimum(np.maximum(self.F[slots], self.f_lo_t[:k]), self.f_hi_t[:k])
        n, obs = self.n_state, self.obs
        obs[slots, :n] = self.X[slots, self.obs_cols]
        if self.cfrc:
            obs[slots, n:] = forces[:, 6:]
        z = s[:, 2]
        healthy = (self.z_range[0] <= z) & (z <= self.z_range[1])
        if not math.isfinite(np.add.reduce(s, axis=None)):  # a finite sum means every entry is finite
            healthy &= np.logical_and.reduce(np.isfinite(s), axis=1)
        if np.count_nonzero(healthy) == k:  # all healthy (the usual case): healthy * w is w
            alive, terminated = self.alive_t[:k, 0], None
        else:
            alive, terminated = healthy * self.healthy_reward, ~healthy if self.terminate else None
        ctrl_cost = self.cw * np.add.reduce(np.square(actions), axis=1)
        contact_cost = self.kw * np.add.reduce(np.square(forces), axis=1)
        forward = x_velocity if self.fw == 1.0 else x_velocity * self.fw  # 1.0 * v is v exactly
        reward = (forward + alive) - (ctrl_cost + contact_cost)
        return reward, terminated


class _InvertedPendulum(_Task):
    """InvertedPendulum: observation ``[qpos, qvel]``, reward 1 while |angle| <= 0.2."""

    def step(self, slots, actions):
        self.advance(slots, actions)
        s = self.S[slots]
        self.obs[slots] = s
        terminated = ~np.logical_and.reduce(np.isfinite(s), axis=1) | (np.abs(s[:, 1]) > 0.2)
        return (~terminated).astype(np.float64), terminated


class _PerSlot(_Task):
    """Tasks whose observation and reward are evaluated slot by slot (gymnasium's expressions),
    read from the scratch data right after the slot's step. ``memo(d)`` is what a task needs
    from the data of the slot's previous step (none of the four needs anything)."""

    rne = True

    def __init__(self, u: Any) -> None:
        super().__init__(u)
        self.memos: list[Any] = []

    def add_slots(self, n):
        super().add_slots(n)
        self.memos += [None] * n

    def load(self, slot, data):
        super().load(slot, data)
        self.memos[slot] = self.memo(data)

    def move(self, src, dst):
        super().move(src, dst)
        self.memos[dst] = self.memos[src]

    def step(self, slots, actions):
        m, d, fs, X, rows, memos, obs = self.model, self.d, self.frame_skip, self.X, self.rows, self.memos, self.obs
        idx = range(slots.start or 0, slots.stop) if isinstance(slots, slice) else slots.tolist()
        reward, terminated = np.empty(len(idx)), np.zeros(len(idx), dtype=bool)
        X[slots, self.ctrl] = actions
        for i, j in enumerate(idx):
            mujoco.mj_setState(m, d, rows[j], _INTEGRATION)
            mujoco.mj_step(m, d, fs)
            mujoco.mj_rnePostConstraint(m, d)
            mujoco.mj_getState(m, d, rows[j], _INTEGRATION)
            obs[j], reward[i], terminated[i] = self.after(d, actions[i], memos[j])
            memos[j] = self.memo(d)
        return reward, terminated

    def memo(self, d: Any) -> Any:
        return None

    def after(self, d: Any, action: np.ndarray, memo: Any) -> tuple[np.ndarray, float, bool]:
        raise NotImplementedError


class _InvertedDoublePendulum(_PerSlot):
    def after(self, d, action, before):
        x, _, y = d.site_xpos[0]
        obs = np.concatenate([d.qpos[:1], np.sin(d.qpos[1:]), np.cos(d.qpos[1:]), np.clip(d.qvel, -10, 10),
                              np.clip(d.qfrc_constraint, -10, 10)[:1]]).ravel()
        terminated = bool(y <= 1)
        v1, v2 = d.qvel[1:3]
        dist_penalty = 0.01 * x**2 + (y - 2) ** 2
        vel_penalty = 1e-3 * v1**2 + 5e-3 * v2**2
        alive_bonus = self.u._healthy_reward * int(not terminated)
        return obs, alive_bonus - dist_penalty - vel_penalty, terminated


class _Reacher(_PerSlot):
    def __init__(self, u):
        super().__init__(u)
        self.tip, self.target = self.model.body("fingertip").id, self.model.body("target").id
        self.wd, self.wc = u._reward_dist_weight, u._reward_control_weight

    def after(self, d, action, before):
        vec = d.xpos[self.tip] - d.xpos[self.target]
        reward = -np.linalg.norm(vec) * self.wd + -np.square(action).sum() * self.wc
        theta = d.qpos.flatten()[:2]
        obs = np.concatenate([np.cos(theta), np.sin(theta), d.qpos.flatten()[2:], d.qvel.flatten()[:2],
                              (d.xpos[self.tip] - d.xpos[self.target])[:2]])
        return obs, reward, False


class _Pusher(_PerSlot):
    def __init__(self, u):
        super().__init__(u)
        body = self.model.body
        self.arm, self.obj, self.goal = body("tips_arm").id, body("object").id, body("goal").id
        self.wn, self.wd, self.wc = u._reward_near_weight, u._reward_dist_weight, u._reward_control_weight

    def after(self, d, action, before):
        xpos = d.xpos
        reward_near = -np.linalg.norm(xpos[self.obj] - xpos[self.arm]) * self.wn
        reward_dist = -np.linalg.norm(xpos[self.obj] - xpos[self.goal]) * self.wd
        reward_ctrl = -np.square(action).sum() * self.wc
        obs = np.concatenate([d.qpos.flatten()[:7], d.qvel.flatten()[:7], xpos[self.arm], xpos[self.obj],
                              xpos[self.goal]])
        return obs, reward_dist + reward_ctrl + reward_near, False


def _humanoid_obs(d: Any) -> np.ndarray:
    return np.concatenate((d.qpos.flatten()[2:], d.qvel.flatten(), d.cinert[1:].flatten(), d.cvel[1:].flatten(),
                           d.qfrc_actuator[6:].flatten(), d.cfrc_ext[1:].flatten()))


class _Humanoid(_Task):
    """Humanoid: observation ``[qpos[2:], qvel, cinert[1:], cvel[1:], qfrc_actuator[6:], cfrc_ext[1:]]``,
    reward ``w_f v_x + healthy w_h - (w_c |ctrl|^2 + clip(w_k |cfrc_ext|^2))`` with ``v_x`` from the
    centre of mass (``xipos`` weighted by body mass, gymnasium's ``mass_center``).

    After each slot's step the kinematic quantities the observation and reward read (not part of
    the state) are copied out of the scratch data: ``cinert``, ``cvel`` and ``qfrc_actuator`` straight
    into the slot's observation row, ``cfrc_ext`` into ``F`` and ``xipos`` into ``XI``; everything else
    is computed for all slots at once, with the same reductions as gymnasium's (``einsum`` over the
    bodies, row sums of squares), so every number is bit for bit the same."""

    rne = True

    def __init__(self, u: Any) -> None:
        super().__init__(u)
        m, d = self.model, self.d
        flags = (u._include_cinert_in_observation, u._include_cvel_in_observation,
                 u._include_qfrc_actuator_in_observation, u._include_cfrc_ext_in_observation)
        assert all(f is True for f in flags), "the registered Humanoid observes all four blocks"
        self.fw, self.cw, self.kw = u._forward_reward_weight, u._ctrl_cost_weight, u._contact_cost_weight
        self.healthy_reward = u._healthy_reward
        self.terminate = bool(u._terminate_when_unhealthy)
        self.z_range, self.cost_range = u._healthy_z_range, u._contact_cost_range
        self.mass = m.body_mass.copy()
        self.mass_sum = self.mass.sum()  # gymnasium's denominator (model.body_mass.sum())
        self.nb = m.nbody
        self.skip = 2 if u._exclude_current_positions_from_observation else 0
        self.obs_cols = slice(self.qpos + self.skip, self.qvel + m.nv)  # [qpos[skip:], qvel]
        self.n_state = m.nq + m.nv - self.skip
        # views into the scratch data, copied per slot into [n_state, n_cfrc) of its observation row
        self.blocks = [d.cinert[1:].reshape(-1), d.cvel[1:].reshape(-1), d.qfrc_actuator[6:]]
        at, self.block_cols = self.n_state, []
        for b in self.blocks:
            self.block_cols.append(slice(at, at + b.size))
            at += b.size
        self.cfrc_cols = slice(at, self.obs_dim)
        assert self.obs_dim - at == (self.nb - 1) * 6
        self.f, self.xi = d.cfrc_ext.reshape(-1), d.xipos
        self.F = np.zeros((0, self.nb * 6))  # cfrc_ext of every slot
        self.XI = np.zeros((0, self.nb, 3))  # xipos of every slot
        self.CX = np.zeros(0)  # x of the centre of mass of every slot (its last kinematics)

    qvel_noise, mirror_reset = "uniform", True

    def reset_observation(self, d):
        return _humanoid_obs(d)

    def add_slots(self, n):
        super().add_slots(n)
        self.F = np.vstack([self.F, np.zeros((n, self.nb * 6))])
        self.XI = np.concatenate([self.XI, np.zeros((n, self.nb, 3))])
        self.CX = np.concatenate([self.CX, np.zeros(n)])

    def load(self, slot, data):
        super().load(slot, data)
        self.CX[slot] = (np.einsum("b,bj->j", self.mass, data.xipos) / self.mass_sum)[0]

    def move(self, src, dst):
        super().move(src, dst)
        self.F[dst], self.XI[dst], self.CX[dst] = self.F[src], self.XI[src], self.CX[src]

    def step(self, slots, actions):
        m, d, fs, X, obs = self.model, self.d, self.frame_skip, self.X, self.obs
        setstate, mjstep, getstate, rne = mujoco.mj_setState, mujoco.mj_step, mujoco.mj_getState, mujoco.mj_rnePostConstraint
        (c0, c1, c2), (b0, b1, b2) = self.block_cols, self.blocks
        f, xi, F, XI, rows = self.f, self.xi, self.F, self.XI, self.rows
        X[slots, self.ctrl] = actions
        for j in (range(slots.start or 0, slots.stop) if isinstance(slots, slice) else slots.tolist()):
            r = rows[j]
            setstate(m, d, r, _INTEGRATION)
            mjstep(m, d, fs)
            rne(m, d)
            getstate(m, d, r, _INTEGRATION)
            o = obs[j]
            o[c0], o[c1], o[c2] = b0, b1, b2
            F[j], XI[j] = f, xi
        k = actions.shape[0]
        obs[slots, :self.n_state] = X[slots, self.obs_cols]
        forces = F[slots]
        obs[slots, self.cfrc_cols] = forces[:, 6:]
        # gymnasium: mass_center = (einsum("b,bj->j", mass, xipos) / mass.sum())[0:2]; v = (after - before) / dt
        cx = np.einsum("b,kbj->kj", self.mass, XI[slots])[:, 0] / self.mass_sum
        x_velocity = (cx - self.CX[slots]) / self.dt
        self.CX[slots] = cx
        z = X[slots, self.qpos + 2]
        healthy = (self.z_range[0] < z) & (z < self.z_range[1])
        ctrl_cost = self.cw * np.add.reduce(np.square(actions), axis=1)
        contact_cost = np.clip(self.kw * np.add.reduce(np.square(forces), axis=1), *self.cost_range)
        reward = (self.fw * x_velocity + healthy * self.healthy_reward) - (ctrl_cost + contact_cost)
        if np.count_nonzero(healthy) == k or not self.terminate:
            return reward, None
        return reward, ~healthy


class _HumanoidStandup(_PerSlot):
    def after(self, d, action, before):
        u = self.u
        uph_cost = (d.qpos[2] - 0) / self.model.opt.timestep
        quad_ctrl_cost = u._ctrl_cost_weight * np.square(d.ctrl).sum()
        impact = np.clip(u._impact_cost_weight * np.square(d.cfrc_ext).sum(), *u._impact_cost_range)
        return _humanoid_obs(d), uph_cost - quad_ctrl_cost - impact + 1, False


#: task id -> (gymnasium entry point, task class)
LEAN_TASKS: dict[str, tuple[str, type[_Task]]] = {
    "InvertedPendulum-v5": ("gymnasium.envs.mujoco.inverted_pendulum_v5:InvertedPendulumEnv", _InvertedPendulum),
    "InvertedDoublePendulum-v5": (
        "gymnasium.envs.mujoco.inverted_double_pendulum_v5:InvertedDoublePendulumEnv", _InvertedDoublePendulum),
    "Reacher-v5": ("gymnasium.envs.mujoco.reacher_v5:ReacherEnv", _Reacher),
    "Pusher-v5": ("gymnasium.envs.mujoco.pusher_v5:PusherEnv", _Pusher),
    "Swimmer-v5": ("gymnasium.envs.mujoco.swimmer_v5:SwimmerEnv", _Swimmer),
    "Hopper-v5": ("gymnasium.envs.mujoco.hopper_v5:HopperEnv", _Hopper),
    "HalfCheetah-v5": ("gymnasium.envs.mujoco.half_cheetah_v5:HalfCheetahEnv", _Forward),
    "Walker2d-v5": ("gymnasium.envs.mujoco.walker2d_v5:Walker2dEnv", _Walker),
    "Ant-v5": ("gymnasium.envs.mujoco.ant_v5:AntEnv", _Ant),
    "Humanoid-v5": ("gymnasium.envs.mujoco.humanoid_v5:HumanoidEnv", _Humanoid),
    "HumanoidStandup-v5": ("gymnasium.envs.mujoco.humanoidstandup_v5:HumanoidStandupEnv", _HumanoidStandup),
}


def lean_supported(env: Any) -> bool:
    """Whether ``env`` is an unwrapped registered task the lean path reproduces exactly.

    True only for one of :data:`LEAN_TASKS`, made by ``gymnasium.make`` from gymnasium's
    own entry point with the registered kwargs (no env kwargs), carrying only the
    wrappers ``make`` adds (``TimeLimit`` at the spec's ``max_episode_steps``,
    ``OrderEnforcing``, ``PassiveEnvChecker``) and no render mode.
    """
    import gymnasium as gym

    spec = getattr(env, "spec", None)
    if spec is None or spec.id not in LEAN_TASKS:
        return False
    entry, _ = LEAN_TASKS[spec.id]
    registered = gym.registry.get(spec.id)
    if registered is None or registered.entry_point != entry or spec.entry_point != entry:
        return False
    if dict(spec.kwargs) != dict(registered.kwargs) or spec.additional_wrappers:
        return False
    layer, limit = env, None
    while isinstance(layer, gym.Wrapper):
        if class_path(layer) not in _MAKE_WRAPPERS:
            return False
        if isinstance(layer, gym.wrappers.TimeLimit):
            limit = layer._max_episode_steps
        layer = layer.env
    if not limit == spec.max_episode_steps == registered.max_episode_steps:  # truncate where make's TimeLimit does
        return False
    module, cls = entry.split(":")
    return class_path(layer) == f"{module}.{cls}" and getattr(layer, "render_mode", None) is None
