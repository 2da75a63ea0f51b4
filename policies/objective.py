"""The RL objective and the rollout worker shipped to evaluators.

Policy search minimizes ``f(params) = -return`` (everything in dfo minimizes; the sign
flip happens here and only here). Two entry points share one rollout routine:

* :class:`RLObjective` is the picklable ``(params, seed) -> -return`` callable of the
  design map, usable with :func:`dfo.minimize` (``seeded=True``) or by hand.
* :func:`map_episodes` runs a list of items ``(index, sign, seed)`` through an
  evaluator: it cuts them into one group per worker chunk and maps
  :func:`rollout_group_worker` over the groups. ``shared`` is a :class:`RolloutBatch`
  (the spec, the estimator's small :class:`dfo.Query` holding x and the direction
  seed, the frozen normalizer snapshot), pickled once per worker chunk. A worker
  regenerates its perturbed parameters with ``query.point(index, sign)`` (Mania, Guy,
  Recht 2018; Salimans et al. 2017), runs all its episodes in lockstep on its
  per-process cached stepper (:func:`dfo.envs.get_stepper`, :func:`dfo.policies.rollout.run_episodes`)
  and returns only :class:`EpisodeOutcome` values (scalars plus the observation
  statistics for the ARS V2 normalizer). :func:`rollout_worker` is the same for one item.

Each outcome is a pure function of ``(shared, item)``, whatever group it ran in, so
serial and parallel runs give identical numbers.

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

from dfo.policies.base import Policy, policy_from_config
from dfo.policies.normalizer import NormalizerSnapshot
from dfo.policies.rollout import EpisodeOutcome, run_episodes

__all__ = ["EpisodeOutcome", "RLObjective", "RolloutBatch", "RolloutSpec", "map_episodes", "rollout_group_worker",
           "rollout_worker", "run_episode", "study_objective"]

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
        lean: use the lean ``mj_step`` path when the task has one (``None`` = auto; only an
            unwrapped registered task without env kwargs has one).
        env_kwargs: keyword arguments of ``gymnasium.make`` (JSON values).
        imports: modules every worker imports before building its env (e.g. one that
            registers a custom env).
        registration: filled in when the spec is built, for an env registered in the
            caller's script or with a callable entry point (``dfo.envs.make.script_registration``):
            workers register the id from it, so such an env needs no ``imports``.
    """

    env_id: str
    policy: dict
    horizon: int
    reward_shift: float = 0.0
    lean: bool | None = None
    env_kwargs: dict = dataclasses.field(default_factory=dict)
    imports: tuple[str, ...] = ()
    registration: dict | None = None

    def __post_init__(self) -> None:
        if self.registration is None:  # in the process that builds the spec, where the env is registered
            from dfo.envs.make import script_registration

            object.__setattr__(self, "registration", script_registration(self.env_id))

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


def _stepper(spec: RolloutSpec):
    from dfo.envs.cache import get_stepper
    from dfo.envs.make import ensure_registered, import_modules

    import_modules(spec.imports)
    ensure_registered(spec.env_id, spec.registration)
    return get_stepper(spec.env_id, spec.env_kwargs, lean=spec.lean)


def run_group(shared: RolloutBatch, items: list[tuple[int, int, int]]) -> list[EpisodeOutcome]:
    """The episodes of ``items`` (``(index, sign, seed)`` each), in lockstep on this process's stepper."""
    spec = shared.spec
    params = np.array([shared.params(int(i), int(s)) for i, s, _ in items])
    return run_episodes(_stepper(spec), spec.build_policy(), params, [int(seed) for _, _, seed in items],
                        normalizer_state=shared.snapshot, horizon=spec.horizon,
                        reward_shift=spec.reward_shift if shared.training else 0.0, collect_stats=shared.training)


def run_episode(spec: RolloutSpec, params: np.ndarray, seed: int, snapshot: NormalizerSnapshot | None,
                *, training: bool = True) -> EpisodeOutcome:
    """One episode of ``spec`` with ``params`` on this process's cached stepper."""
    batch = RolloutBatch(spec=spec, center=np.asarray(params, dtype=np.float64), snapshot=snapshot,
                         training=training)
    return run_group(batch, [(-1, 0, int(seed))])[0]


def rollout_worker(shared: RolloutBatch, item: tuple[int, int, int]) -> EpisodeOutcome:
    """``fn(shared, item)`` for ``evaluator.map``: item = ``(index, sign, episode_seed)``."""
    _maybe_die()
    return run_group(shared, [item])[0]


def rollout_group_worker(shared: RolloutBatch, items: list[tuple[int, int, int]]) -> list[EpisodeOutcome]:
    """``fn(shared, group)`` for ``evaluator.map``: a list of items run side by side."""
    _maybe_die()
    return run_group(shared, list(items))


#: groups per evaluator worker (two, so that uneven episode lengths still balance)
GROUPS_PER_WORKER = 2


def map_episodes(evaluator: Any, batch: RolloutBatch, items: list[tuple[int, int, int]]) -> list[EpisodeOutcome]:
    """Outcomes of ``items`` in order: one group of items per chunk of ``evaluator``.

    A serial evaluator gets one group (all episodes side by side); a parallel one
    ``GROUPS_PER_WORKER`` contiguous groups per worker. The grouping never changes
    the numbers, only how many episodes share a lockstep batch.
    """
    from dfo.parallel import chunk_bounds

    items = list(items)
    n_workers = int(getattr(evaluator, "n_workers", 1))
    n_groups = 1 if n_workers <= 1 else GROUPS_PER_WORKER * n_workers
    groups = [items[a:b] for a, b in chunk_bounds(len(items), n_groups)]
    return [o for group in evaluator.map(rollout_group_worker, groups, shared=batch) for o in group]


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


def study_objective(env_id: str, *, horizon: int = 100, hidden: tuple[int, ...] = ()) -> tuple[RLObjective, np.ndarray]:
    """The seeded objective ``dfo study --problem rl:ENV`` uses, and its start point.

    Registered by name in ``dfo.study.reference.SEEDED_OBJECTIVES`` (``dfo`` never imports
    ``policies`` at import time).

    Returns:
        ``(fun, x0)``: ``fun(params, seed) -> -return`` of one episode of a linear policy
        (an MLP with tanh layers ``hidden`` when given) and its initial parameters.
    """
    from dfo.envs.make import env_dims

    obs_dim, act_dim = env_dims(env_id)
    if hidden:
        from dfo.policies.mlp import MLPPolicy

        policy: Policy = MLPPolicy(obs_dim, act_dim, hidden=tuple(hidden))
    else:
        from dfo.policies.linear import LinearPolicy

        policy = LinearPolicy(obs_dim, act_dim)
    spec = RolloutSpec(env_id=env_id, policy=policy.config(), horizon=int(horizon))
    return RLObjective(spec=spec), policy.init_params(0)
