"""Env steps/s: raw ``mujoco.mj_step``, a gymnasium ``env.step`` loop, and dfo's batched lean rollouts.

For each task and each process count (joblib loky), every worker runs about ``--steps``
env steps in each mode, and we report total steps / wall seconds:

* ``raw``:  ``mujoco.mj_step(model, data, nstep=frame_skip)`` on the env's own model with
  random controls drawn in one vectorized call beforehand (reset every ``horizon``
  steps): the simulator ceiling.
* ``gym``:  the textbook loop a user writes: normalize the observation, linear policy,
  clip, ``env.step`` (gymnasium's wrappers), one episode at a time.
* ``dfo``:  ``policies.rollout.run_episodes`` on the per-process lean stepper
  (``envs.get_stepper``): ``--batch`` perturbed linear policies side by side, one
  stacked matrix product per step for all their actions, one ``mj_step`` per slot. This
  is what a training worker runs (HalfCheetah's N = 32 directions give 64 episodes per
  iteration, 16 per group on 2 workers).

Policies are ``0.05 * N(0, 1)`` matrices with an ARS normalizer from random statistics.
The pool is warmed up (workers started, envs built) before timing; each cell is the
best of ``--repeats`` runs, and the modes are interleaved within each repeat, so a
burst of load from elsewhere hits all modes alike. Ratios: ``dfo/raw`` at the same
process count, and ``dfo Np / (N x raw 1p)`` (the issue's "cores x raw rate" target).
Steps per CPU-second of a worker process (``time.process_time``), dfo over raw, is less
sensitive to other load on the machine (it still shares caches). The last column is the
share of each mode's time spent inside the simulator (``mj_step`` and, where gymnasium
calls it, ``mj_rnePostConstraint``; timed call by call, 1 process): it
compares the code around the simulator on the *same* trajectories, whereas the raw
rate drives other states (random controls) than a policy does, and ``mj_step``'s cost
depends on the state (contacts, joint limits).

Usage (from the repo root, on a quiet machine):
    PYTHONPATH=. python bench/throughput.py [--envs HalfCheetah-v5 Hopper-v5 Swimmer-v5 Ant-v5]
        [--steps 20000] [--repeats 3] [--jobs 1 2] [--batch 16]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
from joblib import Parallel, delayed

MODES = ("raw", "gym", "dfo")
TASKS = ("HalfCheetah-v5", "Hopper-v5", "Swimmer-v5", "Ant-v5")


def _policy(env_id: str, rng: np.random.Generator, batch: int):
    from envs import get_stepper
    from policies import LinearPolicy, ObsNormalizer, RunningStat

    st = get_stepper(env_id)
    pol = LinearPolicy(st.obs_dim, st.act_dim)
    params = 0.05 * rng.standard_normal((batch, pol.n_params))
    norm = ObsNormalizer(pol.obs_dim)
    norm.update(RunningStat.from_batch(rng.standard_normal((10, pol.obs_dim))))
    return st, pol, params, norm.refresh()


def _work(env_id: str, mode: str, n_steps: int, seed: int, batch: int) -> tuple[int, float]:
    """Run about ``n_steps`` env steps in this worker; returns the number run and this process's CPU seconds."""
    t0 = time.process_time()
    steps = _steps(env_id, mode, n_steps, seed, batch)
    return steps, time.process_time() - t0


def _sim_share(env_id: str, mode: str, n_steps: int, seed: int, batch: int) -> float:
    """Fraction of the wall time of a run spent inside the simulator, timed call by call:
    ``mj_step`` and ``mj_rnePostConstraint`` (which gymnasium runs after every step, and the
    lean path for the tasks that read contact forces)."""
    import mujoco

    names = ("mj_step", "mj_rnePostConstraint")
    real, spent = {n: getattr(mujoco, n) for n in names}, [0.0]

    def timed(fn):
        def call(*args, **kw):
            t = time.perf_counter()
            fn(*args, **kw)
            spent[0] += time.perf_counter() - t
        return call

    for n in names:
        setattr(mujoco, n, timed(real[n]))
    try:
        t0 = time.perf_counter()
        _steps(env_id, mode, n_steps, seed, batch)
        return spent[0] / (time.perf_counter() - t0)
    finally:
        for n in names:
            setattr(mujoco, n, real[n])


def _steps(env_id: str, mode: str, n_steps: int, seed: int, batch: int) -> int:
    import mujoco

    from envs import get_env, get_preset
    from policies.rollout import run_episodes

    env = get_env(env_id)
    horizon = get_preset(env_id).horizon
    rng = np.random.default_rng(seed)
    if mode == "raw":
        u = env.unwrapped
        low, high = env.action_space.low, env.action_space.high
        controls = rng.uniform(low, high, size=(n_steps, low.size))  # a per-step draw costs more than mj_step
        for t in range(n_steps):
            if t % horizon == 0:
                env.reset(seed=seed + t)
            u.data.ctrl[:] = controls[t]
            mujoco.mj_step(u.model, u.data, nstep=u.frame_skip)
        return n_steps
    st, pol, params, snap = _policy(env_id, rng, batch)
    done = ep = 0
    if mode == "gym":
        m = params[0].reshape(pol.act_dim, pol.obs_dim)
        low, high = st.low, st.high
        while done < n_steps:
            obs, _ = env.reset(seed=seed + ep)
            ep += 1
            for _ in range(min(horizon, n_steps - done)):
                a = np.minimum(np.maximum(m @ snap.normalize(obs), low), high)
                obs, _, term, trunc, _ = env.step(a)
                done += 1
                if term or trunc:
                    break
        return done
    while done < n_steps:
        seeds = list(range(seed + ep, seed + ep + batch))
        ep += batch
        outs = run_episodes(st, pol, params, seeds, normalizer_state=snap, horizon=horizon)
        done += sum(o.steps for o in outs)
    return done


