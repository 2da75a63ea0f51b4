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
from policies.training import read_progress

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
    assert saved["config"]["seed"] == 0 and saved["history"] == json.loads(json.dumps(first["history"]))
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
