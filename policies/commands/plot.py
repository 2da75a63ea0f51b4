"""``dfo plot RUN_DIR...``: learning curves (evaluation return vs training episodes) as PNG.

Runs are grouped by (env id, method, settings) from their ``config.json``: runs that
differ only in the seed (or where they ran) form one group; runs with other settings
(step size, noise, N, b, horizon, policy, ...) never share a band. When groups of one
env differ in settings, each label names the settings that differ. A group of one run
is drawn as a line; a group of several runs (seeds) as the median with a min–max band,
at each x over the runs that got that far. One panel per env.

Example:
    $ dfo plot runs/Hopper-v5_* --out hopper.png
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", help="run directories (each with progress.csv)")
    parser.add_argument("--out", default="curves.png", help="output PNG (default curves.png)")
    parser.add_argument("--x", choices=("episodes", "env_steps", "time_s"), default="episodes",
                        help="x axis (default episodes)")
    parser.add_argument("--no-group", action="store_true", help="one line per run, no median/band")


#: config fields that do not change what a run learns (seed and where/how long it ran)
NOT_SETTINGS = frozenset({"env_id", "method", "seed", "backend", "n_jobs", "scheduler", "episodes",
                          "max_iterations", "checkpoint_every", "n_eval_episodes", "eval_every", "run_id"})


def settings_of(cfg: dict) -> tuple[tuple[str, str], ...]:
    """The learning settings of a run config, as a hashable, sorted tuple of (name, value text)."""
    return tuple(sorted((k, json.dumps(v, sort_keys=True)) for k, v in cfg.items() if k not in NOT_SETTINGS))


def group_labels(keys: list[tuple[str, str, tuple]]) -> dict[tuple, str]:
    """A label per (env, method, settings) group: the method, plus the settings that differ in its env."""
    labels = {}
    for key in keys:
        env, method, settings = key
        others = [dict(k[2]) for k in keys if k[0] == env]
        mine = dict(settings)
        differ = sorted(n for n in set().union(*others) if len({o.get(n) for o in others}) > 1)
        extra = ", ".join(f"{n}={mine.get(n, '-')}" for n in differ)
        labels[key] = f"{method} ({extra})" if extra else method
    return labels


def load_curve(run_dir: Path, x: str) -> tuple[dict, np.ndarray, np.ndarray]:
    """(config, x, eval_return) of one run, evaluated rows only."""
    from policies.training.runlog import evaluations, read_progress

    csv_path = run_dir / "progress.csv"
    if not csv_path.exists():
        raise ValueError(f"{run_dir} has no progress.csv (is it a `dfo train` run directory?)")
    cfg_path = run_dir / "config.json"
    try:
        cfg = json.loads(cfg_path.read_text()) if cfg_path.exists() else {"env_id": "?", "method": run_dir.name}
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"corrupt {cfg_path}: {e}") from None
    rows = evaluations(read_progress(csv_path))
    return cfg, np.array([r[x] for r in rows]), np.array([r["eval_return"] for r in rows])


def group_band(curves: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Median and min/max of several curves (linear interpolation onto the union of their x).

    At each x only the runs that reached that x count (a run that stopped early, e.g. at a
    return threshold, leaves the band there rather than being extrapolated).
    """
    grid = np.unique(np.concatenate([c[0] for c in curves]))
    ys = np.stack([np.where((grid >= c[0][0]) & (grid <= c[0][-1]), np.interp(grid, c[0], c[1]), np.nan)
                   for c in curves])
    return grid, np.nanmedian(ys, axis=0), np.nanmin(ys, axis=0), np.nanmax(ys, axis=0)


def run(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict[tuple, list] = defaultdict(list)
    try:
        for d in args.runs:
            cfg, xs, ys = load_curve(Path(d), args.x)
            if xs.size == 0:
                print(f"dfo plot: {d}: no evaluated iterations yet, skipped", file=sys.stderr)
                continue
            method = cfg.get("method", "?") if not args.no_group else f"{cfg.get('method')} {d}"
            groups[(cfg.get("env_id", "?"), method, settings_of(cfg))].append((xs, ys))
    except ValueError as exc:
        print(f"dfo plot: error: {exc}", file=sys.stderr)
        return 2
    if not groups:
        print("dfo plot: error: nothing to plot", file=sys.stderr)
        return 2
    labels = group_labels(sorted(groups))
    envs = sorted({k[0] for k in groups})
    fig, axes = plt.subplots(1, len(envs), figsize=(5.5 * len(envs), 4), squeeze=False)
    for ax, env in zip(axes[0], envs):
        for key, curves in sorted(groups.items()):
            if key[0] != env:
                continue
            if len(curves) == 1:
                ax.plot(*curves[0], label=labels[key])
            else:
                grid, med, lo, hi = group_band(curves)
                (line,) = ax.plot(grid, med, label=f"{labels[key]}, median of {len(curves)}")
                ax.fill_between(grid, lo, hi, color=line.get_color(), alpha=0.2)
        ax.set_title(env)
        ax.set_xlabel(args.x.replace("_", " "))
        ax.set_ylabel("evaluation return (true reward)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    print(f"wrote {out}")
    return 0
