"""The big MuJoCo tasks with ``dfo train``'s defaults: return reached within a stated budget.

For each task (Walker2d-v5, Ant-v5, Humanoid-v5, HumanoidStandup-v5) this runs
``dfo.train(ENV, seed=SEED)`` with nothing else that changes the numbers, i.e. the task
preset's method and hyperparameters (``envs/presets.py``; Walker2d, Ant and Humanoid carry
the ARS V2-t settings of Mania, Guy, Recht 2018, HumanoidStandup borrows Humanoid's). The
budget is the preset's episode count or ``--episodes``, cut by a wall-clock cap
``--wall-minutes`` on the run's whole wall time (all segments, start-up and any dropped
partial iteration included), whichever comes first. The run directory keeps the trainer's
checkpoints, so the same command continues a capped or interrupted run exactly where it
stopped (a larger ``--wall-minutes`` or ``--episodes`` extends it). SIGTERM / Ctrl-C checkpoint first, then the
segment is recorded. The cap is checked after every iteration and also enforced inside one (a
timer sends this process SIGTERM when the cap or ``--stop-at`` is reached; the unfinished
iteration is dropped, as its numbers would not be those of an uninterrupted run), so a task
whose iterations are long (HumanoidStandup: 460 episodes of 1000 steps) stops on time too.

Evaluation is the trainer's: every iteration (``eval_every`` from the preset rule), the mean
true return of the unperturbed policy over 5 episodes, not counted in the budget. A task
"reaches" its threshold (ARS paper Table 1: Walker2d 4390, Ant 3580, Humanoid 6000;
HumanoidStandup has none) at the first evaluation at or above it.

After every segment a JSON line (the whole run so far, read back from ``progress.csv``) is
appended to ``--jsonl``; ``--table`` writes the markdown from the newest line per run.

Usage (repo root):
    OMP_NUM_THREADS=1 PYTHONPATH=. nice -n 10 python bench/big_tasks.py Walker2d-v5 --wall-minutes 40 --n-jobs 1
    PYTHONPATH=. python bench/big_tasks.py --table
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import resource
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tune_presets import PAPER_V2T_EPISODES, THRESHOLDS  # noqa: E402  (one home for the ARS paper's numbers)

from dfo.interrupts import Terminated  # noqa: E402

TASKS = ("Walker2d-v5", "Ant-v5", "Humanoid-v5", "HumanoidStandup-v5")
DEFAULT_JSONL = "bench/results/big_tasks.jsonl"
DEFAULT_TABLE = "bench/results/big_tasks.md"
DEFAULT_RUNS = "runs/big_tasks"
CURVE_POINTS = 60  # evaluation points kept per run in the JSON line


def _raise_terminated(signum, frame) -> None:
    raise Terminated()


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def _cpu_s() -> float:
    """CPU seconds of this process and its finished children (workers of n_jobs > 1)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def settings_of(env_id: str) -> dict:
    """What the preset gives a run of ``env_id`` (the resolved TrainConfig's numbers)."""
    from dfo.policies.training import TrainConfig

    rc = TrainConfig(env_id=env_id).resolved()
    return {"method": rc.method, "N": rc.n_directions, "b": rc.top_b, "alpha": rc.step_size, "nu": rc.noise,
            "survival_shift": rc.survival_shift, "preset_episodes": rc.episodes, "policy": rc.policy,
            "eval_every": rc.eval_every, "n_eval_episodes": rc.n_eval_episodes}


