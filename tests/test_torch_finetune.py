"""`dfo finetune` and its library layer on the tiny pretrained aidreams260K model."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from dfo.torch.finetune import FinetuneConfig, finetune  # noqa: E402
from dfo.torch.sst2 import PromptClassifier, load_sst2, shared_data_dir  # noqa: E402

AIDREAMS = shared_data_dir() / "models" / "aidreams260K"
pytestmark = [
    pytest.mark.usefixtures("torch_one_thread"),
    pytest.mark.skipif(not (AIDREAMS / "config.json").is_file(), reason=f"no model at {AIDREAMS}"),
]




def test_sst2_splits_have_the_documented_sizes():
    assert len(load_sst2("train", k=16, data_seed=13)) == 32
    assert len(load_sst2("dev", k=16, data_seed=13)) == 32
    assert len(load_sst2("test")) == 872
    assert {e.label for e in load_sst2("train", k=16, data_seed=42)} == {0, 1}
    with pytest.raises(FileNotFoundError, match="k=7"):
        load_sst2("train", k=7)


def test_left_padding_gives_the_same_logits_as_no_padding():
    from dfo.torch.models import load_causal_lm

    model, tok = load_causal_lm(AIDREAMS)
    clf = PromptClassifier(model, tok)
    sentences = ["a gorgeous , witty , seductive movie .", "bad ."]
    with torch.no_grad():
        both = clf.logits(sentences)
        alone = torch.cat([clf.logits([s]) for s in sentences])
    assert torch.allclose(both, alone, atol=1e-4)


def _cfg(tmp_path, name, steps, **kw):
    base = dict(model=str(AIDREAMS), method="lozo-m", lr=3e-4, eps=1e-3, rank=4, refresh=4, steps=steps,
                batch_size=8, checkpoint_every=5, test_size=32, dev_size=16, out_dir=str(tmp_path / name))
    return FinetuneConfig(**{**base, **kw})


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    straight = finetune(_cfg(tmp_path, "a", 12), progress=False)
    finetune(_cfg(tmp_path, "b", 7), progress=False)  # stops at 7 (checkpoint at 5 and 7)
    resumed = finetune(_cfg(tmp_path, "b", 12), resume=True, progress=False)
    # the uninterrupted run checkpointed at 5 and 10; resuming at 7 replays 8..12 with an extra fold at 7,
    # so compare the part up to the interruption exactly and the rest to float tolerance
    assert resumed["history"]["loss"][:7] == straight["history"]["loss"][:7]
    assert resumed["history"]["loss"][7:] == pytest.approx(straight["history"]["loss"][7:], rel=1e-5)
    assert json.loads((tmp_path / "b" / "results.json").read_text())["steps"] == 12


def test_resume_at_a_checkpoint_is_bit_exact(tmp_path):
    straight = finetune(_cfg(tmp_path, "a", 10), progress=False)
    finetune(_cfg(tmp_path, "b", 5), progress=False)
    resumed = finetune(_cfg(tmp_path, "b", 10), resume=True, progress=False)
    assert resumed["history"]["loss"] == straight["history"]["loss"]


def test_resume_refuses_other_settings(tmp_path):
    finetune(_cfg(tmp_path, "a", 2), progress=False)
    with pytest.raises(ValueError, match="different settings"):
        finetune(_cfg(tmp_path, "a", 4, lr=1e-3), resume=True, progress=False)


def test_cli_zero_shot_and_training(tmp_path, capsys):
    from dfo.cli import main

    assert main(["finetune", "--model", str(AIDREAMS), "--steps", "0", "--test-size", "16", "--dev-size", "8",
                 "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["steps"] == 0 and out["forward_passes"] == 0 and 0.0 <= out["test_accuracy"] <= 1.0
    assert main(["finetune", "--model", str(AIDREAMS), "--method", "subzero", "--steps", "4", "--rank", "4",
                 "--lr", "1e-4", "--test-size", "16", "--dev-size", "8", "--eval-every", "2", "--no-progress",
                 "--out", str(tmp_path / "run")]) == 0
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["forward_passes"] == 8 and len(saved["history"]["dev"]) == 2
    assert (tmp_path / "run" / "checkpoint.pt").is_file()


def test_model_must_be_local(tmp_path):
    from dfo.torch.models import resolve_model

    with pytest.raises(FileNotFoundError, match="local"):
        resolve_model("HuggingFaceTB/SmolLM2-135M")


def test_example_script_runs():
    import importlib.util

    path = __import__("pathlib").Path(__file__).resolve().parents[1] / "examples" / "finetune_sst2.py"
    spec = importlib.util.spec_from_file_location("finetune_sst2_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    acc = module.main(["--steps", "3", "--method", "lozo"])
    assert 0.0 <= acc <= 1.0
