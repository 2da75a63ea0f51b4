"""Round-3 reliability cases (issue 23, ../shared/reports/reliability-round3.md): one test per case id.

Each test is named after its case id and fails on the tree the report tested (3ba119a):
O1/O2 (``--overwrite`` deletes only what the run's manifest lists), L1 (workers never import
from the caller's working directory), D1 (local Dask needs credentials), FC1 (one writer per
fine-tuning run folder), FT3 (checkpoint settings must agree with the run's), task-file limits,
checkpoint manifests, crafted checkpoints and hostile ``--model`` folders. See docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dfo.cli import main
from dfo.policies.training import read_progress

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("DFO_DATA") or ROOT.parent / "shared" / "data")
AIDREAMS = DATA / "models" / "aidreams260K"
needs_model = pytest.mark.skipif(not (AIDREAMS / "config.json").is_file(), reason=f"no data/model at {DATA}")

TRAIN = ["train", "InvertedPendulum-v5", "--max-iterations", "1", "--horizon", "20", "--n-jobs", "1",
         "--n-directions", "2", "--top-b", "2", "--eval-episodes", "1", "--no-progress"]


def _one_line(capsys, code: int, want: str, expect: int = 2) -> str:
    err = capsys.readouterr().err
    assert code == expect, err
    assert "Traceback" not in err and err.strip().count("\n") == 0 and want in err, err
    return err


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


# -- O1, O2: --overwrite deletes only the files the run's manifest lists --------------------------------
def test_O1_overwrite_keeps_dot_files_and_folders_beside_a_run(tmp_path):
    out = tmp_path / "r_hid"
    assert main([*TRAIN, "--out", str(out)]) == 0
    (out / ".git").mkdir()
    (out / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (out / ".env").write_text("SECRET=1\n")
    mine = {**_tree(out / ".git"), ".env": (out / ".env").read_bytes()}
    assert main([*TRAIN, "--out", str(out), "--overwrite"]) == 0
    assert {**_tree(out / ".git"), ".env": (out / ".env").read_bytes()} == mine
    assert [r["iteration"] for r in read_progress(out / "progress.csv")] == [0, 1]  # a fresh run


def test_O2_overwrite_of_a_folder_that_holds_no_run_deletes_nothing(tmp_path, capsys):
    out = tmp_path / "r_hid2"
    (out / ".ssh").mkdir(parents=True)
    (out / ".ssh" / "id_rsa").write_text("KEY\n")
    (out / ".bashrc").write_text("x\n")
    (out / "data").mkdir()
    (out / "data" / "table.csv").write_text("1,2\n")
    before = _tree(out)
    _one_line(capsys, main([*TRAIN, "--out", str(out)]), "not empty")  # no flag: refused, nothing written
    assert _tree(out) == before
    assert main([*TRAIN, "--out", str(out), "--overwrite"]) == 0  # the run goes beside them
    after = _tree(out)
    assert {k: after[k] for k in before} == before
    assert (out / "progress.csv").is_file()


# -- FC1: one writer per fine-tuning run folder -------------------------------------------------------------
@needs_model
def test_FC1_a_second_finetune_into_a_live_run_folder_is_refused_with_one_line(tmp_path, capsys):
    pytest.importorskip("torch")
    from dfo.torch.llm.finetune import FinetuneConfig, finetune

    out = tmp_path / "fc1"
    args = ["finetune", "--model", str(AIDREAMS), "--data-dir", str(DATA), "--template", "it-was",
            "--test-size", "8", "--dev-size", "8", "--no-progress", "--steps", "3", "--out", str(out)]
    seen = {}

    def second_run(info):  # while the first run holds the folder, start another into it
        if info["step"] == 1:
            capsys.readouterr()  # the first run's own output so far
            seen["rc"] = main([*args, "--seed", "1"])
            seen["err"] = capsys.readouterr().err

    cfg = FinetuneConfig(model=str(AIDREAMS), data_dir=str(DATA), template="it-was", steps=3, batch_size=4,
                         test_size=8, dev_size=8, out_dir=str(out), save_model=False)
    first = finetune(cfg, progress=False, callback=second_run)
    assert seen["rc"] == 2, seen
    assert seen["err"].count("\n") == 1 and "another process is writing" in seen["err"]
    saved = json.loads((out / "results.json").read_text())
    assert saved["config"]["seed"] == 0 and saved["history"] == json.loads(json.dumps(first.training.as_dict()))
    # released when the call ends: the folder now holds a finished run, refused as such
    assert main([*args, "--seed", "1"]) == 2 and "already holds a run" in capsys.readouterr().err


# -- L1: helper processes never import from the caller's working directory ----------------------------------
PLANTED = {name: textwrap.dedent(f"""
    import os
    open(os.path.join(os.getcwd(), "MARKER-{name}-%d" % os.getpid()), "w").write("ran")
    if {name!r} == "joblib":
        raise ImportError("planted joblib")
    """) for name in ("joblib", "lz4", "org")}

RUNNER = textwrap.dedent("""
    import operator, sys
    from dfo.parallel import make_evaluator

    if __name__ == "__main__":
        with make_evaluator(sys.argv[1], n_jobs=2) as ev:
            print(ev.map(operator.mul, range(6), shared=3))
    """)


@pytest.mark.parametrize("backend", ["loky", pytest.param("local-dask", marks=pytest.mark.slow)])
def test_L1_workers_and_trackers_never_run_modules_planted_in_the_working_directory(tmp_path, backend):
    """A script started elsewhere (like the `dfo` command: its own folder, not the cwd, on its path) in a
    folder holding joblib.py / lz4.py / org.py: no helper process imports them (before: 10 processes did)."""
    if backend == "local-dask":
        pytest.importorskip("distributed")
    plant, bin_dir = tmp_path / "plant", tmp_path / "bin"
    plant.mkdir()
    bin_dir.mkdir()
    for name, body in PLANTED.items():
        (plant / f"{name}.py").write_text(body)
    (bin_dir / "runner.py").write_text(RUNNER)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONSAFEPATH"}
    if env.get("PYTHONPATH"):  # absolute entries only: a relative one would name the planted folder itself
        env["PYTHONPATH"] = os.pathsep.join(p for p in env["PYTHONPATH"].split(os.pathsep) if os.path.isabs(p))
    done = subprocess.run([sys.executable, str(bin_dir / "runner.py"), backend], cwd=plant, env=env,
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[0, 3, 6, 9, 12, 15]"
    assert sorted(p.name for p in plant.iterdir() if p.name.startswith("MARKER")) == []
    assert "PYTHONSAFEPATH" not in os.environ  # nothing leaks into the caller


# -- D1: a local Dask cluster needs its run's credentials ------------------------------------------------------
def test_D1_local_dask_refuses_clients_without_the_runs_certificate():
    pytest.importorskip("distributed")
    from distributed import Client
    from distributed.security import Security

    from dfo.parallel import make_evaluator

    with make_evaluator("local-dask", n_jobs=1) as ev:
        address = ev.client.scheduler.address
        assert address.startswith("tls://127.0.0.1:"), address
        assert ev.map(lambda s, i: s * i, range(4), shared=3) == [0, 3, 6, 9]
        port = address.rsplit(":", 1)[1]
        attempts = {  # what another local process can try: plain TCP, TLS without or with its own certificate
            "tcp": dict(address=f"tcp://127.0.0.1:{port}"),
            "tls, no certificate": dict(address=address),
            "tls, another certificate": dict(address=address, security=Security.temporary()),
        }
        for what, kw in attempts.items():
            with pytest.raises(Exception):  # noqa: B017 - any failure to connect; a connection would pass
                client = Client(**kw, timeout=3, set_as_default=False)
                client.close()
                pytest.fail(f"connected to the run's scheduler with {what}")
        assert ev.map(lambda s, i: s + i, range(3), shared=1) == [1, 2, 3]  # the run goes on
        import urllib.error
        import urllib.request

        http = ev._cluster.scheduler.http_server.port  # no routes: no cluster information to anyone
        for route in ("/health", "/info/main/workers.html", "/json/identity.json", "/metrics"):
            with pytest.raises(urllib.error.HTTPError, match="404"):
                urllib.request.urlopen(f"http://127.0.0.1:{http}{route}", timeout=3)


# -- FT3 and crafted fine-tuning checkpoints (FT3b, FT9-FT12), S8-bin ------------------------------------------
def _ft_cfg(out: Path, steps: int, **kw):
    from dfo.torch.llm.finetune import FinetuneConfig

    base = dict(model=str(AIDREAMS), data_dir=str(DATA), template="it-was", method="mezo", steps=steps,
                batch_size=4, checkpoint_every=2, test_size=8, dev_size=8, out_dir=str(out), save_model=False)
    return FinetuneConfig(**{**base, **kw})


def _newest(run: Path) -> Path:
    return sorted((run / "checkpoints").glob("step_*"))[-1]


def _edit_state(run: Path, edit) -> None:
    """What an editor without a secret can do: change the newest checkpoint's state.json and recompute its
    manifest (the SHA-256s guard against corruption and careless edits, not against this)."""
    from dfo.run.checkpoint import write_manifest

    folder = _newest(run)
    doc = json.loads((folder / "state.json").read_text())
    edit(doc)
    (folder / "state.json").write_text(json.dumps(doc))
    write_manifest(folder, kind="finetune")


def _rewrite_state_file(run: Path, change) -> None:
    """Replace the newest checkpoint's tensors.safetensors by change(raw bytes or tensors), manifest recomputed."""
    from dfo.run.checkpoint import write_manifest

    folder = _newest(run)
    change(folder / "tensors.safetensors")
    write_manifest(folder, kind="finetune")


