"""Fault suite (issue 10): every fault a probe found, reproduced, with the handled behaviour asserted.

Security: nothing from a file is executed (source scan), checkpoints are checksummed in a
manifest, backend/scheduler never come from a run directory, symbolic links in a run
directory are refused, local Dask listens on loopback only.
Lost data: interrupts at each phase (first evaluation, mid-iteration, while logging),
SIGTERM, non-empty run dirs, torn logs, foreign checkpoints, stale temporary checkpoint
folders, loky workers of a killed trainer; resumed runs give the numbers of an
uninterrupted one. Clear errors: one line, no traceback, exit code != 0.

Fast cases run in the default suite; subprocess kills and network timeouts are ``slow``.
See docs/reliability.md for the table of cases.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dfo.cli import main
from dfo.policies.checkpoint import MANIFEST, CheckpointError, list_checkpoints
from dfo.policies.training import (
    DETERMINISTIC_COLUMNS,
    LogError,
    RunDirError,
    Terminated,
    TrainConfig,
    Trainer,
    read_progress,
)
from dfo.run.checkpoint import write_manifest

ROOT = Path(__file__).resolve().parents[1]

#: tiny but real: ARS V2-t on InvertedPendulum, 4 episodes per iteration, serial
CFG = TrainConfig(env_id="InvertedPendulum-v5", method="ars-v2t", episodes=10**6, max_iterations=5, horizon=30,
                  n_directions=2, top_b=2, n_eval_episodes=1, eval_every=1, checkpoint_every=1, backend="serial")


def _det(path: Path) -> list[tuple]:
    """The seed-determined columns of a progress.csv (nan-safe for equality)."""
    return [tuple("nan" if (isinstance(r.get(c), float) and math.isnan(r[c])) else r.get(c)
                  for c in DETERMINISTIC_COLUMNS) for r in read_progress(path)]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted run of CFG (the numbers every resumed run must reproduce)."""
    d = tmp_path_factory.mktemp("ref") / "run"
    with Trainer(CFG, out_dir=d) as tr:
        tr.run()
    return d


def _run(out: Path, cfg: TrainConfig = CFG, **kw) -> None:
    with Trainer(cfg, out_dir=out, **kw) as tr:
        tr.run()


def _resume_to_end(out: Path) -> None:
    with Trainer.resume(out, overrides={"max_iterations": CFG.max_iterations}) as tr:
        tr.run()


class SignalOnMap:
    """An evaluator that sends ``sig`` to this process at its ``at``-th map call (0-based), then works on."""

    n_workers = 1

    def __init__(self, at: int, sig: int = signal.SIGINT) -> None:
        from dfo.parallel import SerialEvaluator

        self.inner, self.at, self.sig, self.calls = SerialEvaluator(), at, sig, 0

    def map(self, fn, items, shared=None):
        if self.calls == self.at:
            os.kill(os.getpid(), self.sig)
        self.calls += 1
        return self.inner.map(fn, items, shared)

    def close(self) -> None:
        pass


# -- security ------------------------------------------------------------------------------
def _calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            yield _dotted(node.func), node


def _dotted(f: ast.AST) -> str:
    """``a.b.c`` of a called name (``?`` for a part that is not a name): a method named ``eval``
    (``model.eval()``) is not the builtin."""
    if isinstance(f, ast.Name):
        return f.id
    if isinstance(f, ast.Attribute):
        return f"{_dotted(f.value)}.{f.attr}"
    return "?"


def _kw(node: ast.Call, key: str):
    for k in node.keywords:
        if k.arg == key:
            return k.value.value if isinstance(k.value, ast.Constant) else "non-constant"
    return None


UNPICKLERS = ("pickle", "cloudpickle", "dill", "marshal", "shelve", "_pickle")