def overhead_us(env_id: str, width: int, repeats: int) -> float:
    """CPU microseconds per env step that dfo's batched loop spends *around* the simulator:
    the same episodes with ``mj_step``/``mj_rnePostConstraint`` replaced by no-ops (best of
    ``repeats``, ``time.process_time``, so other load on the machine hardly matters)."""
    import mujoco

    from policies.rollout import run_episodes

    st, pol, params, snap = _policy(env_id, np.random.default_rng(0), width)
    horizon = 1000
    saved = mujoco.mj_step, mujoco.mj_rnePostConstraint
    mujoco.mj_step = mujoco.mj_rnePostConstraint = lambda *a, **k: None
    try:
        best = float("inf")
        for _ in range(repeats):
            t0 = time.process_time()
            outs = run_episodes(st, pol, params, list(range(width)), normalizer_state=snap, horizon=horizon)
            best = min(best, (time.process_time() - t0) / sum(o.steps for o in outs) * 1e6)
        return best
    finally:
        mujoco.mj_step, mujoco.mj_rnePostConstraint = saved


def measure(env_ids, jobs, n_steps: int, repeats: int, batch: int):
    """Best wall-clock rate per (task, mode, processes), the best steps per worker CPU-second, and
    the best share of time inside ``mj_step`` (1 process)."""
    rates: dict[tuple[str, str, int], float] = {}
    cpu: dict[tuple[str, str], float] = {}
    share: dict[tuple[str, str], float] = {}
    for n_jobs in jobs:
        with Parallel(n_jobs=n_jobs, backend="loky") as par:
            for env_id in env_ids:  # warm-up: start workers, build and cache envs and steppers
                par(delayed(_work)(env_id, m, 200, 0, batch) for m in MODES for _ in range(n_jobs))
            for r in range(repeats):
                for env_id in env_ids:
                    for mode in MODES:
                        t0 = time.perf_counter()
                        out = par(delayed(_work)(env_id, mode, n_steps, 1000 * r + 100 * j, batch)
                                  for j in range(n_jobs))
                        rate = sum(s for s, _ in out) / (time.perf_counter() - t0)
                        rates[env_id, mode, n_jobs] = max(rates.get((env_id, mode, n_jobs), 0.0), rate)
                        per_cpu = max(s / c for s, c in out)
                        cpu[env_id, mode] = max(cpu.get((env_id, mode), 0.0), per_cpu)
            if n_jobs == min(jobs):
                for r in range(repeats):
                    for env_id in env_ids:
                        for mode in MODES:
                            f = par(delayed(_sim_share)(env_id, mode, n_steps, 1000 * r, batch) for _ in range(1))[0]
                            share[env_id, mode] = max(share.get((env_id, mode), 0.0), f)
    return rates, cpu, share


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--envs", nargs="+", default=list(TASKS))
    ap.add_argument("--steps", type=int, default=20000, help="env steps per worker per measurement")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--jobs", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--batch", type=int, default=16, help="episodes side by side in a dfo worker")
    ap.add_argument("--overhead-widths", nargs="*", type=int, default=[1, 4, 16, 32, 64],
                    help="also print dfo's CPU time per step around a no-op simulator at these widths")
    args = ap.parse_args()

    if args.overhead_widths:
        print("dfo loop overhead, CPU us per env step with mj_step a no-op (in this process):\n")
        print("| task | " + " | ".join(f"width {w}" for w in args.overhead_widths) + " |")
        print("|" + "---|" * (len(args.overhead_widths) + 1))
        for env_id in args.envs:
            cells = [f"{overhead_us(env_id, w, args.repeats):.2f}" for w in args.overhead_widths]
            print(f"| {env_id} | " + " | ".join(cells) + " |")
        print()

    rates, cpu, share = measure(args.envs, args.jobs, args.steps, args.repeats, args.batch)
    j1, jn = min(args.jobs), max(args.jobs)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
          f"load average {load:.2f} at the end; {args.steps} steps/worker, best of {args.repeats}, "
          f"dfo batch {args.batch}\n")
    head = ["task"]
    for j in args.jobs:
        head += [f"raw {j}p", f"gym {j}p", f"dfo {j}p", f"gym/raw {j}p", f"dfo/raw {j}p"]
    head += [f"dfo {jn}p/({jn}x raw {j1}p)", f"dfo/gym {j1}p", "dfo/raw per CPU-s",
             "in simulator: raw / gym / dfo"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for env_id in args.envs:
        row = [env_id]
        for j in args.jobs:
            raw, g, d = (rates[env_id, m, j] for m in MODES)
            row += [f"{raw:,.0f}", f"{g:,.0f}", f"{d:,.0f}", f"{g / raw:.2f}", f"{d / raw:.2f}"]
        row += [f"{rates[env_id, 'dfo', jn] / (jn * rates[env_id, 'raw', j1]):.2f}",
                f"{rates[env_id, 'dfo', j1] / rates[env_id, 'gym', j1]:.2f}x",
                f"{cpu[env_id, 'dfo'] / cpu[env_id, 'raw']:.2f}",
                " / ".join(f"{share[env_id, m]:.2f}" for m in MODES)]
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