def _list_outside_file(run: Path) -> None:
    """A manifest naming a file outside the checkpoint (a hash oracle for ../../results.json)."""
    from dfo.fileio import sha256_file

    folder = _newest(run)
    doc = json.loads((folder / "manifest.json").read_text())
    doc["files"]["../../results.json"] = sha256_file(run / "results.json")
    (folder / "manifest.json").write_text(json.dumps(doc))


def _deep_state(run: Path) -> None:
    from dfo.run.checkpoint import write_manifest

    (_newest(run) / "state.json").write_text("[" * 100000 + "]" * 100000)
    write_manifest(_newest(run), kind="finetune")


@pytest.fixture(scope="module")
def ft_base(tmp_path_factory):
    pytest.importorskip("torch")
    if not (AIDREAMS / "config.json").is_file():
        pytest.skip(f"no data/model at {DATA}")
    from dfo.torch.llm.finetune import finetune

    run = tmp_path_factory.mktemp("ft") / "base"
    finetune(_ft_cfg(run, 2), progress=False)
    return run


def _copy(base: Path, tmp_path: Path) -> Path:
    import shutil

    shutil.copytree(base, tmp_path / "run")
    (tmp_path / "run" / ".lock").unlink(missing_ok=True)
    return tmp_path / "run"


@needs_model
def test_FT3_settings_in_a_rehashed_checkpoint_must_agree_with_the_runs(ft_base, tmp_path):
    from dfo.torch.llm.finetune import FinetuneError, finetune

    run = _copy(ft_base, tmp_path)
    _edit_state(run, lambda s: s["optimizer"]["param_groups"][0].__setitem__("lr", 1000.0))
    with pytest.raises(FinetuneError, match=r"param group 0 lr=1000\.0 but the run's settings say 2e-05"):
        finetune(_ft_cfg(run, 4), resume=True, progress=False)
    _edit_state(run, lambda s: s["optimizer"]["param_groups"][0].__setitem__("lr", float("nan")))
    with pytest.raises(FinetuneError, match="lr=nan"):  # FT3b: was a traceback
        finetune(_ft_cfg(run, 4), resume=True, progress=False)
    _edit_state(run, lambda s: s["optimizer"]["param_groups"][0].__setitem__("lr", 2e-05))
    _edit_state(run, lambda s: s["optimizer"]["zo"]["config"].__setitem__("eps", 0.5))
    with pytest.raises(FinetuneError, match="zo eps=0.5"):
        finetune(_ft_cfg(run, 4), resume=True, progress=False)
    _edit_state(run, lambda s: s["optimizer"]["zo"]["config"].__setitem__("eps", 1e-3))
    _edit_state(run, lambda s: s["meta"].__setitem__("template", "review"))
    with pytest.raises(FinetuneError, match="template 'review'.*'it-was'"):
        finetune(_ft_cfg(run, 4), resume=True, progress=False)
    _edit_state(run, lambda s: s["meta"].__setitem__("template", "it-was"))
    # consistent again: resumes, and results.json reports the values the optimizer used
    result = finetune(_ft_cfg(run, 4), resume=True, progress=False)
    saved = json.loads((run / "results.json").read_text())
    assert _newest(run).name == "step_00000004"
    state = json.loads((_newest(run) / "state.json").read_text())["optimizer"]
    assert saved["config"]["lr"] == state["param_groups"][0]["lr"] == 2e-05
    assert saved["template"] == result.template == "it-was"


