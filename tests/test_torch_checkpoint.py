"""dfo.torch.llm.checkpoint: a write killed at any point leaves the previous checkpoint whole, and its debris goes."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("safetensors")

import safetensors.torch  # noqa: E402

from dfo.torch.llm import checkpoint as ckpt  # noqa: E402


def _model(value: float) -> torch.nn.Linear:
    m = torch.nn.Linear(3, 2)
    with torch.no_grad():
        m.weight.fill_(value)
        m.bias.fill_(value)
    return m


def _meta(m: int) -> dict:
    """The fields every fine-tuning checkpoint's meta carries (load refuses a pointer without them)."""
    return {"config": {"template": "t"}, "template": "t", "template_selection": None, "train_seconds": 0.0, "m": m}


def test_a_killed_save_keeps_the_previous_checkpoint_and_the_next_save_clears_the_debris(tmp_path, monkeypatch):
    state = {"optimizer": {"state": {0: {"V": torch.ones(2)}}, "seeds": (1, 2), "param_groups": []},
             "history": {"loss": [0.5], "dev": []}}
    ckpt.save(tmp_path, step=1, model=_model(1.0), state=state, meta=_meta(1))

    def killed(*a, **k):
        raise KeyboardInterrupt  # Ctrl-C in the middle of writing the tensors

    monkeypatch.setattr(safetensors.torch, "save_file", killed)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save(tmp_path, step=2, model=_model(2.0), state=state, meta=_meta(2))
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.json", "ckpt-00000001"]
    back = _model(0.0)
    step, loaded, meta = ckpt.load(tmp_path, back)
    assert (step, meta) == (1, _meta(1)) and torch.equal(back.weight, torch.ones(2, 3))
    assert loaded["optimizer"]["seeds"] == (1, 2) and list(loaded["optimizer"]["state"]) == [0]

    # what a SIGKILL leaves (a staged folder and a temporary pointer) is removed by the next save
    (tmp_path / "ckpt-00000002.tmp-dead0000").mkdir()
    (tmp_path / "checkpoint.json.tmp-dead0000").write_bytes(b"{")
    ckpt.save(tmp_path, step=3, model=_model(3.0), state=state, meta=_meta(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.json", "ckpt-00000003"]
    assert ckpt.load(tmp_path, back)[0] == 3 and torch.equal(back.bias, torch.full((2,), 3.0))
