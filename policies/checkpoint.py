"""Atomic training checkpoints without pickle: a directory per checkpoint, the last two kept.

Layout of a run directory::

    RUN/checkpoints/iter_000012/policy.npz, policy.json   # save_policy: `dfo evaluate` reads it
    RUN/checkpoints/iter_000012/state.npz, state.json     # trainer state (arrays + JSON tree)
    RUN/checkpoints/iter_000012/manifest.json             # SHA-256 of each file above

A checkpoint is written into a hidden temporary directory and renamed into place
(``os.replace`` of a directory is atomic on POSIX), so a crash never leaves a half
checkpoint under its final name; temporary directories left by a killed run are removed
by the next save. ``manifest.json`` (written last) lists every file of the checkpoint
with its SHA-256: a file that is missing, extra, truncated, bit-flipped or edited (the
JSON state included) is refused with a clear :class:`CheckpointError` that names the
file and the previous good checkpoint, which is never deleted before a newer one is
complete. Symbolic links are refused everywhere in a checkpoint. The manifest guards
against corruption and careless edits, not against someone who can rewrite it: nothing
in a checkpoint is executed, and where work runs (backend, scheduler) is never read
from a run directory.

Nested state (dicts, lists, tuples, ``None``, numbers, strings, numpy arrays) is encoded
as a JSON tree whose arrays are replaced by references into the npz (:data:`CODEC`, the
tagged layout of :mod:`dfo.jsontree`); files are written with :mod:`dfo.fileio`.

Example:
    >>> import numpy as np
    >>> tree, arrays = encode_tree({"a": (np.arange(2), None), "b": 3})
    >>> decode_tree(tree, arrays)["a"][0].tolist()
    [0, 1]
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from dfo.fileio import atomic_write_bytes, bad_files, file_digests, staged_dir
from dfo.jsontree import TreeCodec, TreeError, load_json

from .serialization import read_checksummed_pair, write_checksummed_pair

CHECKPOINT_DIR = "checkpoints"
PREFIX = "iter_"
KEEP = 2
MANIFEST = "manifest.json"
TMP_PREFIX = ".tmp-"
#: a manifest lists four files; anything this large is not one dfo wrote
MAX_MANIFEST_BYTES = 1024 * 1024


class CheckpointError(ValueError):
    """A checkpoint is missing, truncated or corrupt."""


#: the layout of ``state.json`` (every container tagged; see :mod:`dfo.jsontree`)
CODEC = TreeCodec(leaf_tag="__array__", is_leaf=lambda v: isinstance(v, np.ndarray), store=lambda v: v,
                  root="s", compact=False)


def encode_tree(obj: Any, arrays: dict[str, np.ndarray] | None = None) -> tuple[Any, dict]:
    """Split ``obj`` into a JSON-serializable tree and a dict of arrays."""
    arrays = {} if arrays is None else arrays
    return CODEC.encode(obj, arrays), arrays


def decode_tree(tree: Any, arrays: dict[str, np.ndarray]) -> Any:
    """Inverse of :func:`encode_tree`.

    Raises:
        CheckpointError: an unknown node or a missing array.
    """
    try:
        return CODEC.decode(tree, arrays)
    except TreeError as e:
        raise CheckpointError(str(e)) from None


def checkpoint_name(iteration: int) -> str:
    return f"{PREFIX}{int(iteration):06d}"


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Checkpoint directories of a run, oldest first."""
    root = Path(run_dir) / CHECKPOINT_DIR
    if root.is_symlink():
        raise CheckpointError(f"{root} is a symbolic link; a run directory must hold real files only")
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.name.startswith(PREFIX) and p.is_dir() and not p.is_symlink())


def write_manifest(directory: Path) -> None:
    """Write ``manifest.json``: the SHA-256 of every other file in ``directory``."""
    files = file_digests(directory, sorted(p.name for p in directory.iterdir() if p.name != MANIFEST))
    data = json.dumps({"format": 1, "files": files}, indent=1, sort_keys=True).encode()
    atomic_write_bytes(directory / MANIFEST, data)


def verify_checkpoint(directory: str | os.PathLike) -> None:
    """Check a checkpoint directory against its ``manifest.json``.

    Raises:
        CheckpointError: a symbolic link, a missing or unreadable manifest, a file that
            is missing, not listed, or whose SHA-256 differs (the message names it).
    """
    directory = Path(directory)
    if directory.is_symlink():
        raise CheckpointError(f"checkpoint {directory} is a symbolic link; refusing to read through it")
    links = sorted(p.name for p in directory.iterdir() if p.is_symlink())
    if links:
        raise CheckpointError(f"checkpoint {directory} holds symbolic links {links}; refusing to read through them")
    mpath = directory / MANIFEST
    if not mpath.is_file():
        raise CheckpointError(f"checkpoint {directory} has no {MANIFEST} (incomplete, or written by an older dfo)")
    try:
        files = load_json(mpath, what=MANIFEST, max_bytes=MAX_MANIFEST_BYTES, max_depth=2)["files"]
        if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
            raise TypeError("'files' is not a mapping of names to hashes")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"checkpoint {directory}: corrupt {MANIFEST}: {e}") from None
    outside = sorted(n for n in files if not _plain_file_name(n))
    if outside:  # R8: "../../config.json", "/etc/hostname" (a hash oracle for files outside the checkpoint)
        raise CheckpointError(f"checkpoint {directory}: {MANIFEST} lists {outside[:3]}, which are not plain file "
                              "names of the checkpoint")
    extra = sorted({p.name for p in directory.iterdir() if p.name != MANIFEST} - set(files))
    missing, changed = bad_files(directory, files)
    if missing:
        raise CheckpointError(f"checkpoint {directory} is incomplete: {missing} listed in {MANIFEST} but missing")
    if extra:
        raise CheckpointError(f"checkpoint {directory} holds files not in its {MANIFEST}: {extra}")
    if changed:
        raise CheckpointError(f"checkpoint {directory}: corrupt {changed[0]}: its SHA-256 does not match the checksum "
                              f"in {MANIFEST} (edited, truncated or bit-flipped)")


