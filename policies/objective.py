"""The RL objective and the rollout worker shipped to evaluators.

Policy search minimizes ``f(params) = -return`` (everything in dfo minimizes; the sign
flip happens here and only here). Two entry points share one rollout routine:

* :class:`RLObjective` is the picklable ``(params, seed) -> -return`` callable of the
  design map, usable with :func:`dfo.minimize` (``seeded=True``) or by hand.
* :func:`rollout_worker` is the ``fn(shared, item)`` given to
  ``evaluator.map``: ``shared`` is a :class:`RolloutBatch` (the spec, the estimator's
  small :class:`dfo.Query` holding x and the direction seed, the frozen normalizer
  snapshot), pickled once per worker chunk; each ``item`` is ``(index, sign, seed)``.
  The worker regenerates its own perturbed parameters with ``query.point(index, sign)``
  (Mania, Guy, Recht 2018; Salimans et al. 2017), runs one episode on its per-process
  cached env (:func:`envs.get_env`) and returns only an :class:`EpisodeOutcome`
  (scalars plus the observation statistics for the ARS V2 normalizer).

The result is a pure function of ``(shared, item)``, so serial and parallel runs give
identical numbers.

Example:
    >>> import numpy as np
    >>> spec = RolloutSpec(env_id="InvertedPendulum-v5", policy={"class": "LinearPolicy",
    ...     "obs_dim": 4, "act_dim": 1, "bias": False}, horizon=20)
    >>> obj = RLObjective(spec)
    >>> obj(np.zeros(4), seed=0) <= 0
    True
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from policies.base import Policy, policy_from_config
from policies.normalizer import NormalizerSnapshot, RunningStat

#: Test-only fault hook: a file with this name plus ``.<parent pid>`` in the temp directory
#: arms it. The first rollout that runs in a *worker* process (never the main process)
#: whose parent has armed the hook removes the file and kills its own process with
#: ``os._exit`` (a worker dying mid-iteration). Costs one ``stat`` per rollout.
KILL_HOOK_NAME = "dfo-test-kill-worker-once"


def kill_hook_path(parent_pid: int | None = None) -> Path:
    """Where a test arms the worker-kill hook for workers of ``parent_pid`` (default: this process)."""
    return Path(tempfile.gettempdir()) / f"{KILL_HOOK_NAME}.{os.getpid() if parent_pid is None else parent_pid}"


@dataclasses.dataclass(frozen=True, kw_only=True)
class RolloutSpec:
    """Everything a worker needs to run episodes of one task (small, picklable).

    Attributes:
        env_id: gymnasium id.
        policy: ``Policy.config()`` of the policy.
        horizon: episode length cap.
        reward_shift: subtracted from every reward of a training return (survival bonus).
        lean: use the lean ``mj_step`` path when the task has one (``None`` = auto).
    """

    env_id: str
    policy: dict
    horizon: int
    reward_shift: float = 0.0
    lean: bool | None = None

    def build_policy(self) -> Policy:
        return _policy_cached(self)


_POLICIES: dict[int, tuple[RolloutSpec, Policy]] = {}


def _policy_cached(spec: RolloutSpec) -> Policy:
    key = id(spec)
    hit = _POLICIES.get(key)
    if hit is not None and hit[0] is spec:
        return hit[1]
    pol = policy_from_config(spec.policy)
    _POLICIES.clear()  # one spec at a time per process is the normal case
    _POLICIES[key] = (spec, pol)
    return pol


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class EpisodeOutcome:
    """What comes back from one rollout (a few scalars and the observation statistics).

    Attributes:
        ret: training return (survival shift removed).
        true_ret: return under the true reward.
        steps: env steps taken.
        obs_stats: statistics of the observations seen (``None`` when not collected).
        nonfinite: a NaN/inf observation, action or reward ended the episode.
    """

    ret: float
    true_ret: float
    steps: int
    obs_stats: RunningStat | None
    nonfinite: bool


@dataclasses.dataclass(frozen=True, kw_only=True, eq=False)
class RolloutBatch:
    """The ``shared`` part of an ``evaluator.map`` call: sent once per worker chunk.

    Attributes:
        spec: the task.
        center: a ``dfo.Query`` (points regenerated from ``(index, sign)``) or a plain
            parameter vector (evaluation and line-search trials; items use index ``-1``).
        snapshot: frozen normalizer snapshot, or ``None`` for raw observations.
        training: training episodes (shifted reward, statistics collected) or evaluation
            episodes (true reward only, no statistics).
    """

    spec: RolloutSpec
    center: Any
    snapshot: NormalizerSnapshot | None
    training: bool = True

    def params(self, index: int, sign: int) -> np.ndarray:
        if isinstance(self.center, np.ndarray):
            if index != -1:
                raise ValueError(f"a plain parameter vector has only index -1, got {index}")
            return self.center
        return self.center.point(index, sign)


def _maybe_die() -> None:
    if multiprocessing.current_process().name == "MainProcess":
        return
    path = kill_hook_path(os.getppid())
    if not path.exists():
        return
    try:
        path.unlink()  # exactly one worker claims the hook
    except FileNotFoundError:
        return
    os._exit(17)


def run_episode(spec: RolloutSpec, params: np.ndarray, seed: int, snapshot: NormalizerSnapshot | None,
                *, training: bool = True) -> EpisodeOutcome:
    """One episode of ``spec`` with ``params`` on this process's cached env."""
    from envs.cache import get_env
    from policies.rollout import rollout

    env = get_env(spec.env_id)
    res = rollout(
        env,
        spec.build_policy(),
        params,
        normalizer_state=snapshot,
        seed=int(seed),
        horizon=spec.horizon,
        reward_shift=spec.reward_shift if training else 0.0,
        collect_stats=training,
        lean=spec.lean,
    )
    return EpisodeOutcome(ret=res.ret, true_ret=res.true_ret, steps=res.steps, obs_stats=res.obs_stats,
                          nonfinite=res.nonfinite)


def rollout_worker(shared: RolloutBatch, item: tuple[int, int, int]) -> EpisodeOutcome:
    """``fn(shared, item)`` for ``evaluator.map``: item = ``(index, sign, episode_seed)``."""
    _maybe_die()
    index, sign, seed = item
    return run_episode(shared.spec, shared.params(int(index), int(sign)), int(seed), shared.snapshot,
                       training=shared.training)


@dataclasses.dataclass(frozen=True, eq=False)
class RLObjective:
    """``f(params, seed) = -(training return)`` of one episode: the seeded RL objective.

    The env is built lazily, once per process, through the env cache, so the object
    pickles small and a worker reuses its env across calls.

    Args:
        spec: the task.
        snapshot: frozen observation normalizer, or ``None``.
    """

    spec: RolloutSpec
    snapshot: NormalizerSnapshot | None = None

    def __call__(self, params: np.ndarray, seed: int) -> float:
        return -run_episode(self.spec, np.asarray(params, dtype=np.float64), seed, self.snapshot).ret
