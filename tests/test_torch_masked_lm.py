"""Masked LMs (BERT, RoBERTa: the LM-BFF / MeZO papers' models) through the prompt classifier and `dfo finetune`.

The models are tiny and random, with tokenizers trained here on SST-2 sentences (WordPiece for
BERT, byte-level BPE for RoBERTa): the checks are about where the logits are read, padding,
truncation, loading and training, not about quality.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from dfo.torch import ZerothOrder  # noqa: E402
from dfo.torch.llm.models import is_masked_lm, load_lm  # noqa: E402
from dfo.torch.llm.prompt import PromptClassifier  # noqa: E402
from dfo.torch.llm.tasks import TaskError, load_split  # noqa: E402

DATA = Path(os.environ.get("DFO_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
pytestmark = [
    pytest.mark.usefixtures("torch_one_thread"),
    pytest.mark.skipif(not (DATA / "sst2").is_dir(), reason=f"SST-2 data not found at {DATA}"),
]


def _corpus() -> list[str]:
    extra = ["It was great . It was terrible .", "Review: fine\nSentiment: positive negative",
             "Question: Is this a positive or negative review? Answer:", "True False Yes No yes no true false"] * 20
    return [e.sentence for e in load_split("sst2", "train", k=16, data_seed=13, data_dir=DATA)] + extra


def _save_masked_lm(folder: Path, arch: str) -> Path:
    """A tiny random ``BertForMaskedLM`` or ``RobertaForMaskedLM`` and its tokenizer, saved like a checkpoint."""
    folder.mkdir(parents=True, exist_ok=True)
    if arch == "bert":
        # a deterministic WordPiece vocabulary (the trainer's tie order varies from run to run)
        words = sorted({w for text in _corpus() for w in re.findall(r"\w+|[^\w\s]", text.lower())})
        chars = sorted({c for w in words for c in w})
        vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words + [f"##{c}" for c in chars if c not in words]
        (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
        tok = transformers.BertTokenizerFast(str(folder / "vocab.txt"))
        cfg = transformers.BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2,
                                      num_attention_heads=4, intermediate_size=64, max_position_embeddings=128)
        cls = transformers.BertForMaskedLM
    else:
        bpe = tokenizers.ByteLevelBPETokenizer()
        bpe.train_from_iterator(_corpus(), vocab_size=800, min_frequency=1,
                                special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
        bpe.save_model(str(folder))
        tok = transformers.RobertaTokenizerFast(str(folder / "vocab.json"), str(folder / "merges.txt"))
        cfg = transformers.RobertaConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2,
                                         num_attention_heads=4, intermediate_size=64, max_position_embeddings=130,
                                         pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                                         eos_token_id=tok.eos_token_id)
        cls = transformers.RobertaForMaskedLM
    tok.save_pretrained(folder)
    torch.manual_seed(0)
    cls(cfg).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module", params=["bert", "roberta"])
def masked_folder(request, tmp_path_factory):
    return _save_masked_lm(tmp_path_factory.mktemp(request.param), request.param)


def test_a_masked_lm_checkpoint_loads_as_one_and_a_causal_lm_does_not(masked_folder):
    model, tok = load_lm(masked_folder)
    assert type(model).__name__.endswith("ForMaskedLM") and is_masked_lm(model) and not model.training
    assert tok.mask_token_id is not None
    causal = transformers.LlamaForCausalLM(transformers.LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2))
    assert not is_masked_lm(causal)


def test_logits_are_read_at_the_mask_of_the_prompt(masked_folder):
    """The classifier's logits equal the model's logits at the mask of "<prompt><mask>" encoded by hand."""
    model, tok = load_lm(masked_folder)
    clf = PromptClassifier(model, tok, task="sst2", template="it-was")
    items = [e.fields for e in load_split("sst2", "train", k=16, data_seed=13, data_dir=DATA)[:4]]
    with torch.no_grad():
        got = clf.logits(items)
        for row, fields in zip(got, items):
            enc = tok(clf.template.format(fields) + tok.mask_token, return_tensors="pt")
            ids = enc["input_ids"][0]
            assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id  # [CLS] ... [MASK] [SEP]
            at = int((ids == tok.mask_token_id).nonzero()[-1])
            full = model(**enc).logits[0, at]
            assert torch.allclose(row, full[clf.label_ids], atol=1e-5)


def test_right_padding_gives_the_same_logits_and_long_prompts_keep_their_mask(masked_folder):
    model, tok = load_lm(masked_folder)
    for task, template in (("sst2", "review"), ("rte", "gpt3")):
        clf = PromptClassifier(model, tok, task=task, template=template)
        items = [e.fields for e in load_split(task, "train", k=16, data_seed=13, data_dir=DATA)[:3]]
        with torch.no_grad():
            both, alone = clf.logits(items), torch.cat([clf.logits([f]) for f in items])
        assert torch.allclose(both, alone, atol=1e-5)
    clf = PromptClassifier(model, tok, task="sst2", template="it-was", max_length=24)
    inputs, read_at = clf.encode([{"sentence": "a long film . " * 40}])
    ids = inputs["input_ids"][0]
    assert len(ids) == 24 and ids[int(read_at[0])] == tok.mask_token_id and ids[-1] == tok.sep_token_id
    with torch.no_grad():
        assert clf.logits([{"sentence": "a long film . " * 40}]).shape == (1, 2)


def test_a_masked_lm_without_a_mask_token_is_refused(masked_folder):
    model, tok = load_lm(masked_folder)
    tok.mask_token = None
    with pytest.raises(TaskError, match="no mask token"):
        PromptClassifier(model, tok)


STEPS = 300


@pytest.mark.parametrize("method", ["mezo", "subzero", "lozo"])
def test_zo_steps_lower_the_label_word_loss_of_a_masked_lm(masked_folder, method):
    model, tok = load_lm(masked_folder)
    clf = PromptClassifier(model, tok, task="sst2", template="it-was")
    train = load_split("sst2", "train", k=16, data_seed=13, data_dir=DATA)
    batch = clf.encode_batch(train[:4] + train[16:20])
    opt = ZerothOrder(model.parameters(), method=method, lr=2e-3, eps=1e-3, rank=4, refresh=20, model=model, seed=0)
    with torch.no_grad():
        start = float(clf.loss(batch))
    for _ in range(STEPS):
        opt.step(lambda: clf.loss(batch))
    opt.flush()
    with torch.no_grad():
        end = float(clf.loss(batch))
    assert end < start - 0.1, (start, end)  # measured: 0.52-0.66 lower for all six cases


@pytest.mark.parametrize("method", ["subzero", "lozo-m"])
def test_side_paths_of_a_masked_lm_match_written_weights(masked_folder, method):
    """Low-rank directions applied on side paths (``model=``; BERT ties the decoder to the word
    embeddings) give the same losses and weights as directions written into the weights (float64)."""
    (model_a, tok), (model_b, _) = load_lm(masked_folder), load_lm(masked_folder)
    model_a.double(), model_b.double()
    train = load_split("sst2", "train", k=16, data_seed=13, data_dir=DATA)
    clf_a = PromptClassifier(model_a, tok, task="sst2", template="it-was")
    clf_b = PromptClassifier(model_b, tok, task="sst2", template="it-was")
    batch_a, batch_b = clf_a.encode_batch(train[:4]), clf_b.encode_batch(train[:4])
    kw = dict(method=method, lr=1e-3, eps=1e-3, rank=4, refresh=2, seed=3)
    opt_a = ZerothOrder(model_a.parameters(), model=model_a, **kw)
    opt_b = ZerothOrder(model_b.parameters(), **kw)
    assert "side" in opt_a._kind.values()  # the placement under test is used
    for _ in range(5):
        assert opt_a.step(lambda: clf_a.loss(batch_a)) == pytest.approx(opt_b.step(lambda: clf_b.loss(batch_b)),
                                                                         rel=1e-12)
    opt_a.flush()
    for pa, pb in zip(model_a.parameters(), model_b.parameters()):
        assert torch.allclose(pa, pb, atol=1e-12)


def test_dfo_finetune_trains_and_saves_a_masked_lm(masked_folder, tmp_path, capsys):
    from dfo.cli import main

    out = tmp_path / "run"
    assert main(["finetune", "--model", str(masked_folder), "--data-dir", str(DATA), "--no-progress",
                 "--steps", "3", "--test-size", "16", "--dev-size", "8", "--lr", "1e-4",
                 "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["steps"] == 3 and summary["test_size"] == 16 and len(summary["test_predicted_fraction"]) == 2
    model, _ = load_lm(out / "model")
    assert is_masked_lm(model)


def test_probe_on_a_masked_lm_is_a_one_line_error(masked_folder, tmp_path, capsys):
    from dfo.cli import main

    assert main(["finetune", "--model", str(masked_folder), "--data-dir", str(DATA), "--no-progress",
                 "--steps", "1", "--probe", "--out", str(tmp_path / "run")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--probe reads a causal LM's final hidden state" in err[0], err