def _plain_file_name(name: str) -> bool:
    """A file name inside the checkpoint folder: no separators, not ``.``/``..``, not hidden, no NUL."""
    return (isinstance(name, str) and 0 < len(name) <= 255 and not name.startswith(".")
            and not any(c in name for c in "/\\\0"))


def write_state(directory: Path, state: dict[str, Any]) -> None:
    """Write ``state.npz`` + ``state.json`` (with the npz checksum) into ``directory``."""
    tree, arrays = encode_tree(state)
    write_checksummed_pair(directory / "state.npz", directory / "state.json", arrays, {"format": 1, "state": tree})


def read_state(directory: str | os.PathLike) -> dict[str, Any]:
    """Verify a checkpoint (:func:`verify_checkpoint`) and read ``state.npz`` + ``state.json``.

    Raises:
        CheckpointError: missing, truncated, corrupt or edited files.
    """
    directory = Path(directory)
    js, npz = directory / "state.json", directory / "state.npz"
    if not js.exists() or not npz.exists():
        raise CheckpointError(f"checkpoint {directory} is incomplete: state.json/state.npz missing")
    verify_checkpoint(directory)
    try:
        meta, arrays = read_checksummed_pair(npz, js, what="state.json")
    except ValueError as e:
        raise CheckpointError(f"checkpoint {directory}: {e}") from e
    return decode_tree(meta["state"], arrays)


def save_checkpoint(run_dir: str | os.PathLike, iteration: int, state: dict[str, Any], write_policy) -> Path:
    """Atomically write checkpoint ``iteration`` and prune all but the last :data:`KEEP`.

    Args:
        run_dir: the run directory.
        iteration: completed iterations (names the checkpoint).
        state: the trainer state (see :func:`encode_tree` for the allowed types).
        write_policy: ``write_policy(stem)`` saves the policy with ``save_policy``.

    Returns:
        The checkpoint directory.
    """
    root = Path(run_dir) / CHECKPOINT_DIR
    if root.is_symlink():
        raise CheckpointError(f"{root} is a symbolic link; refusing to write or delete through it")
    root.mkdir(parents=True, exist_ok=True)
    remove_stale_tmp(root)
    final = root / checkpoint_name(iteration)  # replaced when re-saved (e.g. Ctrl-C right after a periodic save)
    with staged_dir(final, prefix=TMP_PREFIX) as tmp:
        write_policy(tmp / "policy")
        write_state(tmp, state)
        write_manifest(tmp)
    for old in list_checkpoints(run_dir)[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def remove_stale_tmp(root: Path) -> list[str]:
    """Remove temporary checkpoint directories a killed run left in ``root``; their names."""
    gone = []
    for p in root.iterdir():
        if p.name.startswith(TMP_PREFIX):
            if p.is_symlink() or not p.is_dir():
                p.unlink()
            else:
                shutil.rmtree(p, ignore_errors=True)
            gone.append(p.name)
    return gone


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint directory from a run directory (its newest checkpoint) or a checkpoint path.

    Raises:
        CheckpointError: no checkpoint there.
    """
    p = Path(path)
    if (p / "state.json").exists() or (p / "policy.json").exists():
        return p
    if p.name in ("policy.npz", "policy.json", "policy"):
        return p.parent
    found = list_checkpoints(p)
    if not found:
        raise CheckpointError(f"no checkpoint found in {p} (expected {p}/{CHECKPOINT_DIR}/{PREFIX}NNNNNN/)")
    return found[-1]


def load_checkpoint(path: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    """Load the newest checkpoint of a run directory (or the given checkpoint directory).

    Raises:
        CheckpointError: the checkpoint is corrupt; the message names the previous good
            checkpoint, which is kept, and how to resume from it.
    """
    ckpt = resolve_checkpoint(path)
    try:
        return ckpt, read_state(ckpt)
    except CheckpointError as err:
        older = [c for c in list_checkpoints(ckpt.parent.parent) if c.name < ckpt.name]
        hint = (f"; the previous checkpoint {older[-1]} is kept: resume from it with --resume {older[-1]}"
                if older else "; no older checkpoint exists")
        raise CheckpointError(f"{err}{hint}") from None
