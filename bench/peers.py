"""dfo's default training against the peer users pick, SB3-contrib ARS, side by side.

The peer is PyPI ``sb3-contrib``'s ``ARS`` with the settings of rl-zoo3's
``hyperparams/ars.yml`` (read from the installed ``rl_zoo3`` package; its ``-v4`` entries,
the v5 tasks have no entry): its ``policy`` (``LinearPolicy``: no bias, zero init, actions
clipped; ``MlpPolicy`` where the file says so), ``n_delta`` N, ``n_top`` b, ``learning_rate`` α,
``delta_std`` ν, ``alive_bonus_offset`` (ARS's own defaults for keys the entry leaves out), and
``VecNormalize(norm_obs=True, norm_reward=False)`` where the file asks for it. dfo runs
``TrainConfig(env_id=ENV, seed=SEED)`` with nothing else given, i.e. the task preset's
default method and hyperparameters (``envs/presets.py``).

Same protocol for both, one process each on one core (``OMP_NUM_THREADS=1``, torch 1
thread): training runs until ``--budget`` env steps (training steps only); every
``--eval-every`` training env steps the current unperturbed policy is evaluated here, by
one function, on ``--eval-episodes`` episodes of a fresh ``gymnasium.make(ENV)`` with the
same seeds for both (true reward, actions clipped to the bounds, observations normalized
with the run's current statistics, none updated; in a discrete action space dfo acts by the
``argmax`` of its scores, ``dfo.envs.actions``, and SB3 by its own ``predict``). The threshold is
the MuJoCo one of ``tune_presets.THRESHOLDS`` or else gymnasium's ``reward_threshold``
(CartPole-v1 475, Acrobot-v1 -100). Reported per run: the training env
steps at the first evaluation at or above the threshold, the evaluation return at the
budget, and training env steps per second of wall time outside the evaluations.
Wall-clock rates are only comparable when the machine is otherwise idle.

Every finished run is a JSON line in ``--jsonl``; re-running skips what is there.

Usage:
    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/peers.py Swimmer-v5 --seeds 0 1 2 --budget 500000 --jobs 2
    PYTHONPATH=. python bench/peers.py --table
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tune_presets import PAPER_V2T_EPISODES, THRESHOLDS  # noqa: E402  (one home for the paper's numbers)
DEFAULT_JSONL = "bench/results/peers.jsonl"
DEFAULT_TABLE = "bench/results/peers.md"
EVAL_SEED0 = 10_000
EVAL_EVERY = 20_000


def threshold(env_id: str) -> float:
    """The task's threshold: the ARS paper's (``tune_presets.THRESHOLDS``) or gymnasium's ``reward_threshold``."""
    if env_id in THRESHOLDS:
        return THRESHOLDS[env_id]
    import gymnasium as gym

    spec = gym.registry.get(env_id)
    if spec is None or spec.reward_threshold is None:
        raise ValueError(f"{env_id}: no threshold (not a MuJoCo preset and no gymnasium reward_threshold)")
    return float(spec.reward_threshold)


def zoo_settings(env_id: str) -> dict:
    """rl-zoo3's ARS entry for the task (its ``-v4`` key), from the installed package."""
    import rl_zoo3
    import yaml

    path = Path(rl_zoo3.__file__).parent / "hyperparams" / "ars.yml"
    data = yaml.safe_load(path.read_text())
    key = env_id.replace("-v5", "-v4")
    if key not in data:
        raise ValueError(f"rl-zoo3 ars.yml has no entry {key!r}")
    return dict(data[key])


class Evaluator:
    """Mean true return of a deterministic ``act(obs) -> action`` over fixed seeds (Box actions clipped)."""

    def __init__(self, env_id: str, n_episodes: int) -> None:
        import gymnasium as gym

        from dfo.envs.actions import ActionMap

        self.env = gym.make(env_id)
        self.actions = ActionMap.of(self.env.action_space)
        self.seeds = [EVAL_SEED0 + k for k in range(n_episodes)]
        self.wall = 0.0

    def __call__(self, act) -> float:
        t0 = time.perf_counter()
        rets = []
        for s in self.seeds:
            obs, _ = self.env.reset(seed=s)
            ret, done = 0.0, False
            while not done:
                a = act(obs)
                a = int(np.asarray(a).reshape(-1)[0]) if self.actions.discrete else self.actions.clip(a)
                obs, r, term, trunc, _ = self.env.step(a)
                ret += float(r)
                done = term or trunc
            rets.append(ret)
        self.wall += time.perf_counter() - t0
        return float(np.mean(rets))