def _header_2_62(path: Path) -> None:
    raw = path.read_bytes()
    path.write_bytes((2 ** 62).to_bytes(8, "little") + raw[8:])


def _cut_rng(path: Path) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(path))
    key = next(k for k in tensors if "rng" in k)
    tensors[key] = tensors[key][:10].clone()
    save_file(tensors, str(path))


@needs_model
@pytest.mark.parametrize("case, craft, message", [
    ("FT9", lambda run: _edit_state(run, lambda s: s.__setitem__("step", ["2"])), "step is not an integer"),
    ("FT10", lambda run: _edit_state(run, lambda s: s.pop("meta")), "missing ['meta']"),
    ("R8-ft", _list_outside_file, "not plain file names of the checkpoint"),
    ("FT11", lambda run: _rewrite_state_file(run, _header_2_62), "tensors.safetensors cannot be read"),
    ("FT12", lambda run: _rewrite_state_file(run, _cut_rng), "generator state is damaged"),
    ("deep", _deep_state, "nested too deeply"),
])
def test_FT9_FT10_FT11_FT12_crafted_checkpoints_are_one_line_errors(ft_base, tmp_path, capsys, case, craft, message):
    run = _copy(ft_base, tmp_path)
    craft(run)
    args = ["finetune", "--model", str(AIDREAMS), "--data-dir", str(DATA), "--template", "it-was", "--method",
            "mezo", "--batch-size", "4", "--checkpoint-every", "2", "--test-size", "8", "--dev-size", "8",
            "--no-progress", "--no-save-model", "--steps", "4", "--out", str(run), "--resume"]
    _one_line(capsys, main(args), message)


