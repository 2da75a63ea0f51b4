"""End-to-end tests of `dfo train | evaluate | plot | render` through dfo.cli.main."""

from __future__ import annotations

import json


from dfo.cli import main
from dfo.policies.checkpoint import list_checkpoints
from dfo.policies.training import COLUMNS, read_progress

TRAIN = ["train", "InvertedPendulum-v5", "--episodes", "24", "--horizon", "60", "--n-jobs", "1",
         "--n-directions", "4", "--top-b", "2", "--method", "ars-v2t",
         "--eval-episodes", "2", "--eval-every", "1", "--checkpoint-every", "2", "--no-progress"]


def test_train_evaluate_plot_end_to_end(tmp_path, capsys):
    run = tmp_path / "run"
    assert main([*TRAIN, "--out", str(run)]) == 0
    rows = read_progress(run / "progress.csv")
    header = (run / "progress.csv").read_text().splitlines()[0].split(",")
    assert header == list(COLUMNS)
    assert {"iteration", "episodes", "env_steps", "eval_return", "nonfinite_episodes"} <= set(header)
    assert [r["iteration"] for r in rows] == [0, 1, 2, 3]
    assert rows[-1]["episodes"] == 24 and rows[-1]["env_steps"] > 0
    first = json.loads((run / "metrics.jsonl").read_text().splitlines()[1])
    assert "charts/episodic_return" in first and "grad/norm" in first
    assert [p.name for p in list_checkpoints(run)] == ["iter_000002", "iter_000003"]
    assert json.loads((run / "config.json").read_text())["method"] == "ars-v2t"
    capsys.readouterr()

    assert main(["evaluate", str(run), "--episodes", "3", "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["episodes"] == 3 and res["env_id"] == "InvertedPendulum-v5" and res["mean_return"] > 0

    best = json.loads((run / "best_policy.json").read_text())
    assert best["eval_return"] == max(r["eval_return"] for r in rows if r["eval_return"] == r["eval_return"])
    assert main(["evaluate", str(run / "best_policy"), "--episodes", "2"]) == 0

    run2 = tmp_path / "run2"
    assert main([*TRAIN, "--out", str(run2), "--seed", "1"]) == 0
    png = tmp_path / "curves.png"
    assert main(["plot", str(run), str(run2), "--out", str(png)]) == 0
    assert png.stat().st_size > 1000 and png.read_bytes()[:4] == b"\x89PNG"


def test_train_says_when_a_task_has_no_tuned_preset(tmp_path, capsys):
    base = ["train", "--n-jobs", "1", "--max-iterations", "1", "--no-progress", "--eval-episodes", "1"]
    assert main([*base, "Pendulum-v1", "--out", str(tmp_path / "p")]) == 0
    err = capsys.readouterr().err
    assert "Pendulum-v1 has no tuned preset" in err and "--policy mlp" in err
    assert main([*base, "InvertedPendulum-v5", "--out", str(tmp_path / "ip")]) == 0
    assert "no tuned preset" not in capsys.readouterr().err


def test_train_refuses_to_overwrite_and_resumes(tmp_path, capsys):
    run = tmp_path / "run"
    assert main([*TRAIN, "--out", str(run), "--max-iterations", "2"]) == 0
    assert main([*TRAIN, "--out", str(run)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "--max-iterations", "3", "--no-progress"]) == 0
    assert [r["iteration"] for r in read_progress(run / "progress.csv")] == [0, 1, 2, 3]


def test_train_errors_are_clear(tmp_path, capsys):
    assert main(["train", "NoSuchEnv-v0", "--out", str(tmp_path / "x"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "unknown env id" in err and "Hopper-v5" in err
    assert main(["train", "--backend", "dask", "--no-progress"]) == 2
    assert "--scheduler" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "missing")]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_train_defaults_come_from_the_task_preset():
    from dfo.policies.commands.train import DEFAULT_ENV
    from dfo.policies.training import TrainConfig

    cfg = TrainConfig(env_id=DEFAULT_ENV).resolved()
    assert (cfg.env_id, cfg.method, cfg.horizon) == ("Swimmer-v5", "orthogonal", 1000)


def test_render_writes_a_video_or_says_why(tmp_path, capsys):
    run = tmp_path / "run"
    assert main([*TRAIN, "--out", str(run), "--max-iterations", "1"]) == 0
    capsys.readouterr()
    code = main(["render", str(run), "--out", str(tmp_path / "v.mp4"), "--steps", "5", "--width", "64",
                 "--height", "64"])
    out, err = capsys.readouterr()
    if code == 0:
        written = [p for p in tmp_path.iterdir() if p.suffix in (".mp4", ".gif")]
        assert written and written[0].stat().st_size > 0
    else:
        assert code == 3 and "MUJOCO_GL" in err and "EGL" in err


def test_examples_run(monkeypatch, capsys):
    import runpy
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    monkeypatch.setattr(sys, "argv", ["train_pendulum.py", "--episodes", "16"])
    runpy.run_path(str(root / "examples" / "train_pendulum.py"), run_name="__main__")
    assert "after 16 episodes" in capsys.readouterr().out


def test_demo_runs_every_estimator_of_the_registry(capsys):
    import dfo

    assert main(["demo", "--n", "4", "--maxfev", "60"]) == 0
    rows = [line.split("|")[1].strip() for line in capsys.readouterr().out.splitlines()
            if line.startswith("| ") and not line.startswith("| estimator")]
    assert rows == list(dfo.ESTIMATORS) and len(rows) >= 13


def test_version_and_python_dash_m(capsys):
    import subprocess
    import sys

    import pytest

    import dfo

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"dfo {dfo.__version__}"
    out = subprocess.run([sys.executable, "-m", "dfo", "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == f"dfo {dfo.__version__}"
    assert subprocess.run([sys.executable, "-m", "dfo"], capture_output=True, text=True, timeout=60).returncode == 2


def test_lazy_attributes_of_dfo_and_dfo_torch():
    import subprocess
    import sys

    code = ("import dfo, sys; assert 'dfo.torch' not in sys.modules and 'dfo.policies' not in sys.modules; "
            "print(dfo.torch.ZerothOrder.__name__, dfo.train.__module__); "
            "import dfo.torch; print(dfo.torch.hf.ZOTrainer.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ZerothOrder", "dfo.policies.api", "ZOTrainer"]
    import dfo

    assert "train" in dir(dfo) and "torch" in dir(dfo)
    try:
        dfo.no_such_name
    except AttributeError as exc:
        assert "no attribute 'no_such_name'" in str(exc)
    else:
        raise AssertionError("dfo.no_such_name did not raise AttributeError")


def test_demo_flags_come_from_its_config_with_every_default_shown(capsys, tmp_path):
    import dataclasses

    import pytest

    from dfo.demo import DemoConfig

    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for field in dataclasses.fields(DemoConfig):
        flag = "--" + field.name.replace("_", "-")
        assert flag in text, flag
    assert "(default: 20000)" in text and "(default: every estimator in dfo.ESTIMATORS)" in text
    config = tmp_path / "demo.json"
    config.write_text('{"n": 4, "maxfev": 40, "estimators": ["cfd", "ffd"]}')
    assert main(["demo", "--config", str(config), "--estimators", "ffd"]) == 0  # a flag overrides the file
    rows = [line.split("|")[1].strip() for line in capsys.readouterr().out.splitlines() if line.startswith("| ")]
    assert rows == ["estimator", "ffd"]
    assert main(["demo", "--estimators", "cfd,nope"]) == 2
    assert capsys.readouterr().err.strip() == ("dfo demo: error: unknown estimator(s) 'nope'; known: "
                                               + ", ".join(__import__("dfo").ESTIMATORS))


def test_dfo_train_without_the_rl_extra_says_which_extra(monkeypatch):
    import importlib

    import pytest

    import dfo

    real = importlib.import_module

    def without_gymnasium(name, *args):
        if name.startswith("dfo.policies"):
            raise ModuleNotFoundError("No module named 'gymnasium'", name="gymnasium")
        return real(name, *args)

    monkeypatch.delitem(dfo.__dict__, "train", raising=False)  # not cached from an earlier access
    monkeypatch.setattr(importlib, "import_module", without_gymnasium)
    with pytest.raises(ImportError, match=r"dfo.train needs 'gymnasium', which is not installed "
                                          r"\(pip install 'dfo-toolkit\[rl\]'\)"):
        dfo.train
