"""dfo.torch.llm.checkpoint on dfo.run.checkpoint: numbered step_ folders, the model's weights under the one
manifest, a write killed at any point leaves the previous checkpoint whole, tampering is named, older runs refused."""

from __future__ import annotations

import json
import shutil

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

import safetensors.torch  # noqa: E402

from dfo.run.checkpoint import write_manifest  # noqa: E402
from dfo.torch.llm import checkpoint as ckpt  # noqa: E402


def _model(value: float) -> torch.nn.Linear:
    m = torch.nn.Linear(3, 2)
    with torch.no_grad():
        m.weight.fill_(value)
        m.bias.fill_(value)
    return m


def _state(m: int) -> dict:
    """The fields every fine-tuning checkpoint carries (load refuses a state without them)."""
    return {"optimizer": {"state": {0: {"V": torch.ones(2) * m}}, "seeds": (1, 2), "param_groups": []},
            "history": {"loss": [0.5] * m, "dev": []},
            "meta": {"config": {"template": "t"}, "template": "t", "template_selection": None, "train_seconds": 0.0}}


def _names(path):
    return sorted(p.name for p in path.iterdir())


def test_the_layout_is_the_one_format_with_the_weights_under_its_manifest(tmp_path):
    folder = ckpt.save(tmp_path, step=1, model=_model(1.0), state=_state(1))
    assert folder == tmp_path / "checkpoints" / "step_00000001"
    assert _names(folder) == ["arrays.npz", "manifest.json", "model.safetensors", "state.json", "tensors.safetensors"]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["kind"] == "finetune" and manifest["format"] == "dfo-checkpoint"
    assert sorted(manifest["files"]) == ["arrays.npz", "model.safetensors", "state.json", "tensors.safetensors"]
    assert (folder / "model.safetensors").stat().st_mode & 0o777 == (folder / "state.json").stat().st_mode & 0o777
    for step in (2, 3):  # the last two are kept, as dfo train keeps its iter_ folders
        ckpt.save(tmp_path, step=step, model=_model(float(step)), state=_state(step))
    assert _names(tmp_path / "checkpoints") == ["step_00000002", "step_00000003"]
    back = _model(0.0)
    path, state = ckpt.load(tmp_path, back)
    assert path.name == "step_00000003" and state["step"] == 3 and torch.equal(back.bias, torch.full((2,), 3.0))
    assert state["optimizer"]["seeds"] == (1, 2)
    assert torch.equal(state["optimizer"]["state"][0]["V"], torch.full((2,), 3.0))


def test_a_killed_save_keeps_the_previous_checkpoint_and_the_next_save_clears_the_debris(tmp_path, monkeypatch):
    ckpt.save(tmp_path, step=1, model=_model(1.0), state=_state(1))

    for where in ("save_model", "save_file"):  # Ctrl-C while writing the weights, then the optimizer's tensors
        def killed(*a, **k):
            raise KeyboardInterrupt

        monkeypatch.setattr(safetensors.torch, where, killed)
        with pytest.raises(KeyboardInterrupt):
            ckpt.save(tmp_path, step=2, model=_model(2.0), state=_state(2))
        monkeypatch.undo()
        assert _names(tmp_path / "checkpoints") == ["step_00000001"]
        back = _model(0.0)
        path, state = ckpt.load(tmp_path, back)
        assert path.name == "step_00000001" and state["step"] == 1 and torch.equal(back.weight, torch.ones(2, 3))

    # what a SIGKILL leaves (a staged folder) is removed by the next save
    (tmp_path / "checkpoints" / ".tmp-dead0000").mkdir()
    ckpt.save(tmp_path, step=3, model=_model(3.0), state=_state(3))
    assert _names(tmp_path / "checkpoints") == ["step_00000001", "step_00000003"]
    back = _model(0.0)
    assert ckpt.load(tmp_path, back)[1]["step"] == 3 and torch.equal(back.bias, torch.full((2,), 3.0))


def test_a_flipped_bit_a_swapped_file_or_an_edited_state_is_named_and_the_previous_one_offered(tmp_path):
    ckpt.save(tmp_path, step=1, model=_model(1.0), state=_state(1))
    new = ckpt.save(tmp_path, step=2, model=_model(2.0), state=_state(2))
    pristine = tmp_path / "pristine"
    shutil.copytree(new, pristine)

    def restore():
        shutil.rmtree(new)
        shutil.copytree(pristine, new)

    weights = new / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-3] ^= 1
    weights.write_bytes(bytes(raw))
    with pytest.raises(ckpt.CheckpointError, match=r"corrupt model\.safetensors.*step_00000001 is kept"):
        ckpt.load(tmp_path, _model(0.0))
    restore()
    shutil.copy(tmp_path / "checkpoints" / "step_00000001" / "model.safetensors", weights)  # another step's weights
    with pytest.raises(ckpt.CheckpointError, match=r"corrupt model\.safetensors"):
        ckpt.load(tmp_path, _model(0.0))
    restore()
    weights.unlink()
    with pytest.raises(ckpt.CheckpointError, match=r"\['model.safetensors'\] listed in manifest.json but missing"):
        ckpt.load(tmp_path, _model(0.0))
    restore()
    state = json.loads((new / "state.json").read_text())
    state["step"] = 7
    (new / "state.json").write_text(json.dumps(state))
    with pytest.raises(ckpt.CheckpointError, match=r"corrupt state\.json"):
        ckpt.load(tmp_path, _model(0.0))
    write_manifest(new, kind="finetune")  # an edit with its hash recomputed: the format's fields still hold
    state["step"] = "7"
    (new / "state.json").write_text(json.dumps(state))
    write_manifest(new, kind="finetune")
    with pytest.raises(ckpt.CheckpointError, match="step is not an integer"):
        ckpt.load(tmp_path, _model(0.0))
    restore()
    (new / "model.safetensors").unlink()  # a manifest rewritten without the weights
    write_manifest(new, kind="finetune")
    with pytest.raises(ckpt.CheckpointError, match="model.safetensors missing"):
        ckpt.load(tmp_path, _model(0.0))
    restore()
    with pytest.raises(ckpt.CheckpointError, match="do not fit this model"):
        ckpt.load(tmp_path, torch.nn.Linear(4, 2))


def write_legacy_run(run) -> None:
    """A run folder of the format dfo wrote before (``checkpoint.json`` + ``ckpt-<step>/``, as ``git show
    caa0e63:dfo/torch/llm/checkpoint.py`` writes it), enough to be recognised."""
    folder = run / "ckpt-00000005"
    folder.mkdir(parents=True)
    safetensors.torch.save_model(_model(1.0), str(folder / "model.safetensors"))
    safetensors.torch.save_file({}, str(folder / "state.safetensors"))
    body = {"format": "dfo-finetune-checkpoint/1", "step": 5, "folder": folder.name, "sha256": {}, "state": {},
            "meta": {}}
    (run / "checkpoint.json").write_text(json.dumps({"body": body, "sha256": "0" * 64}))


def test_a_checkpoint_of_an_older_dfo_is_refused_in_one_line_naming_what_to_do(tmp_path):
    write_legacy_run(tmp_path)
    with pytest.raises(ckpt.CheckpointError) as err:
        ckpt.load(tmp_path, _model(0.0))
    msg = str(err.value)
    assert "\n" not in msg and "older dfo (dfo-finetune-checkpoint/1" in msg
    assert f"--config {tmp_path / 'results.json'}" in msg and "--overwrite" in msg
    with pytest.raises(ckpt.CheckpointError, match="no checkpoint found"):
        ckpt.load(tmp_path / "empty", _model(0.0))
