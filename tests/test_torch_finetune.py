"""Task registry, prompt classifier, checkpoints and `dfo finetune` (tiny real model aidreams260K, fake LMs)."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("safetensors")

from dfo.torch import ZOConfig  # noqa: E402
from dfo.torch.llm.finetune import FinetuneConfig, FinetuneError, Stopped, finetune  # noqa: E402
from dfo.torch.llm.prompt import EncodedBatch, PromptClassifier  # noqa: E402
from dfo.torch.llm.tasks import (  # noqa: E402
    TASKS,
    TaskError,
    balanced_subset,
    get_task,
    load_split,
    parse_label_words,
    resolve_data_dir,
)

DATA = Path(os.environ.get("DFO_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
AIDREAMS = DATA / "models" / "aidreams260K"
pytestmark = [
    pytest.mark.usefixtures("torch_one_thread"),
    pytest.mark.skipif(not (AIDREAMS / "config.json").is_file(), reason=f"no data/model at {DATA}"),
]


# ----------------------------------------------------------------------------- task registry


def test_splits_have_the_documented_sizes():
    assert len(load_split("sst2", "train", k=16, data_seed=13, data_dir=DATA)) == 32
    assert len(load_split("sst2", "dev", k=512, data_seed=13, data_dir=DATA)) == 1024
    assert len(load_split("sst2", "test", data_dir=DATA)) == 872
    rte = load_split("rte", "test", data_dir=DATA)
    assert len(rte) == 277 and {e.label for e in rte} == {0, 1}
    assert set(rte[0].fields) == {"premise", "hypothesis"} and rte[0].fields["hypothesis"]


def test_every_template_formats_its_task_fields():
    for task in TASKS.values():
        assert len(set(task.template_names)) == len(task.templates) >= 3
        example = load_split(task, "train", k=16, data_seed=13, data_dir=DATA)[0]
        for t in task.templates:
            assert len(t.label_words) == task.n_classes
            prompt = t.format(example.fields)
            assert all(v in prompt for v in example.fields.values()), (task.name, t.name)
            for cf in task.content_free():
                t.format(cf)


def test_dev_subset_is_class_balanced_although_the_file_is_sorted():
    dev = load_split("sst2", "dev", k=512, data_seed=13, data_dir=DATA)
    assert [e.label for e in dev[:64]] == [dev[0].label] * 64  # the file is sorted by label
    sub = balanced_subset(dev, 16, 2, seed=13)
    assert sorted(e.label for e in sub) == [0] * 8 + [1] * 8
    assert sub == balanced_subset(dev, 16, 2, seed=13) and sub != balanced_subset(dev, 16, 2, seed=21)
    assert [e.label for e in balanced_subset(dev, 5, 2)].count(0) == 3
    with pytest.raises(TaskError, match="cannot draw 10 examples of class 0: only 4"):  # 16 positives, then 4
        balanced_subset(load_split("sst2", "dev", k=16, data_seed=13, data_dir=DATA)[:20], 19, 2)


def test_registry_errors_name_the_problem(monkeypatch):
    with pytest.raises(TaskError, match="available: sst2, rte"):
        get_task("mnli")
    with pytest.raises(TaskError, match="no template 'x'.*it-was"):
        get_task("sst2").template("x")
    with pytest.raises(TaskError, match="k=7"):
        load_split("sst2", "train", k=7, data_dir=DATA)
    monkeypatch.delenv("DFO_DATA", raising=False)
    monkeypatch.delenv("DFO_SHARED_DATA", raising=False)
    with pytest.raises(TaskError, match="--data-dir.*DFO_DATA"):
        resolve_data_dir(None)
    with pytest.raises(TaskError, match="does not exist"):
        resolve_data_dir("/nonexistent/dfo-data")
    monkeypatch.setenv("DFO_DATA", str(DATA))
    assert resolve_data_dir(None) == DATA


def test_label_words_follow_the_template_spacing():
    sst2, rte = get_task("sst2"), get_task("rte")
    assert parse_label_words("bad,good", sst2.template("it-was")) == (" bad", " good")
    assert parse_label_words(" bad, good", sst2.template("it-was")) == (" bad", " good")
    assert parse_label_words("Yes,No", rte.template("mezo")) == ("Yes", "No")
    with pytest.raises(TaskError, match="2 non-empty"):
        parse_label_words("bad,good,ok", sst2.template("it-was"))


def test_a_new_task_is_one_registry_entry(tmp_path, monkeypatch):
    from dfo.torch.llm.tasks import Task, Template

    toy = Task(name="toy", folder="toy", columns={"text": "txt"}, label_column="y", labels=("no", "yes"),
               templates=(Template(name="q", text="{text}\nAnswer:", label_words=(" no", " yes")),))
    monkeypatch.setitem(TASKS, "toy", toy)
    rows = "txt\ty\n" + "".join(f"sentence {i}\t{('no', 'yes')[i % 2]}\n" for i in range(8))
    for rel in ("toy/4-13/train.tsv", "toy/4-13/dev.tsv", "toy/test.tsv"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rows)
    res = finetune(FinetuneConfig(model=str(AIDREAMS), task="toy", k=4, steps=2, batch_size=4, lr=1e-4,
                                  data_dir=str(tmp_path), save_model=False), progress=False)
    assert res.template == "q" and res.test.n == 8 and len(res.training.loss) == 2 == res.iteration
    (tmp_path / "toy/test.tsv").write_text("txt\ty\nsentence\tmaybe\n")
    with pytest.raises(TaskError, match="label 'maybe' is not one of"):
        load_split("toy", "test", data_dir=tmp_path)


def _write_task_file(folder: Path, **changes) -> Path:
    spec = {"name": "toy", "folder": "data", "columns": {"text": "txt"}, "label_column": "y",
            "labels": ["no", "yes"], "k_values": [4], "data_seeds": [13],
            "templates": [{"name": "q", "text": "{text}\nAnswer:", "label_words": [" no", " yes"]}]}
    spec.update(changes)
    spec = {k: v for k, v in spec.items() if v is not None}
    rows = "txt\ty\n" + "".join(f"sentence {i}\t{('no', 'yes')[i % 2]}\n" for i in range(8))
    for rel in ("data/4-13/train.tsv", "data/4-13/dev.tsv", "data/test.tsv"):
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(rows)
    path = folder / "toy.json"
    path.write_text(json.dumps(spec))
    return path


def test_a_task_file_is_a_task_without_code_and_without_a_data_dir(tmp_path, capsys, monkeypatch):
    from dfo.cli import main
    from dfo.torch.llm.tasks import task_from_json

    path = _write_task_file(tmp_path / "spec")
    task = get_task(str(path))
    assert task == task_from_json(path) and task.folder == str(tmp_path / "spec" / "data")
    assert task.template("q").label_words == (" no", " yes") and task.k_values == (4,)
    assert [e.label for e in load_split(task, "test")] == [0, 1] * 4  # no data folder needed
    monkeypatch.delenv("DFO_DATA", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["finetune", "--model", str(AIDREAMS), "--task", str(path), "--k", "4", "--steps", "2",
                 "--batch-size", "4", "--lr", "1e-4", "--no-progress", "--no-save-model"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["task"] == "toy" and out["template"] == "q" and out["test_size"] == 8
    assert Path(out["out"]).parent == Path("runs") and Path(out["out"]).name.startswith("toy-mezo-")


@pytest.mark.parametrize("changes,message", [
    ({"labels": ["yes"]}, "two or more distinct values"),
    ({"labels": None}, r"missing key\(s\) \['labels'\]"),
    ({"colour": 1}, r"unknown key\(s\) \['colour'\]"),
    ({"templates": [{"name": "q", "text": "{sentence} ok", "label_words": [" no", " yes"]}]},
     r"uses field\(s\) \['sentence'\]"),
    ({"templates": [{"name": "q", "text": "{text}", "label_words": [" no"]}]}, "1 label words for 2 labels"),
    ({"templates": [{"name": "q", "text": "{text}"}]}, "each template is an object"),
    ({"k_values": [-1]}, "k_values must be a non-empty list"),
    ({"columns": ["txt"]}, "columns must map"),
])
def test_invalid_task_files_get_one_line_errors(tmp_path, changes, message):
    with pytest.raises(TaskError, match=message):
        get_task(str(_write_task_file(tmp_path, **changes)))


def test_unreadable_task_files_get_one_line_errors(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(TaskError, match="is not valid JSON"):
        get_task(str(tmp_path / "bad.json"))
    with pytest.raises(TaskError, match="cannot read task file"):
        get_task(str(tmp_path / "absent.json"))
    with pytest.raises(TaskError, match="or a task file ending in .json"):
        get_task("imdb")


# ----------------------------------------------------------------------------- prompt classifier


class _WordTokenizer:
    """Whitespace tokenizer with a growing vocabulary (id 0 = padding / BOS)."""

    pad_token_id = 0
    eos_token_id = 0

    def __init__(self):
        self.vocab = {"<s>": 0}

    def encode(self, text, add_special_tokens=True):
        ids = [self.vocab.setdefault(w, len(self.vocab)) for w in text.split()]
        return ([0] if add_special_tokens else []) + ids


class _BiasedLM(torch.nn.Module):
    """Always prefers " great" by 1.5 nats; "awful" adds 1.0 to " terrible", "superb" adds 0.5 to " great"."""

    def __init__(self, tok):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.neg, self.pos = tok.encode("terrible great", add_special_tokens=False)
        self.awful, self.superb = tok.encode("awful superb", add_special_tokens=False)

    def forward(self, input_ids, attention_mask, position_ids, logits_to_keep, use_cache):
        logits = torch.zeros(input_ids.shape[0], 1, 64)
        logits[:, 0, self.pos] = 1.5 + 0.5 * (input_ids == self.superb).any(1)
        logits[:, 0, self.neg] = 1.0 * (input_ids == self.awful).any(1)
        return type("Out", (), {"logits": logits + self.w})


def test_contextual_calibration_removes_the_label_bias_exactly():
    from dfo.torch.llm.tasks import Example

    tok = _WordTokenizer()
    clf = PromptClassifier(_BiasedLM(tok), tok, task="sst2", template="it-was")
    data = [Example(fields={"sentence": f"an awful film {i}"}, label=0) for i in range(3)] + [
        Example(fields={"sentence": f"a superb film {i}"}, label=1) for i in range(3)]
    ev = clf.evaluate(data, batch_size=4)
    # raw: every example "great" (the 1.5 bias); calibrated: score differences shift by the content-free 1.5
    assert ev.accuracy == 0.5 and ev.predicted == (0.0, 1.0)
    assert ev.accuracy_calibrated == 1.0 and ev.predicted_calibrated == (0.5, 0.5)
    p_great = 1 / (1 + torch.exp(torch.tensor(-1.5, dtype=torch.float64)))
    assert ev.content_free_probs[1] == pytest.approx(float(p_great), rel=1e-12)
    assert ev.loss == pytest.approx(
        (3 * float(torch.nn.functional.softplus(torch.tensor(0.5, dtype=torch.float64)))
         + 3 * float(torch.nn.functional.softplus(torch.tensor(-2.0, dtype=torch.float64)))) / 6, rel=1e-12)


def test_left_padding_gives_the_same_logits_as_no_padding():
    from dfo.torch.llm.models import load_lm

    model, tok = load_lm(AIDREAMS)
    for task, template in (("sst2", "review"), ("rte", "gpt3")):
        clf = PromptClassifier(model, tok, task=task, template=template)
        items = [e.fields for e in load_split(task, "train", k=16, data_seed=13, data_dir=DATA)[:3]]
        with torch.no_grad():
            both = clf.logits(items)
            alone = torch.cat([clf.logits([f]) for f in items])
        assert torch.allclose(both, alone, atol=1e-4)


def test_the_loss_of_an_encoded_batch_is_the_loss_of_the_examples_bit_for_bit():
    from dfo.torch.llm.models import load_lm

    model, tok = load_lm(AIDREAMS)
    clf = PromptClassifier(model.eval(), tok, task="sst2", template="it-was")
    batch = load_split("sst2", "train", k=16, data_seed=13, data_dir=DATA)[:6]
    enc = clf.encode_batch(batch)
    assert isinstance(enc, EncodedBatch) and enc.labels.tolist() == [e.label for e in batch]
    with torch.no_grad():
        assert torch.equal(clf.loss(enc), clf.loss(batch))
        assert torch.equal(clf.logits(enc), clf.logits([e.fields for e in batch]))
    assert clf.encode_batch([e.fields for e in batch]).labels is None


def test_a_zo_step_tokenizes_its_batch_once(monkeypatch):
    from dfo.torch import ZerothOrder

    encoded, in_step = [], []
    real_encode, real_step = PromptClassifier.encode, ZerothOrder.step

    def encode(self, fields):
        encoded.append(len(fields))
        return real_encode(self, fields)

    def step(self, closure):
        before = len(encoded)
        out = real_step(self, closure)
        in_step.append(len(encoded) - before)
        return out

    monkeypatch.setattr(PromptClassifier, "encode", encode)
    monkeypatch.setattr(ZerothOrder, "step", step)
    cfg = FinetuneConfig(model=str(AIDREAMS), template="it-was", zo=ZOConfig(method="subzero", n_directions=2), steps=2, probe=False,
                         batch_size=5, dev_size=8, test_size=16, data_dir=str(DATA), save_model=False)
    finetune(cfg, progress=False)
    assert in_step == [0, 0]  # 4 forward passes per step, no tokenization inside
    assert encoded.count(5) == 2  # one encoding per step (evaluations use other sizes: 8, 16 and 3 content-free)


# ----------------------------------------------------------------------------- finetune runs


def _cfg(tmp_path, name, steps, zo=None, **kw):
    """A tiny run; ``zo``: the zeroth-order settings beside the method (None: lozo-m's rank 4, refresh 4)."""
    base = dict(model=str(AIDREAMS), template="it-was", method="lozo-m", lr=3e-4, steps=steps, batch_size=8, probe=False,
                checkpoint_every=5, test_size=16, dev_size=8, data_dir=str(DATA), out_dir=str(tmp_path / name),
                save_model=False)
    kw = {**base, **kw}
    if kw["method"] != "adam":
        kw["zo"] = ZOConfig(method=kw["method"], **(dict(eps=1e-3, rank=4, refresh=4) if zo is None else zo))
    return FinetuneConfig(**kw)


def _rows(path):
    """progress.csv or metrics.jsonl rows without the timing column."""
    import csv

    if path.suffix == ".csv":
        with open(path) as fh:
            return [{k: v for k, v in r.items() if k != "train_seconds"} for r in csv.DictReader(fh)]
    return [{k: v for k, v in json.loads(line).items() if k != "time/train_seconds"}
            for line in path.read_text().splitlines()]


def run_files(folder):
    """A run folder's entries without the run-folder bookkeeping of dfo.run (.dfo-run.json, .lock)."""
    return sorted(p.name for p in folder.iterdir() if p.name not in (".dfo-run.json", ".lock"))


def test_resume_at_a_checkpoint_is_bit_exact_and_loads_no_pickle(tmp_path, monkeypatch):
    straight = finetune(_cfg(tmp_path, "a", 10), progress=False)
    finetune(_cfg(tmp_path, "b", 5), progress=False)
    logs = ["metrics.jsonl", "progress.csv", "tb"]
    assert run_files(tmp_path / "b") == sorted(["checkpoints", *logs, "results.json"])
    assert run_files(tmp_path / "b" / "checkpoints") == ["step_00000005"]
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load called"))
    resumed = finetune(_cfg(tmp_path, "b", 10), resume=True, progress=False)
    assert resumed.training.loss == straight.training.loss and resumed.history == straight.history
    assert resumed.test == straight.test and resumed.final == straight.final
    assert run_files(tmp_path / "b") == sorted(["checkpoints", *logs, "results.json"])
    assert run_files(tmp_path / "b" / "checkpoints") == ["step_00000005", "step_00000010"]  # the last two kept
    assert resumed.checkpoint == tmp_path / "b" / "checkpoints" / "step_00000010"
    # the metrics stream of the resumed run is the straight run's, row for row (but the timings)
    for name in ("progress.csv", "metrics.jsonl"):
        a, b = [_rows(tmp_path / run / name) for run in ("a", "b")]
        assert a == b and len(a) == 10, name


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_writes_a_checkpoint_and_the_run_resumes(tmp_path, signum):
    straight = finetune(_cfg(tmp_path, "a", 8, method="mezo", checkpoint_every=0, eval_every=4), progress=False)
    cfg = _cfg(tmp_path, "b", 8, method="mezo", checkpoint_every=0, eval_every=4)

    def kill_at_3(info):
        if info["step"] == 3:
            os.kill(os.getpid(), signum)

    with pytest.raises(Stopped, match=f"{signal.Signals(signum).name} after step 3") as stop:
        finetune(cfg, progress=False, callback=kill_at_3)
    assert stop.value.step == 3 and stop.value.saved == tmp_path / "b" / "checkpoints" / "step_00000003"
    resumed = finetune(cfg, resume=True, progress=False)
    # mezo writes its updates into the weights, so a checkpoint at any step resumes bit for bit
    assert resumed.training.loss == straight.training.loss
    assert [s for s, _ in resumed.training.dev] == [4, 8]
    assert resumed.test == straight.test


def test_tampered_or_foreign_checkpoints_are_refused(tmp_path):
    finetune(_cfg(tmp_path, "a", 5), progress=False)
    run = tmp_path / "a"
    state = run / "checkpoints" / "step_00000005" / "state.json"
    doc = json.loads(state.read_text())
    doc["step"] = 4
    state.write_text(json.dumps(doc))
    with pytest.raises(FinetuneError, match="corrupt state.json: SHA-256 does not match"):
        finetune(_cfg(tmp_path, "a", 10), resume=True, progress=False)

    finetune(_cfg(tmp_path, "b", 5), progress=False)
    weights = tmp_path / "b" / "checkpoints" / "step_00000005" / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-3] ^= 1
    weights.write_bytes(bytes(raw))
    with pytest.raises(FinetuneError, match="corrupt model.safetensors: SHA-256 does not match"):
        finetune(_cfg(tmp_path, "b", 10), resume=True, progress=False)
    finetune(_cfg(tmp_path, "s", 5, seed=1), progress=False)  # the weights of another run of the model, swapped in
    shutil.copy(tmp_path / "s" / "checkpoints" / "step_00000005" / "model.safetensors", weights)
    with pytest.raises(FinetuneError, match="corrupt model.safetensors"):
        finetune(_cfg(tmp_path, "b", 10), resume=True, progress=False)

    finetune(_cfg(tmp_path, "c", 2), progress=False)
    with pytest.raises(FinetuneError, match="different settings: lr"):
        finetune(_cfg(tmp_path, "c", 4, lr=1e-3), resume=True, progress=False)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "checkpoint.pt").write_bytes(b"\x80\x04crafted pickle")
    with pytest.raises(FinetuneError, match="no checkpoint"):
        finetune(_cfg(tmp_path, "d", 4), resume=True, progress=False)


