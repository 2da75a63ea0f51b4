"""Env steps/s: raw ``mujoco.mj_step``, a gymnasium ``env.step`` loop, and dfo's batched lean rollouts.

Three tables, in this order.

1. **CPU time per env step in one process** (``time.process_time``; the loops interleaved
   in every repeat, best of ``--cpu-repeats``): hardly moved by other jobs on the machine,
   so it is the figure to trust on a shared machine.

   * ``raw``: the raw loop below (random controls, reset every ``horizon`` steps);
   * ``raw (dfo's trajectories)``: bare ``ctrl`` + ``mj_step(nstep=frame_skip)`` replaying
     the episodes dfo ran (same reset seeds and actions, hence the same states). A policy
     drives other states than random controls, and ``mj_step``'s cost depends on the state
     (joint limits and contacts switch the constraint solver on: Swimmer under the
     bench's policies has ~10x the active constraints of random controls), so this is the
     simulator's own cost of dfo's work, and ``dfo - raw same traj.`` is dfo's overhead;
   * ``dfo``: ``dfo.policies.rollout.run_episodes`` on the lean stepper, ``--batch`` perturbed
     linear policies side by side (what a training worker runs).

2. **dfo's loop overhead** at several widths: the same rollouts with ``mj_step`` (and
   ``mj_rnePostConstraint``) replaced by no-ops, CPU µs per env step.

3. **Wall-clock env steps/s** (joblib loky, 1 and 2 processes; best of ``--repeats``,
   modes interleaved): every worker runs about ``--steps`` env steps in each mode,

   * ``raw``: ``mujoco.mj_step(model, data, nstep=frame_skip)`` on the env's own model with
     random controls drawn in one vectorized call beforehand (reset every ``horizon``
     steps): the simulator ceiling the issue's aim refers to;
   * ``gym``: the textbook loop a user writes: normalize the observation, linear policy,
     clip, ``env.step`` (gymnasium's wrappers), one episode at a time;
   * ``dfo``: as above.

   Ratios: ``dfo/raw`` at the same process count, and ``dfo Np / (N x raw 1p)`` (the
   issue's "cores x raw rate" aim, >= 0.9). ``dfo/raw per CPU-s``: steps per worker
   CPU-second. ``--sim-share`` adds the share of time inside the simulator (each call timed).

4. **Training rollouts** (``--training``, issue 24 item 3): CPU microseconds per env step of the
   ``run_episodes`` calls a training worker makes (``dfo train``'s path: lean stepper, linear
   policy, frozen normalizer, one call per ARS iteration of ``2 N`` antithetic episodes with the
   preset's N, noise, horizon and survival shift, statistics collected, early terminations)
   against raw ``ctrl`` + ``mj_step(nstep=frame_skip)`` on the *same* episodes, each started from
   its recorded initial state (no reset work in the raw loop), measured in one process,
   interleaved, best of ``--cpu-repeats``. Policies: ``fall`` (centre 0, the snapshot of the
   centre's own episodes: most episodes fall early, as in a first iteration) and ``stand`` (a PD
   centre on raw observations, :data:`STAND_GAINS`: Hopper and Walker2d stand for 1000 steps).
   ``mean width`` is env steps per lockstep iteration (episodes that end early leave the last
   ones of a call to run at a small width).

Policies of tables 1-3 are ``0.05 * N(0, 1)`` matrices with an ARS normalizer from random statistics.
``--append FILE`` inserts all tables as a new dated ``## Run N`` section above the newest
run in FILE (older runs are kept).

Usage (from the repo root, on a quiet machine; ~3 min on 2 cores):
    PYTHONPATH=. python bench/throughput.py --append bench/results/throughput.md
    PYTHONPATH=. python bench/throughput.py --cpu-time    # table 1 (and 2) only, fine on a busy machine
    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 PYTHONPATH=. python bench/throughput.py --training --kinds fall
        # table 4 (TRAIN_TASKS), the trainer's groups; ``--kinds stand --group 32`` for standing policies
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
from joblib import Parallel, delayed

MODES = ("raw", "replay", "gym", "dfo")
SHARE_MODES = ("raw", "gym", "dfo")  # modes --sim-share times
TASKS = ("HalfCheetah-v5", "Hopper-v5", "Swimmer-v5", "Ant-v5")


def _policy(env_id: str, rng: np.random.Generator, batch: int):
    from dfo.envs import get_stepper
    from dfo.policies import LinearPolicy, ObsNormalizer, RunningStat

    st = get_stepper(env_id)
    pol = LinearPolicy(st.obs_dim, st.act_dim)
    params = 0.05 * rng.standard_normal((batch, pol.n_params))
    norm = ObsNormalizer(pol.obs_dim)
    norm.update(RunningStat.from_batch(rng.standard_normal((10, pol.obs_dim))))
    return st, pol, params, norm.refresh()


def _work(env_id: str, mode: str, n_steps: int, seed: int, batch: int, episodes=None) -> tuple[int, float]:
    """Run about ``n_steps`` env steps in this worker (``replay``: the recorded ``episodes``); returns
    the number run and this process's CPU seconds."""
    t0 = time.process_time()
    steps = _replay(env_id, episodes) if mode == "replay" else _steps(env_id, mode, n_steps, seed, batch)
    return steps, time.process_time() - t0


