"""A fine-tuning run as a job: typed state, ``step()`` one batch at a time, ``state_dict()`` /
``load_state_dict()`` for exact resumes, ``evaluate()``, and ``run()`` to drive it all.

One step takes a batch of ``batch_size`` k-shot training examples, drawn with
``default_rng([seed, step])`` (so a resumed run sees the batches a straight one would), tokenizes it
once, and hands the loss of that batch to the optimizer: :class:`dfo.torch.ZerothOrder` (two forward
passes per direction for the two-sided methods; the step rules of :mod:`dfo.torch.methods` take
their own count) or ``torch.optim.Adam`` with one backward pass (``method="adam"``, the reference).
The loss is the cross-entropy over the label words, ``L = -(1/B) sum_b log softmax(z_b)[y_b]``.

The state is what a resume needs and nothing else: the optimizer's state (step, seeds, low-rank
factors, momentum), the :class:`History` (loss and cumulative training forward passes per step,
dev evaluations), the chosen template with the scores that chose it, and the training time; the
model's weights travel beside it in the checkpoint (:mod:`dfo.torch.llm.checkpoint`).

Example:
    >>> job = FinetuneJob(cfg, load_splits(cfg))                              # doctest: +SKIP
    >>> job.begin(); record = job.step(); state = job.state_dict()          # doctest: +SKIP
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dfo.fileio import TMP_MARK, atomic_write_bytes, staged_dir
from dfo.torch.llm.card import model_card
from dfo.torch.llm.config import SELECTION_DEV_SIZE, FinetuneConfig, FinetuneError, check_resumable, jsonable
from dfo.torch.llm.history import History, StepRecord
from dfo.torch.llm.models import is_masked_lm
from dfo.torch.llm.probe import VerbalizerHead, final_hidden, fit_probe, label_rows, read_head, write_head
from dfo.torch.llm.prompt import Evaluation, Interrupted, PromptClassifier, choose_template
from dfo.torch.llm.result import FinetuneResult, finetune_result
from dfo.torch.llm.runner import Runner, Stopped
from dfo.torch.llm.runtime import forward_precision, load_model, per_example_loss, resolve_device, under
from dfo.torch.llm.tasks import Example, Task, TaskError, balanced_subset, get_task, load_split


@dataclass(frozen=True)
class Splits:
    """The task and its three samples: the k-shot training set, the class-balanced dev and test samples."""

    task: Task
    train: list[Example]
    dev: list[Example]
    test: list[Example]


def load_splits(cfg: FinetuneConfig) -> Splits:
    """The run's data (``cfg.k`` / ``cfg.data_seed`` split; ``dev_size`` / ``test_size`` class-balanced samples).

    Raises:
        FinetuneError: an unknown task, a missing data folder or file, a bad row (one line).
    """
    task = get_task(cfg.task)
    try:
        train = load_split(task, "train", k=cfg.k, data_seed=cfg.data_seed, data_dir=cfg.data_dir)
        dev = balanced_subset(load_split(task, "dev", k=cfg.k, data_seed=cfg.data_seed, data_dir=cfg.data_dir),
                              cfg.dev_size, task.n_classes, seed=cfg.data_seed)
        test = balanced_subset(load_split(task, "test", data_dir=cfg.data_dir), cfg.test_size, task.n_classes)
    except TaskError as exc:
        raise FinetuneError(str(exc)) from None
    return Splits(task, train, dev, test)


class FinetuneJob:
    """One fine-tuning run (see the module docstring): the model, the optimizer and the state of the run.

    Construction loads the model (local files only) and builds the optimizer; :meth:`begin` picks the
    template (``"auto"``: best zero-shot dev accuracy) or :meth:`load_state_dict` restores a run; then
    :meth:`step` trains on one batch, :meth:`evaluate_dev` records a dev evaluation, :meth:`evaluate`
    scores dev and test, and :meth:`run` drives a whole run with its checkpoints and signals.

    Args:
        cfg: the run's settings.
        splits: its data (:func:`load_splits`).
        progress: show a tqdm bar in :meth:`run`.
        callback: called with ``{"step", "loss"[, "dev"]}`` after every step of :meth:`run`.

    Raises:
        FinetuneError: a model that does not load, a setting the optimizer refuses.
    """

    def __init__(self, cfg: FinetuneConfig, splits: Splits, *, progress: bool = False,
                 callback: Callable[[dict[str, Any]], None] | None = None) -> None:
        import torch

        self.cfg, self.splits, self.progress, self.callback = cfg, splits, progress, callback
        self.device = resolve_device(cfg.device)
        self.model, self.tokenizer = load_model(cfg, self.device)
        self.amp = forward_precision(cfg, self.device)
        params = [p for p in self.model.parameters() if p.requires_grad]
        if cfg.zo is None:
            self.optimizer: Any = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        else:
            from dfo.torch import ZerothOrder

            try:
                self.optimizer = ZerothOrder(params, lr=cfg.lr, weight_decay=cfg.weight_decay, model=self.model,
                                             seed=cfg.seed, **asdict(cfg.zo))
            except ValueError as exc:  # settings only the optimizer checks
                raise FinetuneError(str(exc)) from None
        self.history = History()
        self.train_seconds = 0.0
        self.template: str | None = None
        self.template_selection: dict[str, Any] | None = None
        self.classifier: PromptClassifier | None = None
        self.head: VerbalizerHead | None = None  # the verbalizer head: fitted (--probe) or the model folder's
        try:
            self.saved_head = read_head(cfg.model) if Path(cfg.model).is_dir() else None
        except ValueError as exc:
            raise FinetuneError(str(exc)) from None
        #: fit the head before the first step: --probe, or by default a causal LM without a saved head
        self.fits_head = bool(cfg.probe) or (cfg.probe is None and self.saved_head is None
                                             and not is_masked_lm(self.model))
        if self.fits_head:
            self.saved_head = None  # a new fit replaces the folder's head
        self.should_stop: Callable[[], bool] = _never  # until a Runner installs its signal flag
        self.model.eval()  # dropout off in every forward pass (ZO and backprop alike)

    # ------------------------------------------------------------------ state

    @property
    def steps_done(self) -> int:
        return self.history.steps

    def meta(self) -> dict[str, Any]:
        """The JSON part of the state: settings, template (and the scores that chose it), training time."""
        return {"config": jsonable(asdict(self.cfg)), "template": self.template,
                "template_selection": self.template_selection, "train_seconds": self.train_seconds}

    def state_dict(self) -> dict[str, Any]:
        """Everything a resume needs except the weights: ``step``, ``optimizer``, ``history`` and :meth:`meta`.

        The zeroth-order optimizer folds its pending side-path updates into the weights first, so the
        weights saved beside this state are the run's.
        """
        return {"step": self.steps_done, "optimizer": self.optimizer.state_dict(),
                "history": self.history.as_dict(), "meta": self.meta(),
                "head": None if self.head is None else self.head.as_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from ``state`` (:meth:`state_dict` of a run with the same settings; the weights are loaded
        into :attr:`model` by whoever read the checkpoint).

        Raises:
            FinetuneError: other settings (those of :data:`dfo.torch.llm.config.RESUME_MAY_CHANGE` aside), a
                checkpoint past ``steps``, an optimizer state that does not fit.
        """
        meta = state["meta"]
        check_resumable(meta["config"], self.cfg)
        if state["step"] > self.cfg.steps:
            raise FinetuneError(f"--resume: the checkpoint is at step {state['step']}, past --steps {self.cfg.steps}")
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError, TypeError) as exc:
            raise FinetuneError(f"--resume: the checkpoint's optimizer state does not fit this run ({exc})") from None
        self.history = History.from_dict(state["history"])
        self.train_seconds = meta["train_seconds"]
        self.template, self.template_selection = meta["template"], meta["template_selection"]
        head = state.get("head")
        if (head is None) == (self.fits_head or self.saved_head is not None):
            raise FinetuneError("--resume: the checkpoint's verbalizer head does not match --probe")
        self.head = None if head is None else VerbalizerHead.from_dict(head)
        self._make_classifier()

    def begin(self) -> None:
        """Start a new run: the configured template, or for ``"auto"`` the one with the best zero-shot accuracy
        on (at most :data:`SELECTION_DEV_SIZE` class-balanced examples of) the dev sample.

        Raises:
            Interrupted: a stop was requested during the selection.
        """
        self.template, self.template_selection = self.cfg.template, None
        if self.saved_head is not None:  # a fine-tuned classifier: its head and prompt
            head, template, words = self.saved_head
            if self.template not in ("auto", template) or self.cfg.label_words not in (None, words):
                raise FinetuneError(f"{self.cfg.model} holds a verbalizer head fitted for template {template!r} "
                                    f"{list(words)}; use that template, or --probe to fit a new head")
            self.template, self.head = template, head
        if self.template == "auto":
            task = self.splits.task
            try:
                pick = balanced_subset(self.splits.dev, SELECTION_DEV_SIZE, task.n_classes, seed=self.cfg.data_seed)
                with self.amp():
                    self.template, self.template_selection = choose_template(
                        self.model, self.tokenizer, task, pick, calibrate=self.cfg.calibrate,
                        max_length=self.cfg.max_length, should_stop=self.should_stop)
            except TaskError as exc:
                raise FinetuneError(str(exc)) from None
        self._make_classifier()
        if self.fits_head:
            self.fit_head()

    def _make_classifier(self) -> None:
        try:
            self.classifier = PromptClassifier(self.model, self.tokenizer, task=self.splits.task,
                                               template=self.template, label_words=self._label_words(),
                                               max_length=self.cfg.max_length)
        except TaskError as exc:
            raise FinetuneError(str(exc)) from None
        self.classifier.head = self.head

    def _label_words(self) -> tuple[str, ...] | None:
        return self.saved_head[2] if self.saved_head is not None else self.cfg.label_words

    def fit_head(self) -> None:
        """Linear probing of the label-word head (``--probe``; :mod:`dfo.torch.llm.probe`): read the final hidden
        state of every training example (one forward pass per ``batch_size`` examples, counted as training
        passes), fit ``W h + b`` with ``lam`` by cross-validation, and use that head from here on.

        Raises:
            FinetuneError: a masked LM, or a model without ``get_decoder``.
            Interrupted: a stop was requested between two batches.
        """
        import torch

        clf, train, size = self._clf(), self.splits.train, self.cfg.batch_size
        if clf.masked or not hasattr(self.model, "get_decoder"):
            raise FinetuneError(f"--probe reads a causal LM's final hidden state; {type(self.model).__name__} "
                                "is not one")
        t0 = time.perf_counter()
        feats = []
        with torch.no_grad(), self.amp():
            for i in range(0, len(train), size):
                if self.should_stop():
                    raise Interrupted
                feats.append(final_hidden(self.model, clf.encode_batch(train[i : i + size]).inputs).double().cpu())
        w0, b0 = label_rows(self.model, clf.label_ids)
        fit = fit_probe(torch.cat(feats).numpy(), [e.label for e in train], w0, b0, seed=self.cfg.seed)
        self.head = clf.head = fit.head
        self.history.probe = {**fit.report(), "forward_passes": len(feats)}
        self.train_seconds += time.perf_counter() - t0

    # ------------------------------------------------------------------ steps and evaluations

    @property
    def max_passes_per_step(self) -> int:
        """The most training forward passes one step can take (Adam: 1, and one backward)."""
        return 1 if self.cfg.zo is None else self.optimizer.config.max_forward_passes()

    def finished(self) -> bool:
        """``steps`` done, or the next step could take the forward passes past the budget."""
        budget = self.cfg.forward_passes
        return self.steps_done >= self.cfg.steps or (
            budget is not None and self.history.used + self.max_passes_per_step > budget)

    def batch(self, step: int) -> list[Example]:
        """The training batch of step ``step`` (0-based): ``default_rng([seed, step])`` picks it, without repeats."""
        train = self.splits.train
        idx = np.random.default_rng([self.cfg.seed, step]).choice(
            len(train), size=min(self.cfg.batch_size, len(train)), replace=False)
        return [train[i] for i in idx]

    def step(self) -> StepRecord:
        """Train on the next batch (tokenized once; every forward pass of a ZO step reuses it).

        Raises:
            FinetuneError: a non-finite loss (with the step number and what to try).
        """
        clf, opt, step = self._clf(), self.optimizer, self.steps_done
        t0 = time.perf_counter()
        encoded = clf.encode_batch(self.batch(step))
        if self.cfg.zo is None:
            opt.zero_grad(set_to_none=True)
            with self.amp():
                loss_t = clf.loss(encoded)
            loss_t.backward()
            opt.step()
            loss, passes = float(loss_t.detach()), 1
        else:  # the line-search methods read the batch noise from per-example losses
            loss_fn = functools.partial(per_example_loss, clf) if opt.config.entry.line_search else clf.loss
            try:
                loss = float(opt.step(functools.partial(under, self.amp, loss_fn, encoded)))
            except FloatingPointError as exc:
                raise FinetuneError(f"step {step + 1}: {exc} (try a smaller --lr or --eps)") from None
            passes = opt.last_step.forward_passes
        seconds = time.perf_counter() - t0
        self.train_seconds += seconds
        self.history.loss.append(loss)
        self.history.forward_passes.append(self.history.used + passes)
        return StepRecord(step + 1, loss, self.history.used, seconds)

    def evaluate_dev(self) -> dict[str, Any]:
        """Evaluate on the dev sample now and record it in the history under the current step.

        Raises:
            Interrupted: a stop was requested during the evaluation (nothing recorded).
        """
        with self.amp():
            ev = self._clf().evaluate(self.splits.dev, should_stop=self.should_stop).as_dict()
        self.history.dev.append([self.steps_done, ev])
        return ev

    def evaluate(self) -> tuple[Evaluation, Evaluation]:
        """The final dev and test evaluations (pending low-rank updates folded into the weights first)."""
        if hasattr(self.optimizer, "flush"):
            self.optimizer.flush()
        with self.amp():
            dev = self._clf().evaluate(self.splits.dev, should_stop=self.should_stop)
            test = self._clf().evaluate(self.splits.test, should_stop=self.should_stop)
        return dev, test

    def _clf(self) -> PromptClassifier:
        if self.classifier is None:
            raise RuntimeError("FinetuneJob: call begin() or load_state_dict() first")
        return self.classifier

    # ------------------------------------------------------------------ the run

    def run(self, out: Path | None = None, *, resume: bool = False) -> FinetuneResult:
        """Run (or with ``resume`` continue the checkpoint in ``out``) to the end with a
        :class:`~dfo.torch.llm.runner.Runner`: checkpoints, the metrics stream, signals; then write ``out``'s
        ``results.json`` and ``model/`` (the run folder is the caller's to lock and check).

        Raises:
            Stopped: Ctrl-C / SIGTERM, after writing a checkpoint when ``out`` is set.
            FinetuneError: a checkpoint that cannot resume this run, a non-finite loss.
        """
        runner = Runner(self, out)
        dev, test = runner.run(resume=resume)
        result = self.result(dev, test, checkpoint=runner.checkpoint)
        if out is not None:
            self.write_outputs(out, result)
        if hasattr(self.optimizer, "close"):
            self.optimizer.close()
        return result

    def result(self, dev: Evaluation, test: Evaluation, *, checkpoint: Path | None = None) -> FinetuneResult:
        """The run's :class:`~dfo.torch.llm.result.FinetuneResult` after the final evaluations ``dev``, ``test``."""
        return finetune_result(cfg=self.cfg, task=self.splits.task.name, template=self.template,
                               label_words=self._clf().label_words, template_selection=self.template_selection,
                               device=str(self.device), dev=dev, test=test, training=self.history,
                               train_seconds=self.train_seconds, checkpoint=checkpoint)

    def write_outputs(self, out: Path, result: FinetuneResult) -> None:
        """``out/model`` (``save_pretrained``, safetensors, with the tokenizer and a model card) after training
        when ``save_model`` is set, and ``out/results.json``."""
        record = result.record()
        if self.cfg.save_model and (self.steps_done > 0 or self.head is not None):
            with staged_dir(out / "model", prefix=f"model{TMP_MARK}") as tmp:
                self.model.save_pretrained(tmp, safe_serialization=True)
                self.tokenizer.save_pretrained(tmp)
                if self.head is not None:
                    write_head(tmp, self.head, self.template, self._clf().label_words)
                (tmp / "README.md").write_text(model_card(record), encoding="utf-8")
        atomic_write_bytes(out / "results.json", json.dumps(record, indent=2).encode())


def _never() -> bool:
    return False


__all__ = ["FinetuneJob", "History", "Splits", "StepRecord", "Stopped", "load_splits"]  # History, Stopped: re-exported
