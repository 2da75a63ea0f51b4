"""``dfo plot RUN_DIR...``: learning curves (evaluation return vs training episodes) as PNG.

Runs are grouped by (env id, method, settings) from their ``config.json``: runs that
differ only in the seed (or where they ran) form one group; runs with other settings
(step size, noise, N, b, horizon, policy, ...) never share a band. When groups of one
env differ in settings, each label names the settings that differ. A group of one run
is drawn as a line; a group of several runs (seeds) as their interquartile mean (IQM) with a
95 % percentile-bootstrap interval over runs (Agarwal et al. 2021; :mod:`dfo.policies.aggregate`).
A run that stopped early (at a return threshold, or a smaller budget) keeps its last
evaluation from there on, so the aggregate does not fall when the successful runs stop.
One panel per env; each method keeps one colour in every panel, and the legend sits below
the panels, off the data.

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
                          "max_iterations", "checkpoint_every", "n_eval_episodes", "eval_every", "run_id", "track"})


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
    from dfo.policies.training.runlog import evaluations, read_progress

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


def group_band(curves: list[tuple[np.ndarray, np.ndarray]], *, seed: int = 0
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x, IQM, low, high) of several runs' curves: 95 % bootstrap interval, finished runs carried forward."""
    from dfo.policies.aggregate import bootstrap_iqm, carry_forward

    grid, values = carry_forward(curves)
    point, low, high = bootstrap_iqm(values, seed=seed)
    return grid, point, low, high


def method_colours(labels: list[str]) -> dict[str, str]:
    """One colour per label, the same in every panel (tab10, then tab20 for more labels)."""
    import matplotlib

    names = sorted(set(labels))
    cmap = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {name: matplotlib.colors.to_hex(cmap(i % cmap.N)) for i, name in enumerate(names)}


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
    colours = method_colours(list(labels.values()))
    envs = sorted({k[0] for k in groups})
    fig, axes = plt.subplots(1, len(envs), figsize=(max(5.5, 4.5 * len(envs)), 4.2), squeeze=False)
    handles: dict[str, object] = {}
    for ax, env in zip(axes[0], envs):
        for key, curves in sorted(groups.items()):
            if key[0] != env:
                continue
            colour = colours[labels[key]]
            if len(curves) == 1:
                name = labels[key]
                (line,) = ax.plot(*curves[0], color=colour, lw=1.5)
            else:
                grid, mid, lo, hi = group_band(curves)
                name = f"{labels[key]} (IQM of {len(curves)} runs, 95% bootstrap CI)"
                (line,) = ax.plot(grid, mid, color=colour, lw=1.5)
                ax.fill_between(grid, lo, hi, color=colour, alpha=0.2, lw=0)
            handles.setdefault(name, line)
        ax.set_title(env)
        ax.set_xlabel(args.x.replace("_", " "))
        ax.set_ylabel("evaluation return (true reward)")
        ax.grid(alpha=0.3)
    ncol = max(1, min(len(handles), 3 if len(envs) > 1 else 1))
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=ncol, fontsize=9, frameon=False)
    rows = -(-len(handles) // ncol)
    fig.tight_layout(rect=(0, min(0.45, 0.06 + 0.055 * rows), 1, 1))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    print(f"wrote {out}")
    return 0