def _replay(env_id: str, episodes) -> int:
    """Bare ``ctrl`` + ``mj_step(nstep=frame_skip)`` replaying recorded ``(reset seed, actions)`` episodes."""
    import mujoco

    from dfo.envs import get_env

    env = get_env(env_id)
    u = env.unwrapped
    m, d, fs = u.model, u.data, u.frame_skip
    n = 0
    for s, actions in episodes:
        env.reset(seed=s)
        for a in actions:
            d.ctrl[:] = a
            mujoco.mj_step(m, d, fs)
        n += len(actions)
    return n


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

    from dfo.envs import get_env, get_preset
    from dfo.policies.rollout import run_episodes

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


def _workload(env_id: str, batch: int, n_steps: int, seed: int):
    """dfo's calls for one CPU-time measurement (the seeds of each ``run_episodes`` call, about
    ``n_steps`` env steps in all) and every episode's reset seed and actions, recorded once on the
    stepper (its ``reset``/``step`` wrapped), so that the raw loop can replay the same trajectories."""
    from dfo.envs import get_preset
    from dfo.policies.rollout import run_episodes

    st, pol, params, snap = _policy(env_id, np.random.default_rng(seed), batch)
    horizon = get_preset(env_id).horizon
    episodes: list[tuple[int, list[np.ndarray]]] = []
    live: dict[int, list[np.ndarray]] = {}
    reset, step = st.reset, st.step

    def rec_reset(slot, s):
        live[slot] = []
        episodes.append((s, live[slot]))
        reset(slot, s)

    def recorder(step):
        def rec_step(slots, actions):
            idx = range(st.width)[slots] if isinstance(slots, slice) else slots.tolist()
            for j, a in zip(idx, actions):
                live[j].append(np.array(a))
            return step(slots, actions)
        return rec_step

    move = st.move

    def rec_move(src, dst):  # the rollout hands a running episode to a freed slot: its actions follow it
        move(src, dst)
        live[dst] = live.pop(src)

    calls, done = [], 0
    advance = getattr(st, "advance", None)  # the lean path's step without the time limit
    st.reset, st.step, st.move = rec_reset, recorder(step), rec_move
    if advance is not None:
        st.advance = recorder(advance)
    try:
        while done < n_steps:
            calls.append(list(range(seed + len(calls) * batch, seed + (len(calls) + 1) * batch)))
            outs = run_episodes(st, pol, params, calls[-1], normalizer_state=snap, horizon=horizon)
            done += sum(o.steps for o in outs)
    finally:
        del st.reset, st.step, st.move  # back to the class's methods
        if advance is not None:
            st.advance = advance
    return (st, pol, params, snap, horizon), calls, [(s, np.array(a)) for s, a in episodes], done


