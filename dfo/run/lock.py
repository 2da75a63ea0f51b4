"""The run-folder lock, and a job scope that holds it for exactly one call.

One process writes one run: :class:`RunLock` is an exclusive, non-blocking
:class:`filelock.FileLock` on ``RUN/.lock`` (``flock`` on POSIX; the lock file is opened
without following links). A second writer — the same ``--resume`` twice, ``--overwrite`` of a
live run, two runs started into one ``--out`` — gets a one-line :class:`RunFolderError`. The
operating system drops the lock when the process ends, however it ends.

:func:`open_run_folder` is the whole entry protocol: take the lock first, then make the
checks of :func:`dfo.run.folder.prepare` under it (so two runs started together cannot both
find the folder empty). Inside a :func:`run_folder_job` the lock is released when the job
returns or raises; outside one the caller releases it.

Example:
    >>> import tempfile, pathlib
    >>> from dfo.run.folder import TRAIN
    >>> d = pathlib.Path(tempfile.mkdtemp()) / "run"
    >>> lock = open_run_folder(d, TRAIN, resume=False)
    >>> try:
    ...     RunLock(d).acquire()
    ... except RunFolderError as e:
    ...     print(str(e).split(" to ")[0])
    another process is writing
    >>> lock.release()
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import functools
import os
from pathlib import Path
from typing import Any, Callable, TypeVar

from dfo.run.folder import LOCK, Layout, RunFolderError, prepare

F = TypeVar("F", bound=Callable[..., Any])

#: the open job scope (an ExitStack) of the running :func:`run_folder_job`, if any
_SCOPE: contextvars.ContextVar[tuple[contextlib.ExitStack, list[tuple[Path, Layout]]] | None] = \
    contextvars.ContextVar("dfo_run_scope", default=None)


class RunLock:
    """Exclusive lock of one run folder (``RUN/.lock``); :meth:`release` is idempotent.

    Args:
        path: the run folder (must exist).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        from filelock import FileLock

        self.path = Path(path)
        self._lock = FileLock(str(self.path / LOCK), blocking=False, thread_local=False)
        self._held = False

    def acquire(self) -> RunLock:
        """Take the lock.

        Raises:
            RunFolderError: another process (or another job of this one) holds it, or the lock file
                cannot be opened (a symbolic link, no permission).
        """
        from filelock import Timeout

        lock_file = self.path / LOCK
        if lock_file.is_symlink():
            raise RunFolderError(f"{lock_file} is a symbolic link; a run directory must hold real files only")
        try:
            self._lock.acquire()
        except Timeout:
            raise RunFolderError(f"another process is writing to {self.path} (it holds {lock_file}); "
                                 "wait for it to end or stop it first") from None
        except OSError as exc:
            raise RunFolderError(f"cannot lock {lock_file}: {exc.strerror or exc}") from None
        self._held = True
        return self

    def release(self) -> None:
        if self._held:
            self._held = False
            self._lock.release(force=True)

    @property
    def held(self) -> bool:
        return self._held

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def open_run_folder(path: str | os.PathLike[str], layout: Layout, *, resume: bool,
                    overwrite: bool = False) -> RunLock:
    """Lock ``path`` and make it ready for a run of ``layout`` (:func:`dfo.run.folder.prepare`).

    The folder is created (for a new run) before the lock is taken, and every check runs under
    the lock. Inside a :func:`run_folder_job` the lock is released when the job ends.

    Returns:
        The held lock.

    Raises:
        RunFolderError: another process writes the folder, or :func:`~dfo.run.folder.prepare` refused it.
    """
    p = Path(path)
    if resume and overwrite:
        raise RunFolderError("--resume and --overwrite exclude each other")
    if p.is_symlink():
        raise RunFolderError(f"--out {p} is a symbolic link; give the real folder")
    if p.exists() and not p.is_dir():
        raise RunFolderError(f"--out {p} exists and is not a directory (it is not a folder a run can use): "
                             "pick another --out")
    if resume and not p.exists():
        raise RunFolderError(f"--resume: run folder {p} does not exist")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RunFolderError(f"cannot write to {p}: {exc.strerror or exc}") from None
    lock = RunLock(p).acquire()
    try:
        prepare(p, layout, resume=resume, overwrite=overwrite)
    except BaseException:
        lock.release()
        raise
    scope = _SCOPE.get()
    if scope is not None:
        scope[0].callback(lock.release)
        scope[1].append((p, layout))
    return lock


#: errors of writing files that end a job with one line instead of a traceback
WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO, errno.EFBIG}


def _write_error(exc: BaseException) -> str | None:
    """One line for a failed write (disk full, read-only, no permission), or None for other errors."""
    if isinstance(exc, OSError) and exc.errno in WRITE_ERRNOS:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror or exc}{where}"
    text = str(exc)
    if type(exc).__name__ == "SafetensorError" and any(w in text for w in ("IoError", "os error", "No space")):
        return text.splitlines()[0]
    return None


def _last_checkpoint(folder: Path, layout: Layout) -> str:
    """What the run's newest checkpoint folder (``RUN/<layout.checkpoint>/<word>_<number>/``) is, in words."""
    root = folder / layout.checkpoint
    try:
        found = sorted(p for p in root.iterdir() if not p.name.startswith(".") and p.is_dir()
                       and not p.is_symlink() and p.name.rpartition("_")[2].isdigit())
    except OSError:
        found = []
    if not found:
        return f"no checkpoint was written to {folder}"
    word, _, number = found[-1].name.rpartition("_")
    return f"the checkpoint of {word} {int(number)} ({found[-1]}) is kept (continue with --resume)"


def run_folder_job(error: type[Exception]) -> Callable[[F], F]:
    """Decorate a job function so that the run-folder lock it takes (:func:`open_run_folder`) is held
    exactly while it runs, and folder refusals and failed writes reach its caller as ``error`` (one line).

    A write that fails (disk full, read-only file system, no permission) names the file and the last
    checkpoint, which an atomic checkpoint write always leaves whole.
    """
    def deco(fn: F) -> F:
        @functools.wraps(fn)
        def job(*args: Any, **kwargs: Any) -> Any:
            with contextlib.ExitStack() as stack:
                folders: list[tuple[Path, Layout]] = []
                token = _SCOPE.set((stack, folders))
                try:
                    return fn(*args, **kwargs)
                except RunFolderError as exc:
                    raise error(str(exc)) from None
                except Exception as exc:
                    line = _write_error(exc)
                    if line is None:
                        raise
                    last = f"; {_last_checkpoint(*folders[-1])}" if folders else ""
                    raise error(f"cannot write the run: {line}{last}") from None
                finally:
                    _SCOPE.reset(token)
        return job  # type: ignore[return-value]
    return deco
