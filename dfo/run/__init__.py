"""The run harness's folder rules: one home for every command that writes a run.

* :mod:`dfo.run.folder`: what each command writes (:class:`Layout`: :data:`TRAIN`,
  :data:`FINETUNE`), the run's own manifest ``.dfo-run.json``, the checks before a run writes,
  and the one overwrite rule (``--overwrite`` deletes only the entries the manifest lists).
* :mod:`dfo.run.lock`: the run-folder lock (``.lock``, :class:`RunLock` over ``filelock``),
  :func:`open_run_folder` (lock, then check, under the lock) and :func:`run_folder_job` (the lock
  held for one call; refusals and failed writes as one-line errors).
* :mod:`dfo.run.checkpoint`: the one checkpoint format (``state.json`` + ``arrays.npz`` /
  ``tensors.safetensors`` + ``manifest.json`` with SHA-256s), :class:`~dfo.run.checkpoint.Series` of
  numbered checkpoints, and the one ``CheckpointError``.
* :mod:`dfo.run.metrics`: the metrics stream (``progress.csv``, namespaced ``metrics.jsonl``,
  TensorBoard through :mod:`dfo.run.tblog`, trackers through :mod:`dfo.run.track`) of a job's
  rows as its :class:`~dfo.run.metrics.Schema` names them; :mod:`dfo.run.progress`: a tqdm bar
  in a terminal, plain lines in a log.
* :mod:`dfo.run.result`: :class:`~dfo.run.result.RunResult`, the one result type of a job.

``dfo.policies.training.rundir`` (``dfo train``) and ``dfo.torch.llm.finetune`` (``dfo finetune``)
both use it. See docs/reliability.md for the guarantees.
"""

from dfo.run.folder import (
    FINETUNE,
    LAYOUTS,
    LOCK,
    MANIFEST,
    TRAIN,
    Layout,
    RunFolderError,
    check_no_symlinks,
    check_writable,
    find_symlinks,
    is_empty,
    plan_overwrite,
    prepare,
    read_manifest,
    remove_entries,
    write_manifest,
)
from dfo.run.lock import RunLock, open_run_folder, run_folder_job

__all__ = ["FINETUNE", "LAYOUTS", "LOCK", "MANIFEST", "TRAIN", "Layout", "RunFolderError", "RunLock",
           "check_no_symlinks", "check_writable", "find_symlinks", "is_empty", "open_run_folder",
           "plan_overwrite", "prepare", "read_manifest", "remove_entries", "run_folder_job", "write_manifest"]