def cpu_time_us(env_id: str, batch: int, n_steps: int, repeats: int) -> dict[str, float]:
    """CPU microseconds per env step in this process (``time.process_time``, best of ``repeats``,
    the three loops interleaved in every repeat, so load from elsewhere hits them alike):

    * ``raw``: the raw loop of the wall-clock table (random controls, reset every horizon);
    * ``replay``: bare ``ctrl`` + ``mj_step(nstep=frame_skip)`` replaying dfo's own episodes
      (same reset seeds, same actions, hence the same states): the simulator's cost on the
      trajectories dfo actually runs;
    * ``dfo``: ``run_episodes`` on those episodes.
    """
    from dfo.policies.rollout import run_episodes

    (st, pol, params, snap, horizon), calls, episodes, done = _workload(env_id, batch, n_steps, 0)

    def dfo() -> float:
        t0 = time.process_time()
        n = sum(sum(o.steps for o in run_episodes(st, pol, params, seeds, normalizer_state=snap, horizon=horizon))
                for seeds in calls)
        assert n == done, (n, done)  # the same episodes as recorded
        return time.process_time() - t0

    best = {"raw": float("inf"), "replay": float("inf"), "dfo": float("inf")}
    for r in range(repeats):
        best["raw"] = min(best["raw"], _work(env_id, "raw", done, 7 * r, batch)[1])
        best["replay"] = min(best["replay"], _work(env_id, "replay", done, 0, batch, episodes)[1])
        best["dfo"] = min(best["dfo"], dfo())
    return {**{k: v / done * 1e6 for k, v in best.items()}, "steps": done}


def overhead_us(env_id: str, width: int, repeats: int) -> float:
    """CPU microseconds per env step that dfo's batched loop spends *around* the simulator:
    the same episodes with ``mj_step``/``mj_rnePostConstraint`` replaced by no-ops (best of
    ``repeats``, ``time.process_time``, so other load on the machine hardly matters)."""
    import mujoco

    from dfo.policies.rollout import run_episodes

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


def measure(env_ids, jobs, n_steps: int, repeats: int, batch: int, sim_share: bool = False):
    """Best wall-clock rate per (task, mode, processes), the best steps per worker CPU-second, and
    (``sim_share``) the best share of time inside ``mj_step`` (1 process)."""
    rates: dict[tuple[str, str, int], float] = {}
    cpu: dict[tuple[str, str], float] = {}
    share: dict[tuple[str, str], float] = {}
    # replay: worker j replays the episodes of dfo's run with seed 100 j (recorded here, sent along)
    episodes = {(env_id, j): _workload(env_id, batch, n_steps, 100 * j)[2]
                for env_id in env_ids for j in range(max(jobs))}
    for n_jobs in jobs:
        with Parallel(n_jobs=n_jobs, backend="loky") as par:
            for env_id in env_ids:  # warm-up: start workers, build and cache envs and steppers
                par(delayed(_work)(env_id, m, 200, 0, batch, episodes[env_id, 0][:1]) for m in MODES
                    for _ in range(n_jobs))
            for r in range(repeats):
                for env_id in env_ids:
                    for mode in MODES:
                        seeds = [100 * j if mode == "replay" else 1000 * r + 100 * j for j in range(n_jobs)]
                        t0 = time.perf_counter()
                        out = par(delayed(_work)(env_id, mode, n_steps, seeds[j], batch,
                                                 episodes[env_id, j] if mode == "replay" else None)
                                  for j in range(n_jobs))
                        rate = sum(s for s, _ in out) / (time.perf_counter() - t0)
                        rates[env_id, mode, n_jobs] = max(rates.get((env_id, mode, n_jobs), 0.0), rate)
                        per_cpu = max(s / c for s, c in out)
                        cpu[env_id, mode] = max(cpu.get((env_id, mode), 0.0), per_cpu)
            if sim_share and n_jobs == min(jobs):
                for r in range(repeats):
                    for env_id in env_ids:
                        for mode in SHARE_MODES:
                            f = par(delayed(_sim_share)(env_id, mode, n_steps, 1000 * r, batch) for _ in range(1))[0]
                            share[env_id, mode] = max(share.get((env_id, mode), 0.0), f)
    return rates, cpu, share


