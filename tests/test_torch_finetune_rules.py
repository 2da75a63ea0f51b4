"""dfo finetune with the step rules, a forward-pass budget and LoRA adapters (peft), on the tiny aidreams260K."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from dfo.torch import ZOConfig  # noqa: E402
from dfo.torch.llm.finetune import FinetuneConfig, finetune  # noqa: E402

DATA = Path(os.environ.get("DFO_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
AIDREAMS = DATA / "models" / "aidreams260K"
pytestmark = [
    pytest.mark.usefixtures("torch_one_thread"),
    pytest.mark.skipif(not (AIDREAMS / "config.json").is_file(), reason=f"no data/model at {DATA}"),
]


def _cfg(tmp_path, n_directions=None, **kw):
    base = dict(model=str(AIDREAMS), template="review", steps=50, batch_size=4, dev_size=8, test_size=8,
                data_dir=str(DATA), out_dir=str(tmp_path / "run"), seed=1, lr=1e-4, probe=False)
    kw = {**base, **kw}
    kw["zo"] = ZOConfig(method=kw.get("method", "mezo"), n_directions=n_directions)
    return FinetuneConfig(**kw)


@pytest.mark.parametrize("method, budget, steps, used", [("mezo", 7, 3, 6), ("fzoo", 13, 3, 12),
                                                         ("mezo-orth", 20, 2, 16)])
def test_forward_pass_budget_stops_before_a_step_that_could_pass_it(tmp_path, method, budget, steps, used):
    n = 4 if method != "mezo" else None
    res = finetune(_cfg(tmp_path, method=method, forward_passes=budget, n_directions=n, save_model=False),
                   progress=False)
    assert res.iteration == steps and res.evaluations == used <= budget
    assert res.training.forward_passes[-1] == used and len(res.training.loss) == steps
    assert "budget of" in res.message and res.history[-1]["forward_passes"] == used


def test_line_search_method_counts_its_variable_passes_and_stays_in_budget(tmp_path):
    res = finetune(_cfg(tmp_path, method="mezo-ls", forward_passes=30, save_model=False), progress=False)
    fp = res.training.forward_passes
    assert res.forward_passes_per_step == "variable" == res.record()["forward_passes_per_step"]
    assert fp == sorted(fp) and fp[-1] <= 30 and 4 <= fp[0] <= 6  # f0 (+ repeat), f(x +- eps z), 1-2 trials


def test_n_directions_defaults_to_the_methods(tmp_path):
    assert FinetuneConfig(model="m", method="fzoo").zo.n_directions == 8
    assert FinetuneConfig(model="m", method="mezo-orth").zo.n_directions == 4
    assert FinetuneConfig(model="m", method="mezo").zo.n_directions == 1


def test_lora_trains_adapters_only_and_saves_an_adapter_peft_loads(tmp_path):
    peft = pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM

    from dfo.torch.llm.models import load_lm

    cfg = _cfg(tmp_path, method="mezo", lora=4, steps=6, lr=1e-2)
    res = finetune(cfg, progress=False)
    folder = Path(cfg.out_dir) / "model"
    assert json.loads((folder / "adapter_config.json").read_text())["r"] == 4
    assert (folder / "adapter_model.safetensors").is_file()
    assert not (folder / "model.safetensors").exists()  # the adapter, not the whole model
    base = AutoModelForCausalLM.from_pretrained(AIDREAMS)
    loaded = peft.PeftModel.from_pretrained(base, folder)
    lora_b = {n: p for n, p in loaded.named_parameters() if "lora_B" in n}
    assert lora_b and any(p.abs().sum() > 0 for p in lora_b.values())  # B starts at 0: trained
    # the base weights are untouched: the loaded model's base equals a fresh copy
    fresh, _ = load_lm(str(AIDREAMS))
    fresh_sd = fresh.state_dict()
    for name, p in loaded.get_base_model().named_parameters():
        if "lora_" in name:
            continue
        key = name.replace(".base_layer", "")
        assert torch.equal(p, fresh_sd[key]), key
    assert res.iteration == 6


@pytest.mark.parametrize("method", ["mezo-ls", "fzoo"])
def test_step_rules_resume_from_a_checkpoint_bit_exactly(tmp_path, method):
    """The line-search state (step length, noise sums) and the pass counter travel in the checkpoint."""
    straight = finetune(_cfg(tmp_path / "a", method=method, steps=6, n_directions=3 if method == "fzoo" else None,
                             save_model=False), progress=False)
    cfg = _cfg(tmp_path / "b", method=method, steps=6, n_directions=3 if method == "fzoo" else None,
               save_model=False, checkpoint_every=3)
    import dataclasses

    finetune(dataclasses.replace(cfg, steps=3), progress=False)
    resumed = finetune(cfg, resume=True, progress=False)
    assert resumed.training.loss == straight.training.loss
    assert resumed.training.forward_passes == straight.training.forward_passes
    assert resumed.test.accuracy == straight.test.accuracy
