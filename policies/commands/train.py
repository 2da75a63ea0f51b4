"""``dfo train ENV_ID``: policy search on a gymnasium MuJoCo task (see docs/rl.md).

Example:
    $ dfo train Swimmer-v5 --episodes 2000            # ARS V2-t, all cores
    $ dfo train Hopper-v5 --method orthogonal --seed 1 --out runs/hop1
    $ dfo train --resume runs/hop1                   # continue after Ctrl-C
    $ dfo train Hopper-v5 --backend dask --scheduler tcp://10.0.0.1:8786
    $ dfo train Hopper-v5 --step adam                # Adam on the ARS estimate (lr = alpha)
    $ dfo train Hopper-v5 --method interpolation --direction lbfgs   # L-BFGS + line search
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from dfo.configcli import add_config_arguments, add_config_file_argument, given_fields, read_config_file
from dfo.policies.methods import METHODS
from dfo.policies.training.config import (
    BACKEND_CHOICES,
    DIRECTION_CHOICES,
    POLICY_KINDS,
    STEP_CHOICES,
    TrainConfig,
)

DEFAULT_ENV = "Swimmer-v5"


#: TrainConfig fields whose flag is not ``--field-name`` (kept from earlier releases)
FLAG_NAMES = {"n_eval_episodes": "--eval-episodes", "imports": "--import"}
#: ``run_id`` is written into a run's config.json beside the TrainConfig fields
RUN_KEYS = ("run_id",)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Positional ENV_ID, the run-folder flags, and one flag per :class:`TrainConfig` field (generated)."""
    parser.add_argument("env_id", nargs="?", default=None,
                        help=f"gymnasium env id (default {DEFAULT_ENV}; taken from the run "
                             "when resuming, or from --config)")
    parser.add_argument("--out", default=None, help="run directory (default runs/ENV_METHOD_sSEED)")
    parser.add_argument("--resume", default=None, metavar="DIR", help="continue a run from its newest checkpoint")
    parser.add_argument("--overwrite", action="store_true",
                        help="clear the run files in a non-empty --out first (refused if it holds other files)")
    add_config_file_argument(parser, "a run's config.json reruns that run")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_arguments(
        parser, TrainConfig, skip=("env_id",), flags=FLAG_NAMES, repeatable=("imports",), metavars={"imports": "MODULE"},
        choices={"method": list(METHODS), "backend": BACKEND_CHOICES, "policy": POLICY_KINDS,
                 "step": STEP_CHOICES, "direction": DIRECTION_CHOICES},
        group_title="training settings (TrainConfig; unset ones come from the task preset)",
    )


def _given(args: argparse.Namespace) -> dict:
    """Settings from ``--config FILE`` (if any), overridden by the flags given on the command line."""
    given = read_config_file(args.config, TrainConfig, ignore=RUN_KEYS) if args.config else {}
    given.update(given_fields(args, TrainConfig, skip=("env_id",)))
    if args.env_id is not None:
        given["env_id"] = args.env_id
    return given


def _default_out(cfg: TrainConfig) -> Path:
    cfg = cfg.resolved()  # the method may come from the task preset
    base = Path("runs") / f"{cfg.env_id}_{cfg.method}_s{cfg.seed}"
    out, k = base, 1
    while out.exists():
        k += 1
        out = base.with_name(f"{base.name}_{k}")
    return out


def _undo_prepare(out: Path, before: set[str] | None) -> None:
    """Take back what preparing ``out`` wrote (its manifest and lock) when the run then failed to start.

    Only the entries that were not there before are removed, and the folder itself only when this
    command created it and nothing else is in it; nothing of the user's is ever touched.
    """
    from dfo.run import LOCK, MANIFEST

    for name in (MANIFEST, LOCK):
        path = out / name
        if (before is None or name not in before) and path.is_file() and not path.is_symlink():
            path.unlink()
    if before is None:
        try:
            out.rmdir()  # only if empty
        except OSError:
            pass