# -- training rollouts against raw mj_step (issue 24 item 3) ---------------------------------

#: the tasks of the training table: the reset-bound big ones and HalfCheetah (never terminates) as control
TRAIN_TASKS = ("Hopper-v5", "Walker2d-v5", "Ant-v5", "Humanoid-v5", "HalfCheetah-v5")
#: PD gains (kp, kd) of the "stand" policy's centre on raw observations: every actuated joint
#: driven to 0 (found by a small grid on 8 episodes; mean length 1000 for Hopper and Walker2d,
#: ~100 for Humanoid; Ant and HalfCheetah never fall anyway)
STAND_GAINS = {"Hopper-v5": (0.5, 0.2), "Walker2d-v5": (2.0, 0.05), "Humanoid-v5": (1.0, 0.05),
               "Ant-v5": (1.0, 0.05), "HalfCheetah-v5": (1.0, 0.05)}


def _stand_matrix(st) -> np.ndarray:
    """``a_i = -kp q_j - kd v_j`` for actuator ``i`` on joint ``j``, on the raw observation
    ``[qpos[skip:], qvel, ...]``."""
    m, env_id = st.model, st.env.spec.id
    kp, kd = STAND_GAINS[env_id]
    skip = getattr(st.task, "skip", 2)  # Humanoid: qpos[2:]
    M = np.zeros((st.act_dim, st.obs_dim))
    for i in range(st.act_dim):
        j = m.actuator_trnid[i, 0]
        M[i, m.jnt_qposadr[j] - skip] = -kp
        M[i, m.nq - skip + m.jnt_dofadr[j]] = -kd
    return M.ravel()


