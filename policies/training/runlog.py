"""Run outputs: ``progress.csv`` (one row per iteration), ``metrics.jsonl`` (namespaced keys)
and TensorBoard event files when ``tensorboard`` is installed.

Floats are written with ``repr`` so a CSV value reads back bit for bit. On resume, rows
after the checkpoint's iteration are dropped (:meth:`RunLog.truncate`) so the files
continue exactly as an uninterrupted run would have written them.

Example:
    >>> import tempfile
    >>> log = RunLog(tempfile.mkdtemp())
    >>> log.write({"iteration": 0, "episodes": 0, "env_steps": 0, "eval_return": 1.5})
    >>> log.close()
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

#: progress.csv columns, in order
COLUMNS = (
    "iteration", "episodes", "env_steps", "eval_return", "eval_return_std", "train_return_mean",
    "train_return_max", "nonfinite_episodes", "grad_norm", "step_size", "time_s", "iter_time_s",
    "env_steps_per_s", "bytes_sent", "bytes_received", "retries",
)

#: columns that depend only on the seed (equal across backends, runs and resumes)
DETERMINISTIC_COLUMNS = COLUMNS[:10]

#: progress.csv column -> namespaced metric key (metrics.jsonl, TensorBoard)
METRIC_KEYS = {
    "eval_return": "charts/episodic_return",
    "eval_return_std": "charts/episodic_return_std",
    "train_return_mean": "charts/train_return_mean",
    "train_return_max": "charts/train_return_max",
    "nonfinite_episodes": "charts/nonfinite_episodes",
    "grad_norm": "grad/norm",
    "step_size": "ls/step_size",
    "env_steps_per_s": "time/env_steps_per_s",
    "iter_time_s": "time/iteration_s",
    "bytes_sent": "perf/bytes_sent",
    "bytes_received": "perf/bytes_received",
    "retries": "perf/retries",
}


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return repr(v)
    return str(v)


def read_progress(path: str | os.PathLike) -> list[dict[str, float]]:
    """Rows of a ``progress.csv`` as floats (``nan`` for empty cells)."""
    with open(path, newline="") as f:
        return [{k: (float(v) if v != "" else math.nan) for k, v in row.items()} for row in csv.DictReader(f)]


class RunLog:
    """Appends rows to ``progress.csv`` / ``metrics.jsonl`` (and TensorBoard) in ``run_dir``."""

    def __init__(self, run_dir: str | os.PathLike, *, tensorboard: bool = True) -> None:
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.csv_path = self.dir / "progress.csv"
        self.jsonl_path = self.dir / "metrics.jsonl"
        new = not self.csv_path.exists() or self.csv_path.stat().st_size == 0
        self._csv = open(self.csv_path, "a", newline="")
        self._writer = csv.writer(self._csv)
        if new:
            self._writer.writerow(COLUMNS)
            self._csv.flush()
        self._jsonl = open(self.jsonl_path, "a")
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

                self._tb = SummaryWriter(str(self.dir / "tb"))
            except Exception:  # tensorboard (or torch) not installed: CSV + JSONL only
                self._tb = None

    @staticmethod
    def truncate(run_dir: str | os.PathLike, iteration: int) -> None:
        """Drop rows with ``iteration`` greater than the given one from both files."""
        d = Path(run_dir)
        csv_path, jsonl_path = d / "progress.csv", d / "metrics.jsonl"
        if csv_path.exists():
            with open(csv_path, newline="") as f:
                rows = list(csv.reader(f))
            if rows:
                keep = [rows[0]] + [r for r in rows[1:] if r and int(float(r[0])) <= iteration]
                with open(csv_path, "w", newline="") as f:
                    csv.writer(f).writerows(keep)
        if jsonl_path.exists():
            lines = [ln for ln in jsonl_path.read_text().splitlines() if ln.strip()]
            keep_l = [ln for ln in lines if json.loads(ln).get("iteration", 0) <= iteration]
            jsonl_path.write_text("".join(ln + "\n" for ln in keep_l))

    def write(self, row: dict[str, Any]) -> None:
        """Append one iteration's row (missing columns are left empty)."""
        self._writer.writerow([_fmt(row.get(c)) for c in COLUMNS])
        self._csv.flush()
        rec: dict[str, Any] = {"iteration": row["iteration"], "episodes": row["episodes"],
                               "env_steps": row["env_steps"], "time_s": row.get("time_s")}
        for col, key in METRIC_KEYS.items():
            v = row.get(col)
            if v is not None and not (isinstance(v, float) and math.isnan(v)):
                rec[key] = v
        self._jsonl.write(json.dumps(rec) + "\n")
        self._jsonl.flush()
        if self._tb is not None:
            for key, v in rec.items():
                if "/" in key:
                    self._tb.add_scalar(key, v, global_step=int(row["episodes"]))

    def close(self) -> None:
        for f in (self._csv, self._jsonl):
            if not f.closed:
                f.close()
        if self._tb is not None:
            self._tb.close()
            self._tb = None
