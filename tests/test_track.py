"""--track wandb|mlflow: the run's namespaced metrics mirrored to the trackers (offline stores here)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from dfo.run.track import TrackerError, check_trackers


def _metrics(run: Path, key: str) -> list[tuple[int, float]]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["env_steps"], r[key]) for r in rows if key in r]


def _train(tmp_path, track):
    import dfo

    return dfo.train("InvertedPendulum-v5", out=tmp_path / "run", episodes=32, n_jobs=1, seed=2, progress=False,
                     track=track)


def test_mlflow_receives_the_same_metrics_and_settings(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"file:{tmp_path / 'mlruns'}")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "dfo-test")
    _train(tmp_path, ("mlflow",))
    (runs,) = [p for p in (tmp_path / "mlruns").glob("*/*") if (p / "metrics").is_dir()]
    logged = [line.split() for line in (runs / "metrics" / "charts" / "episodic_return").read_text().splitlines()]
    assert [(int(step), float(v)) for _, v, step in logged] == _metrics(tmp_path / "run", "charts/episodic_return")
    assert (runs / "params" / "step_size").read_text() == str(
        json.loads((tmp_path / "run" / "config.json").read_text())["step_size"])


def test_wandb_offline_run_is_named_by_the_run_id_and_holds_the_metric_keys(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    _train(tmp_path, ("wandb",))
    run_id = json.loads((tmp_path / "run" / "config.json").read_text())["run_id"]
    (folder,) = (tmp_path / "wandb").glob(f"offline-run-*-{run_id}")
    (log,) = folder.glob("run-*.wandb")
    data = b""
    for _ in range(600):  # wandb-core appends the records in its own process (slow on a loaded machine)
        data = log.read_bytes()
        if b"grad/norm" in data:
            break
        time.sleep(0.1)
    assert b"charts/episodic_return" in data and b"grad/norm" in data
    assert not any(p.name == "wandb" for p in (tmp_path / "run").iterdir())   # nothing in the run folder


def test_unknown_or_missing_tracker_is_a_one_line_error(monkeypatch):
    import importlib.util

    with pytest.raises(TrackerError, match="unknown tracker 'neptune'"):
        check_trackers(["neptune"])
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    with pytest.raises(TrackerError, match=r"--track wandb needs the 'wandb' package"):
        check_trackers(["wandb"])
    from dfo.policies.training.config import TrainConfig

    with pytest.raises(ValueError, match="track must be a list"):
        TrainConfig(track="mlflow")
