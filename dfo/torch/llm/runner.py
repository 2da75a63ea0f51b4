"""The loop that drives a fine-tuning job through a run: start or resume, steps, dev evaluations, checkpoints,
the metrics stream, progress, and Ctrl-C / SIGTERM.

It knows the job only through :class:`Job` (:class:`dfo.torch.llm.job.FinetuneJob` is one): ``begin`` or
``load_state_dict``, ``step``, ``evaluate_dev``, ``evaluate``, ``state_dict``. Each step's row goes to the
run folder's ``progress.csv``, ``metrics.jsonl`` and TensorBoard (:mod:`dfo.run.metrics`,
:data:`dfo.torch.llm.runlog.SCHEMA`); a checkpoint is written every ``checkpoint_every`` steps, at the end
and on a stop, and a resume cuts the metrics files back to the checkpoint's step, so they continue as an
uninterrupted run would have written them.

A signal only sets a flag (:class:`dfo.interrupts.StopFlag`): the step in progress completes (an
evaluation in progress is abandoned), a checkpoint is written and :class:`Stopped` is raised.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from dfo.interrupts import StopFlag
from dfo.run.metrics import MetricsLog
from dfo.run.progress import Progress
from dfo.torch.llm import checkpoint as ckpt_io
from dfo.torch.llm import runlog
from dfo.torch.llm.config import FinetuneConfig, FinetuneError
from dfo.torch.llm.history import History, StepRecord
from dfo.torch.llm.prompt import Evaluation, Interrupted


class Stopped(Exception):
    """The run stopped on Ctrl-C / SIGTERM; ``step`` is the last completed step, ``saved`` the checkpoint (or None)."""

    def __init__(self, signum: int, step: int, saved: Path | None) -> None:
        self.signum, self.step, self.saved = signum, step, saved
        name = signal.Signals(signum).name
        where = f"checkpoint saved to {saved}; continue with --resume" if saved else "nothing to save yet"
        super().__init__(f"stopped by {name} after step {step}: {where}")


class Job(Protocol):
    """What :class:`Runner` needs of a fine-tuning job."""

    cfg: FinetuneConfig
    model: Any
    history: History
    train_seconds: float
    should_stop: Callable[[], bool]
    progress: bool
    callback: Callable[[dict[str, Any]], None] | None

    @property
    def steps_done(self) -> int: ...
    def begin(self) -> None: ...
    def meta(self) -> dict[str, Any]: ...
    def state_dict(self) -> dict[str, Any]: ...
    def load_state_dict(self, state: dict[str, Any]) -> None: ...
    def finished(self) -> bool: ...
    def step(self) -> StepRecord: ...
    def evaluate_dev(self) -> dict[str, Any]: ...
    def evaluate(self) -> tuple[Evaluation, Evaluation]: ...


class Runner:
    """One run of ``job``, writing into the run folder ``out`` (None: nothing is written).

    The folder is the caller's to check and lock (:func:`dfo.torch.llm.finetune.finetune`).
    """

    def __init__(self, job: Job, out: Path | None) -> None:
        self.job, self.out = job, out
        self.start_step = 0
        self.saved_step = -1
        self.saved: Path | None = None  # the checkpoint folder last written or resumed from
        self.stop = StopFlag()
        self.log: MetricsLog | None = None
        self.eval_due = False  # the checkpoint's step still owes its dev evaluation (and its row)

    def run(self, *, resume: bool) -> tuple[Evaluation, Evaluation]:
        """Start (or resume), train to the end, return the final dev and test evaluations.

        Raises:
            Stopped: Ctrl-C / SIGTERM, after writing a checkpoint when there is a run folder.
            FinetuneError: a checkpoint that cannot resume this run, a non-finite loss.
        """
        with self.stop:
            self.job.should_stop = self.stop
            try:
                self.start(resume)
                return self.train()
            finally:
                self.job.should_stop = _never
                if self.log is not None:
                    self.log.close()

    def start(self, resume: bool) -> None:
        """The job's :meth:`~Job.begin`, or with ``resume`` the run folder's checkpoint loaded into it; then the
        metrics stream opened (cut back to the checkpoint on a resume)."""
        job = self.job
        if resume:
            try:
                self.saved, state = ckpt_io.load(self.out, job.model)
            except ckpt_io.CheckpointError as exc:
                raise FinetuneError(f"--resume: {exc}") from None
            job.load_state_dict(state)
            self.start_step = self.saved_step = state["step"]
        else:
            try:
                job.begin()
            except Interrupted:
                raise Stopped(self.stop.signum, 0, None) from None
        self.eval_due = self._eval_cut_short()
        if self.out is not None and job.cfg.steps > 0:
            # a resume cuts the files back to the checkpoint (a step whose evaluation a stop cut short has no row
            # yet: it is written after that evaluation); a new run (--overwrite) to before its first step
            MetricsLog.truncate(self.out, runlog.SCHEMA, self.start_step - self.eval_due)
            self.log = MetricsLog(self.out, runlog.SCHEMA, hparams=runlog.hparams(job.meta()["config"]),
                                  purge_step=job.history.used + 1 if resume else None)

    def _eval_cut_short(self) -> bool:
        """Whether the checkpoint's step is due a dev evaluation it does not have (a stop interrupted it)."""
        every, start = self.job.cfg.eval_every, self.start_step
        return bool(every and start and start % every == 0 and not any(s == start for s, _ in self.job.history.dev))

    @property
    def checkpoint(self) -> Path | None:
        """The checkpoint folder this run last wrote or resumed from (None: none)."""
        return self.saved

    def save(self, step: int) -> Path | None:
        """Write the checkpoint of ``step`` (once per step); its folder, None without a run folder."""
        if self.out is None:
            return None
        if step != self.saved_step:
            self.saved = ckpt_io.save(self.out, step=step, model=self.job.model, state=self.job.state_dict())
            self.saved_step = step
        return self.saved

    def stopped(self, step: int) -> Stopped:
        return Stopped(self.stop.signum, step, self.save(step))

    def record(self, step: int) -> None:
        """Write step ``step``'s row to the metrics stream."""
        if self.log is not None:
            self.log.write(runlog.row(self.job.history, step, train_seconds=self.job.train_seconds))

    def train(self) -> tuple[Evaluation, Evaluation]:
        job, cfg, start = self.job, self.job.cfg, self.start_step
        bar = Progress(total=cfg.steps, initial=start, desc=cfg.method, unit="steps") if job.progress else None
        try:
            if self.eval_due:  # the evaluation of the resumed step that a stop cut short, then that step's row
                job.evaluate_dev()
                self.record(start)
            while not job.finished():
                record = job.step()
                info: dict[str, Any] = {"step": record.step, "loss": record.loss}
                if cfg.eval_every and record.step % cfg.eval_every == 0:
                    try:
                        info["dev"] = job.evaluate_dev()
                    except Interrupted:
                        raise self.stopped(record.step) from None
                self.record(record.step)
                if bar is not None:
                    bar.update(record.step, _fields(job.history))
                if job.callback:
                    job.callback(info)
                if job.should_stop():
                    raise self.stopped(record.step)
                if cfg.checkpoint_every and record.step % cfg.checkpoint_every == 0:
                    self.save(record.step)
            if job.steps_done > start:
                self.save(job.steps_done)
            return job.evaluate()
        except Interrupted:
            raise self.stopped(max(start, job.steps_done)) from None
        finally:
            if bar is not None:
                bar.close()


def _fields(history: History) -> dict[str, str]:
    """The progress line: mean loss of the last 20 steps, latest dev accuracy, training forward passes."""
    out = {"loss": f"{np.mean(history.loss[-20:]):.4f}", "passes": str(history.used)}
    if history.dev:
        out["dev"] = f"{history.dev[-1][1]['accuracy']:.3f}"
    return out


def _never() -> bool:
    return False


__all__ = ["Job", "Runner", "Stopped"]
