"""Episodes of policies in an env, many at once in lockstep: returns, step counts, observation statistics.

:func:`run_episodes` runs one episode per parameter vector. It keeps up to ``width``
episodes in the slots of a stepper (:mod:`dfo.envs.lean`) and advances them together:
per env step, one normalizer call and one batched matrix product give the actions of
every running episode, and the stepper advances all slots (``mj_step`` per slot on the
lean path). When an episode ends, its slot starts the next pending one; when none is
pending, the last running episode moves into the freed slot (``stepper.move``), so the
running episodes always fill slots ``0..k-1`` and every per-step array operation works on
a basic slice (no index arrays, no copies). Each episode is reset with its own seed and
only ever sees its own row, and every array operation acts row by row, so an episode's
outcome does not depend on which other episodes share the batch or where it sits: serial
and parallel runs (any chunking) give identical numbers. On the lean path the env's time
limit is counted here (``stepper.advance`` skips the stepper's own step counter).

Per step an episode feeds its observation through the frozen normalizer snapshot and
the policy, clips the action to the action space, and steps until termination,
truncation or ``horizon`` steps. Training reward is ``r_t - reward_shift`` (ARS removes
the survival bonus, e.g. 1 for Hopper); ``true_ret`` is always the sum of the true rewards.

Faults: a NaN/inf observation, action or reward ends the episode and sets
``nonfinite=True``; the caller decides what the episode is worth (the run goes on).
The offending reward (if non-finite) is not added and the offending observation is
not added to the statistics.

Example:
    >>> from dfo.envs import get_env
    >>> from dfo.policies import LinearPolicy
    >>> env = get_env("InvertedPendulum-v5")
    >>> pol = LinearPolicy(4, 1)
    >>> r = rollout(env, pol, pol.init_params(), seed=0, horizon=5)
    >>> r.steps, r.obs_stats.count
    (5, 5)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from dfo.policies.base import Policy
from dfo.policies.normalizer import NormalizerSnapshot, RunningStat

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


def _ring(stepper: Any, width: int, horizon: int, obs_dim: int) -> np.ndarray:
    """The observation ring of one call, ``(width, horizon, obs_dim)``, carved from a buffer kept on
    the (per-process) stepper: a fresh array every call is a fresh mapping whose pages fault in as
    the ring is written (one fault per 4 KiB: ~10 % of a Humanoid call's time around the simulator)."""
    n = width * horizon * obs_dim
    buf = getattr(stepper, "_ring_buffer", None)
    if buf is None or buf.size < n:
        buf = np.empty(n)
        try:
            stepper._ring_buffer = buf
        except AttributeError:  # a stepper that takes no attributes: a fresh ring every call
            pass
    return buf[:n].reshape(width, horizon, obs_dim)


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
        stepper: an ``dfo.envs.lean`` stepper (``dfo.envs.get_stepper`` / ``dfo.envs.make_stepper``).
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
    lean = bool(getattr(stepper, "lean", False))
    if lean and stepper.max_steps is not None:  # the lean path leaves the env's time limit to us
        horizon = min(horizon, int(stepper.max_steps))
    W = _width(stepper, m, horizon, obs_dim, collect_stats, width)
    stepper.ensure_width(W)
    W = min(W, stepper.width)
    prefetch = getattr(stepper, "prefetch", None)  # the lean stepper: initial states prepared back to back
    if prefetch is not None:
        prefetch(seeds, W)
    obs = stepper.obs
    # constant vectors tiled to one row per slot: same-shape ufuncs on ``[:k]`` (cheaper than broadcasting)
    tiled = lambda v: np.tile(np.asarray(v, dtype=np.float64), (W, 1))  # noqa: E731
    low_t, high_t = tiled(stepper.low), tiled(stepper.high)
    norm = normalizer_state is not None
    mean_t, inv_t = (tiled(normalizer_state.mean), tiled(normalizer_state.inv_std)) if norm else (None, None)
    advance = stepper.advance if lean else None

    slot_params = np.zeros((W, P.shape[1]))
    item = np.full(W, -1, dtype=np.intp)
    born = np.zeros(W, dtype=np.int64)  # lockstep iteration at which the slot's episode took its first step
    true_ret = np.zeros(W)
    # the observation of slot j at iteration t goes to ring[j, t % horizon]: an episode's <= horizon
    # observations are consecutive (cyclically) in its slot's row
    ring = _ring(stepper, W, horizon, obs_dim) if collect_stats else None
    results: list[EpisodeOutcome | None] = [None] * m
    pending = iter(range(m))
    it = 0  # lockstep iterations done

    def ring_rows(j: int, n: int) -> tuple[slice, ...]:
        """Where the first ``n`` observations of slot ``j``'s episode are in ``ring[j]``."""
        a = int(born[j]) % horizon
        b = a + n
        return (slice(a, b),) if b <= horizon else (slice(a, horizon), slice(0, b - horizon))

    def finish(j: int, nonfinite: bool, terminated: bool, n: int, n_obs: int) -> None:
        k = int(item[j])
        tr = float(true_ret[j])
        stats = None
        if ring is not None:
            parts = ring_rows(j, n_obs)
            rows = ring[j, parts[0]] if len(parts) == 1 else np.concatenate([ring[j, p] for p in parts])
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

    def move(src: int, dst: int) -> None:
        """Move the running episode of slot ``src`` to the free slot ``dst``."""
        stepper.move(src, dst)
        item[dst], born[dst], true_ret[dst] = item[src], born[src], true_ret[src]
        slot_params[dst] = slot_params[src]
        item[src] = -1
        if ring is not None:
            for p in ring_rows(src, it - int(born[src])):
                ring[dst, p] = ring[src, p]

    # running episodes always occupy slots 0..k-1 (an episode ending with none pending hands its
    # slot to the last one), so every per-step array operation below works on a basic slice
    isfinite, add, minimum, maximum, finite_scalar = np.isfinite, np.add.reduce, np.minimum, np.maximum, math.isfinite
    count = np.count_nonzero
    k = 0
    for j in range(W):
        if start(j):
            k = j + 1
        else:
            break
    while k:
        sel = slice(0, k)
        actor = policy.batch_bind(slot_params[sel])  # (re)bound whenever the running set changed
        deadline = int(born[sel].min()) + horizon  # the oldest episode reaches the horizon here
        rg = ring[:k] if ring is not None else None
        obs_k, tr_k, low_k, high_k = obs[sel], true_ret[sel], low_t[sel], high_t[sel]
        mean_k, inv_k = (mean_t[sel], inv_t[sel]) if norm else (None, None)
        while True:
            if rg is not None:
                rg[:, it % horizon] = obs_k
            x = (obs_k - mean_k) * inv_k if norm else obs_k  # the snapshot's normalize, row by row
            a = minimum(maximum(actor(x), low_k), high_k)  # clip; NaN stays NaN
            ended: dict[int, tuple[bool, bool, int, int]] = {}  # slot -> (nonfinite, terminated, steps, obs)
            stepped = sel
            if not finite_scalar(add(a, axis=None)):  # quick test (exact per-row test below)
                ok = isfinite(a).all(axis=1)
                for j in np.flatnonzero(~ok).tolist():
                    n = it - int(born[j])
                    ended[j] = (True, False, n, n + 1)
                stepped, a = np.flatnonzero(ok), a[ok]
            truncated = None
            if a.shape[0] == 0:  # every action was non-finite
                reward = a[:, 0]
            elif lean:
                reward, terminated = advance(stepped, a)
            else:
                reward, terminated, truncated = stepper.step(stepped, a)
            it += 1
            if reward.size:
                o = obs[stepped]
                finite = finite_scalar(add(reward) + add(o, axis=None))  # quick test: no NaN/inf anywhere
                if finite:
                    if stepped is sel:
                        np.add(tr_k, reward, out=tr_k)
                    else:
                        true_ret[stepped] += reward
                else:
                    good_r = isfinite(reward)
                    true_ret[stepped] = np.where(good_r, true_ret[stepped] + reward, true_ret[stepped])
                if (not finite or it >= deadline or (terminated is not None and count(terminated))
                        or (truncated is not None and count(truncated))):
                    good_r = isfinite(reward)
                    good_o = isfinite(o).all(axis=1)
                    n_steps = it - born[stepped]
                    done = ~good_r | ~good_o | (n_steps >= horizon)
                    if terminated is not None:
                        done |= terminated
                    if truncated is not None:
                        done |= truncated
                    rows = np.arange(k)[stepped]
                    for r in np.flatnonzero(done).tolist():
                        n = int(n_steps[r])
                        term = terminated is not None and bool(terminated[r])
                        ended[int(rows[r])] = (not (good_r[r] and good_o[r]), term, n, n)
            if ended:
                break
        for j in sorted(ended):
            finish(j, *ended[j])
            start(j)
        while k and item[k - 1] < 0:  # trailing free slots
            k -= 1
        for j in sorted(ended):
            if j >= k - 1:
                break
            if item[j] < 0:  # free, and slot k-1 runs an episode: move it down
                move(k - 1, j)
                k -= 1
                while k and item[k - 1] < 0:
                    k -= 1
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
        env: a gymnasium env with a Box action space (reuse it: see ``dfo.envs.get_env``).
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
    from dfo.envs.lean import make_stepper

    stepper = make_stepper(env, lean)
    return run_episodes(stepper, policy, np.asarray(params)[None, :], [seed], normalizer_state=normalizer_state,
                        horizon=horizon, reward_shift=reward_shift, collect_stats=collect_stats, width=1)[0]