@needs_model
def test_S8_bin_a_pickle_model_file_is_refused_with_one_line_and_never_unpickled(tmp_path, capsys):
    import shutil

    model = tmp_path / "evil_model"
    model.mkdir()
    for f in AIDREAMS.iterdir():
        if not f.name.endswith(".safetensors"):
            shutil.copy(f, model / f.name)
    marker = tmp_path / "UNPICKLED"
    (model / "pytorch_model.bin").write_bytes(f"cbuiltins\nopen\n(V{marker}\nVw\ntR.".encode())  # opens a file
    err = _one_line(capsys, main(["finetune", "--model", str(model), "--data-dir", str(DATA), "--steps", "0",
                                  "--template", "it-was", "--test-size", "8", "--dev-size", "8", "--no-progress"]),
                    "has no safetensors weights")
    assert "pytorch_model.bin" in err and not marker.exists()


@needs_model
def test_FT_disk_full_during_a_finetune_is_one_line_naming_the_kept_checkpoint(tmp_path, capsys, monkeypatch):
    safetensors_torch = pytest.importorskip("safetensors.torch")
    from safetensors import SafetensorError

    real, calls = safetensors_torch.save_model, []

    def full_disk(*args, **kw):  # what safetensors raises on a full disk (the report's FT-disk)
        calls.append(1)
        if len(calls) > 1:
            raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: '
                                  '"No space left on device" })')
        return real(*args, **kw)

    monkeypatch.setattr(safetensors_torch, "save_model", full_disk)
    out = tmp_path / "full"
    args = ["finetune", "--model", str(AIDREAMS), "--data-dir", str(DATA), "--template", "it-was", "--method",
            "mezo", "--batch-size", "4", "--checkpoint-every", "2", "--test-size", "8", "--dev-size", "8",
            "--no-progress", "--no-save-model", "--steps", "6", "--out", str(out)]
    err = _one_line(capsys, main(args), "No space left on device")
    assert "checkpoint of step 2" in err and "--resume" in err
    monkeypatch.setattr(safetensors_torch, "save_model", real)
    assert main([*args, "--resume"]) == 0  # the kept checkpoint resumes


