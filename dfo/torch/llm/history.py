"""The typed record of a fine-tuning run: :class:`History` (what the steps did, part of the checkpointed state)
and :class:`StepRecord` (what one step returns)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class History:
    """What the run has done, step by step.

    Attributes:
        loss: the training loss of each step's batch (for the ZO methods: the loss the step reports,
            the mean of its perturbed losses).
        dev: ``[step, evaluation]`` of each dev evaluation (:meth:`dfo.torch.llm.prompt.Evaluation.as_dict`).
        forward_passes: training forward passes used after each step, cumulative (evaluations not counted),
            the probe's included.
        probe: what the linear probe of the head did before the first step (``--probe``:
            :meth:`dfo.torch.llm.probe.ProbeFit.report` and its ``forward_passes``), else None.
    """

    loss: list[float] = field(default_factory=list)
    dev: list[list[Any]] = field(default_factory=list)
    forward_passes: list[int] = field(default_factory=list)
    probe: dict[str, Any] | None = None

    @property
    def steps(self) -> int:
        return len(self.loss)

    @property
    def used(self) -> int:
        """Training forward passes so far."""
        if self.forward_passes:
            return self.forward_passes[-1]
        return int(self.probe["forward_passes"]) if self.probe else 0

    def as_dict(self) -> dict[str, list]:
        return {"loss": self.loss, "dev": self.dev, "forward_passes": self.forward_passes, "probe": self.probe}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> History:
        """The history of a checkpoint (older ones have no ``forward_passes``)."""
        return cls(loss=list(data["loss"]), dev=[list(d) for d in data["dev"]],
                   forward_passes=list(data.get("forward_passes", [])), probe=data.get("probe"))


@dataclass(frozen=True)
class StepRecord:
    """One step: its number (1-based: steps done), the batch loss, training forward passes so far, wall seconds."""

    step: int
    loss: float
    forward_passes: int
    seconds: float


__all__ = ["History", "StepRecord"]
