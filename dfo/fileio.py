"""Crash-safe file helpers shared by every checkpoint writer (numpy-free, torch-free).

The one home of how dfo writes files that must survive a kill: the checkpoint format
(:mod:`dfo.run.checkpoint`, which the RL trainer and fine-tuning write), the policy files
(:mod:`dfo.policies.serialization`) and the run folders use it.

* :func:`atomic_write_bytes`: a file is written beside its target under a name
  ``<name>.tmp-XXXXXXXX``, flushed to disk and renamed over the target, so a crash
  leaves the old file or the new one, never a torn one. Run-folder cleanups find
  leftovers of killed writes by the ``.tmp-`` in their names.
* :func:`staged_dir`: the same for a folder: it is filled under a temporary name,
  every file in it is flushed, and it is renamed into place in one step.
* :func:`file_digests` / :func:`bad_files`: SHA-256 of files, and which of a
  recorded set are now missing, links or changed (the checksummed manifests).

Example:
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> atomic_write_bytes(d / "a.json", b"{}")
    >>> sha256_file(d / "a.json")[:8]
    '44136fa3'
    >>> sums = file_digests(d, ["a.json"])
    >>> bad_files(d, sums), bad_files(d, {"b.json": "0"})
    (([], []), (['b.json'], []))
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import shutil
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, TypeVar

T = TypeVar("T")

#: what every temporary file name made here contains (``<name>.tmp-XXXXXXXX``), for cleanups
TMP_MARK = ".tmp-"


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fsync_file(path: str | os.PathLike[str]) -> None:
    """Flush a file's data to disk."""
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Flush a folder's entries (renames) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fresh(parent: Path, prefix: str, make: Callable[[Path], T]) -> tuple[Path, T]:
    """``make(path)`` on a new name ``<parent>/<prefix>XXXXXXXX``: like ``tempfile.mkstemp``, but the
    permissions follow the umask as for any other file a run writes. Returns the path and what ``make`` gave."""
    for _ in range(100):
        path = parent / f"{prefix}{secrets.token_hex(4)}"
        try:
            return path, make(path)
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name {prefix}* in {parent}")


def make_writable_dir(path: str | os.PathLike[str]) -> Path:
    """Create the folder ``path`` (and its parents) and prove it writable by writing and removing a
    hidden probe file, before any long work starts. Returns the path.

    Raises:
        OSError: it cannot be created or written, or is a file (``strerror`` says why).
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    probe = path / f".dfo-write-test-{os.getpid()}"
    probe.write_bytes(b"")
    probe.unlink()
    return path


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to a fresh temporary file beside ``path``, fsync it, and rename it over ``path``.

    A crash leaves either the old file or the new one, never a torn one; an error
    removes the temporary file; a symlink at ``path`` is replaced, not followed.
    The temporary name is ``<name>.tmp-XXXXXXXX`` (:data:`TMP_MARK`).
    """
    path = Path(path)
    tmp, fd = _fresh(path.parent, f"{path.name}{TMP_MARK}",
                     lambda p: os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


@contextlib.contextmanager
def staged_dir(final: str | os.PathLike[str], *, prefix: str) -> Iterator[Path]:
    """Fill a folder under a temporary name, then put it at ``final`` in one rename.

    Yields a new empty folder ``<final's parent>/<prefix>XXXXXXXX``. When the block
    ends normally every file in it (subfolders included) is flushed to disk, whatever is at ``final`` (an
    earlier folder, or a link, which is removed and not followed) is replaced by it
    (``os.replace`` of a folder is atomic on POSIX) and the parent's entries are
    flushed. An error removes the temporary folder and leaves ``final`` as it was.
    ``prefix`` names the temporary folders a cleanup may remove after a kill.
    """
    final = Path(final)
    tmp, _ = _fresh(final.parent, prefix, os.mkdir)
    try:
        yield tmp
        for f in tmp.rglob("*"):
            if f.is_file() and not f.is_symlink():
                fsync_file(f)
        if final.is_symlink():
            final.unlink()
        elif final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def file_digests(directory: str | os.PathLike[str], names: Iterable[str]) -> dict[str, str]:
    """``{name: SHA-256}`` of the files ``names`` in ``directory``."""
    return {name: sha256_file(Path(directory) / name) for name in names}


def bad_files(directory: str | os.PathLike[str], digests: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """Which files of ``digests`` (as :func:`file_digests` made them) no longer match.

    Returns:
        ``(missing, changed)``, sorted names: ``missing`` are absent or not regular
        files (a symbolic link counts as missing: it is never read through),
        ``changed`` have another SHA-256.
    """
    directory = Path(directory)
    missing, changed = [], []
    for name, digest in sorted(digests.items()):
        p = directory / name
        if p.is_symlink() or not p.is_file():
            missing.append(name)
        elif sha256_file(p) != digest:
            changed.append(name)
    return missing, changed