def test_a_run_of_an_older_dfo_is_refused_on_resume_and_cleared_by_overwrite(tmp_path):
    from test_torch_checkpoint import write_legacy_run

    from dfo.run.folder import FINETUNE, write_manifest

    run = tmp_path / "old"
    write_legacy_run(run)  # what dfo finetune wrote before: pointer, ckpt-*/, the metrics files, an older manifest
    (run / "results.json").write_text("{}")
    (run / "progress.csv").write_text("step\n1\n")
    (run / "metrics.jsonl").write_text("{}\n")
    (run / "tb").mkdir()
    (run / "tb" / "events.out.tfevents.1.old").write_bytes(b"old")
    write_manifest(run, FINETUNE)
    doc = json.loads((run / ".dfo-run.json").read_text())
    doc["entries"] = ["checkpoint.json", "results.json", "model", "ckpt-*"]  # the older dfo's list
    (run / ".dfo-run.json").write_text(json.dumps(doc))
    with pytest.raises(FinetuneError) as err:
        finetune(_cfg(tmp_path, "old", 4), resume=True, progress=False)
    assert "\n" not in str(err.value) and "older dfo (dfo-finetune-checkpoint/1" in str(err.value)
    assert f"--config {run / 'results.json'}" in str(err.value)
    with pytest.raises(FinetuneError, match="already holds a run.*no checkpoint to resume.*--overwrite"):
        finetune(_cfg(tmp_path, "old", 2), progress=False)
    finetune(_cfg(tmp_path, "old", 2, checkpoint_every=0), overwrite=True, progress=False)
    assert run_files(run) == ["checkpoints", "metrics.jsonl", "progress.csv", "results.json", "tb"]
    assert not (run / "tb" / "events.out.tfevents.1.old").exists()