def summarize(run_dir: Path, env_id: str) -> dict:
    """The run so far, from its ``progress.csv``: counts, first evaluation at the threshold, best/final."""
    from dfo.policies.training.runlog import evaluations, first_reaching, read_progress

    rows = read_progress(run_dir / "progress.csv") if (run_dir / "progress.csv").exists() else []
    evals = evaluations(rows)
    thr = THRESHOLDS.get(env_id)
    hit = first_reaching(rows, thr)
    last = rows[-1] if rows else {}
    step = max(1, len(evals) // CURVE_POINTS)
    curve = [(int(r["episodes"]), int(r["env_steps"]), round(r["eval_return"], 1)) for r in evals[::step]]
    if evals and (not curve or curve[-1][0] != int(evals[-1]["episodes"])):
        curve.append((int(evals[-1]["episodes"]), int(evals[-1]["env_steps"]), round(evals[-1]["eval_return"], 1)))
    return {"iterations": int(last.get("iteration", 0)), "episodes": int(last.get("episodes", 0)),
            "env_steps": int(last.get("env_steps", 0)), "train_time_s": round(float(last.get("time_s", 0.0)), 1),
            "threshold": thr, "reached_episodes": None if hit is None else int(hit["episodes"]),
            "reached_env_steps": None if hit is None else int(hit["env_steps"]),
            "best_eval": max((r["eval_return"] for r in evals), default=None),
            "final_eval": evals[-1]["eval_return"] if evals else None, "curve": curve}


def run(env_id: str, args: argparse.Namespace) -> dict:
    """Start or continue the run of ``env_id``; returns the JSON line written (``{}`` if nothing was left)."""
    import dfo

    run_dir = Path(args.runs_dir) / f"{env_id}_seed{args.seed}"
    seg_path = Path(args.runs_dir) / f"{env_id}_seed{args.seed}.segments.jsonl"
    resuming = (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").iterdir())
    earlier = [json.loads(x) for x in seg_path.read_text().splitlines() if x.strip()] if resuming else []
    cap_s = 60.0 * args.wall_minutes
    prior_s = sum(x["wall_s"] for x in earlier)
    until_s = math.inf if args.stop_at is None else (args.stop_at - dt.datetime.now(dt.timezone.utc)).total_seconds()
    if min(cap_s - prior_s, until_s) <= 0:
        print(f"{env_id}: nothing to do (wall-clock cap or --stop-at already reached)")
        return {}
    stop: dict = {"reason": (f"--stop-at {args.stop_at:%H:%M} UTC (mid-iteration)" if until_s < cap_s - prior_s
                             else f"wall-clock cap {args.wall_minutes:g} min (mid-iteration)")}
    t0, c0 = time.perf_counter(), _cpu_s()

    threshold = THRESHOLDS.get(env_id) if args.until_threshold else None

    def watch(row: dict) -> None:
        if prior_s + time.perf_counter() - t0 >= cap_s:
            stop.update(reason=f"wall-clock cap {args.wall_minutes:g} min", by_watch=True)
            raise StopIteration
        if threshold is not None and row.get("eval_return", -math.inf) >= threshold:
            stop.update(reason=f"threshold {threshold:g} reached (--until-threshold)", by_watch=True)
            raise StopIteration

    where = {"n_jobs": args.n_jobs, "checkpoint_every": args.checkpoint_every}
    if args.episodes is not None:
        where["episodes"] = args.episodes
    seg = {"start": _now(), "load_start": round(os.getloadavg()[0], 2), "resumed": resuming}
    timer = threading.Timer(min(cap_s - prior_s, until_s), os.kill, (os.getpid(), signal.SIGTERM))
    timer.daemon = True
    before = signal.signal(signal.SIGTERM, _raise_terminated)  # also before/after the trainer's own guard
    message = None
    timer.start()
    try:
        if resuming:
            message = dfo.train(resume=run_dir, callback=watch, progress=False, **where).message
        else:  # a directory without a checkpoint holds no iteration: start it afresh
            run_dir.parent.mkdir(parents=True, exist_ok=True)
            message = dfo.train(env_id, out=run_dir, overwrite=True, seed=args.seed, callback=watch,
                                progress=False, **where).message
    except KeyboardInterrupt:  # SIGTERM / Ctrl-C: the trainer wrote a checkpoint first (if it had started)
        message = None if timer.finished.is_set() else "interrupted (SIGTERM/Ctrl-C)"
    finally:
        timer.cancel()
        signal.signal(signal.SIGTERM, before)
    seg.update(end=_now(), wall_s=round(time.perf_counter() - t0, 1), cpu_s=round(_cpu_s() - c0, 1),
               load_end=round(os.getloadavg()[0], 2),
               stopped=stop["reason"] if message is None or stop.get("by_watch") else message)
    segments = earlier + [seg]
    seg_path.parent.mkdir(parents=True, exist_ok=True)
    seg_path.write_text("".join(json.dumps(x) + "\n" for x in segments))
    cfg_path = run_dir / "config.json"
    budget = json.loads(cfg_path.read_text())["episodes"] if cfg_path.exists() else None
    settings = settings_of(env_id)
    record = {"env_id": env_id, "seed": args.seed, "settings": settings,
              "episode_budget": int(budget or args.episodes or settings["preset_episodes"]),
              "wall_cap_min": args.wall_minutes, "n_jobs": args.n_jobs,
              "paper_v2t_episodes": PAPER_V2T_EPISODES.get(env_id), **summarize(run_dir, env_id),
              "segments": segments, "stopped": seg["stopped"],
              "machine": f"{platform.machine()}, {os.cpu_count()} logical CPUs", "command": command_line()}
    path = Path(args.jsonl)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")
    return record


def command_line() -> str:
    return "OMP_NUM_THREADS=1 PYTHONPATH=. nice -n 10 python bench/big_tasks.py " + " ".join(sys.argv[1:])


# -- table ------------------------------------------------------------------------------------
def _num(v, spec: str = ",.0f") -> str:
    return "–" if v is None else format(v, spec)


def table(records: list[dict]) -> str:
    def key(r: dict) -> tuple:  # one run: a task, a seed and the preset's settings at the time
        return r["env_id"], r["seed"], json.dumps(r["settings"], sort_keys=True)

    newest: dict = {}
    for r in records:  # later lines of a run supersede earlier ones (it was continued)
        newest[key(r)] = r
    order = {k: i for i, k in enumerate(newest)}  # first appearance: an older preset's row comes first
    rs = [newest[k] for k in sorted(newest, key=lambda k: (TASKS.index(k[0]) if k[0] in TASKS else 99, k[1],
                                                           order[k]))]
    lines = ["# The big tasks with `dfo train`'s defaults", "",
             "Commands (repo root; every segment of a run, in order; this file: "
             "`PYTHONPATH=. python bench/big_tasks.py --table`):", ""]
    lines += [f"    {c}" for r in rs for c in dict.fromkeys(x["command"] for x in records if key(x) == key(r))]
    lines += ["", "Each run: `dfo.train(ENV, seed=SEED)` with the task preset's method and hyperparameters "
              "(`envs/presets.py`), one serial process (`--n-jobs 1`) unless stated. **Budget: the preset's "
              "episode count (1.5 × the ARS paper's V2-t episodes to the threshold) cut by a wall-clock cap on "
              "the run's total wall time (all segments), on a shared 2-core machine** where other jobs ran "
              "at the same time (load averages below; `nice -n 10`, so a run got only the CPU minutes in its "
              "column). Where a cap stopped a run (column \"stopped by\") it covers only part of the budget: it "
              "shows where the defaults start, not where they end up. A run started before a preset changed "
              "keeps its own row (settings column). "
              "Evaluation: mean true return of the unperturbed policy over 5 episodes after every iteration "
              "(not counted in the budget, but inside the wall clock). Threshold: ARS paper Table 1 (none for "
              "HumanoidStandup). Seeds 0, 1, 2 are evaluation seeds; 101 was a tuning seed of "
              "`ars_episodes.md` (Session 4), run here to the threshold after it walked there.", "",
              "| task (threshold) | method and settings | seed | budget given | stopped by | iterations | "
              "episodes run | env steps run | episodes to threshold | env steps to threshold | paper V2-t episodes "
              "| best eval return | final eval return | wall used (min) | trainer clock (min) | CPU (min) | "
              "env steps per CPU s | load avg (start–end) |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rs:
        s = r["settings"]
        sett = (f"{s['method']} N={s['N']} b={s['b']} α={s['alpha']:g} ν={s['nu']:g} shift={s['survival_shift']:g}"
                f" ({s['policy']})")
        thr = "none" if r["threshold"] is None else f"{r['threshold']:g}"
        reached = r["reached_episodes"] is not None
        not_r = "not reached" if r["threshold"] is not None else "–"
        cpu = sum(x["cpu_s"] for x in r["segments"]) / 60
        wall = sum(x["wall_s"] for x in r["segments"]) / 60
        loads = [x["load_start"] for x in r["segments"]] + [x["load_end"] for x in r["segments"]]
        lines.append(
            f"| {r['env_id']} ({thr}) | {sett} | {r['seed']} | {r['episode_budget']:,} episodes or "
            f"{r['wall_cap_min']:g} min wall, n_jobs={r['n_jobs']} | {r['stopped']} | {r['iterations']:,} | "
            f"{r['episodes']:,} | {r['env_steps']:,} | {_num(r['reached_episodes']) if reached else not_r} | "
            f"{_num(r['reached_env_steps']) if reached else not_r} | {_num(r['paper_v2t_episodes'])} | "
            f"{_num(r['best_eval'])} | {_num(r['final_eval'])} | {wall:.1f} | {r['train_time_s'] / 60:.1f} | "
            f"{cpu:.1f} | {r['env_steps'] / max(60 * cpu, 1e-9):,.0f} | {min(loads):.1f}–{max(loads):.1f} |")
    lines += ["", "Evaluation return against training episodes (thinned, episodes: return). The first point is the "
              "zero policy's return: Ant-v5 earns about 1000 by standing still (healthy reward 1 per step for "
              "1000 steps), so Ant's return here is no progress yet.", ""]
    for r in rs:
        curve = r["curve"][:: max(1, len(r["curve"]) // 20)]
        if r["curve"] and curve[-1] != r["curve"][-1]:
            curve.append(r["curve"][-1])
        pts = ", ".join(f"{e:,}: {v:.0f}" for e, _, v in curve)
        s = r["settings"]
        lines.append(f"- {r['env_id']} seed {r['seed']} ({s['method']} α={s['alpha']:g} ν={s['nu']:g}): {pts}")
    return "\n".join(lines) + "\n"


def _utc_today(text: str) -> dt.datetime:
    try:
        t = dt.datetime.strptime(text, "%H:%M")
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HH:MM (UTC), got {text!r}") from None
    return dt.datetime.now(dt.timezone.utc).replace(hour=t.hour, minute=t.minute, second=0, microsecond=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("env_ids", nargs="*", help=f"tasks ({', '.join(TASKS)})")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--wall-minutes", type=float, default=40.0,
                    help="cap on the run's total wall time (all segments)")
    ap.add_argument("--episodes", type=int, default=None, help="episode budget (default: the preset's)")
    ap.add_argument("--n-jobs", type=int, default=1, help="rollout workers (1 = serial)")
    ap.add_argument("--checkpoint-every", type=int, default=5, help="iterations between checkpoints")
    ap.add_argument("--stop-at", type=_utc_today, default=None, metavar="HH:MM",
                    help="stop (checkpoint, record) at this UTC time today, even inside an iteration")
    ap.add_argument("--until-threshold", action="store_true",
                    help="stop at the first evaluation at or above the task's threshold (not the whole budget)")
    ap.add_argument("--runs-dir", default=DEFAULT_RUNS, help="where the run directories live")
    ap.add_argument("--jsonl", default=DEFAULT_JSONL)
    ap.add_argument("--table", nargs="?", const=DEFAULT_TABLE, default=None,
                    help="write the markdown table (default path %(const)s) from the JSON lines and exit")
    args = ap.parse_args()
    path = Path(args.jsonl)
    if args.table:
        records = [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.exists() else []
        text = table(records)
        Path(args.table).write_text(text)
        print(text)
        return
    bad = [e for e in args.env_ids if e not in TASKS]
    if bad or not args.env_ids:
        sys.exit(f"big_tasks: give tasks among {', '.join(TASKS)}; got {bad or 'none'}")
    if args.wall_minutes <= 0 or args.n_jobs == 0 or args.checkpoint_every < 1:
        sys.exit("big_tasks: --wall-minutes must be > 0, --n-jobs nonzero, --checkpoint-every >= 1")
    for env_id in args.env_ids:
        r = run(env_id, args)
        if not r:
            continue
        print(f"{env_id} seed {args.seed}: {r['stopped']}; {r['episodes']:,} episodes, {r['env_steps']:,} env steps, "
              f"reached at {r['reached_episodes']} episodes, best {r['best_eval']}, final {r['final_eval']}",
              flush=True)


if __name__ == "__main__":
    main()
