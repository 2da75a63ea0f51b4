"""The one checkpoint format (dfo.run.checkpoint): round trips, every corruption detected, one-line
refusals, no pickle, torch tensors through safetensors; and RL run folders of the version-1 layout
(tests/data/rl_run_v1, written by dfo before this format) resume exactly."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from dfo.run.checkpoint import (
    ARRAYS,
    MANIFEST,
    STATE,
    TENSORS,
    CheckpointError,
    Series,
    load,
    save,
    verify,
    write_manifest,
)

DATA = Path(__file__).parent / "data"
STATE_TREE = {"step": 3, "x": np.arange(5.0), "pair": (np.eye(2, dtype=np.float32), None), "nan": math.nan,
              "by_index": {0: {"m": np.ones(3)}, 7: "seven"}, "name": "run", "flags": [True, False]}


def _one_line(exc: BaseException) -> str:
    msg = str(exc)
    assert "\n" not in msg, msg
    return msg


def _same(a, b) -> None:
    """Trees equal, arrays by value and dtype, NaN == NaN."""
    assert type(a) is type(b), (a, b)
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for u, v in zip(a, b):
            _same(u, v)
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b)
    else:
        assert a == b


def test_round_trip_keeps_types_integer_keys_and_nan(tmp_path):
    d = save(tmp_path / "c", STATE_TREE, kind="demo")
    assert sorted(p.name for p in d.iterdir()) == [ARRAYS, MANIFEST, STATE]
    _same(load(d, kind="demo"), STATE_TREE)
    manifest = json.loads((d / MANIFEST).read_text())
    assert (manifest["format"], manifest["version"], manifest["kind"]) == ("dfo-checkpoint", 2, "demo")
    assert sorted(manifest["files"]) == [ARRAYS, STATE]


@pytest.mark.parametrize("name", [STATE, ARRAYS, "extra.bin"])
def test_one_flipped_byte_in_any_file_is_detected_naming_the_file(tmp_path, name):
    d = save(tmp_path / "c", STATE_TREE, kind="demo", files=lambda f: (f / "extra.bin").write_bytes(b"\0" * 64))
    data = bytearray((d / name).read_bytes())
    data[len(data) // 2] ^= 0x01
    (d / name).write_bytes(bytes(data))
    with pytest.raises(CheckpointError) as info:
        load(d, kind="demo")
    assert f"corrupt {name}" in _one_line(info.value) and "SHA-256" in str(info.value)


def test_missing_extra_and_linked_files_are_refused(tmp_path):
    d = save(tmp_path / "c", STATE_TREE, kind="demo")
    (d / "evil.npz").write_bytes(b"x")
    with pytest.raises(CheckpointError, match=r"not in its manifest.json.*evil\.npz"):
        load(d, kind="demo")
    (d / "evil.npz").unlink()
    (tmp_path / "outside.npz").write_bytes((d / ARRAYS).read_bytes())
    (d / ARRAYS).unlink()
    with pytest.raises(CheckpointError, match=r"incomplete.*arrays\.npz"):
        load(d, kind="demo")
    (d / ARRAYS).symlink_to(tmp_path / "outside.npz")
    with pytest.raises(CheckpointError, match="symbolic link"):
        load(d, kind="demo")


def test_kind_and_version_are_checked_in_one_line(tmp_path):
    d = save(tmp_path / "c", {"a": 1}, kind="finetune")
    with pytest.raises(CheckpointError, match="is a 'finetune' checkpoint, not a 'train' one") as info:
        load(d, kind="train")
    _one_line(info.value)
    doc = json.loads((d / MANIFEST).read_text())
    (d / MANIFEST).write_text(json.dumps({**doc, "version": 3}))
    with pytest.raises(CheckpointError, match="format version 3.*upgrade dfo") as info:
        load(d, kind="finetune")
    _one_line(info.value)
    (d / MANIFEST).write_text(json.dumps({**doc, "format": "something-else"}))
    with pytest.raises(CheckpointError, match="not a dfo checkpoint manifest"):
        load(d, kind="finetune")


def test_nothing_is_pickled(tmp_path):
    with pytest.raises(TypeError, match="Python objects at s.o"):
        save(tmp_path / "c", {"o": np.array([object()])}, kind="demo")
    assert not (tmp_path / "c").exists() and not list(tmp_path.iterdir())  # the temporary folder is gone too
    # an object array planted in arrays.npz (hashes rewritten) is refused by allow_pickle=False
    d = save(tmp_path / "c", {"a": np.ones(2)}, kind="demo")
    np.savez(d / ARRAYS, **{"s.a#0": np.array([object()])})
    write_manifest(d, kind="demo")
    with pytest.raises(CheckpointError, match=r"arrays\.npz cannot be read"):
        load(d, kind="demo")


def test_extra_files_may_not_take_the_formats_names(tmp_path):
    with pytest.raises(ValueError, match="must not be named.*state.json"):
        save(tmp_path / "c", {}, kind="demo", files=lambda f: (f / STATE).write_text("{}"))
    assert not list(tmp_path.iterdir())


def test_a_failed_save_leaves_the_previous_checkpoint_whole(tmp_path):
    d = save(tmp_path / "c", {"v": 1}, kind="demo")

    def boom(folder):
        (folder / "half").write_bytes(b"x")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save(d, {"v": 2}, kind="demo", files=boom)
    assert load(d, kind="demo") == {"v": 1} and [p.name for p in tmp_path.iterdir()] == ["c"]


def test_torch_tensors_go_to_safetensors(tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("safetensors")
    state = {"step": 2, "opt": {"state": {0: {"m": torch.arange(4.0)}}, "param_groups": [{"lr": 0.1}]},
             "rng": torch.Generator().manual_seed(1).get_state(), "x": np.arange(2)}
    d = save(tmp_path / "c", state, kind="finetune")
    assert (d / TENSORS).is_file() and TENSORS in json.loads((d / MANIFEST).read_text())["files"]
    back = load(d, kind="finetune")
    assert torch.equal(back["opt"]["state"][0]["m"], state["opt"]["state"][0]["m"])
    assert torch.equal(back["rng"], state["rng"]) and back["rng"].dtype == torch.uint8
    np.testing.assert_array_equal(back["x"], state["x"])
    assert back["opt"]["param_groups"] == [{"lr": 0.1}]
    (d / TENSORS).write_bytes(b"\xff" * 16)
    write_manifest(d, kind="finetune")
    with pytest.raises(CheckpointError, match=r"tensors\.safetensors cannot be read") as info:
        load(d, kind="finetune")
    _one_line(info.value)


def test_series_keeps_the_last_ones_removes_stale_folders_and_names_the_previous_good_one(tmp_path):
    s = Series(root=tmp_path / "checkpoints", prefix="iter_", keep=2, resume_hint="--resume {path}")
    for i in (1, 2, 3):
        s.save(i, {"i": i, "a": np.full(2, i)}, kind="demo")
    (s.root / ".tmp-killed").mkdir()
    s.save(4, {"i": 4, "a": np.full(2, 4)}, kind="demo")
    assert [p.name for p in s.folders()] == ["iter_000003", "iter_000004"]
    assert not (s.root / ".tmp-killed").exists()
    (s.root / "iter_000004" / ARRAYS).write_bytes(b"torn")
    with pytest.raises(CheckpointError, match=r"iter_000004: corrupt arrays\.npz.*previous checkpoint "
                                              r".*iter_000003 is kept: --resume .*iter_000003") as info:
        s.load_newest(kind="demo")
    _one_line(info.value)
    with pytest.raises(CheckpointError, match="no checkpoint found"):
        Series(root=tmp_path / "none", prefix="iter_").newest()


# -- RL run folders of the version-1 layout -----------------------------------------------------------------
def _v1_run(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(DATA / "rl_run_v1", run)
    return run


def test_version_1_manifests_are_verified_and_refused_by_the_generic_load(tmp_path):
    ckpt = _v1_run(tmp_path) / "checkpoints" / "iter_000002"
    assert verify(ckpt).version == 1
    with pytest.raises(CheckpointError, match="version-1 layout of an older dfo") as info:
        load(ckpt, kind="finetune")
    _one_line(info.value)
    npz = ckpt / "state.npz"
    npz.write_bytes(npz.read_bytes()[:-1])
    with pytest.raises(CheckpointError, match=r"corrupt state\.npz"):
        verify(ckpt)


def test_an_old_rl_run_folder_resumes_exactly(tmp_path):
    """The fixture is a 2-iteration run written by dfo before this format; its uninterrupted 4-iteration
    twin's progress.csv is rl_run_v1_full_progress.csv. Resumed to 4, the new code continues it exactly
    and writes its next checkpoints in the new format. (If the numbers of ars-v2t ever change on
    purpose, old runs cannot resume exactly and this fixture must be written again.)"""
    from dfo.policies.checkpoint import list_checkpoints
    from dfo.policies.training import DETERMINISTIC_COLUMNS, Trainer, read_progress

    run = _v1_run(tmp_path)
    with Trainer.resume(run, overrides={"max_iterations": 4}) as tr:
        assert tr.iteration == 2
        tr.run()
    got = read_progress(run / "progress.csv")
    want = read_progress(DATA / "rl_run_v1_full_progress.csv")

    def det(rows):
        return [tuple("nan" if isinstance(r[c], float) and math.isnan(r[c]) else r[c] for c in DETERMINISTIC_COLUMNS)
                for r in rows]

    assert det(got) == det(want)
    newest = list_checkpoints(run)[-1]
    assert newest.name == "iter_000004" and verify(newest).version == 2 and (newest / ARRAYS).is_file()


def test_the_trainer_saves_the_optimizer_state_once_and_refuses_an_unknown_layout(tmp_path, capsys):
    from dfo.cli import main
    from dfo.policies.checkpoint import list_checkpoints
    from dfo.policies.training import TrainConfig, Trainer

    cfg = TrainConfig(env_id="InvertedPendulum-v5", method="ars-v2t", episodes=10**6, max_iterations=2, horizon=20,
                      n_directions=2, top_b=2, n_eval_episodes=1, backend="serial")
    with Trainer(cfg, out_dir=tmp_path / "run") as tr:
        tr.run()
        state = tr.state_dict()
    assert not {"params", "rng", "estimator", "alpha"} & set(state)  # only inside state["minimizer"]
    ckpt = list_checkpoints(tmp_path / "run")[-1]
    with Trainer.resume(tmp_path / "run") as again:
        np.testing.assert_array_equal(again.params, state["minimizer"]["state"]["x"])
    tree = json.loads((ckpt / STATE).read_text())
    tree["layout"] = 99
    (ckpt / STATE).write_text(json.dumps(tree))
    write_manifest(ckpt, kind="train")
    with pytest.raises(ValueError, match="trainer state of layout 99.*upgrade dfo") as info:
        Trainer.resume(tmp_path / "run")
    _one_line(info.value)
    assert main(["train", "--resume", str(tmp_path / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "layout 99" in err
