"""``dfo evaluate CHECKPOINT``: mean and std of the true return of a saved policy.

CHECKPOINT is a run directory (its newest checkpoint), a checkpoint directory, or a
policy stem saved with ``policies.save_policy`` (env id taken from its metadata).

Example:
    $ dfo evaluate runs/Swimmer-v5_ars-v2t_s0 --episodes 100
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

GL_HELP = ("offscreen rendering needs EGL or OSMesa: install e.g. `apt-get install libegl1` (EGL) or "
           "`apt-get install libosmesa6` (OSMesa) and set MUJOCO_GL=egl or MUJOCO_GL=osmesa")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="run directory, checkpoint directory or policy file")
    parser.add_argument("--episodes", type=int, default=100, help="evaluation episodes (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the episode seeds (default 0)")
    parser.add_argument("--horizon", type=int, default=None, help="episode cap (default: the run's horizon)")
    parser.add_argument("--env", default=None, help="env id (default: from the checkpoint)")
    parser.add_argument("--n-jobs", type=int, default=1, help="parallel workers (default 1)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    from policies.commands.train import add_env_arguments

    add_env_arguments(parser)


def load(checkpoint: str | Path):
    """The ``LoadedPolicy`` of a run/checkpoint directory or policy stem.

    A checkpoint directory is verified against its manifest first.
    """
    from policies.checkpoint import MANIFEST, CheckpointError, resolve_checkpoint, verify_checkpoint
    from policies.serialization import load_policy

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
    from envs.make import env_dims

    obs, act = env_dims(env_id, env_kwargs, imports)
    pol = loaded.policy
    if (obs, act) != (pol.obs_dim, pol.act_dim):
        raise ValueError(f"the policy takes {pol.obs_dim} observations and gives {pol.act_dim} actions, "
                         f"but {env_id} has {obs} (flattened) observations and {act} actions")


def evaluate_policy(loaded, env_id: str, *, episodes: int, horizon: int, seed: int = 0, n_jobs: int = 1,
                    env_kwargs: dict | None = None, imports=()):
    """True returns and steps of ``episodes`` episodes of a loaded policy."""
    from dfo.parallel import make_evaluator
    from policies.objective import RolloutBatch, RolloutSpec, map_episodes

    spec = RolloutSpec(env_id=env_id, policy=loaded.policy.config(), horizon=int(horizon),
                       env_kwargs=dict(env_kwargs or {}), imports=tuple(imports))
    snap = loaded.normalizer.snapshot if loaded.normalizer is not None else None
    batch = RolloutBatch(spec=spec, center=np.asarray(loaded.params), snapshot=snap, training=False)
    seeds = np.random.default_rng([seed, 104729]).integers(0, 2**31 - 1, size=episodes)
    with make_evaluator(None if n_jobs == 1 else n_jobs) as ev:
        outs = map_episodes(ev, batch, [(-1, 0, int(s)) for s in seeds])
    return np.array([o.true_ret for o in outs]), np.array([o.steps for o in outs]), sum(o.nonfinite for o in outs)


def run(args: argparse.Namespace) -> int:
    if args.episodes < 1:
        print("dfo evaluate: error: --episodes must be >= 1", file=sys.stderr)
        return 2
    if (code := import_mujoco("evaluate")) is not None:
        return code
    from envs.presets import get_preset
    from policies.checkpoint import CheckpointError

    try:
        from envs.make import import_modules

        imports = tuple(args.imports or ())
        import_modules(imports)  # named on the command line only, never read from the checkpoint
        loaded = load(args.checkpoint)
        env_id = args.env or loaded.metadata.get("env_id")
        if not env_id:
            raise ValueError("the checkpoint does not name its env: pass --env ENV_ID")
        env_kwargs = args.env_kwargs if args.env_kwargs is not None else loaded.metadata.get("env_kwargs") or {}
        check_dims(loaded, env_id, env_kwargs, imports)
        horizon = args.horizon or loaded.metadata.get("horizon") or get_preset(env_id).horizon
        rets, steps, bad = evaluate_policy(loaded, env_id, episodes=args.episodes, horizon=horizon,
                                           seed=args.seed, n_jobs=args.n_jobs, env_kwargs=env_kwargs,
                                           imports=imports)
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
