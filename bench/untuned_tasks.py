"""Tasks without a tuned preset: what ``dfo train ENV`` gives a new user, linear vs MLP policy.

Each row is one ``dfo.train`` run per seed (seed 0 unless the row names more; one process)
on a gymnasium task that has no built-in preset, so its settings come from the generic rule
(``dfo.envs.presets.get_preset``). CartPole, Acrobot and MountainCar have discrete actions (one
score per action, ``argmax``: ``dfo.envs.actions``).
The ``mlp`` rows change only the policy (α, ν stay the rule's, sized for the linear
policy) unless the row says otherwise. The preset tasks InvertedPendulum and Swimmer are
included with the generic rule's settings forced, to see what an MLP costs where a linear
policy is known to work.

Usage (repo root):

    PYTHONPATH=. python bench/untuned_tasks.py --out bench/results/untuned_tasks.md
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: (task, label, dfo.train keyword arguments, episodes, threshold or None[, seeds])
RUNS = [
    ("CartPole-v1", "default (generic rule, linear)", {}, 500, 475.0, (0, 1, 2)),
    ("Acrobot-v1", "default (generic rule, linear)", {}, 500, -100.0, (0, 1, 2)),
    ("MountainCar-v0", "default (generic rule, linear)", {}, 1000, -110.0, (0, 1, 2)),
    ("Pendulum-v1", "default (generic rule, linear)", {}, 2000, None),
    ("Pendulum-v1", "--policy mlp", {"policy": "mlp"}, 2000, None),
    ("Pendulum-v1", "--policy mlp, α = ν = 0.106 (rule on the MLP width)",
     {"policy": "mlp", "step_size": 0.106, "noise": 0.106}, 2000, None),
    ("MountainCarContinuous-v0", "default (generic rule, linear)", {}, 1000, 90.0),
    ("MountainCarContinuous-v0", "--policy mlp", {"policy": "mlp"}, 1000, 90.0),
    ("InvertedPendulum-v5", "generic rule forced, linear",
     {"method": "orthogonal", "n_directions": 8, "top_b": 8, "step_size": 0.45, "noise": 0.45}, 400, 950.0),
    ("InvertedPendulum-v5", "generic rule forced, mlp",
     {"method": "orthogonal", "n_directions": 8, "top_b": 8, "step_size": 0.45, "noise": 0.45, "policy": "mlp"},
     400, 950.0),
    ("Swimmer-v5", "generic rule forced, linear",
     {"method": "orthogonal", "n_directions": 8, "top_b": 8, "step_size": 0.11, "noise": 0.11}, 1000, 325.0),
    ("Swimmer-v5", "generic rule forced, mlp",
     {"method": "orthogonal", "n_directions": 8, "top_b": 8, "step_size": 0.11, "noise": 0.11, "policy": "mlp"},
     1000, 325.0),
]


def one(env_id: str, kwargs: dict, episodes: int, threshold: float | None, seed: int) -> dict:
    import dfo
    from dfo.policies.training.runlog import evaluations, first_reaching, read_progress

    with tempfile.TemporaryDirectory() as tmp:
        res = dfo.train(env_id, out=Path(tmp) / "run", seed=seed, episodes=episodes, n_jobs=1, progress=False, **kwargs)
        rows = read_progress(Path(tmp) / "run" / "progress.csv")
    evals = [(int(r["episodes"]), r["eval_return"]) for r in evaluations(rows)]
    hit = first_reaching(rows, threshold)
    reached = None if hit is None else int(hit["episodes"])
    step = max(1, len(evals) // 8)
    return {"final": res.eval_return, "best": max(v for _, v in evals), "reached": reached,
            "curve": evals[::step] + ([evals[-1]] if (len(evals) - 1) % step else [])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench/results/untuned_tasks.md")
    args = ap.parse_args()
    lines = ["# Tasks without a tuned preset: linear vs MLP", "",
             "    PYTHONPATH=. python bench/untuned_tasks.py --out bench/results/untuned_tasks.md", "",
             f"Machine: {platform.machine()}, {os.cpu_count()} logical CPUs. One process per run, "
             "evaluation = mean true return of the unperturbed policy over 5 episodes after every iteration. "
             "MLP = two tanh layers of 32. Rows with several seeds list one figure per seed; the curve is "
             "the first seed's.", "",
             "| task | settings | seeds | episodes | first evaluation at or above the threshold | best eval | "
             "final eval | eval curve (episodes: return) |", "|---|---|---|---|---|---|---|---|"]
    for env_id, label, kwargs, episodes, thr, *more in RUNS:
        seeds = more[0] if more else (0,)
        rs = [one(env_id, kwargs, episodes, thr, seed) for seed in seeds]
        each = ", ".join("not" if r["reached"] is None else str(r["reached"]) for r in rs)
        reached = "–" if thr is None else f"{each} (≥ {thr:g})"
        best = ", ".join(f"{r['best']:.0f}" for r in rs)
        final = ", ".join(f"{r['final']:.0f}" for r in rs)
        curve = ", ".join(f"{e}: {v:.0f}" for e, v in rs[0]["curve"])
        lines.append(f"| {env_id} | {label} | {', '.join(map(str, seeds))} | {episodes} | {reached} | {best} | "
                     f"{final} | {curve} |")
        print(lines[-1], flush=True)
    Path(args.out).write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