def _train_calls(env_id: str, kind: str, n_steps: int, group: int | None, seed: int):
    """The calls of ``run_episodes`` a training worker makes for about ``n_steps`` env steps.

    Each call is one ARS iteration's group: ``2 N`` antithetic episodes ``centre +- nu delta``
    (the preset's N and nu; ``group`` episodes instead when given, e.g. ``2 N / 4`` for the 4
    groups of 2 workers), the preset's horizon and survival shift, observation statistics
    collected, a frozen normalizer snapshot. ``kind``: ``fall``: centre 0 and the snapshot of
    the centre's own episodes (a first iteration: most episodes fall early); ``stand``: a PD
    centre (:data:`STAND_GAINS`) on raw observations (identity snapshot)."""
    from dfo.envs import get_preset, get_stepper
    from dfo.policies import LinearPolicy, ObsNormalizer
    from dfo.policies.normalizer import NormalizerSnapshot
    from dfo.policies.rollout import run_episodes

    st = get_stepper(env_id)
    pre = get_preset(env_id)
    pol = LinearPolicy(st.obs_dim, st.act_dim)
    rng = np.random.default_rng(seed)
    if kind == "fall":
        centre = np.zeros(pol.n_params)
        outs = run_episodes(st, pol, np.zeros((8, pol.n_params)), list(range(10**6, 10**6 + 8)), horizon=pre.horizon)
        norm = ObsNormalizer(pol.obs_dim)
        norm.update(*[o.obs_stats for o in outs])
        snap = norm.refresh()
    else:
        centre, snap = _stand_matrix(st), NormalizerSnapshot.identity(pol.obs_dim)
    n_dir = pre.n_directions if group is None else max(1, group // 2)
    calls, done, s = [], 0, seed
    while done < n_steps:
        delta = rng.standard_normal((n_dir, pol.n_params))
        params = np.concatenate([centre + pre.noise * delta, centre - pre.noise * delta])
        seeds = list(range(s, s + 2 * n_dir))
        s += 2 * n_dir
        kw = dict(normalizer_state=snap, horizon=pre.horizon, reward_shift=pre.survival_shift)
        calls.append((params, seeds, kw))
        done += sum(o.steps for o in run_episodes(st, pol, params, seeds, **kw))
    return st, pol, calls, done


def _record(st, pol, calls):
    """Every episode of ``calls`` as ``(initial mjSTATE_INTEGRATION row, actions)``: the lean stepper's
    ``reset``/``advance``/``move`` wrapped while the calls run once."""
    from dfo.policies.rollout import run_episodes

    episodes, live, iterations = [], {}, [0]
    reset, advance, move = st.reset, st.advance, st.move

    def rec_reset(slot, seed):
        reset(slot, seed)
        live[slot] = []
        episodes.append((st.task.X[slot].copy(), live[slot]))

    def rec_advance(slots, actions):
        idx = range(slots.start or 0, slots.stop) if isinstance(slots, slice) else slots.tolist()
        for j, a in zip(idx, actions):
            live[j].append(a.copy())
        iterations[0] += 1
        return advance(slots, actions)

    def rec_move(src, dst):
        move(src, dst)
        live[dst] = live.pop(src)

    st.reset, st.advance, st.move = rec_reset, rec_advance, rec_move
    try:
        for params, seeds, kw in calls:
            run_episodes(st, pol, params, seeds, **kw)
    finally:
        del st.reset, st.move  # back to the class's methods
        st.advance = advance
    return [(x0, np.array(a)) for x0, a in episodes], iterations[0]


def _raw_replay(st, episodes) -> int:
    """Bare ``ctrl`` + ``mj_step(nstep=frame_skip)`` on dfo's episodes: each starts from its recorded
    initial state (``mj_setState``, no reset work), so the states, and the simulator's work, are
    those of dfo's run."""
    import mujoco

    from dfo.envs.lean_tasks import _INTEGRATION

    m, fs = st.model, st.task.frame_skip
    d = mujoco.MjData(m)
    setstate, step, n = mujoco.mj_setState, mujoco.mj_step, 0
    for x0, actions in episodes:
        setstate(m, d, x0, _INTEGRATION)
        ctrl = d.ctrl
        for a in actions:
            ctrl[:] = a
            step(m, d, fs)
        n += len(actions)
    return n


def training_us(env_id: str, kind: str, n_steps: int, repeats: int, group: int | None) -> dict:
    """CPU microseconds per env step of a training worker's rollouts (``dfo``) and of raw
    ``mj_step`` on the same episodes (``raw``), measured in one process, interleaved in every
    repeat, best of ``repeats`` (``time.process_time``)."""
    from dfo.policies.rollout import run_episodes

    st, pol, calls, done = _train_calls(env_id, kind, n_steps, group, seed=0)
    episodes, iterations = _record(st, pol, calls)
    assert sum(len(a) for _, a in episodes) == done, "the recording missed steps"

    def dfo() -> float:
        t0 = time.process_time()
        n = sum(sum(o.steps for o in run_episodes(st, pol, params, seeds, **kw)) for params, seeds, kw in calls)
        assert n == done, (n, done)
        return time.process_time() - t0

    def raw() -> float:
        t0 = time.process_time()
        assert _raw_replay(st, episodes) == done
        return time.process_time() - t0

    best = {"raw": float("inf"), "dfo": float("inf")}
    for r in range(repeats):
        order = (("raw", raw), ("dfo", dfo)) if r % 2 == 0 else (("dfo", dfo), ("raw", raw))
        for name, fn in order:
            best[name] = min(best[name], fn())
    return {"raw": best["raw"] / done * 1e6, "dfo": best["dfo"] / done * 1e6, "steps": done,
            "episodes": len(episodes), "group": len(calls[0][1]), "width": done / iterations}


def training_section(env_ids, kinds, n_steps: int, repeats: int, group: int | None) -> list[str]:
    rows = []
    for env_id in env_ids:
        for kind in kinds:
            t = training_us(env_id, kind, n_steps, repeats, group)
            rows.append([env_id, kind, str(t["group"]), f"{t['steps'] / t['episodes']:.0f}", f"{t['width']:.1f}",
                         f"{t['steps']:,}",
                         f"{t['raw']:.1f}", f"{t['dfo']:.1f}", f"{t['raw'] / t['dfo']:.3f}"])
            print("| " + " | ".join(rows[-1]) + " |", flush=True)
    head = ["task", "policy", "episodes per call", "mean episode", "mean width", "env steps", "raw mj_step us/step",
            "dfo us/step", "dfo/raw rate"]
    return [f"Training rollouts, CPU microseconds per env step in one process (time.process_time, best of "
            f"{repeats}, raw and dfo interleaved; calls of run_episodes as one training worker makes them until "
            f">= {n_steps} steps; raw = ctrl + mj_step(nstep=frame_skip) on the same episodes from their "
            f"initial states):", ""] + _table(head, rows) + [""]


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]