# -- task files (N3): size, depth, regular files, plain names, plain bounded format fields ------------------
def _task_dir(tmp_path: Path, **changes) -> Path:
    """A valid task file with its data (k=4, seed 13) beside it, then ``changes`` applied to the JSON."""
    data = tmp_path / "data"
    (data / "4-13").mkdir(parents=True)
    rows = "sentence\tlabel\n" + "".join(f"s{i} .\t{i % 2}\n" for i in range(8))
    for f in ("4-13/train.tsv", "4-13/dev.tsv", "test.tsv"):
        (data / f).write_text(rows)
    spec = {"name": "toy", "folder": "data", "columns": {"sentence": "sentence"}, "label_column": "label",
            "labels": ["0", "1"], "k_values": [4], "data_seeds": [13],
            "templates": [{"name": "q", "text": "{sentence} It was", "label_words": [" bad", " good"]}]}
    spec.update(changes)
    (tmp_path / "task.json").write_text(json.dumps(spec))
    return tmp_path / "task.json"


def _template(text: str) -> dict:
    return {"templates": [{"name": "q", "text": text, "label_words": [" bad", " good"]}]}


@pytest.mark.parametrize("case, changes, message", [
    ("name_trav", {"name": "../../escaped_by_name"}, "task name must be a plain name"),
    ("name_abs", {"name": "/tmp/ABS_ESCAPED"}, "task name must be a plain name"),
    ("name_ansi", {"name": "\u001b[31mRED\u001b[0m\nfake: line"}, "task name must be a plain name"),
    ("fmt_globals", {"columns": {"s.__init__.__globals__": "sentence", "s": "sentence"},
                     **_template("{s.__init__.__globals__} It was")}, "must be a plain name"),
    ("fmt_dotcol", {"columns": {"sentence.__class__": "sentence", "sentence": "sentence"},
                    **_template("{sentence.__class__} {sentence}")}, "must be a plain name"),
    ("fmt_index", {"columns": {"sentence[0]": "sentence"}, **_template("{sentence[0]} It was")},
     "must be a plain name"),
    ("fmt_nested", _template("{sentence:{sentence}} It was"), "not a plain alignment/width"),
    ("fmt_pad", _template("{sentence:>3000000} It was"), "at most 1000"),
    ("fmt_empty", _template(""), "uses no field"),
    ("label_ansi", {"labels": ["0", "\u001b[2J"]}, "control characters"),
])
def test_N3_task_file_names_and_format_fields_are_checked_before_any_work(tmp_path, case, changes, message):
    from dfo.torch.llm.tasks import TaskError, get_task

    path = _task_dir(tmp_path, **changes)
    with pytest.raises(TaskError, match=message) as err:
        get_task(str(path))
    assert "\u001b" not in str(err.value) and "\n" not in str(err.value)  # nothing to forge a log line with


def test_N3_plain_bounded_format_fields_still_work(tmp_path):
    from dfo.torch.llm.tasks import get_task

    task = get_task(str(_task_dir(tmp_path, **_template("Review: {sentence!r:>20}\nSentiment:"))))
    assert task.template("q").format({"sentence": "ok"}) == "Review:                 'ok'\nSentiment:"


@pytest.mark.parametrize("case", ["zero.json", "fifo.json", "deep.json", "huge.json"])
def test_N3_task_files_that_are_devices_fifos_or_bombs_are_one_line_errors(tmp_path, case):
    from dfo.torch.llm.tasks import TaskError, get_task

    path = tmp_path / case
    if case == "zero.json":
        path.symlink_to("/dev/zero")
        message = "not a regular file"
    elif case == "fifo.json":
        os.mkfifo(path)  # nobody writes it: reading would hang
        message = "not a regular file"
    elif case == "deep.json":
        path.write_text("[" * 200_000 + "]" * 200_000)
        message = "nested too deeply"
    else:
        path.write_text(json.dumps({"name": "x" * (2 * 1024 * 1024)}))
        message = "more than the 1048576 bytes"
    with pytest.raises(TaskError, match=message):
        get_task(str(path))


@pytest.mark.parametrize("case, write, message", [
    ("tsv_nonutf8tsv", lambda d: (d / "4-13" / "train.tsv").write_bytes(b"sentence\tlabel\n\xff .\t0\n"),
     r"train.tsv is not UTF-8 text \(byte 0xff"),
    ("tsv_headeronly", lambda d: (d / "test.tsv").write_text("sentence\tlabel\n"), "holds no examples"),
    ("three_labels", None, "no example has label '2'"),
])
def test_N3_data_files_that_do_not_fit_name_the_file(tmp_path, case, write, message):
    from dfo.torch.llm.tasks import TaskError, get_task, load_split

    path = _task_dir(tmp_path, **({"labels": ["0", "1", "2"], "templates": [
        {"name": "q", "text": "{sentence} It was", "label_words": [" bad", " good", " ok"]}]}
        if case == "three_labels" else {}))
    if write is not None:
        write(tmp_path / "data")
    task = get_task(str(path))
    with pytest.raises(TaskError, match=message):
        for split in ("train", "dev", "test"):
            load_split(task, split, k=4, data_seed=13)


