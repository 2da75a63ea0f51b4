"""What ``dfo finetune`` writes to the run harness's metrics stream (:mod:`dfo.run.metrics`).

One row per training step, in ``progress.csv`` under the columns of :data:`SCHEMA` and in
``metrics.jsonl`` / TensorBoard under namespaced keys: ``train/loss`` (the step's batch loss),
``eval/accuracy`` and ``eval/accuracy_calibrated`` on the steps with a dev evaluation
(``eval_every``), ``time/train_seconds``. The x axis is the cumulative count of training forward
passes, the cost measure of zeroth-order methods (Adam: one forward and one backward per step), so
runs of methods with different passes per step line up; ``step`` is the row index a resume cuts the
files back to.

Example:
    >>> from dfo.torch.llm.history import History
    >>> h = History(loss=[0.7, 0.6], dev=[[2, {"accuracy": 0.5, "accuracy_calibrated": 0.75}]],
    ...             forward_passes=[2, 4])
    >>> row(h, 2, train_seconds=1.5)
    {'step': 2, 'forward_passes': 4, 'loss': 0.6, 'train_seconds': 1.5, 'dev_accuracy': 0.5, 'dev_accuracy_calibrated': 0.75}
"""

from __future__ import annotations

from typing import Any

from dfo.run.metrics import Schema
from dfo.torch.llm.history import History

#: the rows of a fine-tuning run: step (the index), training forward passes (the x axis), loss, dev accuracy
SCHEMA = Schema(
    columns=("step", "forward_passes", "loss", "dev_accuracy", "dev_accuracy_calibrated", "train_seconds"),
    keys={"loss": "train/loss", "dev_accuracy": "eval/accuracy", "dev_accuracy_calibrated": "eval/accuracy_calibrated",
          "train_seconds": "time/train_seconds"},
    plain=("step", "forward_passes"),
    x="forward_passes",
    headline="eval/accuracy",
)


def row(history: History, step: int, *, train_seconds: float) -> dict[str, Any]:
    """The row of step ``step`` (1-based) from the run's history; dev columns when it has an evaluation there."""
    out: dict[str, Any] = {"step": step, "forward_passes": history.forward_passes[step - 1],
                           "loss": history.loss[step - 1], "train_seconds": train_seconds}
    for at, ev in reversed(history.dev):
        if at == step:
            out.update(dev_accuracy=ev["accuracy"], dev_accuracy_calibrated=ev["accuracy_calibrated"])
            break
    return out


def rows(history: History) -> list[dict[str, Any]]:
    """Every step's row (:func:`row`) without the timing column, which only the files keep."""
    return [{k: v for k, v in row(history, s, train_seconds=0.0).items() if k != "train_seconds"}
            for s in range(1, history.steps + 1)]


def hparams(config: dict[str, Any]) -> dict[str, Any]:
    """The settings for TensorBoard's HParams tab: ``zo``'s flattened (``zo.eps``), None left out."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        items = value.items() if isinstance(value, dict) else [("", value)]
        for sub, v in items:
            if v is not None:
                flat[f"{key}.{sub}" if sub else key] = v if isinstance(v, (bool, int, float, str)) else str(v)
    return flat


__all__ = ["SCHEMA", "hparams", "row", "rows"]