def test_overwrite_clears_the_old_runs_tensorboard_events(tmp_path):
    pytest.importorskip("tensorboard")
    finetune(_cfg(tmp_path, "a", 2, checkpoint_every=0), progress=False)
    old = sorted((tmp_path / "a" / "tb").rglob("*tfevents*"))
    assert old
    for f in old:  # marked, so that a new file of the same name (same second, same process) is told apart
        f.rename(f.with_name(f.name + ".old-run"))
    finetune(_cfg(tmp_path, "a", 3, checkpoint_every=0), overwrite=True, progress=False)
    new = sorted(p.name for p in (tmp_path / "a" / "tb").rglob("*tfevents*"))
    assert len(new) == len(old) and not [n for n in new if n.endswith(".old-run")], new  # the new run's only
    assert run_files(tmp_path / "a" / "checkpoints") == ["step_00000003"]


def test_existing_runs_are_not_overwritten_and_symlinks_are_refused(tmp_path):
    finetune(_cfg(tmp_path, "a", 1, checkpoint_every=0), progress=False)
    with pytest.raises(FinetuneError, match="already holds a run.*--resume.*--overwrite"):
        finetune(_cfg(tmp_path, "a", 1), progress=False)
    (tmp_path / "a" / "notes.txt").write_text("mine")
    again = finetune(_cfg(tmp_path, "a", 2, checkpoint_every=0), overwrite=True, progress=False)
    assert again.iteration == 2 and (tmp_path / "a" / "notes.txt").read_text() == "mine"
    assert _rows(tmp_path / "a" / "progress.csv") == [{k: str(v) for k, v in r.items() if v is not None}
                                                     | {"dev_accuracy": "", "dev_accuracy_calibrated": ""}
                                                     for r in again.history]  # the new run's rows only
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "results.json").symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(FinetuneError, match="symlink"):
        finetune(_cfg(tmp_path, "b", 1), progress=False)
    assert not (tmp_path / "elsewhere.json").exists()


