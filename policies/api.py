"""``dfo.train(env_id, **settings)``: what ``dfo train`` does, from Python, returning the run.

The env may be a gymnasium id (``"Hopper-v5"``, ``"mypkg.envs:Maze-v0"``), a callable that
returns an env, or an env instance; the last two are registered under a generated id
(:func:`dfo.envs.ids.register_env`) that the rollout workers receive with their callable.

Example:
    >>> import dfo
    >>> run = dfo.train("InvertedPendulum-v5", episodes=16, horizon=50, backend="serial", n_eval_episodes=1)
    >>> run.episodes >= 16 and run.policy.params.shape == run.params.shape
    True
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from dfo.envs.ids import register_env
from dfo.policies.training.config import TrainConfig
from dfo.policies.training.rundir import clear_run_dir, prepare_run_dir
from dfo.policies.training.result import TrainResult
from dfo.policies.training.trainer import Trainer


def train(env_id: str | Callable[[], Any] | Any | None = None, *, env: Callable[[], Any] | Any | None = None,
          out: str | os.PathLike | None = None, resume: str | os.PathLike | None = None, overwrite: bool = False,
          progress: bool | None = None, evaluator: Any = None, callback=None, **settings: Any) -> TrainResult:
    """Train a policy on a gymnasium task with the task's preset settings, as ``dfo train`` does.

    Args:
        env_id: gymnasium id, ``"module:Env-v0"``, a callable returning an env, or an env
            instance (default: the :class:`~dfo.policies.training.TrainConfig` default; when
            resuming, the run's own, and another id is refused).
        env: the same as ``env_id``, by keyword (``dfo.train(env=make_my_env)``). A callable
            is called once per rollout worker and slot and must be picklable (cloudpickle);
            an instance is deep-copied for each env, the caller's is never stepped. The run's
            ``config.json`` records the generated id ``"dfo/<name>-v0"``: resuming it needs the
            same callable or instance registered again (:func:`dfo.envs.register_env`).
        out: run directory for checkpoints and logs (``None``: nothing is written).
        resume: continue the run in this directory from its newest checkpoint; ``settings``
            may then only change the budget and where the work runs (``episodes``,
            ``max_iterations``, ``backend``, ``n_jobs``, ``scheduler``, ``checkpoint_every``).
        overwrite: clear the run files of a non-empty ``out`` first.
        progress: progress display on stderr (default: when stderr is a terminal).
        evaluator: an evaluator to run rollouts on (default: built from ``backend``/``n_jobs``).
        callback: ``callback(row)`` after each iteration (``StopIteration`` ends the run).
        **settings: :class:`~dfo.policies.training.TrainConfig` fields (``method``, ``episodes``,
            ``step_size``, ``noise``, ``n_directions``, ``top_b``, ``seed``, ...).

    Returns:
        The :class:`~dfo.policies.training.TrainResult`: final parameters, the progress rows
        (``history``), counts, the last checkpoint and ``policy`` (a
        :class:`~policies.LoadedPolicy` with ``act``/``predict``).

    Raises:
        ValueError: invalid settings, a non-empty ``out`` without ``overwrite``, a
            checkpoint of another run, ...; ``KeyboardInterrupt`` after Ctrl-C/SIGTERM
            (a checkpoint is written first when ``out`` is given).
    """
    if env is not None:
        if env_id is not None:
            raise ValueError("give the env once: as env_id or as env=, not both")
        env_id = env
    if env_id is not None and not isinstance(env_id, str):
        env_id = register_env(env_id)
    if progress is None:
        progress = sys.stderr.isatty()
    kw = {"progress": progress, "evaluator": evaluator, "callback": callback}
    if resume is not None:
        if out is not None or overwrite:
            raise ValueError("resume=DIR continues the run in DIR; it takes no out or overwrite")
        trainer = Trainer.resume(resume, overrides=settings, **kw)
        if env_id is not None and env_id != trainer.config.env_id:
            trainer.close()
            raise ValueError(f"the run in {resume} is for {trainer.config.env_id}, not {env_id}")
    else:
        config = TrainConfig(**({"env_id": env_id} if env_id is not None else {}), **settings)
        if out is not None:
            if overwrite:
                clear_run_dir(out)
            prepare_run_dir(out, resume=False)
        trainer = Trainer(config, out_dir=out, **kw)
    with trainer:
        return trainer.run()
