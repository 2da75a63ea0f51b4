"""``dfo evaluate CHECKPOINT``: mean and std of the true return of a saved policy.

CHECKPOINT is a run directory (its newest checkpoint), a checkpoint directory, or a
policy stem saved with ``dfo.policies.save_policy`` (env id taken from its metadata).

Example:
    $ dfo evaluate runs/Swimmer-v5_ars-v2t_s0 --episodes 100
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dfo.configcli import add_config_arguments, given_fields

GL_HELP = ("offscreen rendering needs EGL or OSMesa: install e.g. `apt-get install libegl1` (EGL) or "
           "`apt-get install libosmesa6` (OSMesa) and set MUJOCO_GL=egl or MUJOCO_GL=osmesa")


@dataclass(frozen=True, kw_only=True)
class EvaluateConfig:
    """Settings of ``dfo evaluate`` (its flags are generated from this class by :mod:`dfo.configcli`).

    Attributes:
        episodes: evaluation episodes (>= 1).
        seed: seed of the episode seeds.
        horizon: episode cap (``None`` = the run's horizon).
        env: env id (``None`` = from the checkpoint).
        n_jobs: parallel workers.
        env_kwargs: keyword arguments for gymnasium.make, a JSON object (``None`` = the run's own).
        imports: modules imported first, in this process and every worker (e.g. one that registers
            a custom env); named here only, never read from the checkpoint.
    """

    episodes: int = 100
    seed: int = 0
    horizon: int | None = None
    env: str | None = None
    n_jobs: int = 1
    env_kwargs: dict | None = None
    imports: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise ValueError(f"--episodes must be >= 1, got {self.episodes}")
        if self.horizon is not None and self.horizon < 1:
            raise ValueError(f"--horizon must be >= 1, got {self.horizon}")
        if self.n_jobs < 1 and self.n_jobs != -1:
            raise ValueError(f"--n-jobs must be >= 1 or -1 (all cores), got {self.n_jobs}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="run directory, checkpoint directory or policy file")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    add_config_arguments(parser, EvaluateConfig, flags={"imports": "--import"}, repeatable=("imports",),
                         metavars={"imports": "MODULE"}, group_title="evaluation settings (EvaluateConfig)")


def load(checkpoint: str | Path):
    """The ``LoadedPolicy`` of a run/checkpoint directory or policy stem.

    A checkpoint directory is verified against its manifest first.
    """
    from dfo.policies.checkpoint import MANIFEST, CheckpointError, resolve_checkpoint, verify_checkpoint
    from dfo.policies.serialization import load_policy

    p = Path(checkpoint)
    stem = p if p.suffix in (".npz", ".json") or (p.parent / f"{p.name}.json").exists() else None
    if stem is None:
        stem = resolve_checkpoint(p) / "policy"
    if (stem.parent / MANIFEST).exists() or (stem.parent / "state.json").exists():
        verify_checkpoint(stem.parent)
    try:
        return load_policy(stem)
    except FileNotFoundError as e:
        raise CheckpointError(str(e)) from None


def import_mujoco(command: str) -> int | None:
    """Import MuJoCo; on failure (usually a MUJOCO_GL that does not work here) print why and return 3."""
    try:
        import mujoco  # noqa: F401  (MUJOCO_GL=egl/osmesa load their GL library at import)
    except Exception as exc:  # ImportError, AttributeError, RuntimeError: depends on the GL backend
        gl = os.environ.get("MUJOCO_GL", "(unset)")
        print(f"dfo {command}: error: MuJoCo cannot start with MUJOCO_GL={gl}: {type(exc).__name__}: {exc}. "
              + ("(`dfo evaluate` renders nothing: unset MUJOCO_GL for it)" if command == "evaluate" else GL_HELP),
              file=sys.stderr)
        return 3
    return None


def check_dims(loaded, env_id: str, env_kwargs: dict | None = None, imports=()) -> None:
    """Raise ``ValueError`` when the env's (flattened) observation/action sizes differ from the policy's."""
    from dfo.envs.make import env_dims

    obs, act = env_dims(env_id, env_kwargs, imports)
    pol = loaded.policy
    if (obs, act) != (pol.obs_dim, pol.act_dim):
        raise ValueError(f"the policy takes {pol.obs_dim} observations and gives {pol.act_dim} actions, "
                         f"but {env_id} has {obs} (flattened) observations and {act} actions")


def evaluate_policy(loaded, env_id: str, *, episodes: int, horizon: int, seed: int = 0, n_jobs: int = 1,
                    env_kwargs: dict | None = None, imports=()):
    """True returns and steps of ``episodes`` episodes of a loaded policy."""
    from dfo.parallel import make_evaluator
    from dfo.policies.objective import RolloutBatch, RolloutSpec, map_episodes

    spec = RolloutSpec(env_id=env_id, policy=loaded.policy.config(), horizon=int(horizon),
                       env_kwargs=dict(env_kwargs or {}), imports=tuple(imports))
    snap = loaded.normalizer.snapshot if loaded.normalizer is not None else None
    batch = RolloutBatch(spec=spec, center=np.asarray(loaded.params), snapshot=snap, training=False)
    seeds = np.random.default_rng([seed, 104729]).integers(0, 2**31 - 1, size=episodes)
    with make_evaluator(None if n_jobs == 1 else n_jobs) as ev:
        outs = map_episodes(ev, batch, [(-1, 0, int(s)) for s in seeds])
    return np.array([o.true_ret for o in outs]), np.array([o.steps for o in outs]), sum(o.nonfinite for o in outs)


def run(args: argparse.Namespace) -> int:
    try:
        cfg = EvaluateConfig(**given_fields(args, EvaluateConfig))
    except ValueError as exc:
        print(f"dfo evaluate: error: {exc}", file=sys.stderr)
        return 2
    if (code := import_mujoco("evaluate")) is not None:
        return code
    from dfo.envs.presets import get_preset
    from dfo.policies.checkpoint import CheckpointError

    try:
        from dfo.envs.ids import import_modules

        import_modules(cfg.imports)  # named on the command line only, never read from the checkpoint
        loaded = load(args.checkpoint)
        env_id = cfg.env or loaded.metadata.get("env_id")
        if not env_id:
            raise ValueError("the checkpoint does not name its env: pass --env ENV_ID")
        env_kwargs = cfg.env_kwargs if cfg.env_kwargs is not None else loaded.metadata.get("env_kwargs") or {}
        check_dims(loaded, env_id, env_kwargs, cfg.imports)
        horizon = cfg.horizon or loaded.metadata.get("horizon") or get_preset(env_id).horizon
        rets, steps, bad = evaluate_policy(loaded, env_id, episodes=cfg.episodes, horizon=horizon,
                                           seed=cfg.seed, n_jobs=cfg.n_jobs, env_kwargs=env_kwargs,
                                           imports=cfg.imports)
    except (ValueError, CheckpointError) as exc:
        print(f"dfo evaluate: error: {exc}", file=sys.stderr)
        return 2
    res = {"env_id": env_id, "episodes": int(rets.size), "mean_return": float(rets.mean()),
           "std_return": float(rets.std()), "min_return": float(rets.min()), "max_return": float(rets.max()),
           "mean_steps": float(steps.mean()), "nonfinite_episodes": int(bad),
           "iteration": loaded.metadata.get("iteration")}
    if args.json:
        print(json.dumps(res))
    else:
        print(f"{env_id}: return {res['mean_return']:.2f} +- {res['std_return']:.2f} over {rets.size} episodes "
              f"(min {res['min_return']:.2f}, max {res['max_return']:.2f}, mean length {res['mean_steps']:.0f})")
    return 0
