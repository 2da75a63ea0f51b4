"""Episodes to reach the ARS thresholds, per method and seed, as a markdown table.

Thresholds of Mania, Guy, Recht (2018), Table 1 (their -v1 tasks; we run -v5):
Swimmer 325, Hopper 3120, HalfCheetah 3430. The paper's V2-t counts (average over 3
seeds) are 427, 1973 and 1707 episodes. A run "reaches" the threshold at the first
evaluation (mean true return of the unperturbed policy over ``--eval-episodes``
episodes, not counted in the budget) at or above it; the count is the number of
training episodes used by then. Runs that never reach it within their budget are
reported as "> B".

Each run is one ``Trainer`` on the serial backend; ``--workers`` runs go at once in
separate processes (on a 2-core machine: 2). Every run keeps its ``progress.csv`` under
``--runs-dir`` so the table can be rebuilt with ``--summarize-only``.

``--set KEY=VALUE ...`` changes :class:`TrainConfig` fields (α, ν, N, b, step rule) and
``--method-set KEY=VALUE ...`` registers a variant of the one ``--methods`` entry with changed
:class:`dfo.policies.methods.Method` fields (e.g. ``reuse=4 shrink=0.5``) under ``--label``, which
names the run directories and the table row (variants live in the bench process only, so the
runs are serial). Each ``result.json`` records the settings used.

Usage:
    PYTHONPATH=. python bench/ars_episodes.py --envs Hopper-v5 --methods ars-v2t --seeds 100 101 \
        --budget Hopper-v5=1500 --set noise=0.05 step_size=0.02 --label v2t-nu05a02 --workers 1
    PYTHONPATH=. python bench/ars_episodes.py --envs Swimmer-v5 --methods ars-v2t orthogonal \
        --seeds 0 1 2 --budget Swimmer-v5=1000 --workers 2
    PYTHONPATH=. python bench/ars_episodes.py --summarize-only --out bench/results/ars_episodes.md
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tune_presets import PAPER_V2T_EPISODES as PAPER_V2T, THRESHOLDS  # noqa: E402  (one home for the paper's numbers)


def parse_overrides(pairs: list[str], cls=None, banned=("env_id", "seed", "episodes", "method")) -> dict:
    """``KEY=VALUE`` pairs of ``cls`` fields (default :class:`TrainConfig`; numbers parsed, the rest text)."""
    import dataclasses

    if cls is None:
        from dfo.policies.training import TrainConfig as cls
    fields = {f.name for f in dataclasses.fields(cls)}
    out: dict = {}
    for pair in pairs:
        key, sep, val = pair.partition("=")
        if not sep or key not in fields or key in banned:
            raise SystemExit(f"--set/--method-set: expected KEY=VALUE with KEY a {cls.__name__} field "
                             f"(not {', '.join(banned)}), got {pair!r}")
        for cast in (int, float):
            try:
                out[key] = cast(val)
                break
            except ValueError:
                continue
        else:
            out[key] = val
    return out


def register_variant(method: str, label: str, method_over: dict) -> str:
    """Register ``method`` with changed :class:`Method` fields under ``label`` in this process
    (serial runs only: workers would not know the name); returns the name to train with."""
    import dataclasses

    from dfo.policies.methods import METHODS, get_method

    if not method_over:
        return method
    METHODS[label] = dataclasses.replace(get_method(method), name=label, **method_over)
    return label


def one_run(env_id: str, method: str, seed: int, budget: int, eval_episodes: int, eval_every_episodes: int,
            run_dir: str, overrides: dict | None = None, label: str | None = None,
            method_over: dict | None = None) -> dict:
    from dfo.policies.training import TrainConfig, Trainer

    threshold = THRESHOLDS[env_id]
    over = dict(overrides or {})
    method = register_variant(method, label or method, dict(method_over or {}))
    probe = TrainConfig(env_id=env_id, method=method, **over).resolved()
    per_iter = 2 * probe.n_directions
    eval_every = max(1, round(eval_every_episodes / per_iter))
    cfg = TrainConfig(env_id=env_id, method=method, seed=seed, episodes=budget, backend="serial",
                      n_eval_episodes=eval_episodes, eval_every=eval_every, checkpoint_every=10**9, **over)
    out = Path(run_dir)
    if out.exists():
        shutil.rmtree(out)
    hit: dict = {}

    def stop_at_threshold(row):
        if row["eval_return"] == row["eval_return"] and row["eval_return"] >= threshold:
            hit.update(episodes=row["episodes"])
            raise StopIteration

    t0 = time.perf_counter()
    with Trainer(cfg, out_dir=out, callback=stop_at_threshold) as tr:
        res = tr.run()
    shutil.rmtree(out / "checkpoints", ignore_errors=True)  # keep progress.csv/config.json only
    sps = [h["env_steps_per_s"] for h in res.history[1:] if h.get("env_steps_per_s") == h.get("env_steps_per_s")]
    steps_at = next((h["env_steps"] for h in res.history if h["episodes"] == hit.get("episodes")), None)
    return {"env_id": env_id, "method": method, "label": label or method, "overrides": over,
            "method_fields": dict(method_over or {}),
            "settings": {k: getattr(tr.config, k) for k in ("method", "n_directions", "top_b", "step_size", "noise",
                                                              "step")},
            "seed": seed, "budget": budget, "reached": hit.get("episodes"), "reached_env_steps": steps_at,
            "episodes": res.episodes, "best_eval": max(h["eval_return"] for h in res.history
                                                        if h["eval_return"] == h["eval_return"]),
            "wall_s": time.perf_counter() - t0, "median_env_steps_per_s": float(np.median(sps)) if sps else None}


def raw_rate(env_id: str, n_steps: int = 20000) -> float:
    """Raw simulator steps/s: ``mj_step(model, data, nstep=frame_skip)`` with random controls."""
    import mujoco

    from dfo.envs.cache import get_env

    env = get_env(env_id)
    u = env.unwrapped
    model, data = u.model, u.data
    rng = np.random.default_rng(0)
    ctrl = rng.uniform(-1, 1, size=(1000, model.nu))
    env.reset(seed=0)
    t0 = time.perf_counter()
    for i in range(n_steps):
        data.ctrl[:] = ctrl[i % 1000]
        mujoco.mj_step(model, data, nstep=u.frame_skip)
    return n_steps / (time.perf_counter() - t0)


def throughput(env_id: str, jobs: list[int], iterations: int, horizon: int) -> list[str]:
    """Env steps/s during training (iterations after the first) for each worker count."""
    from dfo.policies.training import TrainConfig, Trainer

    lines = []
    raw = raw_rate(env_id)
    for n_jobs in jobs:
        cfg = TrainConfig(env_id=env_id, method="ars-v2t", episodes=10**9, max_iterations=iterations + 1,
                          horizon=horizon, backend="loky", n_jobs=n_jobs, n_eval_episodes=0,
                          checkpoint_every=10**9)
        with Trainer(cfg) as tr:
            res = tr.run()
        rows = res.history[2:]  # skip row 0 (no training) and iteration 1 (worker start-up)
        steps = rows[-1]["env_steps"] - res.history[1]["env_steps"]
        secs = sum(r["iter_time_s"] for r in rows)
        sps = steps / secs
        lines.append(f"| {env_id} | {n_jobs} | {sps:,.0f} | {raw:,.0f} | {sps / (n_jobs * raw):.2f} |")
    return lines


def summarize(runs_dir: Path) -> str:
    results = [json.loads(p.read_text()) for p in sorted(runs_dir.glob("*/result.json"))]
    lines = ["| task | method | seeds | episodes to threshold (per seed) | median | paper V2-t | best eval (per seed) | "
             "median env steps/s (1 process) |", "|---|---|---|---|---|---|---|---|"]
    groups: dict = {}
    for r in results:
        groups.setdefault((r["env_id"], r.get("label", r["method"])), []).append(r)
    for (env, method), rs in sorted(groups.items()):
        rs.sort(key=lambda r: r["seed"])
        counts = [r["reached"] if r["reached"] is not None else math.inf for r in rs]
        cells = ", ".join(str(c) if math.isfinite(c) else f"> {r['episodes']}" for c, r in zip(counts, rs))
        med = float(np.median(counts))
        med_s = f"{med:.0f}" if math.isfinite(med) else f"not reached (> {int(np.median([r['episodes'] for r in rs]))})"
        best = ", ".join(f"{r['best_eval']:.0f}" for r in rs)
        sps = np.median([r["median_env_steps_per_s"] for r in rs if r["median_env_steps_per_s"]])
        lines.append(f"| {env} ({THRESHOLDS[env]:.0f}) | {method} | {len(rs)} | {cells} | {med_s} | "
                     f"{PAPER_V2T[env]} | {best} | {sps:,.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--envs", nargs="+", default=["Swimmer-v5"])
    ap.add_argument("--methods", nargs="+", default=["ars-v2t", "orthogonal"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--budget", nargs="+", default=[], help="ENV=EPISODES caps (default 1000 each)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="TrainConfig overrides for every run, e.g. step=adam step_size=0.02 n_directions=16")
    ap.add_argument("--method-set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="Method fields to change (a variant registered under --label), e.g. reuse=4 shrink=0")
    ap.add_argument("--label", default=None, help="name of this setting in run dirs and the table "
                    "(default: the method; required with --set and one method)")
    ap.add_argument("--eval-episodes", type=int, default=3)
    ap.add_argument("--eval-every-episodes", type=int, default=20, help="evaluate about every this many episodes")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="runs at once")
    ap.add_argument("--runs-dir", default="bench/results/ars_runs")
    ap.add_argument("--out", default="bench/results/ars_episodes_table.md")
    ap.add_argument("--summarize-only", action="store_true")
    ap.add_argument("--throughput", action="store_true",
                    help="instead: env steps/s during training for --jobs workers vs the raw mj_step rate")
    ap.add_argument("--jobs", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--horizon", type=int, default=1000)
    args = ap.parse_args()
    if args.throughput:
        lines = ["| task | workers | training env steps/s | raw mj_step steps/s (1 process, same moment) | "
                 "training / (workers x raw) |", "|---|---|---|---|---|"]
        for env in args.envs:
            lines += throughput(env, args.jobs, args.iterations, args.horizon)
        print("\n".join(lines))
        return
    runs_dir = Path(args.runs_dir)
    if not args.summarize_only:
        budgets = {e: 1000 for e in args.envs}
        budgets.update({k: int(v) for k, v in (b.split("=") for b in args.budget)})
        over = parse_overrides(args.set)
        from dfo.policies.methods import Method
        method_over = parse_overrides(args.method_set, Method, banned=("name",))
        if (over or method_over or args.label) and (len(args.methods) != 1 or not args.label):
            raise SystemExit("--set/--label need exactly one --methods entry and a --label")
        jobs = [(e, m, s) for e in args.envs for s in args.seeds for m in args.methods]
        name = {m: args.label or m for m in args.methods}
        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            futs = {pool.submit(one_run, e, m, s, budgets[e], args.eval_episodes, args.eval_every_episodes,
                                str(runs_dir / f"{e}_{name[m]}_s{s}"), over, name[m], method_over): (e, m, s) for e, m, s in jobs}
            for fut, (e, m, s) in futs.items():
                r = fut.result()
                (runs_dir / f"{e}_{name[m]}_s{s}" / "result.json").write_text(json.dumps(r, indent=1))
                print(json.dumps(r), flush=True)
    table = summarize(runs_dir)
    head = (f"Machine: {platform.machine()}, {os.cpu_count()} logical CPUs, Python {platform.python_version()}\n\n")
    Path(args.out).write_text(head + table + "\n")
    print(table)


if __name__ == "__main__":
    main()
