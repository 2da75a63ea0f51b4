"""What a run directory may contain, and the checks made before anything is written to it.

A run directory holds only the files ``dfo train`` writes (:data:`RUN_ENTRIES`, plus the
``.lock`` a writing process holds), all of them real files or directories: a symbolic link anywhere in it is refused, so a run
never writes, truncates or deletes anything outside its directory. A new run refuses a
non-empty directory (``--resume`` continues it, ``--overwrite`` clears it first, and
only when it holds nothing but run files).

Example:
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> prepare_run_dir(d, resume=False)
    >>> is_empty(d)
    True
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

#: top-level entries a run directory may hold (``checkpoints/`` and ``tb/`` are directories)
RUN_ENTRIES = ("config.json", "progress.csv", "metrics.jsonl", "best_policy.npz", "best_policy.json",
               "checkpoints", "tb")

#: lock file held while a process writes to a run directory
LOCK = ".lock"


class RunDirError(ValueError):
    """A run directory cannot be used as asked (the message says why and what to do)."""


def is_empty(path: str | os.PathLike) -> bool:
    p = Path(path)
    return not p.exists() or (p.is_dir() and not any(p.iterdir()))


def find_symlinks(path: str | os.PathLike) -> list[Path]:
    """Symbolic links inside a run directory (top level, ``checkpoints/`` and its checkpoints, ``tb/``)."""
    root = Path(path)
    found: list[Path] = []
    if not root.is_dir():
        return found
    stack = [root]
    while stack:
        d = stack.pop()
        for p in d.iterdir():
            if p.is_symlink():
                found.append(p)
            elif p.is_dir() and (d != root or p.name in ("checkpoints", "tb")):
                stack.append(p)
    return sorted(found)


def check_no_symlinks(path: str | os.PathLike) -> None:
    links = find_symlinks(path)
    if links:
        shown = ", ".join(str(p) for p in links[:3]) + (" ..." if len(links) > 3 else "")
        raise RunDirError(f"{path} holds symbolic links ({shown}); a run directory must hold real files "
                          "only (dfo never writes or deletes through a link)")


def check_writable(path: str | os.PathLike) -> None:
    """Create ``path`` if needed and prove a file can be written there.

    Raises:
        RunDirError: ``path`` is a file, or cannot be created or written (read-only, no permission).
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise RunDirError(f"{p} exists and is not a directory (pick another output directory)")
    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=p, prefix=".dfo-write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise RunDirError(f"cannot write to {p}: {e.strerror or e}") from None


def clear_run_dir(path: str | os.PathLike) -> None:
    """Remove the run files of ``path`` (``--overwrite``); links are removed, never followed.

    Raises:
        RunDirError: ``path`` holds other files (it is not a run directory).
    """
    p = Path(path)
    if not p.exists():
        return
    other = sorted(e.name for e in p.iterdir() if e.name not in RUN_ENTRIES and not e.name.startswith("."))
    if other:
        raise RunDirError(f"--overwrite refused: {p} holds files that are not run files ({other[:5]}); "
                          "pick another --out")
    fd = lock_run_dir(p)  # never clear a run another process is writing
    try:
        for e in p.iterdir():
            if e.is_symlink() or not e.is_dir():
                e.unlink()
            else:
                shutil.rmtree(e)
    finally:
        unlock_run_dir(fd)


def prepare_run_dir(path: str | os.PathLike, *, resume: bool) -> None:
    """The checks before a run writes to ``path``.

    A new run (``resume=False``) needs an empty or missing directory; a resumed one its
    own. Both need a writable directory without symbolic links.

    Raises:
        RunDirError: the reason, naming ``path`` and the option that fixes it.
    """
    p = Path(path)
    check_writable(p)
    check_no_symlinks(p)
    if not resume and not is_empty(p):
        raise RunDirError(f"{p} is not empty: continue its run with --resume {p}, clear it with --overwrite, "
                          "or pick another --out")


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
        run_cfg = json.loads(cfg_path.read_text())
        if not isinstance(run_cfg, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError) as e:
        raise RunDirError(f"corrupt {cfg_path}: {e}") from None
    rid = run_cfg.get("run_id")
    differ = sorted(k for k, v in ckpt_config.items() if k not in mutable and k in run_cfg and run_cfg[k] != v)
    if differ or (rid and ckpt_run_id and rid != ckpt_run_id):
        what = ", ".join(f"{k}={ckpt_config[k]!r} vs {run_cfg[k]!r}" for k in differ[:4]) or "its run id differs"
        raise RunDirError(f"checkpoint {checkpoint} belongs to another run than {cfg_path} ({what}); "
                          "refusing to mix two runs in one directory")


def lock_run_dir(path: str | os.PathLike) -> int | None:
    """Take the run directory's lock (``.lock``, an exclusive ``flock``); the file descriptor to release.

    Two processes writing one run (e.g. the same ``--resume`` started twice) would interleave
    their logs and checkpoints; the second one is refused instead. The lock goes away with
    the process, however it ends. Returns ``None`` where ``flock`` does not exist.

    Raises:
        RunDirError: another process holds the lock.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX
        return None
    fd = os.open(Path(path) / LOCK, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise RunDirError(f"another process is writing to {path} (it holds {Path(path) / LOCK}); "
                          "wait for it to end or stop it first") from None
    return fd


def unlock_run_dir(fd: int | None) -> None:
    if fd is not None:
        os.close(fd)  # closing the descriptor releases the flock
