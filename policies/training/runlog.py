"""What ``dfo train`` logs: the rows of ``progress.csv`` / ``metrics.jsonl`` and the progress line.

The stream itself (files, TensorBoard, trackers, truncation on resume) is the run harness's
:mod:`dfo.run.metrics`; this module names the RL trainer's columns (:data:`COLUMNS`, one row
per iteration, row 0 the initial policy), their namespaced keys (:data:`METRIC_KEYS`,
CleanRL's ``charts/episodic_return`` for the evaluation return), the :data:`SCHEMA` that joins
them, the fields of the progress line, and two readers of the rows (:func:`evaluations`,
:func:`first_reaching`).

Example:
    >>> import tempfile
    >>> from dfo.run.metrics import MetricsLog
    >>> log = MetricsLog(tempfile.mkdtemp(), SCHEMA, tensorboard=False)
    >>> log.write({"iteration": 0, "episodes": 0, "env_steps": 0, "eval_return": 1.5})
    >>> log.close()
    >>> [r["eval_return"] for r in evaluations(read_progress(log.csv_path))]
    [1.5]
"""

from __future__ import annotations

import math
from typing import Any

from dfo.run.metrics import Schema, read_progress

__all__ = ["COLUMNS", "DETERMINISTIC_COLUMNS", "METRIC_KEYS", "SCHEMA", "evaluations", "first_reaching",
           "progress_fields", "read_progress"]

#: progress.csv columns, in order
COLUMNS = (
    "iteration", "episodes", "env_steps", "eval_return", "eval_return_std", "train_return_mean",
    "train_return_max", "nonfinite_episodes", "grad_norm", "step_size", "time_s", "iter_time_s",
    "env_steps_per_s", "bytes_sent", "bytes_received", "retries",
)

#: columns that depend only on the seed (equal across backends, runs and resumes)
DETERMINISTIC_COLUMNS = COLUMNS[:10]

#: progress.csv column -> namespaced metric key (metrics.jsonl, TensorBoard, trackers)
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

#: the RL trainer's metrics stream: x = training env steps
SCHEMA = Schema(columns=COLUMNS, keys=METRIC_KEYS, plain=("iteration", "episodes", "env_steps", "time_s"),
                x="env_steps", headline="charts/episodic_return")


def progress_fields(row: dict[str, Any], last_eval: float) -> dict[str, str]:
    """The fields of the progress line/bar after an iteration (the episode count is the bar's own)."""
    return {"it": str(row["iteration"]), "env_steps": str(row["env_steps"]), "eval": f"{last_eval:.2f}",
            "train": f"{row.get('train_return_mean', math.nan):.2f}",
            "steps/s": f"{row.get('env_steps_per_s', math.nan):.0f}", "time": f"{row.get('time_s', 0.0):.0f} s"}


def evaluations(rows: list[dict[str, float]]) -> list[dict[str, float]]:
    """The rows of ``read_progress`` that carry an evaluation (``eval_return`` not ``nan``)."""
    return [r for r in rows if not math.isnan(r.get("eval_return", math.nan))]


def first_reaching(rows: list[dict[str, float]], threshold: float | None) -> dict[str, float] | None:
    """The first evaluated row whose ``eval_return`` is at or above ``threshold`` (None: never, or no threshold).

    This is the "episodes to threshold" rule of the benchmarks (ARS paper, Table 1): the training
    episodes counted at the first evaluation of the unperturbed policy that reaches the threshold.
    """
    if threshold is None:
        return None
    return next((r for r in evaluations(rows) if r["eval_return"] >= threshold), None)
