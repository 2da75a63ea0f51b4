"""Prompt-based classification with a language model: verbalizer logits, loss, calibrated evaluation.

For an example x with prompt T(x), the class scores are the logits
z_c = logit(w_c | T(x)) of the first token of each label word w_c; p = softmax(z)
over the classes. The training loss is the cross-entropy −log p_y (the LM-BFF /
MeZO objective restricted to the label words). Where the logits are read:

* causal LM (Llama, GPT-2, SmolLM2...): the next-token logits at the last position of T(x);
* masked LM (BERT, RoBERTa: the models of the LM-BFF and MeZO papers' tables): the
  mask token is appended, T(x)[MASK] — "<sentence> It was[MASK]" for the MeZO SST-2
  prompt — and the logits are read at the mask (Gao et al. 2021, LM-BFF).

Contextual calibration (Zhao et al. 2021, "Calibrate Before Use"): feed
content-free inputs (every field "N/A", "" and "[MASK]"), average their class
probabilities into p_cf, and predict argmax_c p_c / p_cf,c — i.e. subtract
log p_cf from log p. This removes the prompt's prior toward one label word.
Every evaluation reports both predictions and the fraction of examples each
assigns to every class (a 0.5 accuracy with 98 % of one class is label bias,
not knowledge).

Example:
    >>> clf = PromptClassifier(model, tok, task="sst2", template="review")   # doctest: +SKIP
    >>> clf.evaluate(load_split("sst2", "test", data_dir=...)).accuracy      # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Sequence

from dfo.torch.llm.probe import VerbalizerHead, final_hidden
from dfo.torch.llm.tasks import Example, Task, TaskError, Template, get_task


class Interrupted(Exception):
    """Raised inside an evaluation when a stop was requested (Ctrl-C / SIGTERM)."""


@dataclass(frozen=True, kw_only=True)
class Evaluation:
    """Accuracy and predicted-class balance of one evaluation.

    Attributes:
        n: examples evaluated.
        accuracy: argmax of the raw verbalizer logits.
        accuracy_calibrated: argmax after contextual calibration.
        predicted: fraction of examples predicted as each class (raw).
        predicted_calibrated: the same after calibration.
        loss: mean cross-entropy over the label words.
        content_free_probs: p_cf, the class probabilities of the content-free inputs.
    """

    n: int
    accuracy: float
    accuracy_calibrated: float
    predicted: tuple[float, ...]
    predicted_calibrated: tuple[float, ...]
    loss: float
    content_free_probs: tuple[float, ...]

    def headline(self, calibrated: bool) -> float:
        """The accuracy a run reports: calibrated or raw."""
        return self.accuracy_calibrated if calibrated else self.accuracy

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EncodedBatch:
    """A batch tokenized once (:meth:`PromptClassifier.encode_batch`), on the model's device.

    Attributes:
        inputs: the model's keyword arguments (``input_ids``, ``attention_mask``; ``position_ids``
            for a causal LM).
        labels: class indices, or None when the items were bare field dicts.
        read_at: per row, the position whose logits score the label words (a masked LM's mask
            position), or None for a causal LM (its last position).
    """

    inputs: dict[str, Any]
    labels: Any | None
    read_at: Any | None = None


def label_token_ids(tokenizer: Any, words: Sequence[str]) -> list[int]:
    """First token id of each label word.

    Raises:
        TaskError: a word tokenizes to nothing, or two words share a first token.
    """
    ids = []
    for w in words:
        toks = tokenizer.encode(w, add_special_tokens=False)
        if not toks:
            raise TaskError(f"label word {w!r} tokenizes to no token")
        ids.append(toks[0])
    if len(set(ids)) != len(ids):
        raise TaskError(f"label words {list(words)} share a first token ({ids}) with this tokenizer; "
                        "choose other --label-words")
    return ids


class PromptClassifier:
    """Prompt + verbalizer classifier over a causal or masked LM.

    Args:
        model: a transformers causal LM (called with ``input_ids``, ``attention_mask``,
            ``position_ids``, ``logits_to_keep=1``) or masked LM (a ``...ForMaskedLM`` class, see
            :func:`dfo.torch.llm.models.is_masked_lm`; called with ``input_ids``, ``attention_mask``).
        tokenizer: its tokenizer.
        task: registry name or entry.
        template: template name or entry (default: the task's first).
        label_words: override the template's words (one per class).
        max_length: prompts keep their last ``max_length`` tokens (default: the task's, capped at the
            model's ``max_position_embeddings``).

    Raises:
        TaskError: unknown template, wrong number of words, words sharing a first token, or a
            masked LM whose tokenizer has no mask token.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        task: str | Task = "sst2",
        template: str | Template | None = None,
        label_words: Sequence[str] | None = None,
        max_length: int | None = None,
    ) -> None:
        import torch

        from dfo.torch.llm.models import is_masked_lm

        self.task = get_task(task) if isinstance(task, str) else task
        if template is None:
            template = self.task.templates[0]
        self.template = self.task.template(template) if isinstance(template, str) else template
        self.label_words = tuple(label_words) if label_words is not None else self.template.label_words
        if len(self.label_words) != self.task.n_classes:
            raise TaskError(f"{self.task.name} has {self.task.n_classes} classes, got label words {self.label_words}")
        self.model, self.tokenizer = model, tokenizer
        self.masked = is_masked_lm(model)
        if self.masked:
            if getattr(tokenizer, "mask_token_id", None) is None:
                raise TaskError(f"{type(model).__name__} is a masked LM but its tokenizer has no mask token")
            # the tokenizer's special tokens around a text, e.g. ([CLS], [SEP]) or (<s>, </s>)
            framed = tokenizer.encode(tokenizer.mask_token)
            at = framed.index(tokenizer.mask_token_id)
            self._prefix, self._suffix = framed[:at], framed[at + 1 :]
        limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
        if limit and self.masked:
            limit -= 2  # RoBERTa's position table starts after the padding index
        self.max_length = max_length or min(self.task.max_length, limit or self.task.max_length)
        self.label_ids = torch.tensor(label_token_ids(tokenizer, self.label_words))
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
        #: a learned verbalizer head (:mod:`dfo.torch.llm.probe`) in place of the label words' logits; None: theirs
        self.head: VerbalizerHead | None = None

    def encode(self, fields: Sequence[dict[str, str] | Any]) -> tuple[dict[str, Any], Any | None]:
        """Model inputs for ``fields`` and the positions to read (None: the last one).

        Causal LM: prompts keep their last ``max_length`` tokens, left-padded, with matching
        ``position_ids``. Masked LM: the prompt's last tokens, then the mask token, inside the
        tokenizer's special tokens (``[CLS] ... [MASK] [SEP]``), right-padded; the model numbers
        the positions itself.
        """
        import torch

        tok = self.tokenizer
        if self.masked:
            room = self.max_length - len(self._prefix) - len(self._suffix) - 1
            seqs = [self._prefix + tok.encode(self.template.format(f), add_special_tokens=False)[-room:]
                    + [tok.mask_token_id] + self._suffix for f in fields]
        else:
            seqs = [tok.encode(self.template.format(f))[-self.max_length :] for f in fields]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            span = slice(0, len(s)) if self.masked else slice(width - len(s), width)
            ids[i, span] = torch.tensor(s)
            mask[i, span] = 1
        if self.masked:  # the appended mask is the last one (a content-free "[MASK]" input adds another)
            read_at = torch.tensor([len(s) - 1 - s[::-1].index(tok.mask_token_id) for s in seqs])
            return {"input_ids": ids, "attention_mask": mask}, read_at
        pos = (mask.cumsum(1) - 1).clamp(min=0)
        return {"input_ids": ids, "attention_mask": mask, "position_ids": pos}, None

    def encode_batch(self, items: Sequence[Example | dict[str, str]]) -> EncodedBatch:
        """Tokenize ``items`` once and move them to the model's device, for any number of forward passes
        (a zeroth-order step runs two or more on the same batch)."""
        import torch

        fields = [e.fields if isinstance(e, Example) else e for e in items]
        device = next(self.model.parameters()).device
        inputs, read_at = self.encode(fields)
        inputs = {k: v.to(device) for k, v in inputs.items()}
        labels = None
        if all(isinstance(e, Example) for e in items):
            labels = torch.tensor([e.label for e in items], device=device)
        return EncodedBatch(inputs=inputs, labels=labels, read_at=None if read_at is None else read_at.to(device))

    def logits(self, items: Sequence[Example | dict[str, str]] | EncodedBatch) -> Any:
        """Label-word logits at the last position (causal LM) or the mask (masked LM), shape ``(batch, n_classes)``;
        with a learned :attr:`head`, its logits on the final hidden state instead (causal LM only)."""
        import torch

        batch = items if isinstance(items, EncodedBatch) else self.encode_batch(items)
        if self.head is not None:
            if batch.read_at is not None:
                raise TaskError("a learned verbalizer head reads a causal LM's last position; this is a masked LM")
            return self.head.logits(final_hidden(self.model, batch.inputs))
        if batch.read_at is None:
            logits = self.model(**batch.inputs, logits_to_keep=1, use_cache=False).logits[:, -1, :]
        else:
            out = self.model(**batch.inputs).logits
            logits = out[torch.arange(out.shape[0], device=out.device), batch.read_at]
        return logits.index_select(-1, self.label_ids.to(logits.device)).float()

    def loss(self, examples: Sequence[Example] | EncodedBatch) -> Any:
        """Mean cross-entropy over the label-word logits (differentiable).

        ``examples`` may be encoded already (:meth:`encode_batch`): a closure that runs
        several forward passes on one batch then tokenizes it only once.
        """
        import torch.nn.functional as F

        batch = examples if isinstance(examples, EncodedBatch) else self.encode_batch(examples)
        if batch.labels is None:
            raise TaskError("the loss needs labelled examples")
        return F.cross_entropy(self.logits(batch), batch.labels)

    def content_free_probs(self) -> Any:
        """p_cf: mean class probabilities of the task's content-free inputs (float64, CPU)."""
        import torch

        with torch.no_grad():
            return self.logits(self.task.content_free()).double().softmax(-1).mean(0).cpu()

    def evaluate(
        self,
        examples: Sequence[Example],
        *,
        batch_size: int = 32,
        should_stop: Callable[[], bool] | None = None,
    ) -> Evaluation:
        """Raw and calibrated accuracy, predicted-class balance and loss on ``examples``.

        Raises:
            Interrupted: ``should_stop()`` became true between two batches.
            TaskError: no examples.
        """
        import torch

        if not examples:
            raise TaskError("cannot evaluate on an empty set")
        log_cf = self.content_free_probs().log()
        c = self.task.n_classes
        labels = torch.tensor([e.label for e in examples])
        raw, cal, nll = [], [], 0.0
        with torch.no_grad():
            for i in range(0, len(examples), batch_size):
                if should_stop is not None and should_stop():
                    raise Interrupted
                logp = self.logits(examples[i : i + batch_size]).double().log_softmax(-1).cpu()
                y = labels[i : i + batch_size]
                nll += float(-logp.gather(1, y[:, None]).sum())
                raw.append(logp.argmax(-1))
                cal.append((logp - log_cf).argmax(-1))
        raw_p, cal_p = torch.cat(raw), torch.cat(cal)
        n = len(examples)
        return Evaluation(
            n=n,
            accuracy=float((raw_p == labels).double().mean()),
            accuracy_calibrated=float((cal_p == labels).double().mean()),
            predicted=tuple(float((raw_p == k).double().mean()) for k in range(c)),
            predicted_calibrated=tuple(float((cal_p == k).double().mean()) for k in range(c)),
            loss=nll / n,
            content_free_probs=tuple(float(v) for v in log_cf.exp()),
        )

    def accuracy(self, examples: Sequence[Example], batch_size: int = 32) -> float:
        """Raw accuracy (see :meth:`evaluate` for calibration and class balance)."""
        return self.evaluate(examples, batch_size=batch_size).accuracy


def choose_template(
    model: Any,
    tokenizer: Any,
    task: Task,
    dev: Sequence[Example],
    *,
    calibrate: bool,
    max_length: int | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[str, dict[str, dict[str, Any]]]:
    """Pick the template with the best dev accuracy (raw or calibrated); ties go to the earlier entry.

    Templates whose label words collide for this tokenizer are skipped (and reported).

    Returns:
        ``(name, scores)`` with ``scores[name]`` the :class:`Evaluation` dict (or ``{"skipped": reason}``).

    Raises:
        TaskError: no template is usable.
    """
    scores: dict[str, dict[str, Any]] = {}
    best, best_acc = None, -1.0
    for t in task.templates:
        try:
            clf = PromptClassifier(model, tokenizer, task=task, template=t, max_length=max_length)
        except TaskError as exc:
            scores[t.name] = {"skipped": str(exc)}
            continue
        ev = clf.evaluate(dev, should_stop=should_stop)
        scores[t.name] = ev.as_dict()
        if ev.headline(calibrate) > best_acc:
            best, best_acc = t.name, ev.headline(calibrate)
    if best is None:
        raise TaskError(f"no template of {task.name} is usable with this tokenizer: {scores}")
    return best, scores
