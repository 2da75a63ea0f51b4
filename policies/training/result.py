"""What a training run returns: the harness's one result type with the RL extras."""

from __future__ import annotations

import dataclasses
import math

from dfo.policies.serialization import LoadedPolicy
from dfo.policies.training.runlog import METRIC_KEYS
from dfo.run.result import RunResult

#: the namespaced key of the evaluation return (TrainResult.eval_return)
EVAL_KEY = METRIC_KEYS["eval_return"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainResult(RunResult):
    """What :meth:`Trainer.run` returns: the harness's :class:`~dfo.run.result.RunResult` and the RL extras.

    Attributes:
        params: final flat policy parameters.
        iteration: iterations completed.
        evaluations: training episodes used (also :attr:`episodes`).
        message: why the run stopped.
        checkpoint: last checkpoint directory (``None`` without an output directory).
        history: one dict per iteration (the progress.csv rows) of this process.
        final: the last value of each metric by its namespaced key (``charts/episodic_return`` is
            the last evaluation's mean true return, also :attr:`eval_return`).
        env_steps: training env steps.
        policy: the final policy with its normalizer, ready to act (``act``/``predict``),
            as ``dfo evaluate`` would load it from the checkpoint.
    """

    env_steps: int
    policy: LoadedPolicy | None = None

    @property
    def episodes(self) -> int:
        """Training episodes used (:attr:`evaluations`)."""
        return self.evaluations

    @property
    def eval_return(self) -> float:
        """The last evaluation's mean true return (``nan`` if none)."""
        return float(self.final.get(EVAL_KEY, math.nan))
