"""Prompt fine-tuning of a local causal or masked LM (the library layer of ``dfo finetune``): :func:`finetune`.

:func:`finetune` checks and locks the run folder and runs a :class:`dfo.torch.llm.job.FinetuneJob`: a loop
around :class:`dfo.torch.ZerothOrder` (or ``torch.optim.Adam`` with backprop, ``method="adam"``, the
reference ceiling) and :class:`dfo.torch.llm.prompt.PromptClassifier`: each step samples a batch from the
k-shot training set (indices from ``default_rng([seed, step])``, so a resumed run sees the same batches),
takes one step, and every ``eval_every`` steps evaluates on a class-balanced dev sample.
``template="auto"`` picks the prompt with the best zero-shot dev accuracy (never the test set) and reports
every template's score. The settings are :class:`dfo.torch.llm.config.FinetuneConfig`.

Run folder (``out_dir``): ``checkpoints/step_<step>/`` (the one checkpoint format of
:mod:`dfo.run.checkpoint` with the model's weights beside the state, the last two kept; see
:mod:`dfo.torch.llm.checkpoint`; nothing is unpickled), ``results.json``, the metrics stream
(``progress.csv``, ``metrics.jsonl``, ``tb/``; see :mod:`dfo.torch.llm.runlog`) and, after training,
``model/`` written with ``save_pretrained`` (safetensors) together with the tokenizer. An existing run
is never overwritten unless asked (``overwrite=True``); ``resume=True`` continues it. Ctrl-C or SIGTERM
during a run stops after the current step, writes a checkpoint and raises
:class:`Stopped` (a second Ctrl-C aborts at once). Models load from local folders
only (``HF_HUB_OFFLINE=1``).

Example:
    >>> cfg = FinetuneConfig(model="smollm2", method="subzero", steps=100, out_dir="runs/sst2",
    ...                      data_dir="/data")                                    # doctest: +SKIP
    >>> finetune(cfg).test.accuracy                                                # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from dfo.run import FINETUNE as RUN_LAYOUT
from dfo.run import open_run_folder, run_folder_job
from dfo.torch.llm.checkpoint import CheckpointError, refuse_legacy
from dfo.torch.llm.config import DEFAULT_LR, FINETUNE_METHODS, FinetuneConfig, FinetuneError
from dfo.torch.llm.job import FinetuneJob, Stopped, load_splits
from dfo.torch.llm.result import FinetuneResult
from dfo.torch.llm.runtime import per_example_loss, resolve_device, with_lora


def prepare_run_dir(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Lock, check (and with ``overwrite`` clear) the run folder: :func:`dfo.run.open_run_folder`'s rules,
    the lock held until :func:`finetune` ends.

    Raises:
        dfo.run.RunFolderError: another process writes it, not a folder, unwritable, symlinks, or it holds
            a run and neither flag was given (:func:`finetune` reports it as :class:`FinetuneError`).
    """
    open_run_folder(out, RUN_LAYOUT, resume=resume, overwrite=overwrite)


@run_folder_job(FinetuneError)  # holds the run-folder lock for the call; refusals as FinetuneError
def finetune(
    cfg: FinetuneConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    callback: Callable[[dict[str, Any]], None] | None = None,
) -> FinetuneResult:
    """Run (or resume) a fine-tuning job.

    Args:
        cfg: the run.
        resume: continue from ``cfg.out_dir``'s checkpoint.
        overwrite: replace a run already in ``cfg.out_dir``.
        progress: show the progress (a bar in a terminal, plain lines in a log).
        callback: called with a dict (``step``, ``loss``, ``dev`` when evaluated) after every step.

    Returns:
        The :class:`~dfo.torch.llm.result.FinetuneResult` (the run harness's ``RunResult``): steps and forward
        passes, the template (and the scores that chose it for ``template="auto"``), the final dev / test
        evaluations (accuracy raw and calibrated, predicted-class balance), the step history;
        ``record()`` is the ``results.json`` it writes.

    Raises:
        FinetuneError: a bad setting, folder or file (one-line message).
        Stopped: Ctrl-C / SIGTERM (after writing a checkpoint when ``out_dir`` is set).
    """
    out = Path(cfg.out_dir) if cfg.out_dir else None
    if resume and out is None:
        raise FinetuneError("--resume needs --out (the run folder to continue)")
    resolve_device(cfg.device)  # a device this machine lacks is refused before anything is read or written
    splits = load_splits(cfg)
    if out is not None:
        if resume:  # before the folder checks, which find no checkpoints/ in a run of an older dfo
            try:
                refuse_legacy(out)
            except CheckpointError as exc:
                raise FinetuneError(f"--resume: {exc}") from None
        prepare_run_dir(out, resume=resume, overwrite=overwrite)
    job = FinetuneJob(cfg, splits, progress=progress, callback=callback)
    return job.run(out, resume=resume)


#: the library layer's names, kept importable from here (their homes: config, job, runtime)
__all__ = ["DEFAULT_LR", "FINETUNE_METHODS", "FinetuneConfig", "FinetuneError", "FinetuneJob", "FinetuneResult", "Stopped",
           "finetune",
           "per_example_loss", "prepare_run_dir", "resolve_device", "with_lora"]
