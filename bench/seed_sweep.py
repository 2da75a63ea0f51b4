"""Seed sweep: how often ``dfo train ENV``'s defaults solve each task, over many seeds.

Every cell is one (task, variant, seed) training run with the task preset's episode budget,
run to the end of that budget (it does not stop at the threshold), one serial process per
cell (``backend="serial"``), so a cell's numbers depend only on its settings and seed. A
cell records

* the first evaluation at or above the task's threshold (ARS paper Table 1 thresholds,
  Mania, Guy, Recht 2018, "Simple random search provides a competitive approach to
  reinforcement learning"; ours for InvertedDoublePendulum 9100 and Pusher −32, gymnasium's
  −3.75 for Reacher): the training episodes and env steps used by then;
* the best and the final evaluation (the trainer's own: the mean true return of the
  unperturbed policy over 5 fresh episodes, about every 16 training episodes, not counted in
  the budget);
* a check of the *final* policy on ``--check-episodes`` fresh episodes (20; 100 on Reacher
  and Pusher, whose thresholds are meant as 100-episode means), from a seed stream no
  training evaluation uses.

Variants:

* ``default``: ``dfo.train(ENV, seed=SEED)``, nothing else that changes the numbers.
* ``ars-v2t-paper``: ``method="ars-v2t"`` with the ARS paper's V2-t hyperparameters N, b,
  α, ν for that task (their appendix table: Swimmer 1/1/0.02/0.01, Hopper 8/4/0.01/0.025,
  HalfCheetah 32/4/0.02/0.03, Walker2d 40/30/0.03/0.025, Ant 60/20/0.015/0.025, Humanoid
  230/230/0.02/0.0075), linear policy, same budget. Tasks outside the paper have no such
  variant. Where the preset already *is* that configuration (Hopper, Walker2d, Ant,
  Humanoid today) the variant is not run again: the table shows the default's cells.
* ``default-before``: cells of an earlier default, kept when a default changes.

Each finished cell is a small JSON file ``--cells/<task>__<variant>__s<seed>.json``
(committed: ``bench/results/seed_sweep_cells``); finished cells are skipped. The run
directory (``--runs``, not committed) keeps the trainer's checkpoints, so a cell stopped by
SIGTERM or Ctrl-C (the trainer checkpoints first; this process then exits with 143 / 130)
continues from its newest checkpoint on the next ``run`` and gives the same numbers as an
uninterrupted cell (tested in ``tests/test_rl_seed_sweep.py``). A checkpoint that this dfo
cannot resume (corrupt, or written by an older state format) is reported and the cell starts
afresh (``resume_refused`` in its segment). Every segment records the commit and a digest of
the dfo/policies/envs modules it ran with. ``--workers K`` starts K
processes that take cells in order (cheapest tasks first); a cell is claimed by an
``flock`` on ``--runs/<cell>.lock``, released when its process ends however it ends.

Seeds 1000 and up: disjoint from every seed used to pick or tune a default (evaluation
seeds 0-2, tuning seeds 100-107 of ``bench/tune_presets.py`` and ``bench/ars_episodes.py``,
step-control tuning seeds 0-4).

Statistics (``table``): success = the threshold reached within the budget. Episodes and env
steps to the threshold are summarised by nearest-rank quantiles (the ⌈p·n⌉-th smallest of the
n seeds) with an unsuccessful seed counted as +∞ ("not reached" sorts last), so a median is a
number only when more than half the seeds succeeded, and is then the episodes by which half
of the seeds had succeeded.

Usage (repo root):
    OMP_NUM_THREADS=1 nohup nice -n 5 python bench/seed_sweep.py run --variants default --workers 2 &
    python bench/seed_sweep.py run --tasks Swimmer-v5 --variants ars-v2t-paper --seeds 1000 1001
    python bench/seed_sweep.py table --runs runs/seed_sweep --tuning-runs runs/seed_sweep_tuning
    python bench/seed_sweep.py docs     # the sweep columns of docs/rl.md's defaults table
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import fcntl
import json
import math
import os
import platform
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from tune_presets import PAPER_V2T_EPISODES, THRESHOLDS  # noqa: E402  (one home for the ARS paper's numbers)

DEFAULT_CELLS = "bench/results/seed_sweep_cells"
DEFAULT_RUNS = "runs/seed_sweep"
DEFAULT_TABLE = "bench/results/seed_sweep.md"
SWEEP_SEEDS = tuple(range(1000, 1010))
#: cheapest first (estimated CPU per cell, one core: see ``--estimate``)
TASKS = ("Swimmer-v5", "InvertedDoublePendulum-v5", "Reacher-v5", "Pusher-v5", "Hopper-v5", "HalfCheetah-v5",
         "Walker2d-v5", "Ant-v5", "Humanoid-v5")
#: seeds planned per task (the issue: >= 10 on the six cheaper tasks, >= 5 Walker2d/Ant, >= 2 Humanoid)
PLANNED_SEEDS = {"Walker2d-v5": 5, "Ant-v5": 5, "Humanoid-v5": 2}
#: ARS paper (Mania, Guy, Recht 2018), V2-t hyperparameters per task: N, b, alpha, nu
ARS_PAPER_V2T = {
    "Swimmer-v5": (1, 1, 0.02, 0.01), "Hopper-v5": (8, 4, 0.01, 0.025), "HalfCheetah-v5": (32, 4, 0.02, 0.03),
    "Walker2d-v5": (40, 30, 0.03, 0.025), "Ant-v5": (60, 20, 0.015, 0.025), "Humanoid-v5": (230, 230, 0.02, 0.0075),
}
#: fresh episodes of the final-policy check (100 where the threshold is a 100-episode mean)
CHECK_EPISODES = {"Reacher-v5": 100, "Pusher-v5": 100}
DEFAULT_CHECK_EPISODES = 20
CHECK_ITERATION = 10**9  # evaluation-seed index of the check: no training iteration reaches it
CURVE_POINTS = 60
#: fields of TrainConfig that decide a cell's numbers (what a variant sets is compared on these)
SETTING_FIELDS = ("method", "episodes", "n_directions", "top_b", "step_size", "noise", "horizon", "survival_shift",
                  "policy", "hidden", "n_eval_episodes", "eval_every", "step", "direction", "starts",
                  "start_episodes")
VARIANTS = ("default", "ars-v2t-paper")
#: step-control candidates are measured on these seeds (disjoint from SWEEP_SEEDS)
TUNING_SEEDS = (0, 1, 2, 3, 4)
DEFAULT_TUNING_CELLS = "bench/results/seed_sweep_tuning_cells"


def variant_settings(env_id: str, variant: str) -> dict | None:
    """TrainConfig keyword arguments of ``variant`` on ``env_id`` (``None``: no such variant there)."""
    if variant == "default":
        return {}
    if variant == "ars-v2t-paper":
        if env_id not in ARS_PAPER_V2T:
            return None
        n, b, alpha, nu = ARS_PAPER_V2T[env_id]
        return {"method": "ars-v2t", "n_directions": n, "top_b": b, "step_size": alpha, "noise": nu,
                "policy": "linear"}
    extra = _extra_variants().get(variant)
    if extra is None:
        raise ValueError(f"unknown variant {variant!r}; known: {', '.join(VARIANTS + tuple(_extra_variants()))}")
    return extra(env_id)


def _extra_variants() -> dict:
    """Variants measured beside the default: the step-control candidates (``--step rollback``,
    ``trust``, ``decay``: :class:`dfo.policies.methods.StepControl`) and the multi-start race
    (``starts3``: 3 starts of 512 episodes, :mod:`dfo.policies.training.starts`) on the preset's settings."""
    steps = {f"step-{rule}": (lambda env_id, rule=rule: {"step": rule}) for rule in ("rollback", "trust", "decay")}
    # the multi-start race (dfo.policies.training.starts): K starts of E episodes, the best continues
    races = {"starts3": lambda env_id: {"starts": 3, "start_episodes": 512},
             "single-start": lambda env_id: {"starts": 1}}
    return {**steps, **races}