def test_no_code_from_files_anywhere_in_the_source():
    """No pickle/marshal/yaml loading, np.load(allow_pickle=True), torch.load without weights_only=True,
    eval/exec in dfo/, policies/, envs/ (an AST scan, so strings and comments do not count)."""
    bad = []
    files = [p for d in ("dfo", "policies", "envs") for p in (ROOT / d).rglob("*.py")]
    assert len(files) > 30
    for path in files:
        tree = ast.parse(path.read_text(), filename=str(path))
        rel = path.relative_to(ROOT)
        for name, node in _calls(tree):
            where = f"{rel}:{node.lineno}"
            if name in ("eval", "exec", "compile", "__import__"):
                bad.append(f"{where} {name}()")
            elif name.split(".")[0] in UNPICKLERS and (
                    name.endswith((".load", ".loads", ".Unpickler", ".open"))):
                bad.append(f"{where} {name}()")
            elif name in ("yaml.load", "yaml.unsafe_load", "joblib.load"):
                bad.append(f"{where} {name}()")
            elif name in ("np.load", "numpy.load") and _kw(node, "allow_pickle") not in (None, False):
                bad.append(f"{where} {name}(allow_pickle=...)")
            elif name == "torch.load" and _kw(node, "weights_only") is not True:
                bad.append(f"{where} torch.load without weights_only=True")
        for node in ast.walk(tree):  # `from pickle import loads` and the like
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in UNPICKLERS:
                names = {a.name for a in node.names} & {"load", "loads", "Unpickler", "open", "*"}
                if names:
                    bad.append(f"{rel}:{node.lineno} from {node.module} import {sorted(names)}")
    assert not bad, bad


def test_bit_flip_or_edit_in_state_json_is_refused(tmp_path):
    out = tmp_path / "run"
    _run(out, dataclasses.replace(CFG, max_iterations=2))
    state = list_checkpoints(out)[-1] / "state.json"
    good = state.read_bytes()
    i = good.index(b'"iteration": 2') + len(b'"iteration": ')
    flipped = good[:i] + bytes([good[i] ^ 0x01]) + good[i + 1:]  # one bit: 2 -> 3
    state.write_bytes(flipped)
    with pytest.raises(CheckpointError, match=r"corrupt state\.json.*manifest\.json.*previous checkpoint"):
        Trainer.resume(out)
    # the editor's attack: backend dask + a scheduler of theirs; refused by the manifest...
    tree = json.loads(good)
    tree["config"].update(backend="dask", scheduler="tcp://127.0.0.1:9")
    state.write_text(json.dumps(tree))
    with pytest.raises(CheckpointError, match="corrupt state.json"):
        Trainer.resume(out)
    # ...and even with the manifest's hashes rewritten, where work runs is never read from the run dir
    (state.parent / MANIFEST).unlink()
    write_manifest(state.parent, kind="train")
    with Trainer.resume(out) as tr:
        assert (tr.config.backend, tr.config.scheduler) == ("loky", None)
        assert tr.iteration == 2


def test_missing_extra_or_unlisted_checkpoint_files_are_refused(tmp_path):
    out = tmp_path / "run"
    _run(out, dataclasses.replace(CFG, max_iterations=1))
    ckpt = list_checkpoints(out)[-1]
    (ckpt / "evil.npz").write_bytes(b"x")
    with pytest.raises(CheckpointError, match=r"not in its manifest.json.*evil\.npz"):
        Trainer.resume(out)
    (ckpt / "evil.npz").unlink()
    (ckpt / MANIFEST).unlink()
    with pytest.raises(CheckpointError, match="no manifest.json"):
        Trainer.resume(out)
    assert main(["evaluate", str(out), "--episodes", "1"]) == 2  # evaluate verifies it too


@pytest.mark.parametrize("entry", ["config.json", "progress.csv", "metrics.jsonl", "checkpoints"])
def test_symlinked_run_files_are_refused_and_nothing_outside_changes(tmp_path, entry):
    out = tmp_path / "run"
    _run(out, dataclasses.replace(CFG, max_iterations=3))
    outside = tmp_path / "outside" / entry
    outside.parent.mkdir()
    shutil.move(str(out / entry), str(outside))
    (out / entry).symlink_to(outside, target_is_directory=outside.is_dir())
    before = {p: p.read_bytes() for p in outside.parent.rglob("*") if p.is_file()}
    with pytest.raises((RunDirError, CheckpointError, LogError), match="symbolic link"):
        Trainer.resume(out, overrides={"max_iterations": 5})
    after = {p: p.read_bytes() for p in outside.parent.rglob("*") if p.is_file()}
    assert after == before  # nothing written, truncated or deleted through the link


def test_a_symlink_inside_a_checkpoint_is_refused(tmp_path):
    out = tmp_path / "run"
    _run(out, dataclasses.replace(CFG, max_iterations=1))
    ckpt = list_checkpoints(out)[-1]
    target = tmp_path / "policy.npz"
    shutil.move(str(ckpt / "policy.npz"), str(target))
    (ckpt / "policy.npz").symlink_to(target)
    with pytest.raises(CheckpointError, match="symbolic link"):
        Trainer.resume(out)


