"""TensorBoard event files without torch or TensorFlow: scalars and hyperparameters.

The TensorBoard side of the run harness's metrics stream (:mod:`dfo.run.metrics`), imported
only when a run writes events. The ``tensorboard`` package (in the ``rl`` extra) ships the
event-file writer and the protobuf messages TensorBoard reads; this module uses only those, so
logging needs neither torch nor TensorFlow. Scalars are written as ``simple_value`` summaries
with ``step`` = the job's x axis (training env steps for ``dfo train``). Hyperparameters go
through the functions of TensorBoard's HParams API (the experiment config with the metric tags,
then the session's values).

The alternatives were tried and rejected: ``torch.utils.tensorboard`` and ``tensorboardX``
import torch (about 3 s and a few hundred MB in every RL training process, which must not
load torch: ``test_training_imports_no_torch``); ``tensorboard.summary.Writer`` (the package's
own public writer) is marked experimental, writes tensor summaries that the event
accumulator does not list as scalars, and has no restart marker for :meth:`purge_from`.

On resume the run goes back to its checkpoint; :meth:`TensorBoardWriter.purge_from`
writes a ``SessionLog.START`` event at the checkpoint's step + 1, which tells TensorBoard
to drop the points an interrupted process wrote after that step, so curves show no
duplicates.

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
import time
from typing import Any


class TensorBoardWriter:
    """Writes one event file in ``logdir`` (created if needed)."""

    def __init__(self, logdir: str | os.PathLike) -> None:
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self._event_pb2, self._summary_pb2 = event_pb2, summary_pb2
        self._writer = EventFileWriter(str(logdir))

    def _add(self, event) -> None:
        event.wall_time = time.time()
        self._writer.add_event(event)

    def scalars(self, values: dict[str, float], step: int) -> None:
        """One point per tag at x = ``step``."""
        summ = self._summary_pb2.Summary(value=[
            self._summary_pb2.Summary.Value(tag=k, simple_value=float(v)) for k, v in values.items()])
        self._add(self._event_pb2.Event(step=int(step), summary=summ))
        self._writer.flush()

    def purge_from(self, step: int) -> None:
        """Tell TensorBoard to discard earlier-written points with ``step`` >= this one."""
        log = self._event_pb2.SessionLog(status=self._event_pb2.SessionLog.START)
        self._add(self._event_pb2.Event(step=int(step), session_log=log))

    def hparams(self, hparams: dict[str, Any], metrics: list[str]) -> None:
        """The run's settings for the HParams dashboard (numbers, strings and bools; others as text).

        Uses ``hparams_config_pb`` / ``hparams_pb``, the functions TensorBoard's public
        ``tensorboard.plugins.hparams.api`` re-exports, from the module that defines them
        (importing ``api`` itself pulls in TensorFlow through its Keras callback).
        """
        from tensorboard.plugins.hparams import summary_v2 as hp

        values = {k: (v if isinstance(v, (bool, int, float, str)) else str(v))
                  for k, v in sorted(hparams.items()) if v is not None}
        config = hp.hparams_config_pb(hparams=[hp.HParam(k) for k in values],
                                      metrics=[hp.Metric(m) for m in metrics], time_created_secs=time.time())
        for summary in (config, hp.hparams_pb(values, start_time_secs=time.time())):
            self._add(self._event_pb2.Event(step=0, summary=summary))
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def open_writer(logdir: str | os.PathLike) -> TensorBoardWriter | None:
    """A writer, or ``None`` when the ``tensorboard`` package is not installed."""
    try:
        return TensorBoardWriter(logdir)
    except ImportError:
        return None
