"""What a fine-tuning run returns: :class:`FinetuneResult`, the run harness's one result type
(:class:`dfo.run.result.RunResult`) with the fine-tuning facts added, and :meth:`FinetuneResult.record`, the
``results.json`` a run folder holds (the layout older runs wrote, which ``dfo finetune --config`` reads).

The harness's fields mean, for fine-tuning: ``iteration`` the optimizer steps done, ``evaluations`` the
training forward passes used (evaluation passes not counted), ``params`` None (the model holds them),
``history`` one row per step as the metrics stream logs it (:func:`dfo.torch.llm.runlog.rows`), ``final``
the final accuracies and loss under their namespaced keys (``eval/accuracy``, ``test/accuracy``,
``train/loss``: the mean of the last 20 steps).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from dfo.run.result import RunResult
from dfo.torch.llm.config import FinetuneConfig, jsonable
from dfo.torch.llm.history import History
from dfo.torch.llm.prompt import Evaluation
from dfo.torch.llm.runlog import rows

#: how many of the last steps' losses the reported final training loss averages
FINAL_LOSS_STEPS = 20


@dataclasses.dataclass(frozen=True, kw_only=True)
class FinetuneResult(RunResult):
    """A fine-tuning run's result (the harness's fields: see the module docstring).

    Attributes:
        config: the run's settings.
        task: the task's name.
        template, label_words: the prompt the classifier used.
        template_selection: every template's zero-shot dev score when ``template="auto"`` chose it, else None.
        device: where the model ran.
        dev, test: the final evaluations (accuracy raw and calibrated, predicted-class balance, loss).
        training: the run's :class:`~dfo.torch.llm.history.History` (loss and forward passes per step, dev
            evaluations).
        train_seconds: wall time of the training steps (evaluations not counted).
        forward_passes_per_step: 1 (Adam), the method's count, or ``"variable"`` (line search; ``mezo-interp``
            with reuse: :attr:`dfo.torch.ZOConfig.variable_passes`).
    """

    config: FinetuneConfig
    task: str
    template: str
    label_words: tuple[str, ...]
    template_selection: dict[str, Any] | None
    device: str
    dev: Evaluation
    test: Evaluation
    training: History
    train_seconds: float
    forward_passes_per_step: int | str

    @property
    def final_train_loss(self) -> float | None:
        """Mean loss of the last :data:`FINAL_LOSS_STEPS` steps (None without training)."""
        loss = self.training.loss[-FINAL_LOSS_STEPS:]
        return float(np.mean(loss)) if loss else None

    def record(self) -> dict[str, Any]:
        """The ``results.json`` of the run: settings, prompt, evaluations, history, timings (JSON-ready)."""
        cfg = self.config
        return {
            "config": jsonable(dataclasses.asdict(cfg)),
            "task": self.task,
            "template": self.template,
            "label_words": list(self.label_words),
            "template_selection": self.template_selection,
            "device": self.device,
            "steps": self.iteration,
            "forward_passes": self.evaluations,
            "forward_passes_per_step": self.forward_passes_per_step,
            "backward_passes_per_step": 1 if cfg.zo is None else 0,
            "dev": self.dev.as_dict(),
            "test": self.test.as_dict(),
            "accuracy": {"dev": self.dev.headline(cfg.calibrate), "test": self.test.headline(cfg.calibrate),
                         "calibrated": cfg.calibrate},
            "final_train_loss": self.final_train_loss,
            "history": self.training.as_dict(),
            "train_seconds": self.train_seconds,
            "message": self.message,
        }


def finetune_result(*, cfg: FinetuneConfig, task: str, template: str, label_words: tuple[str, ...],
                    template_selection: dict[str, Any] | None, device: str, dev: Evaluation, test: Evaluation,
                    training: History, train_seconds: float, checkpoint: Any) -> FinetuneResult:
    """The result of a run that ended: the harness's fields derived from the fine-tuning ones."""
    zo = cfg.zo
    steps = training.steps
    if cfg.steps == 0:
        message = ("linear probe of the label-word head only (no training steps)" if training.probe
                   else "zero-shot evaluation (no training steps)")
    elif steps >= cfg.steps:
        message = f"{steps} steps done"
    else:
        message = f"stopped after {steps} steps: the next could pass the budget of {cfg.forward_passes} forward passes"
    final = {"eval/accuracy": dev.accuracy, "eval/accuracy_calibrated": dev.accuracy_calibrated,
             "test/accuracy": test.accuracy, "test/accuracy_calibrated": test.accuracy_calibrated}
    result = FinetuneResult(
        params=None, iteration=steps, evaluations=training.used, message=message, checkpoint=checkpoint,
        history=rows(training), config=cfg, task=task, template=template, label_words=tuple(label_words),
        template_selection=template_selection, device=device, dev=dev, test=test, training=training,
        train_seconds=train_seconds,
        forward_passes_per_step=1 if zo is None else ("variable" if zo.variable_passes else zo.max_forward_passes()),
    )
    loss = result.final_train_loss
    return dataclasses.replace(result, final={**final, "train/loss": math.nan if loss is None else loss})


__all__ = ["FINAL_LOSS_STEPS", "FinetuneResult", "finetune_result"]