@pytest.mark.slow
def test_local_dask_listens_on_loopback_only():
    psutil = pytest.importorskip("psutil")
    pytest.importorskip("distributed")
    from dfo.parallel import make_evaluator

    with make_evaluator("local-dask", n_jobs=2) as ev:
        assert ev.map(lambda s, i: s * i, range(4), shared=3) == [0, 3, 6, 9]
        me = psutil.Process()
        procs = [me, *me.children(recursive=True)]
        listening = {c.laddr.ip for p in procs for c in p.net_connections(kind="inet")
                     if c.status == psutil.CONN_LISTEN}
    assert listening and listening <= {"127.0.0.1"}, listening


# -- lost or corrupt data --------------------------------------------------------------------
def test_ctrl_c_during_the_first_evaluation_keeps_row_0(tmp_path, reference):
    out = tmp_path / "run"
    with Trainer(CFG, out_dir=out, evaluator=SignalOnMap(at=0)) as tr:
        with pytest.raises(KeyboardInterrupt):
            tr.run()
    assert [p.name for p in list_checkpoints(out)] == ["iter_000000"]
    assert read_progress(out / "progress.csv") == []
    _resume_to_end(out)
    assert _det(out / "progress.csv") == _det(reference / "progress.csv")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_mid_iteration_writes_a_checkpoint_and_resumes_exactly(tmp_path, reference, sig):
    out = tmp_path / "run"
    cfg = dataclasses.replace(CFG, checkpoint_every=100)  # only the interrupt writes one
    # map calls: 0 = initial evaluation, then (rollouts, evaluation) per iteration: 5 = rollouts of it. 3
    with Trainer(cfg, out_dir=out, evaluator=SignalOnMap(at=5, sig=sig)) as tr:
        with pytest.raises(Terminated if sig == signal.SIGTERM else KeyboardInterrupt):
            tr.run()
        assert tr.iteration == 2
    assert [p.name for p in list_checkpoints(out)] == ["iter_000002"]
    assert [r["iteration"] for r in read_progress(out / "progress.csv")] == [0, 1, 2]
    _resume_to_end(out)
    assert _det(out / "progress.csv") == _det(reference / "progress.csv")


def test_signal_while_an_iteration_is_logged_is_held_until_the_row_is_written(tmp_path, reference, monkeypatch):
    out = tmp_path / "run"
    orig = Trainer._record

    def record(self, row):  # SIGINT arrives in the middle of committing/logging iteration 2
        if row["iteration"] == 2:
            os.kill(os.getpid(), signal.SIGINT)
        orig(self, row)

    monkeypatch.setattr(Trainer, "_record", record)
    with Trainer(dataclasses.replace(CFG, checkpoint_every=100), out_dir=out) as tr:
        with pytest.raises(KeyboardInterrupt):
            tr.run()
    monkeypatch.setattr(Trainer, "_record", orig)
    assert [p.name for p in list_checkpoints(out)] == ["iter_000002"]
    assert [r["iteration"] for r in read_progress(out / "progress.csv")] == [0, 1, 2]
    _resume_to_end(out)
    assert _det(out / "progress.csv") == _det(reference / "progress.csv")


def test_a_non_empty_run_dir_needs_resume_or_overwrite(tmp_path, capsys):
    from dfo.policies.training.rundir import prepare_run_dir

    out = tmp_path / "run"
    prepare_run_dir(out, resume=False)  # the run's manifest comes first...
    (out / "progress.csv").write_text("iteration\r\n0\r\n")  # ...then what a run killed before its first checkpoint leaves
    with pytest.raises(RunDirError, match="not empty.*no checkpoint to resume.*--overwrite"):
        _run(out)
    args = ["train", "InvertedPendulum-v5", "--max-iterations", "1", "--horizon", "20", "--n-jobs", "1",
            "--n-directions", "2", "--top-b", "2", "--eval-episodes", "1", "--no-progress", "--out", str(out)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--overwrite" in err and "--resume" not in err  # nothing to resume (F7)
    assert main([*args, "--overwrite"]) == 0
    assert [r["iteration"] for r in read_progress(out / "progress.csv")] == [0, 1]
    assert main(args) == 2 and f"--resume {out}" in capsys.readouterr().err  # a checkpoint now: resumable
    (out / "notes.txt").write_text("mine")
    assert main([*args, "--overwrite"]) == 0  # deletes the run's files only
    assert (out / "notes.txt").read_text() == "mine"
    assert [r["iteration"] for r in read_progress(out / "progress.csv")] == [0, 1]
    outside = tmp_path / "outside"
    shutil.move(str(out / "checkpoints"), str(outside))
    (out / "checkpoints").symlink_to(outside, target_is_directory=True)
    kept = sorted(p.name for p in outside.iterdir())
    assert main([*args, "--overwrite"]) == 0  # the link is removed, not followed
    assert sorted(p.name for p in outside.iterdir()) == kept and not (out / "checkpoints").is_symlink()


def test_overwrite_never_deletes_run_named_files_no_manifest_lists(tmp_path, capsys):
    """A folder written by an older dfo (no .dfo-run.json), or a file of yours called config.json:
    --overwrite refuses, naming it, and deletes nothing."""
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "config.json").write_text('{"mine": 1}')
    (legacy / "progress.csv").write_text("iteration\r\n0\r\n")
    args = ["train", "InvertedPendulum-v5", "--max-iterations", "1", "--n-jobs", "1", "--no-progress",
            "--out", str(legacy), "--overwrite"]
    _one_line_error(capsys, main(args), "--overwrite refused")
    assert (legacy / "config.json").read_text() == '{"mine": 1}' and (legacy / "progress.csv").exists()