def resolved_settings(env_id: str, settings: dict, episodes: int | None = None) -> dict:
    from dfo.policies.training import TrainConfig

    kw = dict(settings)
    if episodes is not None:
        kw["episodes"] = episodes
    cfg = TrainConfig(env_id=env_id, **kw).resolved()
    out = {k: getattr(cfg, k) for k in SETTING_FIELDS}
    out["hidden"] = list(cfg.hidden) if cfg.policy == "mlp" else None
    return out


def same_as_default(env_id: str, variant: str, episodes: int | None = None) -> bool:
    """Whether ``variant`` resolves to exactly the default's configuration on ``env_id``."""
    if variant == "default":
        return False
    s = variant_settings(env_id, variant)
    return s is not None and resolved_settings(env_id, s, episodes) == resolved_settings(env_id, {}, episodes)


def cell_name(env_id: str, variant: str, seed: int, episodes: int | None = None) -> str:
    return f"{env_id}__{variant}__s{seed}" + ("" if episodes is None else f"__e{episodes}")


def _write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1) + "\n")
    os.replace(tmp, path)


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def read_progress(run_dir: Path) -> list[dict]:
    """progress.csv rows as numbers (an empty field is nan)."""
    rows = []
    with (run_dir / "progress.csv").open(newline="") as f:
        for r in csv.DictReader(f):
            rows.append({k: (float(v) if v not in ("", None) else math.nan) for k, v in r.items()})
    return rows