def _record(peer: str, env_id: str, seed: int, budget: int, curve: list, steps: int, wall: float, ev: Evaluator,
            settings: dict) -> dict:
    thr = threshold(env_id)
    reached = next(((s, e) for s, e, _ in curve if _ >= thr), None)
    train_wall = max(wall - ev.wall, 1e-9)
    return {"peer": peer, "env_id": env_id, "seed": seed, "budget": budget, "threshold": thr,
            "reached_env_steps": None if reached is None else reached[0],
            "reached_episodes": None if reached is None else reached[1],
            "final_eval": curve[-1][2], "best_eval": max(c[2] for c in curve), "env_steps": steps,
            "train_env_steps_per_s": steps / train_wall, "wall_s": round(wall, 1), "eval_wall_s": round(ev.wall, 1),
            "settings": settings, "curve": curve, "load_avg": os.getloadavg()[0]}


def run_sb3(env_id: str, seed: int, budget: int, eval_every: int, eval_episodes: int) -> dict:
    import gymnasium as gym
    import torch
    from sb3_contrib import ARS
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    torch.set_num_threads(1)
    z = zoo_settings(env_id)
    venv = DummyVecEnv([lambda: Monitor(gym.make(env_id))])
    norm = "normalize" in z
    if norm:  # rl-zoo3 writes dict(norm_obs=True, norm_reward=False) for every ARS entry that normalizes
        venv = VecNormalize(venv, norm_obs=True, norm_reward=False)
    given = {k: (int(z[k]) if k.startswith("n_") else float(z[k]))
             for k in ("n_delta", "n_top", "learning_rate", "delta_std", "alive_bonus_offset") if k in z}
    model = ARS(z.get("policy", "LinearPolicy"), venv, **given, seed=seed, verbose=0, device="cpu")
    ev = Evaluator(env_id, eval_episodes)
    curve: list = []

    def act(obs):
        x = venv.normalize_obs(obs) if norm else obs
        a, _ = model.policy.predict(x, deterministic=True)
        return a

    class Cb(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.next_mark = 0
            self.episodes = 0

        def _on_step(self) -> bool:
            return True

        def _on_rollout_start(self) -> None:  # the centre policy, before this update's candidates
            if self.num_timesteps >= self.next_mark:
                curve.append((int(self.num_timesteps), self.episodes, round(ev(act), 2)))
                self.next_mark = (self.num_timesteps // eval_every + 1) * eval_every

        def _on_rollout_end(self) -> None:
            self.episodes += 2 * model.n_delta

    t0 = time.perf_counter()
    cb = Cb()
    model.learn(total_timesteps=budget, callback=cb)
    curve.append((int(model.num_timesteps), cb.episodes, round(ev(act), 2)))
    settings = {k: z[k] for k in ("n_delta", "n_top", "learning_rate", "delta_std", "alive_bonus_offset") if k in z}
    settings["normalize"] = norm
    if z.get("policy", "LinearPolicy") != "LinearPolicy":
        settings["policy"] = z["policy"]
    return _record("sb3-contrib ARS (rl-zoo3)", env_id, seed, budget, curve, int(model.num_timesteps),
                   time.perf_counter() - t0, ev, settings)


def run_dfo(env_id: str, seed: int, budget: int, eval_every: int, eval_episodes: int) -> dict:
    from dfo.policies.normalizer import NormalizerSnapshot
    from dfo.policies.training import TrainConfig, Trainer

    cfg = TrainConfig(env_id=env_id, seed=seed, episodes=10**9, backend="serial", n_eval_episodes=0,
                      checkpoint_every=10**9)
    ev = Evaluator(env_id, eval_episodes)
    curve: list = []
    state = {"next": 0}

    def evaluate(tr) -> float:
        snap = tr.normalizer.snapshot if tr.method.normalize else NormalizerSnapshot.identity(tr.policy.obs_dim)
        amap = ev.actions
        return ev(lambda obs: amap.to_env(amap.clip(tr.policy.act(tr.params, snap.normalize(obs)))))

    t0 = time.perf_counter()
    with Trainer(cfg, out_dir=None) as tr:
        def watch(row: dict) -> None:
            if row["env_steps"] >= state["next"]:
                curve.append((int(row["env_steps"]), int(row["episodes"]), round(evaluate(tr), 2)))
                state["next"] = (row["env_steps"] // eval_every + 1) * eval_every
            if row["env_steps"] >= budget:
                raise StopIteration

        curve.append((0, 0, round(evaluate(tr), 2)))
        state["next"] = eval_every
        tr.callback = watch
        tr.run()
        steps = tr.env_steps
        settings = _dfo_settings(env_id)
        if curve[-1][0] != steps:
            curve.append((int(steps), int(tr.episodes), round(evaluate(tr), 2)))
    return _record("dfo default", env_id, seed, budget, curve, steps, time.perf_counter() - t0, ev, settings)


def _dfo_settings(env_id: str) -> dict:
    from dfo.policies.training import TrainConfig

    rc = TrainConfig(env_id=env_id).resolved()
    return {"method": rc.method, "n_directions": rc.n_directions, "top_b": rc.top_b, "step_size": rc.step_size,
            "noise": rc.noise}


def _one(job: tuple) -> dict:
    peer, env_id, seed, budget, eval_every, eval_episodes = job
    fn = run_sb3 if peer == "sb3" else run_dfo
    return {**fn(env_id, seed, budget, eval_every, eval_episodes), "eval_every": eval_every}


# -- tables --------------------------------------------------------------------------------
def _fmt(v) -> str:
    return "–" if v is None else f"{v:,}"


def _join(rs: list[dict], key: str, spec: str) -> str:
    return ", ".join(format(r[key], spec) for r in rs)


def table(records: list[dict]) -> str:
    groups: dict = {}
    for r in records:
        key = (r["env_id"], r["budget"], r["peer"], json.dumps(r["settings"], sort_keys=True))
        groups.setdefault(key, {})[r["seed"]] = r
    cmds = []
    for (env, budget, peer, _), by_seed in sorted(groups.items()):
        p = "sb3" if peer.startswith("sb3") else "dfo"
        every = next(iter(by_seed.values())).get("eval_every", EVAL_EVERY)
        cmds.append(f"    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/peers.py {env} --peers {p} --seeds "
                    f"{' '.join(str(k) for k in sorted(by_seed))} --budget {budget}"
                    f"{'' if every == EVAL_EVERY else f' --eval-every {every}'} --jobs 1")
    lines = ["# dfo's defaults vs SB3-contrib ARS (rl-zoo3 settings)", "", "Commands (repo root; this file: "
             "`python bench/peers.py --table --plot bench/results/peers.png`):", "", *cmds, "",
             f"Machine: {platform.machine()}, {os.cpu_count()} logical CPUs; each run one process on one core.", "",
             "| task (threshold) | budget (env steps) | peer | settings | seeds | env steps to threshold (per seed) | "
             "median | episodes to threshold (per seed) | median | paper V2-t episodes | eval return at budget "
             "(per seed) | median | train env steps/s (per seed) | load avg at end |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (env, budget, peer, _), by_seed in sorted(groups.items()):
        rs = [by_seed[s] for s in sorted(by_seed)]

        def med(key):
            vals = [r[key] if r[key] is not None else math.inf for r in rs]
            m = float(np.median(vals))
            return f"{m:,.0f}" if math.isfinite(m) else f"> {budget:,}"

        cells_s = ", ".join(_fmt(r["reached_env_steps"]) if r["reached_env_steps"] is not None else f"> {r['env_steps']:,}"
                            for r in rs)
        cells_e = ", ".join(_fmt(r["reached_episodes"]) if r["reached_episodes"] is not None else "–" for r in rs)
        settings = " ".join(f"{k}={v}" for k, v in rs[0]["settings"].items())
        lines.append(
            f"| {env} ({threshold(env):g}) | {budget:,} | {peer} | {settings} | "
            f"{', '.join(str(r['seed']) for r in rs)} | {cells_s} | {med('reached_env_steps')} | {cells_e} | "
            f"{med('reached_episodes')} | {PAPER_V2T_EPISODES.get(env, '–')} | "
            f"{_join(rs, 'final_eval', '.0f')} | {np.median([r['final_eval'] for r in rs]):.0f} | "
            f"{_join(rs, 'train_env_steps_per_s', ',.0f')} | {_join(rs, 'load_avg', '.1f')} |")
    return "\n".join(lines) + "\n"


def plot(records: list[dict], out: str) -> None:
    """Evaluation return against training env steps: one panel per task, one colour per peer in every
    panel; the seeds of a peer are drawn as their IQM with a 95 % bootstrap band (dfo.policies.aggregate: runs
    that ended carry their last evaluation forward) over thin per-seed lines; one legend below the panels."""
    import math

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    from dfo.policies.aggregate import bootstrap_iqm, carry_forward

    colours = {"dfo default": "#1f77b4", "sb3-contrib ARS (rl-zoo3)": "#d62728"}
    envs = sorted({r["env_id"] for r in records})
    ncol = min(3, len(envs))
    nrow = math.ceil(len(envs) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.6 * ncol, 3.6 * nrow + 0.6), squeeze=False)
    handles = {}
    for ax, env in zip(axes.flat, envs):
        for peer in sorted({r["peer"] for r in records if r["env_id"] == env}):
            runs = sorted((r for r in records if r["env_id"] == env and r["peer"] == peer), key=lambda r: r["seed"])
            curves = [(np.array([p[0] for p in r["curve"]], float), np.array([p[2] for p in r["curve"]], float))
                      for r in runs]
            colour = colours.get(peer, "#7f7f7f")
            for xs, ys in curves:
                ax.plot(xs, ys, color=colour, alpha=0.3, lw=0.6)
            grid, values = carry_forward(curves)
            mid, lo, hi = bootstrap_iqm(values)
            (line,) = ax.plot(grid, mid, color=colour, lw=1.8)
            ax.fill_between(grid, lo, hi, color=colour, alpha=0.18, lw=0)
            handles.setdefault(f"{peer}: IQM of {len(runs)} seeds, 95% bootstrap CI", line)
        thr = ax.axhline(threshold(env), color="k", ls="--", lw=0.8)
        handles.setdefault("threshold", thr)
        ax.set_title(env, fontsize=10)
        ax.xaxis.set_major_formatter(matplotlib.ticker.EngFormatter(sep=""))  # 500k, 1.5M
        ax.set_xlabel("training env steps")
        ax.set_ylabel("evaluation return")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(envs):]:
        ax.set_visible(False)
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=min(3, len(handles)),
               fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.07 if nrow > 1 else 0.12, 1, 1))
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("env_ids", nargs="*", help=f"tasks ({', '.join(THRESHOLDS)}, or any with a gymnasium "
                    "reward_threshold and an rl-zoo3 ARS entry, e.g. CartPole-v1, Acrobot-v1)")
    ap.add_argument("--peers", nargs="+", default=["dfo", "sb3"], choices=["dfo", "sb3"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--budget", type=int, default=500_000, help="training env steps per run")
    ap.add_argument("--eval-every", type=int, default=EVAL_EVERY, help="training env steps between evaluations")
    ap.add_argument("--eval-episodes", type=int, default=5)
    ap.add_argument("--jobs", type=int, default=1, help="runs at once (separate processes)")
    ap.add_argument("--jsonl", default=DEFAULT_JSONL)
    ap.add_argument("--table", nargs="?", const=DEFAULT_TABLE, default=None,
                    help="write the markdown table (default path %(const)s) from the JSON lines and exit")
    ap.add_argument("--plot", default=None, help="with --table: also draw the learning curves to this .png")
    args = ap.parse_args()
    path = Path(args.jsonl)
    records = [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []
    if args.table:
        Path(args.table).write_text(table(records))
        print(table(records))
        if args.plot:
            plot(records, args.plot)
        return
    if not args.env_ids:
        sys.exit(f"peers: give tasks, e.g. {', '.join(THRESHOLDS)}")
    for e in args.env_ids:
        try:
            threshold(e)
            zoo_settings(e)
        except ValueError as exc:
            sys.exit(f"peers: {exc}")
    done = {(r["peer"].split()[0].lower().replace("sb3-contrib", "sb3"), r["env_id"], r["seed"], r["budget"])
            for r in records if r["peer"].startswith("sb3") or r["settings"] == _dfo_settings(r["env_id"])}
    jobs = [(p, e, s, args.budget, args.eval_every, args.eval_episodes) for e in args.env_ids for s in args.seeds
            for p in args.peers if (p, e, s, args.budget) not in done]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        for r in pool.map(_one, jobs):
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a") as f:
                f.write(json.dumps(r) + "\n")
            print(f"{r['peer']} {r['env_id']} seed {r['seed']}: reached at {r['reached_env_steps']} steps, "
                  f"final {r['final_eval']:.1f}, {r['train_env_steps_per_s']:.0f} steps/s", flush=True)


if __name__ == "__main__":
    main()
