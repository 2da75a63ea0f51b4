"""One training loop for every method: estimator ask → parallel rollouts → tell → step.

Per iteration (Mania, Guy, Recht 2018, Algorithm 2, generalized to any dfo estimator):

1. Freeze the observation-normalizer snapshot (V2 methods) for the whole iteration.
2. ``query = estimator.ask(θ, rng)``; every perturbed point is identified by
   ``(index, sign)``. Each direction gets one episode seed shared by its + and −
   rollouts (common random numbers); forward-difference methods use one seed for the
   centre and all directions.
3. ``map_episodes(evaluator, RolloutBatch(...), items)``: workers regenerate their
   parameters from the query, run their episodes side by side (lockstep) and return
   scalars plus observation statistics. Values are ``f = −return``.
4. ``g = estimator.tell(query, f)``; then ``config.step`` (momentum, Adam or L-BFGS on
   request, see :class:`TrainConfig`) or by default either the SGD step ``θ ← θ − lr g`` with
   ``lr = 2να`` (ARS, see :mod:`dfo.policies.methods`) or the noise-tolerant Armijo line
   search of Berahas, Cao, Scheinberg (2021) on the mean return over ``ls_repeats``
   seeds, with ``ε_f`` = the standard error of the centre's repeated returns. Line-search
   trial rollouts are training episodes and count against the budget.
   Steps 2–4 are :class:`dfo.Minimizer` (the one optimizer loop of the package): the
   trainer only turns its requests into rollouts. An episode that hit a non-finite value
   ranks behind every finite one of its batch (and is counted).
5. Merge the workers' statistics into the normalizer in item order, refresh the snapshot.
6. Every ``eval_every`` iterations: ``n_eval_episodes`` true-reward episodes of the
   unperturbed policy (not counted in the budget, as in ARS).

All randomness comes from one ``np.random.Generator`` seeded by ``config.seed`` (plus
evaluation seeds derived from ``(seed, iteration)``), results are merged in a fixed
order, and each rollout is a pure function of its inputs, so a serial and a parallel
run give identical numbers, and a resumed run continues the same sequence.

Example:
    >>> from dfo.policies.training import TrainConfig, Trainer
    >>> cfg = TrainConfig(env_id="InvertedPendulum-v5", episodes=16, horizon=50, backend="serial")
    >>> with Trainer(cfg) as tr:
    ...     result = tr.run()
    >>> result.episodes >= 16
    True
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dfo.fileio import atomic_write_bytes
from dfo.interrupts import InterruptGuard
from dfo.minimizer import Minimizer
from dfo.policies.checkpoint import load_checkpoint, save_checkpoint
from dfo.policies.methods import STEP_CONTROL, Method, StepControl, get_method
from dfo.policies.normalizer import ObsNormalizer
from dfo.policies.objective import EpisodeOutcome, RolloutBatch, RolloutSpec, map_episodes
from dfo.policies.serialization import LoadedPolicy, save_policy
from dfo.policies.training.build import build_evaluator, build_policy, env_dims_of, rule_learning_rate
from dfo.policies.training.config import TrainConfig
from dfo.policies.training.result import EVAL_KEY, TrainResult
from dfo.policies.training.rundir import (
    check_no_symlinks,
    check_same_run,
    lock_run_dir,
    prepare_run_dir,
    unlock_run_dir,
)
from dfo.policies.training.runlog import SCHEMA, progress_fields
from dfo.policies.training.starts import StartRace
from dfo.run.metrics import MetricsLog, last_values
from dfo.run.progress import Progress

#: what runs on across the starts of a multi-start race (everything else belongs to one start)
_RUN_COUNTERS = ("iteration", "episodes", "env_steps", "nonfinite", "elapsed", "best_eval")
#: the layout of :meth:`Trainer.state_dict` (states without one are of older versions: still read)
STATE_LAYOUT = 2
SEED_HIGH = 2**31 - 1  # episode seeds for env.reset
LS_MAX_TRIALS = 4  # line-search trials per iteration (each costs ls_repeats episodes)


class Trainer:
    """Policy search on one task with one method (see the module docstring).

    Args:
        config: the run's hyperparameters (``None`` fields are filled from the preset).
        out_dir: run directory for progress.csv, metrics.jsonl, config.json and
            checkpoints; ``None`` keeps everything in memory. A new run needs a missing
            or empty directory (:meth:`run` raises ``RunDirError`` otherwise;
            :meth:`resume` continues a run), see :mod:`dfo.policies.training.rundir`.
        evaluator: an evaluator to use (not closed by the trainer); default: built from
            ``config.backend`` / ``config.n_jobs`` and closed by :meth:`close`.
        progress: show a tqdm bar.
        callback: ``callback(row)`` after each iteration; returning ``False`` or raising
            ``StopIteration`` ends the run (a checkpoint is written), ``KeyboardInterrupt``
            acts like Ctrl-C.
    """

    def __init__(self, config: TrainConfig, *, out_dir: str | os.PathLike | None = None, evaluator=None,
                 progress: bool = False, callback: Callable[[dict], None] | None = None) -> None:
        self.config = config.resolved()
        cfg = self.config
        self.method: Method = get_method(cfg.method)
        obs_dim, act_dim = env_dims_of(cfg)
        self.policy = build_policy(cfg, obs_dim, act_dim)
        self.spec = RolloutSpec(env_id=cfg.env_id, policy=self.policy.config(), horizon=int(cfg.horizon),
                                reward_shift=float(cfg.survival_shift), lean=cfg.lean,
                                env_kwargs=dict(cfg.env_kwargs), imports=tuple(cfg.imports))
        self.lr = self.method.learning_rate(float(cfg.step_size), float(cfg.noise))
        # state
        self.race = StartRace(starts=int(cfg.starts), start_episodes=int(cfg.start_episodes))
        self._start_lane(cfg.seed)
        self.iteration = 0
        self.episodes = 0
        self.env_steps = 0
        self.nonfinite = 0
        self.elapsed = 0.0
        self.alpha: float | None = None  # line-search step (armijo methods)
        self.last_eval = math.nan
        self.best_eval = -math.inf  # best evaluation so far; its policy is RUN/best_policy.npz/json
        self.history: list[dict[str, Any]] = []
        self._needs_initial_row = True
        # io
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.progress = progress
        self.callback = callback
        self._own_evaluator = evaluator is None
        self.evaluator = build_evaluator(cfg) if evaluator is None else evaluator
        self._log: MetricsLog | None = None
        self._resumed = False
        self._lock_fd: int | None = None  # the run directory's lock, held until close()
        self.run_id = uuid.uuid4().hex  # ties config.json and every checkpoint to this run
        self.last_checkpoint: Path | None = None

    def _start_lane(self, seed: int) -> None:
        """Fresh optimizer state from ``seed``: policy parameters, normalizer, estimator, rng, minimizer."""
        cfg = self.config
        self.estimator = self.method.make_estimator(
            self.policy.n_params, n_directions=int(cfg.n_directions), top_b=int(cfg.top_b), noise=float(cfg.noise),
            blocks=self.policy.param_blocks(),
        )
        if cfg.step in STEP_CONTROL:  # the ARS step, its length controlled (dfo.policies.methods.StepControl)
            self.estimator = StepControl(self.estimator, STEP_CONTROL[cfg.step], self.lr)
        self.params = self.policy.init_params(np.random.default_rng(seed))
        self.normalizer = ObsNormalizer(self.policy.obs_dim)
        self.rng = np.random.default_rng(seed)
        self.minimizer = self._make_minimizer()
        self.alpha = None

    def _next_lane(self) -> None:
        """End the current start of the race: keep it if it scores best, then start the next or load the winner."""
        race = self.race
        lane_state = {k: v for k, v in self.state_dict().items() if k not in ("config", "race")}
        if race.finish_lane(lane_state, self.episodes):
            best = race.best_state
            race.best_state = None
            kept = {k: getattr(self, k) for k in _RUN_COUNTERS}
            self.load_state_dict(best)
            for k, v in kept.items():
                setattr(self, k, v)
        else:
            self._start_lane(race.lane_seed(self.config.seed, race.lane))

    # -- construction from a checkpoint -------------------------------------------
    @classmethod
    def resume(cls, path: str | os.PathLike, *, overrides: dict[str, Any] | None = None, **kw: Any) -> Trainer:
        """Continue a run from its newest checkpoint (or the given checkpoint directory).

        Args:
            path: run directory or checkpoint directory.
            overrides: config fields to change on resume; only ``episodes``,
                ``max_iterations``, ``backend``, ``n_jobs``, ``scheduler`` and
                ``checkpoint_every`` may change (the others would change the numbers).
                Where the work runs (``backend``, ``n_jobs``, ``scheduler``) is never
                read from the run directory: it comes from ``overrides`` or the defaults.
            **kw: passed to the constructor (``evaluator``, ``progress``, ``callback``).

        Raises:
            dfo.policies.checkpoint.CheckpointError: missing, corrupt or edited checkpoint.
            dfo.policies.training.rundir.RunDirError: symbolic links in the run directory, or
                a checkpoint that belongs to another run than the directory's config.json.
            dfo.run.metrics.LogError: logs that cannot be continued exactly.
        """
        ckpt, state = load_checkpoint(path)
        run_dir = ckpt.parent.parent
        check_no_symlinks(run_dir)
        config = TrainConfig.from_dict(state["config"])
        allowed = {"episodes", "max_iterations", "backend", "n_jobs", "scheduler", "checkpoint_every"}
        overrides = dict(overrides or {})
        given_imports = list(overrides.pop("imports", None) or [])
        bad = sorted(set(overrides) - allowed)
        if bad:
            raise ValueError(f"cannot change {bad} when resuming (allowed: {sorted(allowed)})")
        check_same_run(run_dir, ckpt, state["config"], state.get("run_id"), mutable=allowed)
        # modules to import are code: never taken from a file, the caller names them again
        wanted = list(state["config"].get("imports") or [])
        if given_imports != wanted:
            raise ValueError(f"this run imports {wanted}; resuming imports only modules named again by the "
                             f"caller (--import), got {given_imports}")
        defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
        where = {k: defaults[k] for k in ("backend", "n_jobs", "scheduler")}
        config = dataclasses.replace(config, **{**where, **overrides})
        trainer = cls(config, out_dir=run_dir, **kw)
        try:
            trainer.load_state_dict(state)
            trainer.run_id = state.get("run_id") or trainer.run_id
            trainer._lock_fd = lock_run_dir(run_dir)  # before the logs are cut back
            kept = MetricsLog.truncate(run_dir, SCHEMA, trainer.iteration)
        except BaseException:
            trainer.close()  # releases the evaluator and the lock
            raise
        # an interrupt during the first evaluation leaves a checkpoint at 0 without row 0
        trainer._needs_initial_row = trainer.iteration == 0 and 0 not in kept
        trainer._resumed = True
        trainer.last_checkpoint = ckpt
        return trainer

    # -- state ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly (JSON tree + arrays, no pickle).

        The optimizer's own state (parameters, generator, estimator, step rule with the line
        search's α) is saved once, as the Minimizer's ``state_dict``; the trainer adds what is its
        own: the config, the normalizer, the counters, the evaluations and the race of starts.
        """
        return {
            "layout": STATE_LAYOUT,
            "config": self.config.to_dict(),
            "minimizer": self.minimizer.state_dict(),
            "normalizer": self.normalizer.state,
            "iteration": self.iteration,
            "episodes": self.episodes,
            "env_steps": self.env_steps,
            "nonfinite": self.nonfinite,
            "elapsed": self.elapsed,
            "last_eval": self.last_eval,
            "best_eval": self.best_eval if math.isfinite(self.best_eval) else None,
            "race": self.race.state_dict() if self.race.starts > 1 else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output, or a trainer state of an older dfo (see :meth:`_load_legacy`).

        Raises:
            ValueError: a state of an unknown layout, or one that does not fit this run's optimizer.
        """
        layout = state.get("layout")
        if layout is None:
            self._load_legacy(state)
        elif layout == STATE_LAYOUT:
            self.minimizer.load_state_dict(state["minimizer"])
        else:
            raise ValueError(f"a trainer state of layout {layout!r}; this dfo reads layout {STATE_LAYOUT} "
                             "and the layout of older versions (upgrade dfo to resume it)")
        self.params = self.policy.check_params(np.asarray(self.minimizer.x, dtype=np.float64)).copy()
        self.rng = self.minimizer.rng
        self.estimator = self.minimizer.estimator
        self.alpha = self.minimizer.alpha
        self.normalizer = ObsNormalizer.from_state(state["normalizer"])
        self.iteration = int(state["iteration"])
        self.episodes = int(state["episodes"])
        self.env_steps = int(state["env_steps"])
        self.nonfinite = int(state["nonfinite"])
        self.elapsed = float(state["elapsed"])
        self.last_eval = float(state["last_eval"])
        self.best_eval = -math.inf if state.get("best_eval") is None else float(state["best_eval"])
        if state.get("race") is not None:
            self.race = StartRace.from_state(state["race"])
        self._needs_initial_row = False  # progress.csv already has it

    def _load_legacy(self, state: dict[str, Any]) -> None:
        """The optimizer of a trainer state without a layout (older dfo), which mirrored the Minimizer's
        parameters, generator, estimator and α beside it, or (older still) had no Minimizer state."""
        params = self.policy.check_params(np.asarray(state["params"], dtype=np.float64)).copy()
        if state.get("estimator") is not None:
            self.estimator.load_state_dict(state["estimator"])
        if state.get("minimizer") is not None:
            self.minimizer.load_state_dict(state["minimizer"])
            return
        # a checkpoint from before the trainer drove dfo.Minimizer: same numbers
        self.params = params
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = json.loads(state["rng"])
        self.minimizer = self._make_minimizer()
        self.minimizer.alpha = None if state["alpha"] is None else float(state["alpha"])

    def save(self) -> Path | None:
        """Write a checkpoint of the completed iterations (no-op without ``out_dir``)."""
        if self.out_dir is None:
            return None
        meta = self._policy_metadata(self.last_eval)
        snap = self.normalizer if self.method.normalize else None
        state = {**self.state_dict(), "run_id": self.run_id}
        self.last_checkpoint = save_checkpoint(
            self.out_dir, self.iteration, state,
            lambda stem: save_policy(stem, self.policy, self.params, snap, meta),
        )
        return self.last_checkpoint

    def _policy_metadata(self, eval_return: float) -> dict[str, Any]:
        """What a saved policy records: the task (env id and kwargs) it acts on, and where it comes from."""
        cfg = self.config
        return {"env_id": cfg.env_id, "env_kwargs": dict(getattr(cfg, "env_kwargs", None) or {}),
                "method": cfg.method, "iteration": self.iteration, "episodes": self.episodes,
                "horizon": cfg.horizon, "eval_return": eval_return}

    def _maybe_save_best(self, eval_ret: float) -> None:
        """Keep the policy with the best evaluation return as ``RUN/best_policy`` (npz + json)."""
        if eval_ret <= self.best_eval:
            return
        self.best_eval = eval_ret
        if self.out_dir is not None:
            snap = self.normalizer if self.method.normalize else None
            save_policy(self.out_dir / "best_policy", self.policy, self.params, snap, self._policy_metadata(eval_ret))

    # -- rollouts -------------------------------------------------------------------
    def _snapshot(self):
        return self.normalizer.snapshot if self.method.normalize else None

    def _map(self, center, items, *, training: bool, snapshot) -> tuple[list[EpisodeOutcome], dict]:
        batch = RolloutBatch(spec=self.spec, center=center, snapshot=snapshot, training=training)
        out = map_episodes(self.evaluator, batch, items)
        traffic = dict(getattr(self.evaluator, "last_traffic", {}) or {})
        return out, traffic

    def evaluate(self, params: np.ndarray | None = None, n_episodes: int | None = None,
                 iteration: int | None = None, snapshot=None) -> tuple[float, float, int]:
        """Mean/std true return of the unperturbed policy and env steps used (not counted).

        Evaluation seeds derive from ``(seed, iteration)`` only, so they do not disturb
        the training random stream.
        """
        n_ep = self.config.n_eval_episodes if n_episodes is None else int(n_episodes)
        if n_ep == 0:
            return math.nan, math.nan, 0
        it = self.iteration if iteration is None else iteration
        seeds = np.random.default_rng([int(self.config.seed), 7919, int(it)]).integers(0, SEED_HIGH, size=n_ep)
        x = self.params if params is None else params
        snap = self._snapshot() if snapshot is None else snapshot
        outs, _ = self._map(x, [(-1, 0, int(s)) for s in seeds], training=False, snapshot=snap)
        rets = np.array([o.true_ret for o in outs])
        return float(rets.mean()), float(rets.std()), int(sum(o.steps for o in outs))

    # -- one iteration ----------------------------------------------------------------
    def _make_minimizer(self) -> Minimizer:
        """The optimizer loop of this run at ``self.params``, drawing from ``self.rng``.

        ``config.step`` (the method's own by default) picks the rule; ``lr`` derives from
        the ARS α, ν (see :func:`rule_learning_rate`). ``armijo``: the line search on the
        mean of ``ls_repeats`` seeded centre/trial episodes, ε_f from their standard error,
        first step ``α·√n/‖g‖`` (as long as an ARS step), direction ``config.direction``.
        """
        m, cfg = self.method, self.config
        if cfg.step == "armijo":
            kw: dict[str, Any] = dict(step="armijo", eps_f="repeats", repeats=int(m.ls_repeats),
                                      first_step=float(cfg.step_size), direction=cfg.direction,
                                      line_search={"max_backtracks": LS_MAX_TRIALS, "tau": 0.5},
                                      max_step=None)
        else:
            kw = dict(step="sgd" if cfg.step in STEP_CONTROL else cfg.step,
                      lr=rule_learning_rate(cfg.step, self.lr, float(cfg.step_size)), eps_f=0.0,
                      direction=cfg.direction)
        return Minimizer(self.params, estimator=self.estimator, seeded=True, nonfinite="worst", rng=self.rng,
                         **kw)

    def _iterate(self, opt: Minimizer) -> dict[str, Any]:
        """Run one iteration of ``opt`` (a copy: nothing is committed here) with rollouts.

        Each request becomes one map of episodes: estimate points are ``(index, sign, seed)``
        items regenerated from the query by the workers; centre and trial requests repeat
        one point with the request's seeds.
        """
        snap = self._snapshot()
        nit = opt.nit
        all_outs: list[EpisodeOutcome] = []
        traffic: dict[str, int] = {}
        while opt.nit == nit:
            req = opt.request
            if req.shape == "points":
                raise RuntimeError(f"the trainer cannot run a {req.kind!r} request of distinct points")
            center, items = req.translate()  # the one translation minimize() uses too
            outs, t = self._map(center, items, training=True, snapshot=snap)
            for k in ("sent", "received", "retries"):
                traffic[k] = traffic.get(k, 0) + int(t.get(k, 0))
            all_outs += outs
            opt.tell(np.array([np.nan if o.nonfinite else -o.ret for o in outs]))
        hist = opt.history  # a dfo.state.Trace (columns), or a dict of lists in older cores
        step_size = (hist.column("step_size") if hasattr(hist, "column") else hist["step_size"])[-1]
        if isinstance(opt.estimator, StepControl):  # the ARS rate times the control's multiplier
            step_size = self.lr * opt.estimator.scale
        return {"params": opt.x.copy(), "alpha": opt.alpha, "outs": all_outs, "traffic": traffic,
                "grad_norm": float(np.linalg.norm(opt.grad)), "step_size": step_size}

    def step(self) -> dict[str, Any]:
        """One iteration, committed atomically: on any exception the state is unchanged."""
        t0 = time.perf_counter()
        opt = copy.deepcopy(self.minimizer)  # committed below only when the iteration completes
        info = self._iterate(opt)
        outs: list[EpisodeOutcome] = info["outs"]
        # the new normalizer and the evaluation are computed before anything is committed,
        # so an interrupt anywhere in an iteration leaves the state at the previous one
        normalizer = self.normalizer
        if self.method.normalize:
            normalizer = ObsNormalizer.from_state(self.normalizer.state)
            normalizer.update(*(o.obs_stats for o in outs))
            normalizer.refresh()
        iteration = self.iteration + 1
        eval_steps = 0
        eval_ret = eval_std = math.nan
        if iteration % int(self.config.eval_every) == 0:
            snap = normalizer.snapshot if self.method.normalize else None
            eval_ret, eval_std, eval_steps = self.evaluate(info["params"], iteration=iteration, snapshot=snap)
        # commit
        self.minimizer = opt
        self.estimator = opt.estimator
        self.rng = opt.rng
        self.params = info["params"]
        self.alpha = info["alpha"]
        self.normalizer = normalizer
        steps = int(sum(o.steps for o in outs))
        self.iteration = iteration
        self.episodes += len(outs)
        self.env_steps += steps
        self.nonfinite += int(sum(o.nonfinite for o in outs))
        if not math.isnan(eval_ret):
            self.last_eval = eval_ret
            self._maybe_save_best(eval_ret)
        self.race.observe(eval_ret)
        if self.race.lane_over(self.episodes):
            self._next_lane()
        dt = time.perf_counter() - t0
        self.elapsed += dt
        true_rets = np.array([o.true_ret for o in outs])
        row = {
            "iteration": self.iteration,
            "episodes": self.episodes,
            "env_steps": self.env_steps,
            "eval_return": eval_ret,
            "eval_return_std": eval_std,
            "train_return_mean": float(true_rets.mean()),
            "train_return_max": float(true_rets.max()),
            "nonfinite_episodes": self.nonfinite,
            "grad_norm": info["grad_norm"],
            "step_size": float(info["step_size"]),
            "time_s": self.elapsed,
            "iter_time_s": dt,
            "env_steps_per_s": (steps + eval_steps) / dt if dt > 0 else math.nan,
            "bytes_sent": info["traffic"].get("sent", 0),
            "bytes_received": info["traffic"].get("received", 0),
            "retries": info["traffic"].get("retries", 0),
        }
        return row

    # -- the run -------------------------------------------------------------------------
    def _open_outputs(self) -> None:
        """Check the run directory (writable, no links, empty unless resumed), write config.json, open the logs."""
        if self.out_dir is None or self._log is not None:
            return
        prepare_run_dir(self.out_dir, resume=self._resumed)
        if self._lock_fd is None:
            self._lock_fd = lock_run_dir(self.out_dir)
        cfg = self.config.to_dict()
        atomic_write_bytes(self.out_dir / "config.json", json.dumps({**cfg, "run_id": self.run_id}, indent=2).encode())
        hparams = {k: (str(v) if isinstance(v, list) else v) for k, v in cfg.items()
                   if k not in ("backend", "n_jobs", "scheduler", "track")}
        self._log = MetricsLog(self.out_dir, SCHEMA, hparams=hparams,
                               purge_step=self.env_steps + 1 if self._resumed else None,
                               track=self.config.track, run_id=self.run_id)

    def _record(self, row: dict[str, Any]) -> None:
        self.history.append(row)
        if self._log is not None:
            self._log.write(row)

    def _initial_row(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        ret, std, steps = self.evaluate(iteration=0)
        dt = time.perf_counter() - t0
        self.last_eval = ret
        self._maybe_save_best(ret)
        self.elapsed += dt
        return {"iteration": 0, "episodes": 0, "env_steps": 0, "eval_return": ret, "eval_return_std": std,
                "nonfinite_episodes": 0, "time_s": self.elapsed, "iter_time_s": dt,
                "env_steps_per_s": steps / dt if dt > 0 else math.nan}

    def _done(self) -> str | None:
        cfg = self.config
        if self.episodes >= cfg.episodes:
            return f"episode budget {cfg.episodes} reached"
        if cfg.max_iterations is not None and self.iteration >= cfg.max_iterations:
            return f"max_iterations={cfg.max_iterations} reached"
        return None

    def run(self) -> TrainResult:
        """Iterate until the budget (or ``max_iterations``) is reached.

        A checkpoint is written every ``checkpoint_every`` iterations, at the end, and on
        ``KeyboardInterrupt`` or SIGTERM (then re-raised, SIGTERM as :class:`dfo.interrupts.Terminated`).
        While the run goes, an :class:`dfo.interrupts.InterruptGuard` holds both signals: one that
        arrives while rollouts run (inside ``evaluator.map``, where nearly all the time goes and the
        state is not being changed) is raised at once; one that arrives while an iteration is
        committed or logged is held until that is done. The checkpoint then always matches the
        logs, and the resumed run gives the numbers of an uninterrupted one.
        """
        self._open_outputs()
        bar = None
        if self.progress:
            bar = Progress(total=self.config.episodes, initial=self.episodes, unit="episodes",
                           desc=f"{self.config.method} {self.config.env_id}")
        message = "stopped by the callback"
        guard = InterruptGuard()
        evaluator = self.evaluator
        self.evaluator = guard.wrap(evaluator)
        guard.install()
        try:
            if self._needs_initial_row:
                self._record(self._initial_row())
                self._needs_initial_row = False
                guard.raise_pending()
            while (done := self._done()) is None:
                lane = self.race.lane
                row = self.step()
                self._record(row)
                if bar is not None:
                    bar.update(row["episodes"], progress_fields(row, self.last_eval))
                    if self.race.lane != lane:
                        bar.note(self.race.describe())
                if self.iteration % self.config.checkpoint_every == 0:
                    self.save()
                guard.raise_pending()
                if self.callback is not None:
                    try:
                        if self.callback(row) is False:  # False stops, as in SB3's callbacks
                            break
                    except StopIteration:
                        break
            else:
                message = done
            if self.last_checkpoint is None or self.last_checkpoint.name != f"iter_{self.iteration:06d}":
                self.save()
            guard.raise_pending()
        except KeyboardInterrupt:  # Ctrl-C, SIGTERM (Terminated) or a callback's
            self.save()
            raise
        finally:
            guard.restore()
            self.evaluator = evaluator
            if bar is not None:
                bar.close()
        norm = ObsNormalizer.from_state(self.normalizer.state) if self.method.normalize else None
        loaded = LoadedPolicy(policy=self.policy, params=self.params.copy(), normalizer=norm,
                              metadata=self._policy_metadata(self.last_eval))
        final = {**last_values(self.history, SCHEMA), EVAL_KEY: self.last_eval}
        return TrainResult(params=self.params.copy(), iteration=self.iteration, evaluations=self.episodes,
                           env_steps=self.env_steps, final=final, history=list(self.history),
                           message=message, checkpoint=self.last_checkpoint, policy=loaded)

    def close(self) -> None:
        """Close the log files and the evaluator (if the trainer built it)."""
        if self._log is not None:
            self._log.close()
            self._log = None
        unlock_run_dir(self._lock_fd)
        self._lock_fd = None
        if self._own_evaluator and self.evaluator is not None:
            self.evaluator.close()
            self.evaluator = None

    def __enter__(self) -> Trainer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def train(config: TrainConfig, **kw: Any) -> TrainResult:
    """Build a :class:`Trainer`, run it, close it."""
    with Trainer(config, **kw) as trainer:
        return trainer.run()
