"""Episodes of policies in an env, many at once in lockstep: returns, step counts, observation statistics.

:func:`run_episodes` runs one episode per parameter vector. It keeps up to ``width``
episodes in the slots of a stepper (:mod:`envs.lean`) and advances them together:
per env step, one normalizer call and one batched matrix product give the actions of
every running episode, and the stepper advances all slots (``mj_step`` per slot on the
lean path). When an episode ends, its slot starts the next pending one. Each episode
is reset with its own seed and only ever sees its own slot, and every array operation
acts row by row, so an episode's outcome does not depend on which other episodes share
the batch: serial and parallel runs (any chunking) give identical numbers.

Per step an episode feeds its observation through the frozen normalizer snapshot and
the policy, clips the action to the action space, and steps until termination,
truncation or ``horizon`` steps. Training reward is ``r_t - reward_shift`` (ARS removes
the survival bonus, e.g. 1 for Hopper); ``true_ret`` is always the sum of the true rewards.

Faults: a NaN/inf observation, action or reward ends the episode and sets
``nonfinite=True``; the caller decides what the episode is worth (the run goes on).
The offending reward (if non-finite) is not added and the offending observation is
not added to the statistics.

Example:
    >>> from envs import get_env
    >>> from policies import LinearPolicy
    >>> env = get_env("InvertedPendulum-v5")
    >>> pol = LinearPolicy(4, 1)
    >>> r = rollout(env, pol, pol.init_params(), seed=0, horizon=5)
    >>> r.steps, r.obs_stats.count
    (5, 5)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from policies.base import Policy
from policies.normalizer import NormalizerSnapshot, RunningStat

#: most episodes one stepper runs side by side
MAX_WIDTH = 64
#: observation-statistics buffer budget per batch (bytes); bounds the width for large tasks
STATS_BUDGET = 64 * 2**20


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class EpisodeOutcome:
    """Outcome of one episode (the one result type of rollouts, local or in a worker).

    Attributes:
        ret: training return, ``sum_t (r_t - reward_shift)``.
        true_ret: ``sum_t r_t`` (what evaluation reports).
        steps: env steps taken.
        obs_stats: statistics of the raw observations fed to the policy (``None`` when
            ``collect_stats=False``); merge them into an ``ObsNormalizer``.
        nonfinite: a NaN/inf observation, action or reward ended the episode; ``ret`` and
            ``true_ret`` then hold the finite part only and must not be ranked as if the
            episode had finished.
        terminated: the env signalled termination (e.g. the hopper fell).
    """

    ret: float
    true_ret: float
    steps: int
    obs_stats: RunningStat | None
    nonfinite: bool = False
    terminated: bool = False


#: the same type under its older name
RolloutResult = EpisodeOutcome


def _width(stepper: Any, n: int, horizon: int, obs_dim: int, collect_stats: bool, width: int | None) -> int:
    w = min(n, MAX_WIDTH if width is None else int(width), stepper.max_width)
    if collect_stats:
        w = min(w, max(1, STATS_BUDGET // (8 * horizon * obs_dim)))
    return max(1, w)


def run_episodes(
    stepper: Any,
    policy: Policy,
    params: np.ndarray | Sequence[np.ndarray],
    seeds: Sequence[int | None],
    *,
    normalizer_state: NormalizerSnapshot | None = None,
    horizon: int,
    reward_shift: float = 0.0,
    collect_stats: bool = True,
    width: int | None = None,
) -> list[EpisodeOutcome]:
    """One episode per row of ``params`` (with the matching seed), advanced in lockstep.

    Args:
        stepper: an ``envs.lean`` stepper (``envs.get_stepper`` / ``envs.make_stepper``).
        policy: the policy.
        params: ``(m, n_params)`` parameter vectors, one per episode.
        seeds: ``m`` reset seeds.
        normalizer_state: frozen snapshot (``ObsNormalizer.snapshot``); ``None`` = raw obs.
        horizon: maximum number of steps (the env's own time limit also applies).
        reward_shift: subtracted from every reward in ``ret`` (not in ``true_ret``).
        collect_stats: gather observation statistics.
        width: most episodes side by side (default: up to :data:`MAX_WIDTH`, bounded
            by the statistics buffer budget).

    Returns:
        ``m`` :class:`EpisodeOutcome`, in input order.
    """
    horizon = int(horizon)
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    P = np.asarray(params, dtype=np.float64)
    if P.ndim == 1:
        P = P[None, :]
    m = P.shape[0]
    if len(seeds) != m:
        raise ValueError(f"{m} parameter vectors but {len(seeds)} seeds")
    if m == 0:
        return []
    for row in P:
        policy.check_params(row)
    if stepper.obs_dim != policy.obs_dim or stepper.act_dim != policy.act_dim:
        raise ValueError(
            f"the env has observations of size {stepper.obs_dim} and actions of size {stepper.act_dim}, "
            f"the policy expects {policy.obs_dim} and {policy.act_dim}"
        )
    obs_dim = policy.obs_dim
    W = _width(stepper, m, horizon, obs_dim, collect_stats, width)
    stepper.ensure_width(W)
    W = min(W, stepper.width)
    low, high = stepper.low, stepper.high
    obs = stepper.obs
    snap = normalizer_state

    slot_params = np.zeros((W, P.shape[1]))
    item = np.full(W, -1, dtype=np.intp)
    born = np.zeros(W, dtype=np.int64)  # lockstep iteration at which the slot's episode took its first step
    true_ret = np.zeros(W)
    # observations of iteration t go to ring[t % horizon] (all slots at once, one basic-slice copy);
    # an episode's <= horizon observations sit in consecutive ring rows of its slot's column
    ring = np.empty((horizon, W, obs_dim)) if collect_stats else None
    results: list[EpisodeOutcome | None] = [None] * m
    pending = iter(range(m))
    it = 0  # lockstep iterations done

    def finish(j: int, nonfinite: bool, terminated: bool, n: int, n_obs: int) -> None:
        k = int(item[j])
        tr = float(true_ret[j])
        stats = None
        if ring is not None:
            a = int(born[j]) % horizon
            b = a + n_obs
            rows = ring[a:b, j] if b <= horizon else np.concatenate([ring[a:, j], ring[: b - horizon, j]])
            stats = RunningStat.from_batch(rows)
        results[k] = EpisodeOutcome(ret=float(tr - reward_shift * n) if reward_shift else tr, true_ret=tr,
                                    steps=n, obs_stats=stats, nonfinite=nonfinite, terminated=terminated)
        item[j] = -1

    def start(j: int) -> bool:
        """Start the next pending episode in slot ``j`` (False when none is left)."""
        while True:
            k = next(pending, None)
            if k is None:
                return False
            item[j], born[j], true_ret[j] = k, it, 0.0
            slot_params[j] = P[k]
            stepper.reset(j, seeds[k])
            if np.isfinite(obs[j]).all():
                return True
            finish(j, True, False, 0, 0)  # a non-finite first observation: no step taken

    isfinite, add, either = np.isfinite, np.add.reduce, np.logical_or.reduce
    everyone = slice(0, W)
    act = np.array([j for j in range(W) if start(j)], dtype=np.intp)
    while act.size:
        # (re)bind after the active set changed: the actor holds the active slots' parameters only
        full = act.size == W
        sel = everyone if full else act
        actor = policy.batch_bind(slot_params[sel])
        deadline = int(born[act].min()) + horizon  # the oldest episode reaches the horizon here
        while True:
            x = obs[sel]
            if ring is not None:
                ring[it % horizon] = obs[:W]  # inactive slots' rows are never read
            if snap is not None:
                x = snap.normalize(x)
            a = np.minimum(np.maximum(actor(x), low), high)  # clip; NaN stays NaN
            ended: dict[int, tuple[bool, bool, int, int]] = {}  # slot -> (nonfinite, terminated, steps, obs)
            stepped, step_sel = act, sel
            if not isfinite(add(a, axis=None)):  # quick test (exact per-row test below)
                ok = isfinite(a).all(axis=1)
                for r in np.flatnonzero(~ok):
                    j = int(act[r])
                    n = it - int(born[j])
                    ended[j] = (True, False, n, n + 1)
                stepped, a = act[ok], a[ok]
                step_sel = stepped
            if stepped.size:
                reward, terminated, truncated = stepper.step(step_sel, a)
                o = obs[step_sel]
                finite = isfinite(add(reward) + add(o, axis=None))  # quick test: no NaN/inf anywhere
                if finite:
                    true_ret[step_sel] += reward
                else:
                    good_r = isfinite(reward)
                    true_ret[step_sel] = np.where(good_r, true_ret[step_sel] + reward, true_ret[step_sel])
                if not finite or it + 1 >= deadline or either(terminated | truncated):
                    good_r = isfinite(reward)
                    good_o = isfinite(o).all(axis=1)
                    n_steps = it + 1 - born[stepped]
                    done = ~good_r | ~good_o | terminated | truncated | (n_steps >= horizon)
                    for r in np.flatnonzero(done):
                        n = int(n_steps[r])
                        ended[int(stepped[r])] = (not (good_r[r] and good_o[r]), bool(terminated[r]), n, n)
            it += 1
            if ended:
                break
        for j in ended:
            finish(j, *ended[j])
            start(j)
        act = np.flatnonzero(item[:W] >= 0)
    return results  # type: ignore[return-value]


def rollout(
    env: Any,
    policy: Policy,
    params: np.ndarray,
    *,
    normalizer_state: NormalizerSnapshot | None = None,
    seed: int | None,
    horizon: int,
    reward_shift: float = 0.0,
    collect_stats: bool = True,
    lean: bool | None = None,
) -> EpisodeOutcome:
    """Run one episode on ``env`` (see :func:`run_episodes` for many at once).

    Args:
        env: a gymnasium env with a Box action space (reuse it: see ``envs.get_env``).
        policy: the policy.
        params: its flat parameter vector.
        normalizer_state: frozen snapshot (``ObsNormalizer.snapshot``); ``None`` = raw obs.
        seed: passed to ``env.reset(seed=seed)``.
        horizon: maximum number of steps (the env's own time limit also applies).
        reward_shift: subtracted from every reward in ``ret`` (not in ``true_ret``).
        collect_stats: gather observation statistics.
        lean: ``None`` uses the lean ``mj_step`` path when ``env`` is an unwrapped
            registered task, ``False`` forces ``env.step``, ``True`` requires the lean path.

    Returns:
        An :class:`EpisodeOutcome`.
    """
    from envs.lean import make_stepper

    stepper = make_stepper(env, lean)
    return run_episodes(stepper, policy, np.asarray(params)[None, :], [seed], normalizer_state=normalizer_state,
                        horizon=horizon, reward_shift=reward_shift, collect_stats=collect_stats, width=1)[0]
