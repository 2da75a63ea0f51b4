"""Experiment trackers: the run's metrics stream mirrored to Weights & Biases or MLflow.

A run already writes its metrics to ``metrics.jsonl`` and TensorBoard under namespaced keys
(``charts/episodic_return``, ``grad/norm``, ...). ``--track wandb`` and/or ``--track mlflow``
send the same keys, at the same step (training env steps for ``dfo train``), and the run's
settings once at the start. The trackers are optional packages (``pip install
"dfo-toolkit[track]"``); naming one that is not installed is a one-line error before any
work. Each tracker is configured the way its users expect, by its own environment
variables, never by dfo:

* W&B: ``WANDB_PROJECT`` (default ``dfo``), ``WANDB_ENTITY``, ``WANDB_MODE=offline`` (no
  network; ``wandb sync`` later), ``WANDB_DIR`` (default: the current directory's ``wandb/``).
  A resumed run continues the same W&B run (its id is the run's own id).
* MLflow: ``MLFLOW_TRACKING_URI`` (a server, or a local store), ``MLFLOW_EXPERIMENT_NAME``
  (default ``dfo``).

Nothing is written into the run folder, so the folder's manifest and overwrite rule are
unaffected.

Example:
    >>> trackers = open_trackers([], run_id="r1", name="demo", config={})   # none asked: no-op
    >>> trackers.log({"charts/episodic_return": 1.0}, step=10); trackers.close()
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable, Mapping
from typing import Any

#: tracker name -> the module it needs (the ``track`` extra installs both)
TRACKERS = {"wandb": "wandb", "mlflow": "mlflow"}


class TrackerError(ValueError):
    """An unknown tracker name, or one whose package is not installed."""


def check_trackers(names: Iterable[str]) -> tuple[str, ...]:
    """The names, validated: known and importable (a one-line :class:`TrackerError` otherwise)."""
    names = tuple(dict.fromkeys(names))
    for name in names:
        if name not in TRACKERS:
            raise TrackerError(f"unknown tracker {name!r}; choose from {', '.join(TRACKERS)}")
        if importlib.util.find_spec(TRACKERS[name]) is None:
            raise TrackerError(f"--track {name} needs the {TRACKERS[name]!r} package: "
                               f"pip install \"dfo-toolkit[track]\" (or pip install {TRACKERS[name]})")
    return names


def _flat(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value if isinstance(value, (int, float, str, bool)) or value is None else str(value)
    return out


class _Wandb:
    def __init__(self, run_id: str, name: str, config: Mapping[str, Any]) -> None:
        import wandb

        self._run = wandb.init(project=os.environ.get("WANDB_PROJECT", "dfo"), name=name, id=run_id,
                               resume="allow", config=dict(config), reinit="create_new")

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        self._run.log(dict(metrics), step=int(step))

    def close(self) -> None:
        self._run.finish()


class _Mlflow:
    def __init__(self, run_id: str, name: str, config: Mapping[str, Any]) -> None:
        import mlflow

        self._mlflow = mlflow
        mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME", "dfo"))
        self._run = mlflow.start_run(run_name=name, tags={"dfo.run_id": run_id})
        params = {k: ("" if v is None else v) for k, v in _flat(config).items()}
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})  # MLflow caps a value at 500 chars

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        self._mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, step=int(step))

    def close(self) -> None:
        self._mlflow.end_run()


_OPENERS = {"wandb": _Wandb, "mlflow": _Mlflow}


class Trackers:
    """The open trackers of one run; ``log`` sends finite values only (W&B and MLflow reject NaN/inf)."""

    def __init__(self, trackers: list) -> None:
        self._trackers = trackers

    def __bool__(self) -> bool:
        return bool(self._trackers)

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        clean = {k: float(v) for k, v in metrics.items()
                 if isinstance(v, (int, float)) and not isinstance(v, bool) and float(v) == float(v)
                 and abs(float(v)) != float("inf")}
        if clean:
            for tracker in self._trackers:
                tracker.log(clean, step)

    def close(self) -> None:
        while self._trackers:
            self._trackers.pop().close()


def open_trackers(names: Iterable[str], *, run_id: str, name: str, config: Mapping[str, Any]) -> Trackers:
    """Start each named tracker for one run (``run_id``: the run's own id; ``name``: a readable name)."""
    opened = []
    try:
        for tracker in check_trackers(names):
            opened.append(_OPENERS[tracker](run_id, name, config))
    except BaseException:
        Trackers(opened).close()
        raise
    return Trackers(opened)


__all__ = ["TRACKERS", "TrackerError", "Trackers", "check_trackers", "open_trackers"]
