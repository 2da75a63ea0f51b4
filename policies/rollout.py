"""One episode of a policy in an env: returns, step count, observation statistics.

A rollout resets the env with ``seed`` (so it is deterministic given the seed, the
params and the normalizer snapshot), feeds each observation through the frozen
normalizer snapshot and the policy, clips the action to the action space, and
steps until termination, truncation or ``horizon`` steps.

Training reward is ``r_t - reward_shift`` (ARS removes the survival bonus, e.g. 1 for
Hopper); ``true_ret`` is always the sum of the true rewards.

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
import math
from typing import Any

import numpy as np

from envs.lean import make_stepper
from policies.base import Policy
from policies.normalizer import NormalizerSnapshot, RunningStat


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class RolloutResult:
    """Outcome of one episode.

    Attributes:
        ret: training return, ``sum_t (r_t - reward_shift)``.
        true_ret: ``sum_t r_t`` (what evaluation reports).
        steps: env steps taken.
        obs_stats: statistics of the raw observations fed to the policy (``None`` when
            ``collect_stats=False``); merge them into an ``ObsNormalizer``.
        nonfinite: a NaN/inf observation, action or reward ended the episode.
        terminated: the env signalled termination (e.g. the hopper fell).
    """

    ret: float
    true_ret: float
    steps: int
    obs_stats: RunningStat | None
    nonfinite: bool = False
    terminated: bool = False


def _finite(x: np.ndarray) -> bool:
    return math.isfinite(x.sum())  # NaN/inf in any entry makes the sum non-finite


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
) -> RolloutResult:
    """Run one episode.

    Args:
        env: a gymnasium env with a Box action space (reuse it: see ``envs.get_env``).
        policy: the policy.
        params: its flat parameter vector.
        normalizer_state: frozen snapshot (``ObsNormalizer.snapshot``); ``None`` = raw obs.
        seed: passed to ``env.reset(seed=seed)``.
        horizon: maximum number of steps (the env's own time limit also applies).
        reward_shift: subtracted from every reward in ``ret`` (not in ``true_ret``).
        collect_stats: gather observation statistics.
        lean: ``None`` uses the lean ``mj_step`` path when the task has one,
            ``False`` forces gymnasium's ``env.step``, ``True`` requires the lean path.

    Returns:
        A ``RolloutResult``.
    """
    horizon = int(horizon)
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    stepper = make_stepper(env, lean)
    actor = policy.bind(params)
    low, high = stepper.low, stepper.high
    obs = stepper.reset(seed)
    buf = np.empty((horizon, policy.obs_dim)) if collect_stats else None
    n_obs = 0
    steps = 0
    true_ret = 0.0
    nonfinite = not _finite(obs)
    terminated = False
    while not nonfinite and steps < horizon:
        if buf is not None:
            buf[n_obs] = obs
            n_obs += 1
        x = obs if normalizer_state is None else normalizer_state.normalize(obs)
        action = np.minimum(np.maximum(actor(x), low), high)  # clip; NaN stays NaN
        if not _finite(action):
            nonfinite = True
            break
        obs, reward, terminated, truncated = stepper.step(action)
        steps += 1
        if not math.isfinite(reward):
            nonfinite = True
            break
        true_ret += reward
        if not _finite(obs):
            nonfinite = True
            break
        if terminated or truncated:
            break
    ret = true_ret - reward_shift * steps if reward_shift else true_ret
    stats = RunningStat.from_batch(buf[:n_obs]) if buf is not None else None
    return RolloutResult(
        ret=float(ret),
        true_ret=float(true_ret),
        steps=steps,
        obs_stats=stats,
        nonfinite=nonfinite,
        terminated=bool(terminated),
    )
