"""How early a Hopper seed shows whether ARS will leave the "fall forward" plateau.

Runs the one-start Hopper preset (ARS V2-t, N = 8, b = 4, α = 0.01, ν = 0.025) for a short
budget on tuning seeds, serially, and tabulates each seed's score at several budgets — the
mean of its last 4 evaluations, the score of :mod:`dfo.policies.training.starts`. This is the
measurement behind the race's E (episodes per start) and K (starts) in the Hopper preset:
E must be late enough that trapped seeds score clearly below the others, and K large enough
that all K starts being trapped is rare.

Usage:
    OMP_NUM_THREADS=1 python bench/hopper_early.py --seeds 1-24 --episodes 768 --out bench/results/hopper_early.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

CHECKPOINTS = (288, 384, 512, 576, 672, 768)  # episodes at which the score is read
SCORE_EVALS = 4


def run_seed(seed: int, episodes: int) -> dict:
    from dfo.policies.training import TrainConfig, Trainer

    t0 = time.perf_counter()
    cfg = TrainConfig(env_id="Hopper-v5", seed=seed, episodes=episodes, starts=1, backend="serial")
    with Trainer(cfg) as tr:
        res = tr.run()
    rows = [(int(h["episodes"]), float(h["eval_return"])) for h in res.history if h["eval_return"] == h["eval_return"]]
    return {"seed": seed, "wall_s": round(time.perf_counter() - t0, 1), "evals": rows}


def score_at(rows: list[tuple[int, float]], episodes: int) -> float:
    vals = [r for e, r in rows if e <= episodes]
    return float(np.mean(vals[-SCORE_EVALS:])) if vals else float("nan")


def seeds_arg(text: str) -> list[int]:
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(s) for s in text.split(",")]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=seeds_arg, default=seeds_arg("1-24"))
    ap.add_argument("--episodes", type=int, default=768)
    ap.add_argument("--out", type=Path, default=Path("bench/results/hopper_early.md"))
    ap.add_argument("--runs", type=Path, default=None, help="JSON lines of earlier runs to tabulate instead")
    args = ap.parse_args(argv)
    if args.runs is not None:
        runs = [json.loads(line) for line in args.runs.read_text().splitlines() if line.strip()]
    else:
        runs = []
        for s in args.seeds:
            runs.append(run_seed(s, args.episodes))
            print(json.dumps(runs[-1]), flush=True)
    cps = [c for c in CHECKPOINTS if c <= args.episodes]
    lines = ["# Hopper: how early a seed shows whether it leaves the plateau", "",
             "Command: `OMP_NUM_THREADS=1 python bench/hopper_early.py --seeds "
             f"{runs[0]['seed']}-{runs[-1]['seed']} --episodes {args.episodes}`", "",
             "One-start Hopper preset (ARS V2-t, paper values), serial, tuning seeds (disjoint from the sweep's",
             "1000-1009). Score = mean of the last 4 evaluations (5 episodes each) up to that many training",
             "episodes, the race's score (`dfo.policies.training.starts`).", "",
             "| seed | " + " | ".join(f"score at {c}" for c in cps) + " |",
             "|---|" + "---|" * len(cps)]
    for r in sorted(runs, key=lambda r: r["seed"]):
        rows = [tuple(x) for x in r["evals"]]
        lines.append(f"| {r['seed']} | " + " | ".join(f"{score_at(rows, c):.0f}" for c in cps) + " |")
    print("\n".join(lines), file=sys.stderr)
    args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