def _error(message: str, code: int = 2) -> int:
    print(f"dfo train: error: {message}", file=sys.stderr)
    return code


def run(args: argparse.Namespace) -> int:
    from dfo.envs.presets import PRESETS
    from dfo.policies.checkpoint import CheckpointError
    from dfo.interrupts import Terminated
    from dfo.policies.training.rundir import clear_run_dir, prepare_run_dir
    from dfo.policies.training.trainer import Trainer

    try:
        given = _given(args)
    except ValueError as exc:
        return _error(str(exc))
    env_id = given.pop("env_id", None)
    if given.get("backend") == "dask" and not given.get("scheduler"):
        return _error("--backend dask needs --scheduler tcp://HOST:PORT "
                      "(or use --backend local-dask to start a cluster here)")
    if given.get("scheduler") and given.get("backend") != "dask":
        return _error("--scheduler is only used with --backend dask")
    if args.resume and args.config:
        return _error("--resume DIR continues the run in DIR with its own config.json; it takes no --config")
    if args.resume and (args.overwrite or args.out):
        return _error("--resume DIR continues the run in DIR; it takes no --out or --overwrite")
    try:
        if args.resume:
            trainer = Trainer.resume(args.resume, overrides=given, progress=not args.no_progress)
            if env_id is not None and env_id != trainer.config.env_id:
                trainer.close()
                raise ValueError(f"--resume run is for {trainer.config.env_id}, not {env_id}")
            print(f"resuming {trainer.out_dir} at iteration {trainer.iteration} "
                  f"({trainer.episodes} episodes)", file=sys.stderr)
        else:
            cfg = TrainConfig(env_id=env_id or DEFAULT_ENV, **given)
            cfg.resolved()  # the env id, its preset and the settings are checked before the folder is touched
            out = Path(args.out) if args.out else _default_out(cfg)
            before = set(os.listdir(out)) if out.is_dir() else None
            if args.overwrite:
                clear_run_dir(out)
            prepare_run_dir(out, resume=False)  # before any work: writable, no links, empty
            try:
                trainer = Trainer(cfg, out_dir=out, progress=not args.no_progress)
            except BaseException:
                _undo_prepare(out, before)
                raise
    except (ValueError, TypeError, CheckpointError, ImportError, OSError) as exc:
        return _error(str(exc))
    cfg = trainer.config
    print(f"dfo train {cfg.env_id} method={cfg.method} episodes={cfg.episodes} N={cfg.n_directions} "
          f"b={cfg.top_b} alpha={cfg.step_size} nu={cfg.noise} step={cfg.step} direction={cfg.direction} "
          f"horizon={cfg.horizon} policy={cfg.policy}"
          + (f"{list(cfg.hidden)} " if cfg.policy == "mlp" else " ")
          + f"backend={cfg.backend} n_jobs={cfg.n_jobs} -> {trainer.out_dir}", file=sys.stderr)
    if not args.resume and cfg.env_id not in PRESETS:
        print(f"note: {cfg.env_id} has no tuned preset; settings not given come from the generic rule "
              f"(docs/rl.md). If the return plateaus, try --policy mlp (a linear policy cannot swing up "
              f"Pendulum-v1, for one).", file=sys.stderr)
    try:
        with trainer:
            result = trainer.run()
    except KeyboardInterrupt as exc:
        what = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        print(f"\n{what} after iteration {trainer.iteration}; checkpoint {trainer.last_checkpoint}. "
              f"Continue with: dfo train --resume {trainer.out_dir}", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130
    except (ValueError, CheckpointError, OSError) as exc:  # disk full, run-dir or log problems
        return _error(f"{exc} (last checkpoint: {trainer.last_checkpoint})", 1)
    print(f"{result.message}: {result.iteration} iterations, {result.episodes} episodes, "
          f"{result.env_steps} env steps, eval return {result.eval_return:.2f}; "
          f"checkpoint {result.checkpoint}")
    return 0


__all__ = ["add_arguments", "run"]