def test_saved_model_reloads_with_transformers_and_adam_learns(tmp_path):
    from transformers import AutoModelForCausalLM

    res = finetune(_cfg(tmp_path, "a", 12, method="adam", lr=3e-3, save_model=True, checkpoint_every=0),
                   progress=False)
    loss = res.training.loss
    assert sum(loss[-4:]) < sum(loss[:4]) - 0.2, loss  # backprop on the label-word loss
    assert (tmp_path / "a" / "model" / "model.safetensors").is_file()
    assert not list((tmp_path / "a" / "model").glob("*.bin"))
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "a" / "model")
    from dfo.torch.llm.models import load_lm

    tuned_tok = load_lm(tmp_path / "a" / "model")[1]
    clf = PromptClassifier(model.eval(), tuned_tok, template="it-was")
    test = balanced_subset(load_split("sst2", "test", data_dir=DATA), 16, 2)
    assert clf.evaluate(test) == res.test
    card = (tmp_path / "a" / "model" / "README.md").read_text()   # the model card states what made it
    assert card.startswith("---\nlibrary_name: transformers") and "- backprop" in card
    assert "steps: 12" in card and f"| test | {res.test.accuracy:.3f} |" in card
    assert "datasets:\n- glue/sst2" in card and "lr=0.003" in card


