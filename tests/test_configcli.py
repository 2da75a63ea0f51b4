"""Command-line flags generated from config dataclasses (dfo.configcli) and `dfo train --config`."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import subprocess
import sys

import pytest

from dfo.configcli import (
    add_config_arguments,
    field_docs,
    given_fields,
    merge_fields,
    none_clause,
    read_config_file,
)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Demo:
    """A demo config.

    Attributes:
        steps: iterations
            to run.
        rate, decay: step size and its decay (``None`` = from the preset).
        widths: layer widths.
        flag: a switch.
        extra: JSON settings.
        names: modules.

    Example:
        ignored: not a field.
    """

    steps: int = 10
    rate: float | None = None
    decay: float = 0.5
    widths: tuple[int, ...] = (8,)
    flag: bool = False
    extra: dict = dataclasses.field(default_factory=dict)
    names: tuple[str, ...] = ()


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    add_config_arguments(p, Demo, repeatable=("names",), flags={"names": "--name"})
    return p


def test_field_docs_reads_grouped_and_continued_entries():
    docs = field_docs(Demo)
    assert docs["steps"] == "iterations to run."
    assert docs["rate"] == docs["decay"] == "step size and its decay (``None`` = from the preset)."
    assert "ignored" not in docs
    assert none_clause(docs["rate"]) == ("step size and its decay.", "from the preset")


def test_only_given_flags_are_returned_with_their_types():
    args = _parser().parse_args(["--widths", "64,32", "--flag", "yes", "--extra", '{"a": 1}',
                                 "--name", "m1", "--name", "m2", "--rate", "0.1"])
    assert given_fields(args, Demo) == {"widths": (64, 32), "flag": True, "extra": {"a": 1},
                                        "names": ("m1", "m2"), "rate": 0.1}
    assert given_fields(_parser().parse_args([]), Demo) == {}


@pytest.mark.parametrize("argv", [["--widths", "a,b"], ["--flag", "maybe"], ["--extra", "[1]"], ["--steps", "1.5"]])
def test_bad_values_are_argparse_errors(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        _parser().parse_args(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {argv[0]}:" in err and "error" in err


def test_help_shows_every_default():
    text = " ".join(_parser().format_help().split())
    for shown in ("(default: 10)", "(default: from the preset)", "(default: 0.5)", "(default: 8)",
                  "(default: False)", "(default: none)"):
        assert shown in text


@dataclasses.dataclass(frozen=True, kw_only=True)
class Inner:
    """Nested settings.

    Attributes:
        kind: which one.
        radius: perturbation radius.
    """

    kind: str = "a"
    radius: float = 1e-3


@dataclasses.dataclass(frozen=True, kw_only=True)
class Outer:
    """Settings holding nested ones.

    Attributes:
        kind: the outer kind.
        inner: nested settings (None: from kind).
        steps: iterations.
    """

    kind: str = "a"
    inner: Inner | None = None
    steps: int = 1


def test_a_nested_config_gets_flat_flags_and_comes_back_nested(tmp_path):
    p = argparse.ArgumentParser()
    add_config_arguments(p, Outer, skip=("inner.kind",), choices={"kind": ("a", "b")})
    text = " ".join(p.format_help().split())
    assert "--radius FLOAT perturbation radius. (default: 0.001)" in text and "--inner" not in text
    args = p.parse_args(["--radius", "0.5", "--steps", "3"])
    assert given_fields(args, Outer) == {"inner": {"radius": 0.5}, "steps": 3}
    assert given_fields(p.parse_args([]), Outer) == {}
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"config": {"kind": "b", "inner": {"kind": "b", "radius": 0.1}, "steps": 2}}))
    from_file = read_config_file(path, Outer)
    assert from_file == {"kind": "b", "inner": {"kind": "b", "radius": 0.1}, "steps": 2}
    assert merge_fields(from_file, given_fields(args, Outer)) == {"kind": "b", "inner": {"kind": "b", "radius": 0.5},
                                                                  "steps": 3}
    assert merge_fields({"inner": None}, {"inner": {"radius": 0.5}}) == {"inner": {"radius": 0.5}}
    path.write_text(json.dumps({"inner": {"colour": 1}}))
    with pytest.raises(ValueError, match=r"inner: unknown settings \['colour'\]"):
        read_config_file(path, Outer)
    path.write_text(json.dumps({"radius": 0.2}))  # an older flat layout, upgraded before the keys are checked
    assert read_config_file(path, Outer, upgrade=lambda d: {"inner": {"radius": d.pop("radius")}, **d}) == \
        {"inner": {"radius": 0.2}}


def test_every_train_config_field_has_a_flag_with_its_default():
    from dfo.policies.commands.train import add_arguments
    from dfo.policies.training.config import TrainConfig

    p = argparse.ArgumentParser()
    add_arguments(p)
    dests = {a.dest for a in p._actions}
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert fields <= dests                                  # env_id is the positional
    for action in p._actions:
        if action.dest in fields - {"env_id"}:
            assert "(default: " in action.help, action.dest


def test_read_config_file_refuses_unknown_keys_and_non_objects(tmp_path):
    good = tmp_path / "c.json"
    good.write_text(json.dumps({"steps": 3, "widths": [4, 4], "run_id": "x"}))
    assert read_config_file(good, Demo, ignore=("run_id",)) == {"steps": 3, "widths": (4, 4)}
    with pytest.raises(ValueError, match=r"unknown settings \['run_id'\]"):
        read_config_file(good, Demo)
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="expected a JSON object"):
        read_config_file(tmp_path / "list.json", Demo)
    with pytest.raises(ValueError, match="not a regular file"):
        read_config_file(tmp_path, Demo)


def _dfo(*argv, cwd):
    return subprocess.run([sys.executable, "-m", "dfo.cli", *argv], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_dfo_train_config_reruns_a_run_to_the_same_numbers(tmp_path):
    first = _dfo("train", "InvertedPendulum-v5", "--episodes", "32", "--n-jobs", "1", "--seed", "5",
                 "--step-size", "0.3", "--no-progress", "--out", "a", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    again = _dfo("train", "--config", "a/config.json", "--no-progress", "--out", "b", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    cfg_a = json.loads((tmp_path / "a" / "config.json").read_text())
    cfg_b = json.loads((tmp_path / "b" / "config.json").read_text())
    assert cfg_a.pop("run_id") != cfg_b.pop("run_id")
    assert cfg_a == cfg_b and cfg_a["step_size"] == 0.3 and cfg_a["seed"] == 5

    def returns(run):
        with open(tmp_path / run / "progress.csv") as fh:
            return [row["eval_return"] for row in csv.DictReader(fh)]

    assert returns("a") == returns("b")
    override = _dfo("train", "--config", "a/config.json", "--seed", "6", "--max-iterations", "1", "--no-progress",
                    "--out", "c", cwd=tmp_path)
    assert override.returncode == 0, override.stderr
    assert json.loads((tmp_path / "c" / "config.json").read_text())["seed"] == 6


def test_dfo_train_config_errors_are_one_line(tmp_path):
    (tmp_path / "bad.json").write_text(json.dumps({"env_id": "Swimmer-v5", "nonsense": 1}))
    res = _dfo("train", "--config", "bad.json", cwd=tmp_path)
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "unknown settings ['nonsense']" in res.stderr


def test_dfo_study_flags_come_from_study_config_and_config_reruns(tmp_path):
    from dfo.cli import main

    argv = ["study", "--problem", "rosenbrock", "--dim", "4", "--estimators", "gaussian,cfd", "--repeats", "4",
            "--sigma", "1e-4,rule", "--no-progress"]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    saved = json.loads((tmp_path / "a" / "config.json").read_text())
    assert saved["sigma"] == [1e-4, "rule"] and saved["estimators"] == ["gaussian", "cfd"]
    assert main(["study", "--config", str(tmp_path / "a" / "config.json"), "--out", str(tmp_path / "b"),
                 "--no-progress"]) == 0

    def errors(folder):  # the study's numbers, without the timing columns
        with open(tmp_path / folder / "study.csv") as fh:
            return [(r["estimator"], r["sigma"], r["rel_error_mean"]) for r in csv.DictReader(fh)]

    assert errors("a") == errors("b")
    assert main(["study", "--repeats", "1", "--out", str(tmp_path / "c")]) == 2


def test_dfo_study_replot_redraws_figures_from_the_csv_alone(tmp_path):
    from dfo.cli import main

    out = tmp_path / "s"
    assert main(["study", "--problem", "rosenbrock", "--dim", "4", "--estimators", "gaussian,ffd", "--repeats", "4",
                 "--sigma", "1e-4", "--no-progress", "--out", str(out)]) == 0
    pngs = sorted(out.glob("study_*.png"))
    assert pngs
    for p in pngs:
        p.unlink()
    assert main(["study", "--out", str(out), "--replot"]) == 0
    assert sorted(out.glob("study_*.png")) == pngs
    assert main(["study", "--out", str(tmp_path / "empty"), "--replot"]) == 2


@pytest.mark.parametrize("depth, why", [(30000, "deeper than Python can read"), (100, "deeper than 64 levels")])
def test_E2_deeply_nested_env_kwargs_is_a_one_line_error(depth, why, capsys, tmp_path):
    from dfo.cli import main

    nested = '{"a": ' + "[" * depth + "]" * depth + "}"
    with pytest.raises(SystemExit) as exc:
        main(["train", "--env-kwargs", nested])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert why in err and len(err) < 300
    (tmp_path / "deep.json").write_text(nested)
    with pytest.raises(ValueError, match="nested deeper"):
        read_config_file(tmp_path / "deep.json", Demo)


@pytest.mark.parametrize("existed", [False, True])
def test_a_run_that_fails_to_start_leaves_no_manifest_or_lock_behind(tmp_path, monkeypatch, capsys, existed):
    from dfo.cli import main
    from dfo.policies.training import trainer as trainer_module

    out = tmp_path / "run"
    if existed:
        out.mkdir()
        (out / ".keep-mine").write_text("user file")

    def refuse(self, *a, **k):
        raise ValueError("the trainer refused (simulated)")

    monkeypatch.setattr(trainer_module.Trainer, "__init__", refuse)
    extra = ["--overwrite"] if existed else []   # a folder with a file of the user's needs --overwrite
    assert main(["train", "InvertedPendulum-v5", "--n-jobs", "1", "--out", str(out), *extra]) == 2
    assert "simulated" in capsys.readouterr().err
    if existed:
        assert sorted(p.name for p in out.iterdir()) == [".keep-mine"]
    else:
        assert not out.exists()
