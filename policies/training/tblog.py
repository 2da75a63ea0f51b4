"""TensorBoard event files without torch or TensorFlow, written with ``tensorboardX``.

``tensorboardX`` (in the ``rl`` extra) writes TensorBoard's event files from plain Python;
``tensorboard`` itself is only needed to look at them. Scalars go in at ``step`` = training
env steps. The run's settings go to the HParams dashboard through tensorboardX's public
:func:`tensorboardX.summary.hparams` (experiment, session-start and session-end summaries),
written into the run's own ``tb/`` folder rather than a sub-run, so one run is one row.

On resume the run goes back to its checkpoint: the writer is opened with
``purge_step`` = the checkpoint's env steps + 1, which makes TensorBoard drop the points an
interrupted process wrote after that step, so curves show no duplicates.

Example:
    >>> import tempfile
    >>> w = open_writer(tempfile.mkdtemp())
    >>> if w is not None:
    ...     w.hparams({"method": "ars-v2t", "step_size": 0.02}, metrics=["charts/episodic_return"])
    ...     w.scalars({"charts/episodic_return": 1.5}, step=1000)
    ...     w.close()
"""

from __future__ import annotations

import os
from typing import Any


class TensorBoardWriter:
    """Writes one run's event file in ``logdir`` (created if needed)."""

    def __init__(self, logdir: str | os.PathLike, purge_step: int | None = None) -> None:
        from tensorboardX import SummaryWriter

        self._writer = SummaryWriter(logdir=str(logdir), purge_step=purge_step, flush_secs=30)

    def scalars(self, values: dict[str, float], step: int) -> None:
        """One point per tag at x = ``step``."""
        for tag, value in values.items():
            self._writer.add_scalar(tag, float(value), global_step=int(step))
        self._writer.flush()

    def hparams(self, hparams: dict[str, Any], metrics: list[str]) -> None:
        """The run's settings for the HParams dashboard (numbers, strings and bools; others as text)."""
        from tensorboardX.summary import hparams as hparams_summaries

        values = {k: (v if isinstance(v, (bool, int, float, str)) else str(v))
                  for k, v in sorted(hparams.items()) if v is not None}
        for summary in hparams_summaries(values, {m: float("nan") for m in metrics}):
            self._writer.file_writer.add_summary(summary)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def open_writer(logdir: str | os.PathLike, purge_step: int | None = None) -> TensorBoardWriter | None:
    """A writer, or ``None`` when the ``tensorboardX`` package is not installed."""
    try:
        return TensorBoardWriter(logdir, purge_step=purge_step)
    except ImportError:
        return None