def test_autocast_runs_bfloat16_forwards_over_float32_weights(tmp_path):
    from safetensors.torch import load_file

    kw = dict(method="mezo", checkpoint_every=0, save_model=True)
    full = finetune(_cfg(tmp_path, "a", 4, **kw), progress=False)
    amp = finetune(_cfg(tmp_path, "b", 4, autocast="bfloat16", **kw), progress=False)
    la, lb = full.training.loss, amp.training.loss
    # same batches and directions; the losses differ by the bfloat16 forward's rounding only
    assert la != lb and max(abs(x - y) for x, y in zip(la, lb)) < 0.05, (la, lb)
    assert amp.config.autocast == "bfloat16"
    weights = load_file(tmp_path / "b" / "model" / "model.safetensors")
    assert {t.dtype for t in weights.values()} == {torch.float32}
    side = finetune(_cfg(tmp_path, "s", 3, autocast="bfloat16", method="subzero", checkpoint_every=0), progress=False)
    assert all(math.isfinite(x) for x in side.training.loss)  # side paths under autocast
    with pytest.raises(FinetuneError, match="cannot be combined with --dtype bfloat16"):
        _cfg(tmp_path, "c", 1, autocast="bfloat16", dtype="bfloat16")
    with pytest.raises(FinetuneError, match="--autocast must be one of"):
        _cfg(tmp_path, "c", 1, autocast="float64")