def test_torn_last_lines_are_cut_back_to_the_checkpoint(tmp_path, reference):
    out = tmp_path / "run"
    _run(out, dataclasses.replace(CFG, max_iterations=3))
    with open(out / "progress.csv", "a") as f:
        f.write("4,16,31")  # a killed process's half row
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"iteration": 4, "epis')
    assert [r["iteration"] for r in read_progress(out / "progress.csv")] == [0, 1, 2, 3]  # dfo plot reads it
    _resume_to_end(out)
    assert _det(out / "progress.csv") == _det(reference / "progress.csv")
    its = [json.loads(ln)["iteration"] for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert its == [0, 1, 2, 3, 4, 5]


def test_first_reaching_is_the_first_evaluation_at_or_above_the_threshold(reference):
    from dfo.policies.training.runlog import evaluations, first_reaching

    rows = read_progress(reference / "progress.csv")
    evals = evaluations(rows)
    assert evals and all(not math.isnan(r["eval_return"]) for r in evals)
    returns = [r["eval_return"] for r in evals]
    k = max(range(len(returns)), key=returns.__getitem__)
    hit = first_reaching(rows, returns[k])
    assert hit is not None and hit["eval_return"] >= returns[k]
    assert all(v < returns[k] for v in returns[:evals.index(hit)])  # nothing earlier reached it
    assert first_reaching(rows, returns[k] + 1.0) is None and first_reaching(rows, None) is None


def test_damaged_logs_that_cannot_be_continued_name_the_file(tmp_path):
    out = tmp_path / "run"
    _run(out, dataclasses.replace(CFG, max_iterations=3))
    lines = (out / "progress.csv").read_text().splitlines(keepends=True)
    (out / "progress.csv").write_text("".join(lines[:2] + lines[3:]))  # row of iteration 1 lost
    with pytest.raises(LogError, match=r"progress\.csv.*iterations \[1\] missing"):
        Trainer.resume(out)
    (out / "progress.csv").write_text("".join(lines))
    (out / "metrics.jsonl").write_text('{"iteration": 0}\n{broken\n{"iteration": 2}\n')
    with pytest.raises(LogError, match=r"metrics\.jsonl, line 2"):
        Trainer.resume(out)


def test_checkpoints_of_another_run_are_refused(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    _run(a, dataclasses.replace(CFG, max_iterations=2))
    _run(b, dataclasses.replace(CFG, env_id="InvertedDoublePendulum-v5", max_iterations=1))
    shutil.rmtree(a / "checkpoints")
    shutil.copytree(b / "checkpoints", a / "checkpoints")
    with pytest.raises(RunDirError, match="another run.*env_id='InvertedDoublePendulum-v5'"):
        Trainer.resume(a)
    # same settings, another run (its own run id): refused too
    c = tmp_path / "c"
    _run(c, dataclasses.replace(CFG, max_iterations=2))
    shutil.rmtree(a / "checkpoints")
    shutil.copytree(c / "checkpoints", a / "checkpoints")
    with pytest.raises(RunDirError, match="run id differs"):
        Trainer.resume(a)
    assert main(["train", "--resume", str(a), "--no-progress"]) == 2
    assert "another run" in capsys.readouterr().err


def test_two_processes_never_write_one_run(tmp_path):
    out = tmp_path / "run"
    _run(out, dataclasses.replace(CFG, max_iterations=1))
    before = (out / "progress.csv").read_bytes()
    with Trainer.resume(out, overrides={"max_iterations": 2}) as first:
        with pytest.raises(RunDirError, match="another process is writing"):
            Trainer.resume(out, overrides={"max_iterations": 3})
        from dfo.policies.training.rundir import clear_run_dir

        with pytest.raises(RunDirError, match="another process is writing"):
            clear_run_dir(out)  # --overwrite
        assert (out / "progress.csv").read_bytes() == before
        first.run()
    with Trainer.resume(out, overrides={"max_iterations": 3}) as again:  # released on close
        again.run()
    assert [r["iteration"] for r in read_progress(out / "progress.csv")] == [0, 1, 2, 3]


def test_stale_temporary_checkpoint_folders_are_removed(tmp_path):
    out = tmp_path / "run"
    _run(out, dataclasses.replace(CFG, max_iterations=1))
    stale = out / "checkpoints" / ".tmp-killed"
    stale.mkdir()
    (stale / "state.npz").write_bytes(b"half")
    with Trainer.resume(out, overrides={"max_iterations": 2}) as tr:
        tr.run()
    assert not stale.exists()
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["iter_000001", "iter_000002"]


def test_resume_imports_only_modules_named_again(tmp_path):
    if "imports" not in {f.name for f in dataclasses.fields(TrainConfig)}:
        pytest.skip("TrainConfig has no imports field")
    out = tmp_path / "run"
    _run(out, dataclasses.replace(CFG, max_iterations=1, imports=("json",)))
    with pytest.raises(ValueError, match=r"imports \['json'\].*--import"):
        Trainer.resume(out)
    with Trainer.resume(out, overrides={"imports": ["json"]}) as tr:
        assert tr.iteration == 1


# -- clear errors ------------------------------------------------------------------------------
TRAIN = ["train", "InvertedPendulum-v5", "--max-iterations", "1", "--horizon", "20", "--n-jobs", "1",
         "--no-progress"]


def _one_line_error(capsys, code: int, want: str, expect_code: int = 2) -> None:
    err = capsys.readouterr().err
    assert code == expect_code, err
    assert "Traceback" not in err and err.strip().count("\n") == 0 and want in err, err


@pytest.mark.parametrize("extra, want", [
    (["--scheduler", "tcp://127.0.0.1:8786"], "--scheduler is only used with --backend dask"),
    (["--backend", "dask", "--scheduler", "10.0.0.1"], "malformed Dask scheduler address"),
    (["--backend", "dask", "--scheduler", "tcp://host:99999"], "malformed Dask scheduler address"),
    (["--backend", "dask"], "needs --scheduler"),
    (["--resume", "somewhere"], "takes no --out or --overwrite"),
])
def test_train_option_errors(tmp_path, capsys, extra, want):
    _one_line_error(capsys, main([*TRAIN, "--out", str(tmp_path / "r"), *extra]), want)
    assert not (tmp_path / "r").exists()


def test_out_that_is_a_file_or_unwritable(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    _one_line_error(capsys, main([*TRAIN, "--out", str(f)]), "not a directory")
    _one_line_error(capsys, main([*TRAIN, "--out", str(f / "sub")]), "cannot write to")
    _one_line_error(capsys, main([*TRAIN, "--out", "/proc/dfo-run"]), "cannot write to")
    _one_line_error(capsys, main(["study", "--problem", "rl:Swimmer-v5", "--out", str(f)]), "not a folder")
    t0 = time.perf_counter()
    _one_line_error(capsys, main(["study", "--problem", "rl:Swimmer-v5", "--out", "/proc/dfo-study"]),
                    "cannot write to --out")
    assert time.perf_counter() - t0 < 5  # found before any computing


def test_backend_ray_without_ray_is_one_line(tmp_path, capsys):
    try:
        import ray  # noqa: F401
        pytest.skip("Ray is installed")
    except ImportError:
        pass
    _one_line_error(capsys, main([*TRAIN, "--out", str(tmp_path / "r"), "--n-jobs", "2", "--backend", "ray"]),
                    "needs Ray")


@pytest.mark.parametrize("args, want", [
    (["--problem", "nosuch"], "unknown study problem"),
    (["--estimators", "foo", "--dim", "3"], "unknown estimator 'foo'"),
    (["--noise", "weird:1", "--dim", "3"], "unknown noise kind"),
    (["--n-directions", "0", "--dim", "3"], "n_directions must be positive"),
    (["--sigma", "-1", "--dim", "3"], "sigma must be a positive number"),
    (["--repeats", "1", "--dim", "3"], "--repeats must be >= 2"),
    (["--problem", "quadratic"], "needs a dimension"),
    (["--problem", "rl:NoEnv-v0"], "unknown env id"),
    (["--problem", "rl:Swimmer-v5", "--jobs", "0"], "--jobs must be"),
])
def test_study_input_errors(tmp_path, capsys, args, want):
    _one_line_error(capsys, main(["study", "--no-progress", "--out", str(tmp_path / "s"), *args]), want)


def test_evaluate_with_another_envs_dimensions(tmp_path, capsys):
    out = tmp_path / "run"
    _run(out, dataclasses.replace(CFG, max_iterations=1))
    capsys.readouterr()
    _one_line_error(capsys, main(["evaluate", str(out), "--env", "Hopper-v5", "--episodes", "1"]),
                    "the policy takes 4 observations and gives 1 actions, but Hopper-v5")


def _subprocess_env(**extra) -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", **extra}


@pytest.mark.parametrize("command", ["evaluate", "render"])
def test_no_working_gl_backend_exits_3_with_one_line(tmp_path, command):
    out = tmp_path / "run"
    _run(out, dataclasses.replace(CFG, max_iterations=1))
    p = subprocess.run([sys.executable, "-m", "dfo.cli", command, str(out)], capture_output=True, text=True,
                       env=_subprocess_env(MUJOCO_GL="no-such-gl"), cwd=tmp_path, timeout=120)
    assert p.returncode == 3, p.stderr
    assert "Traceback" not in p.stderr and p.stderr.strip().count("\n") == 0 and "MUJOCO_GL" in p.stderr


@pytest.mark.slow
def test_unreachable_dask_scheduler_is_one_line_and_quick(tmp_path, capsys):
    pytest.importorskip("distributed")
    t0 = time.perf_counter()
    code = main([*TRAIN, "--out", str(tmp_path / "r"), "--backend", "dask", "--scheduler", "tcp://127.0.0.1:9"])
    _one_line_error(capsys, code, "cannot reach the Dask scheduler at tcp://127.0.0.1:9")
    assert time.perf_counter() - t0 < 30


# -- logs users read -------------------------------------------------------------------------
def test_tensorboard_events_without_torch_on_env_steps_with_hparams(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    _run(out, dataclasses.replace(CFG, max_iterations=3))
    acc = EventAccumulator(str(out / "tb"))
    acc.Reload()
    steps = [e.step for e in acc.Scalars("charts/episodic_return")]
    rows = read_progress(out / "progress.csv")
    assert steps == [int(r["env_steps"]) for r in rows]  # x axis: env steps
    assert [e.value for e in acc.Scalars("charts/episodic_return")] == pytest.approx(
        [r["eval_return"] for r in rows])
    meta = acc.PluginTagToContent("hparams")
    assert "_hparams_/session_start_info" in meta
    from tensorboard.plugins.hparams import plugin_data_pb2

    start = plugin_data_pb2.HParamsPluginData.FromString(meta["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["method"].string_value == "ars-v2t" and start.hparams["step_size"].number_value > 0


def test_tensorboard_after_a_resume_has_no_duplicate_points(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    _run(out, dataclasses.replace(CFG, max_iterations=4, checkpoint_every=2))
    shutil.rmtree(out / "checkpoints" / "iter_000004")  # as if killed after logging 3 and 4
    time.sleep(1.1)  # a new event file name (they are named by the second)
    _resume_to_end(out)
    acc = EventAccumulator(str(out / "tb"))
    acc.Reload()
    steps = [e.step for e in acc.Scalars("charts/episodic_return")]
    assert steps == [int(r["env_steps"]) for r in read_progress(out / "progress.csv")]
    assert len(steps) == 6 and steps == sorted(set(steps))


def test_training_imports_no_torch(tmp_path):
    code = ("import sys; from dfo.policies.training import TrainConfig, Trainer\n"
            "cfg = TrainConfig(env_id='InvertedPendulum-v5', max_iterations=1, horizon=20, n_directions=2, top_b=2,"
            " n_eval_episodes=1, backend='serial')\n"
            f"Trainer(cfg, out_dir={str(tmp_path / 'run')!r}).run()\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'tensorflow')))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_subprocess_env(),
                       cwd=tmp_path, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().splitlines()[-1] == "[]"
    assert list((tmp_path / "run" / "tb").glob("events.out.tfevents.*"))


def test_no_carriage_return_frames_off_a_terminal(tmp_path):
    p = subprocess.run([sys.executable, "-m", "dfo.cli", *TRAIN[:-1], "--out", str(tmp_path / "r"),
                        "--n-directions", "2", "--top-b", "2", "--eval-episodes", "1"],
                       capture_output=True, text=True, env=_subprocess_env(), cwd=tmp_path, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "\r" not in p.stderr and "it 1  episodes 4/" in p.stderr


def test_plot_groups_by_settings_and_labels_the_difference(tmp_path, capsys):
    from dfo.policies.commands.plot import group_labels, settings_of

    runs = []
    for seed, step in ((0, 0.02), (1, 0.02), (0, 0.1)):
        d = tmp_path / f"s{seed}_{step}"
        _run(d, dataclasses.replace(CFG, max_iterations=2, seed=seed, step_size=step))
        runs.append(d)
    cfgs = [json.loads((d / "config.json").read_text()) for d in runs]
    keys = [(c["env_id"], c["method"], settings_of(c)) for c in cfgs]
    assert keys[0] == keys[1] != keys[2]  # seeds share a group, another step size does not
    labels = group_labels(sorted(set(keys)))
    assert labels[keys[0]] == "ars-v2t (step_size=0.02)" and labels[keys[2]] == "ars-v2t (step_size=0.1)"
    assert main(["plot", *map(str, runs), "--out", str(tmp_path / "c.png")]) == 0


def test_dfo_train_in_python_returns_the_run(tmp_path, reference):
    import dfo

    fields = {f.name: getattr(CFG, f.name) for f in dataclasses.fields(CFG) if f.name != "env_id"}
    run = dfo.train("InvertedPendulum-v5", out=tmp_path / "run", **fields)
    assert run.iteration == 5 and run.checkpoint.name == "iter_000005"
    assert [tuple(r.get(c) for c in DETERMINISTIC_COLUMNS)[:3] for r in run.history] == \
        [t[:3] for t in _det(reference / "progress.csv")]
    obs = np.zeros(4)
    assert run.policy.act(obs).shape == (1,)
    action, _ = run.policy.predict(obs, deterministic=True)  # SB3's interface
    assert action.shape == (1,) and np.all(np.abs(action) <= 3.0)
    assert run.policy.metadata["env_id"] == "InvertedPendulum-v5"
    more = dfo.train(resume=tmp_path / "run", max_iterations=6)
    assert more.iteration == 6


# -- kills of a real `dfo train` process ---------------------------------------------------------
KILL_ARGS = ["--horizon", "30", "--n-directions", "2", "--top-b", "2", "--eval-episodes", "1", "--eval-every", "1",
             "--checkpoint-every", "1", "--n-jobs", "1", "--method", "ars-v2t", "--no-progress"]


def _cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dfo.cli", *args], capture_output=True, text=True,
                          env=_subprocess_env(), cwd=cwd, timeout=timeout)


def _start(out: Path, iters: int, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "dfo.cli", "train", "InvertedPendulum-v5", "--out", str(out),
                             "--max-iterations", str(iters), *KILL_ARGS], env=_subprocess_env(), cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_rows(out: Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        try:
            if len(read_progress(out / "progress.csv")) >= n:
                return
        except (FileNotFoundError, LogError):
            pass
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.05)
    raise AssertionError("run made no progress")


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGKILL, -9), (signal.SIGTERM, 143), (signal.SIGINT, 130)])
@pytest.mark.parametrize("phase", ["startup", "mid-run"])
def test_killed_dfo_train_resumes_with_identical_numbers(tmp_path, sig, code, phase):
    iters = 40
    ref = tmp_path / "ref"
    assert _cli("train", "InvertedPendulum-v5", "--out", str(ref), "--max-iterations", str(iters), *KILL_ARGS,
                cwd=tmp_path).returncode == 0
    out = tmp_path / "run"
    proc = _start(out, iters, tmp_path)
    if phase == "startup":
        time.sleep(0.3)
    else:
        _wait_rows(out, 6, proc)
    proc.send_signal(sig)
    rc = proc.wait(timeout=120)
    if rc == 0:
        pytest.skip("the run finished before the signal")  # too fast a machine for this phase
    if phase == "mid-run":
        assert rc == code, proc.stderr.read()
    else:  # during start-up Python's own handlers may still be in place: any failure status
        assert rc != 0
    if not (out.exists() and list_checkpoints(out)):
        # killed before its first checkpoint: the same command is refused, --overwrite starts again
        if out.exists() and any(out.iterdir()):
            p = _cli("train", "InvertedPendulum-v5", "--out", str(out), "--max-iterations", str(iters), *KILL_ARGS,
                     cwd=tmp_path)
            assert p.returncode == 2 and "--overwrite" in p.stderr
        p = _cli("train", "InvertedPendulum-v5", "--out", str(out), "--max-iterations", str(iters), *KILL_ARGS,
                 "--overwrite", cwd=tmp_path)
    else:
        p = _cli("train", "--resume", str(out), "--no-progress", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert _det(out / "progress.csv") == _det(ref / "progress.csv")
    assert not list((out / "checkpoints").glob(".tmp-*"))


@pytest.mark.slow
def test_local_dask_processes_end_with_a_killed_trainer(tmp_path):
    psutil = pytest.importorskip("psutil")
    pytest.importorskip("distributed")
    script = tmp_path / "cluster.py"
    script.write_text("import time, psutil\nfrom dfo.parallel import make_evaluator\n"
                      "if __name__ == '__main__':\n"
                      "    ev = make_evaluator('local-dask', n_jobs=2)\n"
                      "    assert ev.map(lambda s, i: i, range(2)) == [0, 1]\n"
                      "    print(' '.join(str(p.pid) for p in psutil.Process().children(recursive=True)), flush=True)\n"
                      "    time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, str(script)], env=_subprocess_env(), cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    pids = [int(p) for p in proc.stdout.readline().split()]
    assert len(pids) >= 2  # nannies and workers
    proc.kill()
    proc.wait()
    t0, alive = time.time(), pids
    while alive and time.time() - t0 < 30:
        time.sleep(0.5)
        alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"Dask processes {alive} outlived the trainer"


@pytest.mark.slow
def test_loky_workers_exit_when_the_trainer_is_killed(tmp_path):
    psutil = pytest.importorskip("psutil")
    script = ("import os, sys, time\nfrom dfo.parallel import JoblibEvaluator\n"
              "ev = JoblibEvaluator(n_jobs=2)\n"
              "print(' '.join(map(str, sorted(set(ev.map(lambda s, i: os.getpid(), range(8)))))), flush=True)\n"
              "time.sleep(600)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], env=_subprocess_env(), cwd=tmp_path,
                            stdout=subprocess.PIPE, text=True)
    pids = [int(p) for p in proc.stdout.readline().split()]
    assert pids and os.getpid() not in pids
    proc.kill()
    proc.wait()
    t0 = time.time()
    alive = pids
    while alive and time.time() - t0 < 15:
        time.sleep(0.2)
        alive = [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"loky workers {alive} outlived their parent"


# -- silent wrong results ----------------------------------------------------------------------
class _NaNExploitEnv:
    """Reward -1 per step; an action above 0.3 makes the reward NaN (and ends the episode early).

    A NaN episode's partial return (0 or -1) beats every finite one (-20): an optimizer that
    trusted it would learn to trigger NaN. Built lazily so gymnasium is imported only here.
    """

    def __new__(cls, **kw):
        import gymnasium as gym

        class NaNExploit(gym.Env):
            observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float64)
            action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float64)

            def reset(self, *, seed=None, options=None):
                super().reset(seed=seed)
                self.t = 0
                return np.array([0.0, 1.0]), {}

            def step(self, action):
                self.t += 1
                reward = math.nan if float(action[0]) > 0.3 else -1.0
                return np.array([self.t / 20, 1.0]), reward, False, self.t >= 20, {}

        return NaNExploit()


def test_nonfinite_episodes_never_beat_finite_ones():
    import gymnasium as gym

    if "DfoTestNaNExploit-v0" not in gym.registry:
        gym.register("DfoTestNaNExploit-v0", entry_point=_NaNExploitEnv)
    cfg = TrainConfig(env_id="DfoTestNaNExploit-v0", method="ars-v1", episodes=10**6, max_iterations=15,
                      n_directions=4, top_b=4, step_size=0.5, noise=0.5, horizon=20, n_eval_episodes=1,
                      backend="serial", seed=1)
    with Trainer(cfg) as tr:
        res = tr.run()
    bad = [r["nonfinite_episodes"] for r in res.history]
    assert bad[-1] > 0  # the perturbations did hit NaN, and the count is reported
    late = bad[-1] - bad[-6]  # NaN episodes in the last 5 iterations (40 episodes)
    assert late < 20, f"the optimizer learned to trigger NaN: {late}/40 late episodes non-finite"
    assert res.eval_return == -20.0  # the final policy stays finite