# -- RL checkpoints and policies (N5): R7, R8, BP2 -------------------------------------------------------------
@pytest.fixture(scope="module")
def rl_run(tmp_path_factory) -> Path:
    from dfo.policies.training import TrainConfig, Trainer

    out = tmp_path_factory.mktemp("rl") / "run"
    cfg = TrainConfig(env_id="InvertedPendulum-v5", method="ars-v2t", episodes=10**6, max_iterations=1, horizon=20,
                      n_directions=2, top_b=2, n_eval_episodes=1, eval_every=1, checkpoint_every=1, backend="serial")
    with Trainer(cfg, out_dir=out) as tr:
        tr.run()
    return out


def _rl_copy(rl_run: Path, tmp_path: Path) -> Path:
    import shutil

    shutil.copytree(rl_run, tmp_path / "run")
    (tmp_path / "run" / ".lock").unlink(missing_ok=True)
    return tmp_path / "run"


def test_R7_a_deeply_nested_manifest_is_a_clear_error(rl_run, tmp_path):
    from dfo.policies.checkpoint import CheckpointError, list_checkpoints
    from dfo.policies.training import Trainer

    run = _rl_copy(rl_run, tmp_path)
    (list_checkpoints(run)[-1] / "manifest.json").write_text('{"files": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(CheckpointError, match="corrupt manifest.json.*nested too deeply"):
        Trainer.resume(run)


def test_R8_manifest_names_outside_the_checkpoint_are_refused(rl_run, tmp_path):
    from dfo.fileio import sha256_file
    from dfo.policies.checkpoint import CheckpointError, list_checkpoints
    from dfo.policies.training import Trainer

    run = _rl_copy(rl_run, tmp_path)
    manifest = list_checkpoints(run)[-1] / "manifest.json"
    doc = json.loads(manifest.read_text())
    doc["files"]["../../config.json"] = sha256_file(run / "config.json")  # the true hash: still refused
    manifest.write_text(json.dumps(doc))
    with pytest.raises(CheckpointError, match=r"lists \['../../config.json'\], which are not plain file names"):
        Trainer.resume(run)


def test_BP2_an_edited_best_policy_json_is_refused(rl_run, tmp_path, capsys):
    from dfo.policies.serialization import load_policy

    run = _rl_copy(rl_run, tmp_path)
    assert load_policy(run / "best_policy").metadata["env_id"] == "InvertedPendulum-v5"
    doc = json.loads((run / "best_policy.json").read_text())
    doc["env_kwargs"] = {"ctrl_cost_weight": 1000.0}
    (run / "best_policy.json").write_text(json.dumps(doc, indent=1))
    with pytest.raises(ValueError, match=r"best_policy.json does not match its own checksum"):
        load_policy(run / "best_policy")
    _one_line(capsys, main(["evaluate", str(run / "best_policy"), "--episodes", "1"]), "own checksum")


# -- the run folder's manifest ----------------------------------------------------------------------------------
def test_a_run_folder_records_its_command_and_an_older_run_is_adopted_on_resume(rl_run, tmp_path, capsys):
    from dfo.run import MANIFEST, read_manifest
    from dfo.run import TRAIN as TRAIN_LAYOUT

    run = _rl_copy(rl_run, tmp_path)
    assert read_manifest(run) == {"format": "dfo-run/1", "command": "train", "entries": list(TRAIN_LAYOUT.entries)}
    (run / MANIFEST).unlink()  # a run written by an older dfo
    _one_line(capsys, main([*TRAIN, "--out", str(run), "--overwrite"]), "--overwrite refused")
    assert (run / "config.json").is_file()  # nothing deleted
    assert main(["train", "--resume", str(run), "--max-iterations", "2", "--no-progress"]) == 0
    assert read_manifest(run)["command"] == "train"  # adopted: from now on --overwrite knows its files
    assert main([*TRAIN, "--out", str(run), "--overwrite"]) == 0