def test_auto_template_is_the_best_on_dev_and_reported(tmp_path):
    res = finetune(_cfg(tmp_path, "z", 0, template="auto", out_dir=None), progress=False)
    scores = {k: v["accuracy"] for k, v in res.template_selection.items() if "accuracy" in v}
    assert res.template == max(scores, key=scores.get) and set(scores) <= set(get_task("sst2").template_names)
    assert res.dev.accuracy == scores[res.template] and res.dev.n == 8
    assert sum(res.test.predicted) == pytest.approx(1.0)
    assert res.iteration == 0 and res.evaluations == 0 and res.history == [] and res.checkpoint is None
    assert res.message.startswith("zero-shot") and math.isnan(res.final["train/loss"])


# ----------------------------------------------------------------------------- the command


def _cli(*args):
    from dfo.cli import main

    return main(["finetune", "--model", str(AIDREAMS), "--data-dir", str(DATA), "--no-progress", *args])


def test_cli_zero_shot_rte_and_training(tmp_path, capsys):
    assert _cli("--task", "rte", "--steps", "0", "--test-size", "16", "--dev-size", "8", "--template", "gpt3",
                "--label-words", "yes,no", "--calibrate") == 0
    out = json.loads(capsys.readouterr().out)
    assert out["task"] == "rte" and out["label_words"] == [" yes", " no"] and out["test_size"] == 16
    assert len(out["test_predicted_fraction"]) == 2 and out["out"] is None
    assert _cli("--method", "subzero", "--steps", "4", "--rank", "4", "--lr", "1e-4", "--test-size", "16",
                "--dev-size", "8", "--eval-every", "2", "--template", "review", "--out", str(tmp_path / "run")) == 0
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["forward_passes_per_step"] == 2 and [s for s, _ in saved["history"]["dev"]] == [2, 4]
    assert (tmp_path / "run" / "model" / "config.json").is_file()


def test_cli_sigterm_exits_143_with_a_checkpoint(tmp_path, capsys, monkeypatch):
    import dfo.torch.llm.finetune_command as command

    real = command.finetune

    def with_kill(cfg, **kw):
        return real(cfg, **kw, callback=lambda info: info["step"] == 2 and os.kill(os.getpid(), signal.SIGTERM))

    monkeypatch.setattr(command, "finetune", with_kill)
    assert _cli("--steps", "6", "--template", "it-was", "--test-size", "8", "--dev-size", "8",
                "--out", str(tmp_path / "r")) == 143
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "SIGTERM after step 2" in err and "--resume" in err
    monkeypatch.setattr(command, "finetune", real)
    assert _cli("--steps", "6", "--template", "it-was", "--test-size", "8", "--dev-size", "8",
                "--out", str(tmp_path / "r"), "--resume") == 0


@pytest.mark.parametrize(
    "args,message",
    [
        (["--template", "nope"], "no template 'nope'"),
        (["--label-words", "bad,good"], "needs an explicit --template"),
        (["--template", "it-was", "--label-words", "bad"], "2 non-empty"),
        (["--lr", "nan"], "--lr must be a positive finite"),
        (["--eps", "0"], "--eps must be a positive finite"),
        (["--batch-size", "0"], "--batch-size must be >= 1"),
        (["--dev-size", "0"], "--dev-size must be >= 1"),
        (["--k", "7"], "k=7"),
        (["--data-seed", "5"], "data_seed=5"),
        (["--device", "nonsense"], "not a device name"),
        (["--device", "cuda:99"], "CUDA"),
        (["--seed", str(2**70)], "--seed must be in"),
        (["--resume"], "--resume needs --out"),
        (["--resume", "--out", "{tmp}/none"], "does not exist"),
        (["--out", "{tmp}/file"], "is not a folder"),
        (["--resume", "--overwrite", "--out", "{tmp}/x"], "exclude each other"),
        (["--data-dir", "{tmp}/nodata"], "data folder"),
        (["--threads", "0"], "--threads must be >= 1"),
        (["--method", "lozo-m", "--momentum", "1.5"], "momentum"),
        (["--method", "mezo", "--momentum", "0.5"], "momentum"),
        (["--autocast", "bfloat16", "--dtype", "bfloat16"], "cannot be combined"),
    ],
)
def test_cli_input_errors_are_one_line(tmp_path, capsys, args, message):
    (tmp_path / "file").write_text("x")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    assert _cli("--steps", "0", "--test-size", "8", "--dev-size", "8", *args) == 2
    err = capsys.readouterr().err
    assert err.startswith("dfo finetune: error: ") and err.count("\n") == 1 and message in err, err