def cpu_section(env_ids, batch: int, n_steps: int, repeats: int) -> list[str]:
    """The in-process CPU-time table (see :func:`cpu_time_us`)."""
    rows = []
    for env_id in env_ids:
        t = cpu_time_us(env_id, batch, n_steps, repeats)
        rows.append([env_id, f"{t['steps']:,}", f"{t['raw']:.2f}", f"{t['replay']:.2f}", f"{t['dfo']:.2f}",
                     f"{t['dfo'] - t['replay']:.2f}", f"{t['raw'] / t['dfo']:.3f}", f"{t['replay'] / t['dfo']:.3f}"])
    head = ["task", "env steps", "raw (random ctrl)", "raw (dfo's trajectories)", "dfo batched", "dfo - raw same traj.",
            "dfo/raw rate", "dfo/raw same traj. rate"]
    return [f"CPU microseconds per env step in one process (time.process_time, best of {repeats}, interleaved; "
            f"dfo batch {batch}, calls of {batch} episodes until >= {n_steps} steps):", ""] + _table(head, rows) + [""]


def overhead_section(env_ids, widths, repeats: int) -> list[str]:
    rows = [[env_id] + [f"{overhead_us(env_id, w, repeats):.2f}" for w in widths] for env_id in env_ids]
    return (["dfo loop overhead, CPU us per env step with mj_step a no-op (in this process):", ""]
            + _table(["task"] + [f"width {w}" for w in widths], rows) + [""])


def wall_section(args) -> list[str]:
    rates, cpu, share = measure(args.envs, args.jobs, args.steps, args.repeats, args.batch, args.sim_share)
    j1, jn = min(args.jobs), max(args.jobs)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    head = ["task"]
    for j in args.jobs:
        head += [f"raw {j}p", f"replay {j}p", f"gym {j}p", f"dfo {j}p"]
    head += [f"dfo/raw {j}p" for j in args.jobs]
    head += [f"dfo {jn}p/({jn}x raw {j1}p)", f"dfo {jn}p/({jn}x replay {j1}p)", f"dfo/gym {j1}p",
             "dfo/raw per CPU-s", "dfo/replay per CPU-s"]
    if args.sim_share:
        head.append("in simulator: " + " / ".join(SHARE_MODES))
    rows = []
    for env_id in args.envs:
        row = [env_id]
        for j in args.jobs:
            row += [f"{rates[env_id, m, j]:,.0f}" for m in MODES]
        row += [f"{rates[env_id, 'dfo', j] / rates[env_id, 'raw', j]:.2f}" for j in args.jobs]
        row += [f"{rates[env_id, 'dfo', jn] / (jn * rates[env_id, 'raw', j1]):.2f}",
                f"{rates[env_id, 'dfo', jn] / (jn * rates[env_id, 'replay', j1]):.2f}",
                f"{rates[env_id, 'dfo', j1] / rates[env_id, 'gym', j1]:.2f}x",
                f"{cpu[env_id, 'dfo'] / cpu[env_id, 'raw']:.2f}", f"{cpu[env_id, 'dfo'] / cpu[env_id, 'replay']:.2f}"]
        if args.sim_share:
            row.append(" / ".join(f"{share[env_id, m]:.2f}" for m in SHARE_MODES))
        rows.append(row)
    return ([f"Wall-clock env steps/s summed over processes (load average {load:.2f} at the end; {args.steps} "
             f"steps/worker, best of {args.repeats}, dfo batch {args.batch}):", ""] + _table(head, rows) + [""])


