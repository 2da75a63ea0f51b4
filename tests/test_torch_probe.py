"""The learned verbalizer head (linear probing, ``dfo finetune --probe``): exactness at its start, the fit, runs."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("scipy")

from dfo.torch.llm.probe import LAMBDAS, VerbalizerHead, final_hidden, fit_probe, label_rows  # noqa: E402
from dfo.torch.llm.prompt import PromptClassifier  # noqa: E402
from tests.test_torch_finetune import AIDREAMS, DATA, _cfg  # noqa: E402

pytestmark = [pytest.mark.usefixtures("torch_one_thread"),
              pytest.mark.skipif(not (AIDREAMS / "config.json").is_file(), reason=f"no data/model at {DATA}")]


def _clf():
    from dfo.torch.llm.models import load_lm

    model, tok = load_lm(AIDREAMS)
    return PromptClassifier(model, tok, task="sst2", template="it-was")


def test_the_head_at_the_label_words_rows_reproduces_the_verbalizer_logits():
    from dfo.torch.llm.tasks import load_split

    clf = _clf()
    batch = clf.encode_batch(load_split("sst2", "dev", k=16, data_seed=13, data_dir=DATA)[:12])  # left-padded
    with torch.no_grad():
        verbalizer = clf.logits(batch)
        clf.head = VerbalizerHead(*label_rows(clf.model, clf.label_ids))
        probe = clf.logits(batch)
        assert final_hidden(clf.model, batch.inputs).shape == (12, clf.model.config.hidden_size)
    torch.testing.assert_close(probe, verbalizer, rtol=1e-5, atol=1e-5)


def test_the_fit_is_the_ridge_optimum_and_cross_validation_reads_only_the_training_set():
    rng = np.random.default_rng(1)
    h = rng.normal(size=(120, 6))
    y = (h @ np.array([2.0, -1, 0, 0, 0, 0.5]) + 0.3 * rng.normal(size=120) > 0).astype(int)
    w0 = rng.normal(size=(2, 6))
    fit = fit_probe(h, y, w0, seed=0)
    assert fit.lam in LAMBDAS and len(fit.cv_accuracy) == len(LAMBDAS) and fit.n == 120
    assert fit.train_accuracy >= 0.9
    # first-order optimality of the ridge objective at the returned head (the fit converged)
    w, b = fit.head.weight, fit.head.bias
    z = h @ w.T + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    p[np.arange(120), y] -= 1
    grad_w = p.T @ h / 120 + fit.lam * (w - w0)
    assert np.abs(grad_w).max() < 1e-4 and np.abs(p.sum(0) / 120).max() < 1e-4
    # a huge ridge keeps the rows: the verbalizer (and the given output bias) is the limit
    strong = fit_probe(h, y, w0, np.array([0.5, -0.5]), seed=0, lambdas=(1e6,))
    assert np.abs(strong.head.weight - w0).max() < 1e-4
    # same seed, same folds, same head
    again = fit_probe(h, y, w0, seed=0)
    assert np.array_equal(again.head.weight, fit.head.weight) and again.cv_accuracy == fit.cv_accuracy


def test_bad_probe_inputs_are_one_line_errors():
    with pytest.raises(ValueError, match="do not fit"):
        fit_probe(np.zeros((10, 3)), np.zeros(10, int), np.zeros((2, 4)), seed=0)
    with pytest.raises(ValueError, match="two of the classes"):
        fit_probe(np.zeros((10, 3)), np.zeros(10, int), np.zeros((2, 3)), seed=0)
    with pytest.raises(ValueError, match="not finite"):
        VerbalizerHead.from_dict({"weight": [[1.0, float("nan")]], "bias": [0.0]})


def test_probe_then_zo_counts_the_probe_passes_resumes_exactly_and_saves_the_head(tmp_path):
    from dfo.torch.llm.finetune import FinetuneError, finetune

    kw = dict(method="mezo", zo={}, lr=1e-4, probe=True, k=16, batch_size=8)
    straight = finetune(_cfg(tmp_path, "a", 6, save_model=True, **kw), progress=False)
    probe = straight.training.probe
    assert probe["forward_passes"] == 4 and probe["n"] == 32  # 32 training examples in batches of 8
    assert straight.training.forward_passes[0] == 4 + 2 and straight.evaluations == 4 + 6 * 2
    record = json.loads((tmp_path / "a" / "results.json").read_text())
    assert record["history"]["probe"]["lam"] in LAMBDAS and record["forward_passes"] == 16
    head = json.loads((tmp_path / "a" / "model" / "verbalizer_head.json").read_text())
    assert np.asarray(head["weight"]).shape == (2, 64) and head["template"] == "it-was"
    # a stop after step 3 and a resume give the straight run's losses and accuracies
    finetune(_cfg(tmp_path, "b", 3, checkpoint_every=3, **kw), progress=False)
    resumed = finetune(_cfg(tmp_path, "b", 6, checkpoint_every=3, **kw), resume=True, progress=False)
    assert resumed.training == straight.training and resumed.history == straight.history and resumed.test == straight.test
    with pytest.raises(FinetuneError, match="different settings: probe"):
        finetune(_cfg(tmp_path, "b", 6, checkpoint_every=3, **{**kw, "probe": False}), resume=True, progress=False)
    # by default (probe=None) a causal LM gets the head fitted first; `probe: false` in an older config object
    auto = finetune(_cfg(tmp_path, "g", 1, **{**kw, "probe": None}), progress=False)
    assert auto.training.probe == probe and auto.config.probe is None
    from dfo.torch.llm.config import FinetuneConfig, upgrade_saved_config
    assert FinetuneConfig.from_dict({"model": "m"}).probe is None and FinetuneConfig(model="m").probe is None
    assert FinetuneConfig.from_dict(upgrade_saved_config({"model": "m"})).probe is False  # a run's file from before
    # with --steps 0 the probe alone is the run (linear probing), and its head changes the test predictions
    lp = finetune(_cfg(tmp_path, "c", 0, save_model=True, **kw), progress=False)
    zero = finetune(_cfg(tmp_path, "d", 0, **{**kw, "probe": False}), progress=False)
    assert lp.evaluations == 4 and zero.evaluations == 0 and lp.training.probe and not zero.training.probe
    assert lp.test.loss != zero.test.loss
    assert lp.message.startswith("linear probe") and zero.message.startswith("zero-shot")
    # the saved folder is the fitted classifier: evaluating it (no --probe) uses its head and prompt
    again = finetune(_cfg(tmp_path, "e", 0, **{**kw, "probe": False, "model": str(tmp_path / "c" / "model"),
                                             "template": "auto"}), progress=False)
    assert again.test == lp.test and again.template == "it-was" and again.evaluations == 0
    with pytest.raises(FinetuneError, match="fitted for template 'it-was'"):
        finetune(_cfg(tmp_path, "f", 0, **{**kw, "probe": False, "model": str(tmp_path / "c" / "model"),
                                         "template": "review"}), progress=False)


def test_the_cli_fits_the_head_by_default_and_reports_it(tmp_path, capsys):
    from dfo.cli import main

    args = ["finetune", "--model", str(AIDREAMS), "--data-dir", str(DATA), "--no-progress", "--template", "it-was",
            "--steps", "1", "--k", "16", "--batch-size", "8", "--dev-size", "4", "--test-size", "4"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["probe"]["forward_passes"] == 4 and summary["forward_passes"] == 4 + 2
    assert main([*args, "--probe", "false", "--out", str(tmp_path / "b")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["probe"] is None and summary["forward_passes"] == 2