def test_cli_bad_model_folder_is_one_line(tmp_path, capsys):
    from dfo.cli import main

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{not json")
    for model, message in ((tmp_path / "none", "not a local Hugging Face folder"), (tmp_path / "m", "cannot load")):
        assert main(["finetune", "--model", str(model), "--data-dir", str(DATA), "--steps", "0"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err


def test_no_unpickling_in_the_torch_package():
    import re

    root = Path(__file__).resolve().parents[1] / "dfo" / "torch"
    for path in root.glob("*.py"):
        text = path.read_text()
        for bad in (r"torch\.load\(", r"import pickle|pickle\.loads?\(", r"weights_only\s*=\s*False", r"(?<![\w.])(eval|exec)\("):
            assert not re.search(bad, text), f"{path.name} matches {bad!r}"


def test_example_script_runs():
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "examples" / "finetune_sst2.py"
    spec = importlib.util.spec_from_file_location("finetune_sst2_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    acc = module.main(["--steps", "3", "--method", "lozo", "--data-dir", str(DATA)])
    assert 0.0 <= acc <= 1.0


def test_rank_and_refresh_default_to_the_methods_lowrank_spec_entry(monkeypatch):
    import argparse
    import dataclasses

    from dfo.estimators import lowrank_spec as spec
    from dfo.torch.llm import finetune_command as command

    monkeypatch.setitem(spec.LOWRANK_METHODS, "lozo", dataclasses.replace(spec.LOWRANK_METHODS["lozo"], rank=3, refresh=7))
    lozo = FinetuneConfig(model="m", method="lozo").zo
    assert (lozo.method, lozo.rank, lozo.refresh) == ("lozo", 3, 7)
    assert FinetuneConfig(model="m", zo=ZOConfig(method="lozo", rank=5, refresh=9)).method == "lozo"
    mezo = spec.LOWRANK_METHODS["mezo"]
    assert (FinetuneConfig(model="m").zo.rank, FinetuneConfig(model="m").zo.refresh) == (mezo.rank, mezo.refresh)
    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    args = parser.parse_args(["--model", "m", "--method", "lozo", "--steps", "0"])
    assert dataclasses.asdict(command._config(args))["zo"]["rank"] == 3  # the CLI leaves it to the method too
    assert FinetuneConfig(model="m", method="adam").zo is None
    with pytest.raises(FinetuneError, match="method 'lozo' and zo.method 'mezo' differ"):
        FinetuneConfig(model="m", method="lozo", zo=ZOConfig())
    with pytest.raises(FinetuneError, match="do not apply to --method adam"):
        FinetuneConfig(model="m", method="adam", zo=ZOConfig())


def test_cli_flags_come_from_the_config_and_config_reruns_a_run(tmp_path, capsys):
    import argparse
    import dataclasses

    from dfo.torch.llm.finetune_command import MANUAL, add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    dests = {a.dest: a for a in parser._actions}
    names = [f.name for f in dataclasses.fields(FinetuneConfig) if f.name != "zo"]
    names += ["zo." + f.name for f in dataclasses.fields(ZOConfig)]  # the nested settings: flat flags (--eps)
    for name in names:
        if name not in MANUAL:
            assert name in dests and "(default: " in dests[name].help, name
    assert dests["zo.eps"].option_strings == ["--eps"] and "zo" not in dests
    args = ("--steps", "3", "--k", "16", "--dev-size", "8", "--test-size", "8", "--template", "it-was", "--seed", "5")
    assert _cli(*args, "--out", str(tmp_path / "a")) == 0
    first = json.loads((tmp_path / "a" / "results.json").read_text())
    capsys.readouterr()
    from dfo.cli import main

    assert main(["finetune", "--config", str(tmp_path / "a" / "results.json"), "--out", str(tmp_path / "b"),
                 "--no-progress"]) == 0
    again = json.loads((tmp_path / "b" / "results.json").read_text())
    cfg_a, cfg_b = dict(first["config"]), dict(again["config"])
    assert cfg_a.pop("out_dir") != cfg_b.pop("out_dir") and cfg_a == cfg_b
    assert again["history"]["loss"] == first["history"]["loss"] and again["test"] == first["test"]
    capsys.readouterr()
    # a run made before the optimizer settings moved into zo: its results.json lists them flat
    old = dict(first, config={k: v for k, v in first["config"].items() if k != "zo"})
    old["config"].update({k: first["config"]["zo"][k] for k in ("eps", "rank", "refresh", "n_directions")},
                         momentum=None)
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert main(["finetune", "--config", str(tmp_path / "old.json"), "--out", str(tmp_path / "c"),
                 "--no-progress"]) == 0
    rerun = json.loads((tmp_path / "c" / "results.json").read_text())
    assert rerun["config"]["zo"] == first["config"]["zo"] and rerun["history"]["loss"] == first["history"]["loss"]
    capsys.readouterr()
    assert main(["finetune", "--config", str(tmp_path / "old.json"), "--method", "adam", "--steps", "0",
                 "--no-progress"]) == 0  # Adam takes none of the file's zeroth-order settings
    assert main(["finetune", "--config", str(tmp_path / "old.json"), "--method", "adam", "--eps", "0.1"]) == 2
    assert "do not apply to --method adam" in capsys.readouterr().err
    assert main(["finetune", "--steps", "0"]) == 2
    assert "--model is required" in capsys.readouterr().err


def test_the_job_steps_one_batch_at_a_time_and_resumes_exactly_from_its_state_dict(tmp_path):
    import copy

    from dfo.torch.llm.job import FinetuneJob, History, StepRecord, load_splits

    cfg = _cfg(tmp_path, "j", 4, method="lozo-m", out_dir=None)  # side paths and momentum: the hardest to resume
    splits = load_splits(cfg)
    straight = FinetuneJob(cfg, splits)
    straight.begin()
    records = [straight.step() for _ in range(2)]
    straight.state_dict()  # folds the side-path updates into the weights at step 2, as a checkpoint there does
    records += [straight.step() for _ in range(2)]
    assert all(isinstance(r, StepRecord) for r in records) and [r.step for r in records] == [1, 2, 3, 4]
    assert records[-1].forward_passes == 8 and straight.finished()  # two passes per step
    first = FinetuneJob(cfg, splits)
    first.begin()
    first.step(), first.step()
    state = copy.deepcopy(first.state_dict())  # folds the side paths into the weights first
    weights = copy.deepcopy(first.model.state_dict())
    assert state["step"] == 2 and isinstance(first.history, History) and state["meta"]["template"] == "it-was"
    second = FinetuneJob(cfg, splits)
    second.model.load_state_dict(weights)
    second.load_state_dict(state)
    second.step(), second.step()
    assert second.history.loss == straight.history.loss and second.history.forward_passes == [2, 4, 6, 8]
    assert [e.as_dict() for e in second.evaluate()] == [e.as_dict() for e in straight.evaluate()]
    with pytest.raises(FinetuneError, match="different settings: lr"):
        FinetuneJob(_cfg(tmp_path, "j", 4, lr=1e-3, out_dir=None), splits).load_state_dict(state)
    with pytest.raises(RuntimeError, match="begin"):
        FinetuneJob(cfg, splits).step()


def test_the_metrics_stream_has_a_row_per_step_and_tensorboard_after_a_stop_mid_evaluation(tmp_path):
    pytest.importorskip("tensorboard")
    import time

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from dfo.run.metrics import read_progress
    from dfo.torch.llm.job import FinetuneJob

    kw = dict(method="mezo", checkpoint_every=0, eval_every=4)
    straight = finetune(_cfg(tmp_path, "a", 8, **kw), progress=False)
    real = FinetuneJob.evaluate_dev

    def stop_in_the_first_evaluation(self):  # SIGTERM arrives during the dev evaluation of step 4
        os.kill(os.getpid(), signal.SIGTERM)
        return real(self)

    FinetuneJob.evaluate_dev = stop_in_the_first_evaluation
    try:
        with pytest.raises(Stopped, match="after step 4"):
            finetune(_cfg(tmp_path, "b", 8, **kw), progress=False)
    finally:
        FinetuneJob.evaluate_dev = real
    rows = read_progress(tmp_path / "b" / "progress.csv")
    assert [r["step"] for r in rows] == [1, 2, 3]  # step 4's row waits for its evaluation
    time.sleep(1.1)  # a new event file name (they are named by the second)
    finetune(_cfg(tmp_path, "b", 8, **kw), resume=True, progress=False)
    for name in ("progress.csv", "metrics.jsonl"):
        assert _rows(tmp_path / "a" / name) == _rows(tmp_path / "b" / name), name
    rows = read_progress(tmp_path / "b" / "progress.csv")
    assert [r["step"] for r in rows] == list(range(1, 9))
    assert [r["forward_passes"] for r in rows] == straight.training.forward_passes == [2, 4, 6, 8, 10, 12, 14, 16]
    assert [r["loss"] for r in rows] == straight.training.loss  # repr floats read back bit for bit
    assert [{k: r[k] for k in ("step", "loss")} for r in rows] == [{k: r[k] for k in ("step", "loss")}
                                                                 for r in straight.history]  # the result's rows
    dev = {s: ev["accuracy"] for s, ev in straight.training.dev}
    assert {int(r["step"]): r["dev_accuracy"] for r in rows if not math.isnan(r["dev_accuracy"])} == dev
    first = json.loads((tmp_path / "b" / "metrics.jsonl").read_text().splitlines()[3])
    assert set(first) == {"step", "forward_passes", "train/loss", "eval/accuracy", "eval/accuracy_calibrated",
                          "time/train_seconds"}
    acc = EventAccumulator(str(tmp_path / "b" / "tb"))
    acc.Reload()
    loss = acc.Scalars("train/loss")
    assert [e.step for e in loss] == [2, 4, 6, 8, 10, 12, 14, 16]  # x axis: training forward passes, no repeats
    assert [e.value for e in loss] == pytest.approx(straight.training.loss)
    assert [e.step for e in acc.Scalars("eval/accuracy")] == [8, 16]
