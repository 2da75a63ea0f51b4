"""``dfo train``'s run directory: the rules of :mod:`dfo.run` with the train layout.

A run directory holds the files ``dfo train`` writes (:data:`RUN_ENTRIES`), its manifest
``.dfo-run.json`` and the ``.lock`` a writing process holds. The checks, the overwrite rule
(``--overwrite`` deletes only the entries the manifest lists; dot-files and folders of yours
stay) and the lock live in :mod:`dfo.run`; this module keeps the names the trainer and the
commands call, plus :func:`check_same_run` (which checkpoint belongs to which run).

Example:
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> prepare_run_dir(d, resume=False)
    >>> is_empty(d)
    True
"""

from __future__ import annotations

import os
from pathlib import Path

from dfo.jsontree import load_json
from dfo.run import folder as _folder
from dfo.run.folder import LOCK, TRAIN, RunFolderError, is_empty, plan_overwrite, prepare, remove_entries
from dfo.run.lock import RunLock

#: top-level entries a run directory may hold (``checkpoints/`` and ``tb/`` are directories)
RUN_ENTRIES = TRAIN.entries

#: ``dfo train``'s run-directory errors are the run-folder errors of :mod:`dfo.run`
RunDirError = RunFolderError

__all__ = ["LOCK", "RUN_ENTRIES", "RunDirError", "check_no_symlinks", "check_same_run", "check_writable",
           "clear_run_dir", "find_symlinks", "is_empty", "lock_run_dir", "prepare_run_dir", "unlock_run_dir"]


def find_symlinks(path: str | os.PathLike) -> list[Path]:
    """Symbolic links a run could write through (run entries, ``checkpoints/`` and ``tb/`` inside)."""
    return _folder.find_symlinks(path, TRAIN)


def check_no_symlinks(path: str | os.PathLike) -> None:
    _folder.check_no_symlinks(path, TRAIN)


def check_writable(path: str | os.PathLike) -> None:
    """Create ``path`` if needed and prove a file can be written there (:class:`RunDirError` if not)."""
    _folder.check_writable(path)


def clear_run_dir(path: str | os.PathLike) -> None:
    """``--overwrite``: delete the entries the directory's manifest lists; keep everything else.

    Raises:
        RunDirError: another process writes the run, or a file named like a run file is not in the
            manifest (it is never deleted).
    """
    p = Path(path)
    if not p.is_dir() or p.is_symlink():
        return  # prepare_run_dir reports what is wrong with it
    with RunLock(p):  # never clear a run another process is writing
        remove_entries(plan_overwrite(p, TRAIN))
        _folder.write_manifest(p, TRAIN)  # the files left are accepted: a new run may start beside them


def prepare_run_dir(path: str | os.PathLike, *, resume: bool) -> None:
    """The checks before a run writes to ``path`` (see :func:`dfo.run.folder.prepare`).

    A new run (``resume=False``) needs a folder without run files (and without other files unless
    :func:`clear_run_dir` accepted them); a resumed one its own. Both need a writable directory
    without symbolic links.

    Raises:
        RunDirError: the reason, naming ``path`` and the option that fixes it.
    """
    prepare(path, TRAIN, resume=resume)


def check_same_run(run_dir: str | os.PathLike, checkpoint: str | os.PathLike, ckpt_config: dict,
                   ckpt_run_id: str | None, *, mutable: set[str]) -> None:
    """Refuse to resume from a checkpoint of another run than the one ``run_dir/config.json`` describes.

    The run id (random, written by the run into config.json and every checkpoint) must
    match, and so must every setting that changes the numbers (all but ``mutable``).

    Raises:
        RunDirError: the checkpoint belongs to another run (e.g. another env's
            checkpoints copied in), or config.json is corrupt.
    """
    cfg_path = Path(run_dir) / "config.json"
    if not cfg_path.exists():
        return
    try:
        run_cfg = load_json(cfg_path, what="config.json")
        if not isinstance(run_cfg, dict):
            raise ValueError("not a JSON object")
    except ValueError as e:
        raise RunDirError(f"corrupt {cfg_path}: {e}") from None
    rid = run_cfg.get("run_id")
    differ = sorted(k for k, v in ckpt_config.items() if k not in mutable and k in run_cfg and run_cfg[k] != v)
    if differ or (rid and ckpt_run_id and rid != ckpt_run_id):
        what = ", ".join(f"{k}={ckpt_config[k]!r} vs {run_cfg[k]!r}" for k in differ[:4]) or "its run id differs"
        raise RunDirError(f"checkpoint {checkpoint} belongs to another run than {cfg_path} ({what}); "
                          "refusing to mix two runs in one directory")


def lock_run_dir(path: str | os.PathLike) -> RunLock:
    """Take the run directory's lock (``.lock``; see :class:`dfo.run.lock.RunLock`); pass the result
    to :func:`unlock_run_dir`.

    Two processes writing one run (e.g. the same ``--resume`` started twice) would interleave
    their logs and checkpoints; the second one is refused instead. The lock goes away with
    the process, however it ends.

    Raises:
        RunDirError: another process holds the lock.
    """
    return RunLock(path).acquire()


def unlock_run_dir(lock: RunLock | None) -> None:
    if lock is not None:
        lock.release()