def append_run(path: str, command: str, lines: list[str]) -> str:
    """Insert a new dated ``## Run N`` section above the newest run of ``path`` (nothing is removed)."""
    import datetime
    import re

    text = open(path, encoding="utf-8").read() if os.path.exists(path) else "# Rollout throughput vs raw `mujoco.mj_step`\n\n"
    n = 1 + max((int(k) for k in re.findall(r"^#+ Run (\d+)", text, flags=re.M)), default=0)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    section = "\n".join([f"## Run {n} — {stamp}", "", "    " + command, "",
                          f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
                          f"load average {load:.2f} at the end", ""] + lines) + "\n"
    m = re.search(r"^## ", text, flags=re.M)
    text = text[:m.start()] + section + "\n" + text[m.start():] if m else text.rstrip("\n") + "\n\n" + section
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return f"appended as Run {n} to {path}"


def main() -> None:
    import shlex
    import sys

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--envs", nargs="+", default=list(TASKS))
    ap.add_argument("--steps", type=int, default=10000, help="env steps per worker per measurement")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--jobs", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--batch", type=int, default=16, help="episodes side by side in a dfo worker")
    ap.add_argument("--overhead-widths", nargs="*", type=int, default=[1, 16, 64],
                    help="dfo's CPU time per step around a no-op simulator at these widths (none: skip)")
    ap.add_argument("--cpu-time", action="store_true",
                    help="only the in-process CPU-time table (robust to other load), no wall-clock table")
    ap.add_argument("--cpu-repeats", type=int, default=5, help="repeats of the CPU-time table")
    ap.add_argument("--sim-share", action="store_true",
                    help="also time each mj_step call (1 process) for the share of time inside the simulator")
    ap.add_argument("--training", action="store_true",
                    help="only the training-rollout table (TRAIN_TASKS, falling and standing policies) against raw mj_step")
    ap.add_argument("--kinds", nargs="+", default=["fall", "stand"], choices=["fall", "stand"],
                    help="policies of the training table")
    ap.add_argument("--group", type=int, default=None,
                    help="episodes per run_episodes call in the training table (default: the preset's 2 N)")
    ap.add_argument("--append", metavar="FILE", help="insert the tables as a new dated run section in FILE")
    args = ap.parse_args()

    if args.training:
        envs = args.envs if args.envs != list(TASKS) else list(TRAIN_TASKS)
        lines = training_section(envs, args.kinds, args.steps, args.cpu_repeats, args.group)
        print("\n".join(lines), flush=True)
    else:
        lines = cpu_section(args.envs, args.batch, args.steps, args.cpu_repeats)
        print("\n".join(lines), flush=True)
    if args.overhead_widths and not args.training:
        more = overhead_section(args.envs, args.overhead_widths, args.repeats)
        print("\n".join(more), flush=True)
        lines += more
    if not args.cpu_time and not args.training:
        more = wall_section(args)
        print("\n".join(more), flush=True)
        lines += more
    if args.append:
        command = "PYTHONPATH=. python bench/throughput.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        print(append_run(args.append, command, lines))


if __name__ == "__main__":
    main()