def summarize(rows: list[dict], threshold: float) -> dict:
    """Threshold crossing, best and final evaluation and a thinned curve from progress rows."""
    evals = [r for r in rows if r["eval_return"] == r["eval_return"]]
    hit = next((r for r in evals if r["eval_return"] >= threshold), None)
    step = max(1, len(evals) // CURVE_POINTS)
    curve = [(int(r["episodes"]), int(r["env_steps"]), round(r["eval_return"], 2)) for r in evals[::step]]
    if evals and curve[-1][0] != int(evals[-1]["episodes"]):
        curve.append((int(evals[-1]["episodes"]), int(evals[-1]["env_steps"]), round(evals[-1]["eval_return"], 2)))
    last = rows[-1]
    return {"iterations": int(last["iteration"]), "episodes": int(last["episodes"]),
            "env_steps": int(last["env_steps"]),
            "reached_episodes": None if hit is None else int(hit["episodes"]),
            "reached_env_steps": None if hit is None else int(hit["env_steps"]),
            "best_eval": round(max(r["eval_return"] for r in evals), 3),
            "final_eval": round(evals[-1]["eval_return"], 3),
            "nonfinite_episodes": int(last.get("nonfinite_episodes", 0) or 0), "curve": curve}


def run_cell(env_id: str, variant: str, seed: int, *, cells: Path, runs: Path, episodes: int | None = None,
             checkpoint_every: int = 10, check_episodes: int | None = None) -> dict | None:
    """Run (or continue) one cell and write its JSON; ``None`` if it was already done or is
    being run by another process. SIGTERM / Ctrl-C propagate (``KeyboardInterrupt``) after the
    trainer's checkpoint."""
    from dfo.policies.training import TrainConfig, Trainer

    name = cell_name(env_id, variant, seed, episodes)
    out = cells / f"{name}.json"
    if out.exists():
        return None
    runs.mkdir(parents=True, exist_ok=True)
    lock = os.open(runs / f"{name}.lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None  # another worker has it
        if out.exists():
            return None
        settings = variant_settings(env_id, variant)
        if settings is None:
            raise ValueError(f"variant {variant!r} is not defined on {env_id}")
        run_dir = runs / name
        seg_path = runs / f"{name}.segments.json"
        resuming = (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").iterdir())
        segments = json.loads(seg_path.read_text()) if resuming and seg_path.exists() else []
        where = {"backend": "serial", "n_jobs": 1, "checkpoint_every": checkpoint_every}
        t0, c0 = time.perf_counter(), _cpu_s()
        seg = {"start": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "resumed": resuming,
               "load_start": round(os.getloadavg()[0], 2)}
        trainer = None
        if resuming:
            try:
                trainer = Trainer.resume(run_dir, overrides=where)
            except (ValueError, KeyError, TypeError) as exc:  # CheckpointError, or a state of an older dfo
                print(f"{name}: cannot resume ({exc}); starting the cell afresh", flush=True)
                seg["resume_refused"] = str(exc)[:300]
                seg["discarded_segments"] = segments
                segments = []
                seg["resumed"] = False
        if trainer is None:
            if run_dir.exists():  # no checkpoint (no iteration done), or one that cannot be resumed
                import shutil

                shutil.rmtree(run_dir)
            kw = dict(settings)
            if episodes is not None:
                kw["episodes"] = episodes
            trainer = Trainer(TrainConfig(env_id=env_id, seed=seed, **kw, **where), out_dir=run_dir)
        k = check_episodes or CHECK_EPISODES.get(env_id, DEFAULT_CHECK_EPISODES)
        try:
            with trainer:
                res = trainer.run()
                check_mean, check_std, _ = trainer.evaluate(n_episodes=k, iteration=CHECK_ITERATION)
        finally:
            seg.update(wall_s=round(time.perf_counter() - t0, 1), cpu_s=round(_cpu_s() - c0, 1),
                       load_end=round(os.getloadavg()[0], 2), code=code_version())
            seg_path.write_text(json.dumps(segments + [seg]))
        threshold = THRESHOLDS[env_id]
        summary = summarize(read_progress(run_dir), threshold)
        cfg = trainer.config
        record = {
            "env_id": env_id, "variant": variant, "seed": seed, "threshold": threshold,
            "settings": {k2: (list(v) if isinstance(v, tuple) else v) for k2, v in
                         ((f, getattr(cfg, f)) for f in SETTING_FIELDS)},
            "budget": int(cfg.episodes), "episodes_override": episodes, "message": res.message, **summary,
            "check_episodes": k, "check_return": round(check_mean, 3), "check_std": round(check_std, 3),
            "paper_v2t_episodes": PAPER_V2T_EPISODES.get(env_id),
            "wall_s": round(sum(s["wall_s"] for s in segments + [seg]), 1),
            "cpu_s": round(sum(s["cpu_s"] for s in segments + [seg]), 1),
            "segments": segments + [seg],
            "machine": f"{platform.machine()}, {os.cpu_count()} logical CPUs",
            "code": code_version(),
        }
        if cfg.policy != "mlp":
            record["settings"]["hidden"] = None
        _write_json(out, record)
        return record
    finally:
        os.close(lock)


def code_version() -> dict:
    """The commit checked out and a SHA-256 over the repository's modules this process has
    loaded (dfo, policies, envs as they were when imported: a working tree edited by others
    while a sweep runs shows up as a different digest)."""
    import hashlib

    h = hashlib.sha256()
    for name in sorted(sys.modules):
        path = getattr(sys.modules[name], "__file__", None)
        if path and name.split(".")[0] in ("dfo", "policies", "envs") and Path(path).is_file():
            h.update(name.encode() + b"\0" + Path(path).read_bytes())
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        head = ""
    return {"head": head, "modules_sha256": h.hexdigest()}


def planned_cells(tasks, variants, seeds, episodes=None, by_seed: bool = False) -> list[tuple[str, str, int]]:
    """(task, variant, seed) in run order: per variant, cheapest task first, then seed
    (``by_seed``: per task, seed by seed, every variant of a seed before the next seed)."""
    out = []
    for v in variants:
        for t in tasks:
            if variant_settings(t, v) is None or same_as_default(t, v, episodes):
                continue
            n = PLANNED_SEEDS.get(t)
            for s in (seeds if n is None else seeds[:n]):
                out.append((t, v, s))
    if by_seed:
        out.sort(key=lambda c: (tasks.index(c[0]), seeds.index(c[2]), variants.index(c[1])))
    return out


class _Stop(Exception):
    pass


def cmd_run(args: argparse.Namespace) -> int:
    cells, runs = Path(args.cells), Path(args.runs)
    if args.workers > 1:  # K copies of this command, one cell each at a time
        argv = [a for a in sys.argv[1:]]
        i = argv.index("--workers")
        argv[i + 1] = "1"
        env = dict(os.environ, OMP_NUM_THREADS="1")
        procs = [subprocess.Popen([sys.executable, __file__, *argv], env=env) for _ in range(args.workers)]

        def forward(signum, frame):
            for p in procs:
                p.send_signal(signum)

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        rcs = [p.wait() for p in procs]
        return max(rcs)
    todo = planned_cells(list(args.tasks), list(args.variants), list(args.seeds), args.episodes, args.by_seed)
    for env_id, variant, seed in todo:
        try:
            t0 = time.time()
            rec = run_cell(env_id, variant, seed, cells=cells, runs=runs, episodes=args.episodes,
                           checkpoint_every=args.checkpoint_every, check_episodes=args.check_episodes)
        except KeyboardInterrupt:  # SIGTERM (Terminated) or Ctrl-C: the trainer has checkpointed
            print(f"{cell_name(env_id, variant, seed, args.episodes)}: interrupted; the same command resumes it",
                  flush=True)
            return 143 if _terminated(sys.exc_info()[1]) else 130
        if rec is not None:
            print(f"{cell_name(env_id, variant, seed, args.episodes)}: reached {rec['reached_episodes']} "
                  f"best {rec['best_eval']:.1f} final {rec['final_eval']:.1f} check {rec['check_return']:.1f} "
                  f"({time.time() - t0:.0f} s)", flush=True)
    return 0


def _terminated(exc) -> bool:
    try:
        from dfo.interrupts import Terminated
    except ImportError:  # pragma: no cover
        return False
    return isinstance(exc, Terminated)


# -- table ------------------------------------------------------------------------------------
def quantile_nr(values: list[float], p: float) -> float:
    """Nearest-rank quantile: the ⌈p·n⌉-th smallest value (``inf`` = not reached sorts last)."""
    v = sorted(values)
    return v[max(1, math.ceil(p * len(v))) - 1]


def _quartiles(values: list[float], fmt, missing: str) -> tuple[str, str, str]:
    """(median, q1, q3) as text, nearest-rank; ``inf`` (not reached) is written ``missing``."""
    return tuple(missing if math.isinf(x) else fmt(x) for x in (quantile_nr(values, p) for p in (0.5, 0.25, 0.75)))


def _q(values: list[float]) -> str:
    if not values:
        return "–"
    med, q1, q3 = _quartiles(values, lambda x: f"{x:,.0f}", "not reached")
    return f"**{med}** ({q1} – {q3})"


def _steps(values: list[float]) -> str:
    if not values:
        return "–"
    med, q1, q3 = _quartiles(values, lambda x: f"{x / 1e6:.2f}M", "–")
    return f"{med} ({q1} – {q3})"


def load_cells(cells: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(cells.glob("*.json"))]


HEADER = ("| task (threshold) | variant | seeds | reached within budget | episodes to threshold | × paper V2-t | "
          "env steps to threshold | best eval | final eval | final check (K) | budget | CPU min / cell |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|")


def _group(records: list[dict]) -> dict[tuple[str, str], list[dict]]:
    by: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        if r.get("episodes_override") is not None:  # a shortened test cell, not the preset budget
            continue
        by.setdefault((r["env_id"], r["variant"]), []).append(r)
    for rs in by.values():
        rs.sort(key=lambda r: r["seed"])
    return by


def _variants(by) -> list[str]:
    return sorted({v for (_, v) in by}, key=lambda v: (v != "default", v))


def summary_row(rs: list[dict]) -> str:
    """One table row over the cells ``rs`` of one task and variant (see the header)."""
    n = len(rs)
    ok = [r for r in rs if r["reached_episodes"] is not None]
    eps = [r["reached_episodes"] if r["reached_episodes"] is not None else math.inf for r in rs]
    steps = [r["reached_env_steps"] if r["reached_env_steps"] is not None else math.inf for r in rs]
    med = quantile_nr(eps, 0.5)
    paper = rs[0].get("paper_v2t_episodes")
    ratio = f"{med / paper:.2f}" if paper and not math.isinf(med) else "–"
    best = sorted(r["best_eval"] for r in rs)
    final = sorted(r["final_eval"] for r in rs)
    chk = sorted(r["check_return"] for r in rs)
    chk_ok = sum(r["check_return"] >= r["threshold"] for r in rs)
    return (f"| {rs[0]['env_id']} ({rs[0]['threshold']:g}) | `{rs[0]['variant']}` | {n} | "
            f"{len(ok)}/{n} ({100 * len(ok) / n:.0f} %) | {_q(eps)} | {ratio} | {_steps(steps)} | "
            f"{quantile_nr(best, 0.5):,.1f} | {quantile_nr(final, 0.5):,.1f} | {quantile_nr(chk, 0.5):,.1f} "
            f"(min {chk[0]:,.1f}; {chk_ok}/{n} ≥ thr) ({rs[0]['check_episodes']}) | {rs[0]['budget']:,} | "
            f"{sum(r['cpu_s'] for r in rs) / n / 60:.1f} |")


def compact_row(rs: list[dict]) -> str:
    n = len(rs)
    ok = sum(r["reached_episodes"] is not None for r in rs)
    eps = [r["reached_episodes"] if r["reached_episodes"] is not None else math.inf for r in rs]
    steps = [r["reached_env_steps"] if r["reached_env_steps"] is not None else math.inf for r in rs]
    med = quantile_nr(steps, 0.5)
    return (f"| {rs[0]['env_id']} | {rs[0]['threshold']:g} | {rs[0]['seed']}-{rs[-1]['seed']} ({n}) | "
            f"**{ok}/{n}** | {_q(eps)} | {'–' if math.isinf(med) else f'{med / 1e3:,.0f}k'} |")


def _details(by, tasks) -> list[str]:
    lines = ["", "Settings per row (resolved TrainConfig):", ""]
    for t in tasks:
        for v in _variants(by):
            rs = by.get((t, v), [])
            if rs:
                st = rs[0]["settings"]
                lines.append(f"* {t} `{v}`: " + ", ".join(f"{k}={st[k]}" for k in SETTING_FIELDS
                                                         if st.get(k) is not None))
    lines += ["", "Per seed (episodes to threshold, `–` = not reached; best / final eval):", ""]
    for t in tasks:
        for v in _variants(by):
            rs = by.get((t, v), [])
            if rs:
                lines.append(f"* {t} `{v}`: " + "; ".join(
                    f"s{r['seed']} {r['reached_episodes'] if r['reached_episodes'] is not None else '–'} "
                    f"({r['best_eval']:.0f} / {r['final_eval']:.0f})" for r in rs))
    return lines


def unfinished(runs: Path, cells: Path) -> list[str]:
    """Lines on the cells of ``runs`` that have a run folder but no result yet (not in any statistic)."""
    out = []
    for d in sorted(p for p in runs.glob("*__*__s*") if p.is_dir()):
        if (cells / f"{d.name}.json").exists() or not (d / "progress.csv").exists():
            continue
        env_id = d.name.split("__")[0]
        try:
            sm = summarize(read_progress(d), THRESHOLDS[env_id])
        except (KeyError, ValueError, IndexError):
            continue
        out.append(f"* `{d.name}`: {sm['episodes']:,} episodes so far; threshold reached at "
                   f"{sm['reached_episodes'] if sm['reached_episodes'] is not None else '– (not yet)'}; "
                   f"best eval {sm['best_eval']:,.1f}, last {sm['final_eval']:,.1f}")
    return out


def table(records: list[dict], tasks=TASKS, seeds=SWEEP_SEEDS, tuning: list[dict] | None = None,
          partial: list[str] | None = None, tuning_partial: list[str] | None = None) -> str:
    by = _group(records)
    lines = [
        "# Seed sweep: `dfo train ENV` defaults over many seeds",
        "",
        "Written by `python bench/seed_sweep.py table` from the cell files in `bench/results/seed_sweep_cells/`",
        "(and `seed_sweep_tuning_cells/` for the step-control section); the cells were run with",
        "",
        "    OMP_NUM_THREADS=1 nohup nice -n 5 python bench/seed_sweep.py run --variants default --workers 2 &",
        "    OMP_NUM_THREADS=1 nohup nice -n 5 python bench/seed_sweep.py run --variants ars-v2t-paper --workers 2 &",
        "    OMP_NUM_THREADS=1 nohup nice -n 5 python bench/seed_sweep.py run --tasks Hopper-v5 --variants default "
        "step-trust step-decay \\",
        "        --seeds 0 1 2 3 4 --by-seed --cells bench/results/seed_sweep_tuning_cells --runs runs/seed_sweep_tuning &",
        "    OMP_NUM_THREADS=1 nohup nice -n 5 python bench/seed_sweep.py run --tasks Hopper-v5 --variants starts3 --workers 2 &",
        "    OMP_NUM_THREADS=1 nohup nice -n 5 python bench/seed_sweep.py run --tasks Hopper-v5 --variants single-start \\",
        "        --seeds 1007 1008 1009 --workers 2 &",
        "",
        "Hopper's preset became the race of starts (3 starts of 512 episodes, the best continues:",
        "`dfo.policies.training.starts`) after these cells: its `default` cells were run as variant `starts3`",
        "and its `single-start` cells s1000-s1006 as `default` (one start, the preset before), renamed",
        "with a `renamed` field saying so; K = 3 and E = 512 were picked from 768-episode runs on tuning",
        "seeds 1-24 (`bench/results/hopper_early.md`: how early trapped seeds separate from the others;",
        "the single-start curves of these seeds had been looked at too, so the confirmation is not blind).",
        "",
        "(the same command resumes an interrupted sweep; finished cells are skipped). Each cell: one serial",
        "`dfo.train(ENV, seed=SEED, **variant)` run over the preset's whole episode budget. Sweep seeds 1000-1009,",
        "disjoint from every seed used to pick a default. *reached*: a 5-episode evaluation (about every 16",
        "training episodes) at or above the threshold within the budget. Episodes / env steps to threshold:",
        "**median** (quartiles), nearest-rank over all seeds run, a seed that never reached counting as +∞ —",
        "so a median is a number only when more than half the seeds reached. *best* / *final*: median over seeds",
        "of the best and the last 5-episode evaluation; *final check*: median (min) over seeds of the final",
        "policy's mean over K fresh episodes (K = 100 on Reacher and Pusher, where the threshold is a",
        "100-episode mean; 20 elsewhere). `ars-v2t-paper`: ARS V2-t with the ARS paper's N, b, α, ν; on Hopper",
        "(and Walker2d, Ant, Humanoid) the preset is that configuration, so the default's cells stand for both.",
        "CPU min / cell: CPU time of the cell's process (the machine was shared: wall times were 1-4 × that).",
        "",
        *HEADER,
    ]
    for t in tasks:
        for v in _variants(by):
            if by.get((t, v)):
                lines.append(summary_row(by[(t, v)]))
    lines += _details(by, tasks)
    missing: dict[tuple[str, str], list[int]] = {}
    for (t, v, sd) in planned_cells(list(tasks), ["default", "ars-v2t-paper"], list(seeds)):
        if sd not in {r["seed"] for r in by.get((t, v), [])}:
            missing.setdefault((t, v), []).append(sd)
    if missing:
        lines += ["", f"Cells planned and not finished yet ({sum(map(len, missing.values()))}): " + "; ".join(
            f"{t} `{v}` seeds {' '.join(map(str, ss))}" for (t, v), ss in missing.items())]
    if partial:
        lines += ["", "Cells under way when this table was written (a snapshot, in no statistic above):", "",
                  *partial]
    lines += ["", "## Compact (the columns of docs/rl.md's defaults table)", "",
              "| task | threshold | sweep seeds | reached within the preset budget | episodes to threshold: median "
              "(quartiles) | env steps: median |", "|---|---|---|---|---|---|"]
    for t in tasks:
        rs = by.get((t, "default"))
        if rs:
            lines.append(compact_row(rs))
    if tuning:
        tb = _group(tuning)
        lines += ["", "## Step control (tuning seeds 0-4)", "",
                  "Candidates for a new default step rule (`--step trust`, `rollback`, `decay`: "
                  "`dfo.policies.methods.StepControl`), each on the preset's other settings and budget, against the "
                  "default on the same tuning seeds (disjoint from the sweep seeds). Same columns as above.", "",
                  *HEADER]
        for t in tasks:
            for v in _variants(tb):
                if tb.get((t, v)):
                    lines.append(summary_row(tb[(t, v)]))
        lines += _details(tb, tasks)
        if tuning_partial:
            lines += ["", "Tuning cells under way (a snapshot, in no statistic above):", "", *tuning_partial]
    return "\n".join(lines) + "\n"


def cmd_table(args: argparse.Namespace) -> int:
    tuning = load_cells(Path(args.tuning_cells)) if Path(args.tuning_cells).is_dir() else None
    partial = unfinished(Path(args.runs), Path(args.cells)) if args.runs else None
    tuning_partial = (unfinished(Path(args.tuning_runs), Path(args.tuning_cells))
                      if args.tuning_runs and tuning is not None else None)
    text = table(load_cells(Path(args.cells)), tuning=tuning, partial=partial, tuning_partial=tuning_partial)
    Path(args.out).write_text(text)
    print(text)
    return 0


DOCS = "docs/rl.md"
DOCS_HEADER = "| task | threshold | method | N | b | α | ν | budget (episodes) | where from | **sweep**"


def cmd_docs(args: argparse.Namespace) -> int:
    """Refresh the two sweep columns of docs/rl.md's defaults table from the cell files."""
    by = _group(load_cells(Path(args.cells)))
    path = Path(args.docs)
    lines = path.read_text().split("\n")
    start = next((i for i, ln in enumerate(lines) if ln.startswith(DOCS_HEADER)), None)
    if start is None:
        raise SystemExit(f"{path}: no defaults table with sweep columns (a header starting {DOCS_HEADER!r})")
    i = start + 2
    while i < len(lines) and lines[i].startswith("| "):
        cells = lines[i].split(" | ")
        task = cells[0][2:]
        rs = by.get((task, "default"))
        if rs:
            n = len(rs)
            ok = sum(r["reached_episodes"] is not None for r in rs)
            held = sum(r["check_return"] >= r["threshold"] for r in rs)
            eps = [r["reached_episodes"] if r["reached_episodes"] is not None else math.inf for r in rs]
            planned = PLANNED_SEEDS.get(task, len(SWEEP_SEEDS))
            more = "" if n >= planned else f" (of {planned} planned)"
            cells[-3:-1] = [f"**{ok}/{n}**{more}; final policy over {rs[0]['check_episodes']} fresh episodes: "
                            f"{held}/{n}", _q(eps).replace("**", "")]
        else:
            cells[-3:-1] = ["not run yet" if task in TASKS else "not in the sweep", "–"]
        lines[i] = " | ".join(cells)
        i += 1
    path.write_text("\n".join(lines))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run the missing cells (resumes interrupted ones)")
    r.add_argument("--tasks", nargs="+", default=list(TASKS[:6]))
    r.add_argument("--variants", nargs="+", default=["default"])
    r.add_argument("--seeds", nargs="+", type=int, default=list(SWEEP_SEEDS))
    r.add_argument("--episodes", type=int, default=None, help="override the preset budget (cell name gets __eN)")
    r.add_argument("--checkpoint-every", type=int, default=10)
    r.add_argument("--check-episodes", type=int, default=None)
    r.add_argument("--workers", type=int, default=1)
    r.add_argument("--by-seed", action="store_true", help="run every variant of a seed before the next seed")
    r.add_argument("--cells", default=DEFAULT_CELLS)
    r.add_argument("--runs", default=DEFAULT_RUNS)
    t = sub.add_parser("table", help="write the markdown table from the cell files")
    t.add_argument("--cells", default=DEFAULT_CELLS)
    t.add_argument("--out", default=DEFAULT_TABLE)
    t.add_argument("--tuning-cells", default=DEFAULT_TUNING_CELLS)
    t.add_argument("--runs", default=None, help="also list the unfinished cells of this runs folder")
    t.add_argument("--tuning-runs", default=None, help="also list the unfinished tuning cells of this runs folder")
    d = sub.add_parser("docs", help="refresh the sweep columns of docs/rl.md's defaults table")
    d.add_argument("--cells", default=DEFAULT_CELLS)
    d.add_argument("--docs", default=DOCS)
    args = ap.parse_args(argv)
    for v in getattr(args, "variants", []):
        for task in args.tasks:
            variant_settings(task, v)  # unknown variant: error before anything runs
    return {"run": cmd_run, "table": cmd_table, "docs": cmd_docs}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
