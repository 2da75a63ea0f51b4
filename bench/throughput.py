"""Env steps/s of ``envs.rollout`` (gymnasium path and lean path) vs raw ``mujoco.mj_step``.

For each task and each process count (joblib loky), every worker runs ``--steps`` env
steps in one of three modes, and we report total steps / wall seconds:

* ``raw``:  ``mujoco.mj_step(model, data, nstep=frame_skip)`` on the env's own model
  with a fresh random control every step (reset every ``horizon`` steps): the simulator
  ceiling the issue measures against.
* ``gym``:  ``rollout(..., lean=False)``: linear policy + ARS normalizer, ``env.step``.
* ``lean``: ``rollout(..., lean=True)``: same, through ``envs.lean.LeanStepper``.

Envs come from the per-process cache, and the worker pool is warmed up before timing,
so neither env construction nor process start is timed. Each cell is the best of
``--repeats`` runs (the machine is shared; best-of filters interference).

Usage:
    PYTHONPATH=. python bench/throughput.py [--envs HalfCheetah-v5 Swimmer-v5 Hopper-v5]
        [--steps 20000] [--repeats 3] [--jobs 1 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
from joblib import Parallel, delayed

MODES = ("raw", "gym", "lean")


def _work(env_id: str, mode: str, n_steps: int, seed: int) -> int:
    """Run about ``n_steps`` env steps in this worker; returns the exact number run."""
    import mujoco

    from envs import get_env, get_preset
    from policies import LinearPolicy, ObsNormalizer, RunningStat
    from policies.rollout import rollout

    env = get_env(env_id)
    horizon = get_preset(env_id).horizon
    rng = np.random.default_rng(seed)
    if mode == "raw":
        u = env.unwrapped
        env.reset(seed=seed)
        low, high = env.action_space.low, env.action_space.high
        # one vectorized draw: a per-step rng.uniform(low, high) costs ~25 µs, more than mj_step
        controls = rng.uniform(low, high, size=(n_steps, low.size))
        for t in range(n_steps):
            if t % horizon == 0:
                env.reset(seed=seed + t)
            u.data.ctrl[:] = controls[t]
            mujoco.mj_step(u.model, u.data, nstep=u.frame_skip)
        return n_steps
    pol = LinearPolicy(env.observation_space.shape[0], env.action_space.shape[0])
    params = 0.05 * rng.standard_normal(pol.n_params)
    norm = ObsNormalizer(pol.obs_dim)
    norm.update(RunningStat.from_batch(rng.standard_normal((10, pol.obs_dim))))
    snap = norm.refresh()
    done, ep = 0, 0
    while done < n_steps:
        res = rollout(env, pol, params, normalizer_state=snap, seed=seed + ep, horizon=min(horizon, n_steps - done),
                      lean=(mode == "lean"))
        done += res.steps
        ep += 1
    return done


def measure(env_id: str, mode: str, n_jobs: int, n_steps: int, repeats: int, par: Parallel) -> float:
    best = 0.0
    for r in range(repeats):
        t0 = time.perf_counter()
        steps = sum(par(delayed(_work)(env_id, mode, n_steps, 1000 * r + j) for j in range(n_jobs)))
        best = max(best, steps / (time.perf_counter() - t0))
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--envs", nargs="+", default=["HalfCheetah-v5", "Swimmer-v5", "Hopper-v5"])
    ap.add_argument("--steps", type=int, default=20000, help="env steps per worker per measurement")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--jobs", nargs="+", type=int, default=[1, 2])
    args = ap.parse_args()

    rates: dict[tuple[str, str, int], float] = {}
    for n_jobs in args.jobs:
        with Parallel(n_jobs=n_jobs, backend="loky") as par:
            for env_id in args.envs:  # warm-up: start workers, build and cache envs
                par(delayed(_work)(env_id, m, 200, 0) for m in MODES for _ in range(n_jobs))
            for env_id in args.envs:
                for mode in MODES:
                    rates[env_id, mode, n_jobs] = measure(env_id, mode, n_jobs, args.steps, args.repeats, par)

    j1, jn = min(args.jobs), max(args.jobs)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs; "
          f"{args.steps} steps/worker, best of {args.repeats}\n")
    head = ["task"]
    for j in args.jobs:
        head += [f"raw {j}p", f"gym {j}p", f"lean {j}p", f"gym/raw {j}p", f"lean/raw {j}p"]
    head += [f"lean/({jn}x raw 1p)", f"speed-up lean {j1}->{jn}p", f"lean/gym {j1}p"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for env_id in args.envs:
        row = [env_id]
        for j in args.jobs:
            raw, g, le = (rates[env_id, m, j] for m in MODES)
            row += [f"{raw:,.0f}", f"{g:,.0f}", f"{le:,.0f}", f"{g / raw:.2f}", f"{le / raw:.2f}"]
        row += [
            f"{rates[env_id, 'lean', jn] / (jn * rates[env_id, 'raw', j1]):.2f}",
            f"{rates[env_id, 'lean', jn] / rates[env_id, 'lean', j1]:.2f}x",
            f"{rates[env_id, 'lean', j1] / rates[env_id, 'gym', j1]:.2f}x",
        ]
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
