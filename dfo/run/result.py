"""The one result type of the run harness's jobs (``dfo train``, ``dfo finetune``).

A job returns a :class:`RunResult` (or a thin subclass adding what only it has, like the RL
policy ready to act): the final parameters, how far it went (iterations, and evaluations of the
objective: episodes for RL, forward passes for fine-tuning), why it stopped, its last checkpoint,
the rows it logged and its final metrics under their namespaced keys. ``minimize`` keeps scipy's
``OptimizeResult``: it is the optimizer's driver, not a job with a run folder.

Example:
    >>> r = RunResult(params=None, iteration=3, evaluations=96, message="budget reached", checkpoint=None,
    ...               history=[{"step": 3, "loss": 0.4}], final={"train/loss": 0.4})
    >>> r.summary()["final"], r.evaluations
    ({'train/loss': 0.4}, 96)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any


@dataclasses.dataclass(frozen=True, kw_only=True)
class RunResult:
    """What a job returns.

    Attributes:
        params: the final parameters (a flat numpy array for RL; ``None`` where a model holds them).
        iteration: iterations (optimizer steps) completed.
        evaluations: evaluations of the objective used for training (RL: episodes; fine-tuning:
            forward passes).
        message: why the run stopped.
        checkpoint: the last checkpoint folder (``None`` without a run folder).
        history: one dict per logged row (the ``progress.csv`` rows).
        final: the last value of each metric, by namespaced key (``charts/episodic_return``,
            ``eval/accuracy``); NaN where the run never measured it.
        extra: job-specific values that need no attribute of their own.
    """

    params: Any
    iteration: int
    evaluations: int
    message: str
    checkpoint: Path | None
    history: list[dict[str, Any]]
    final: Mapping[str, float] = dataclasses.field(default_factory=dict)
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The scalars of the result as a JSON-ready dict (no parameters, no history)."""
        return {"iteration": self.iteration, "evaluations": self.evaluations, "message": self.message,
                "checkpoint": None if self.checkpoint is None else str(self.checkpoint),
                "final": dict(self.final), **({"extra": dict(self.extra)} if self.extra else {})}
