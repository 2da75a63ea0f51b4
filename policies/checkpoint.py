"""The RL trainer's checkpoints: numbered folders of the one dfo checkpoint format, plus the policy files.

Layout of a run folder::

    RUN/checkpoints/iter_000012/policy.npz, policy.json   # save_policy: what `dfo evaluate` reads
    RUN/checkpoints/iter_000012/state.json, arrays.npz    # the trainer state (dfo.run.checkpoint)
    RUN/checkpoints/iter_000012/manifest.json             # kind "train", SHA-256 of each file above

The format, its checks and its one :class:`CheckpointError` live in :mod:`dfo.run.checkpoint`;
this module names the folders (:data:`SERIES`: ``iter_<6 digits>``, the last :data:`KEEP` kept),
adds the policy files, and reads checkpoints of the version-1 layout that ``dfo train`` wrote
before (``state.json`` with a ``{"format": 1, "state": ...}`` tree of tagged containers, and
``state.npz``), so those runs resume: their hashes are checked the same way.

Example:
    >>> import tempfile
    >>> run = tempfile.mkdtemp()
    >>> _ = save_checkpoint(run, 3, {"iteration": 3}, write_policy=lambda stem: None)
    >>> ckpt, state = load_checkpoint(run)
    >>> ckpt.name, state
    ('iter_000003', {'iteration': 3})
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dfo.jsontree import TreeCodec, TreeError
from dfo.policies.serialization import read_checksummed_pair
from dfo.run.checkpoint import (
    LEGACY_VERSION,
    MANIFEST,
    CheckpointError,
    Series,
    load,
    verify,
)

__all__ = ["CHECKPOINT_DIR", "KIND", "MANIFEST", "CheckpointError", "list_checkpoints", "load_checkpoint",
           "resolve_checkpoint", "save_checkpoint", "series", "verify_checkpoint"]

CHECKPOINT_DIR = "checkpoints"
PREFIX = "iter_"
KEEP = 2
#: the ``kind`` of a training checkpoint's manifest
KIND = "train"

#: the tree layout of version-1 checkpoints (every container tagged; see :mod:`dfo.jsontree`)
LEGACY_CODEC = TreeCodec(leaf_tag="__array__", is_leaf=lambda v: isinstance(v, np.ndarray), store=lambda v: v,
                         root="s", compact=False)


def series(run_dir: str | os.PathLike) -> Series:
    """The checkpoints of a run folder (``RUN/checkpoints/iter_NNNNNN/``)."""
    return Series(root=Path(run_dir) / CHECKPOINT_DIR, prefix=PREFIX, keep=KEEP,
                  resume_hint="resume from it with --resume {path}")


def list_checkpoints(run_dir: str | os.PathLike) -> list[Path]:
    """Checkpoint folders of a run, oldest first."""
    return series(run_dir).folders()


def verify_checkpoint(directory: str | os.PathLike) -> None:
    """Check a checkpoint folder against its manifest (either version); see :func:`dfo.run.checkpoint.verify`."""
    verify(directory)


def save_checkpoint(run_dir: str | os.PathLike, iteration: int, state: dict[str, Any],
                    write_policy: Callable[[Path], Any]) -> Path:
    """Write checkpoint ``iteration`` crash-safely and prune all but the last :data:`KEEP`.

    Args:
        run_dir: the run folder.
        iteration: completed iterations (names the checkpoint).
        state: the trainer state (a tree of :func:`dfo.run.checkpoint.encode`).
        write_policy: ``write_policy(stem)`` saves the policy with ``save_policy``.

    Returns:
        The checkpoint folder.
    """
    return series(run_dir).save(iteration, state, kind=KIND, files=lambda folder: write_policy(folder / "policy"))


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A checkpoint folder from a run folder (its newest checkpoint) or a checkpoint path.

    Raises:
        CheckpointError: no checkpoint there.
    """
    p = Path(path)
    if (p / "state.json").exists() or (p / "policy.json").exists():
        return p
    if p.name in ("policy.npz", "policy.json", "policy"):
        return p.parent
    return series(p).newest()


def _read_legacy(directory: Path) -> dict[str, Any]:
    """The state of a version-1 checkpoint (already verified): ``state.json`` + ``state.npz``."""
    js, npz = directory / "state.json", directory / "state.npz"
    if not js.is_file() or not npz.is_file():
        raise CheckpointError(f"checkpoint {directory} is incomplete: state.json/state.npz missing")
    try:
        meta, arrays = read_checksummed_pair(npz, js, what="state.json")
        return LEGACY_CODEC.decode(meta["state"], arrays)
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {directory}: {exc}") from None


def read_state(directory: str | os.PathLike) -> dict[str, Any]:
    """Verify a training checkpoint and read its state (either version).

    Raises:
        CheckpointError: missing, truncated, corrupt or edited files; another kind of checkpoint.
    """
    directory = Path(directory)
    if verify(directory).version == LEGACY_VERSION:
        return _read_legacy(directory)
    state = load(directory, kind=KIND)
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {directory}: the state is not a mapping")
    return state


def load_checkpoint(path: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    """Load the newest checkpoint of a run folder (or the given checkpoint folder).

    Raises:
        CheckpointError: the checkpoint is corrupt; the message names the previous good
            checkpoint, which is kept, and how to resume from it.
    """
    ckpt = resolve_checkpoint(path)
    try:
        return ckpt, read_state(ckpt)
    except (CheckpointError, TreeError) as err:
        raise series(ckpt.parent.parent).with_previous(ckpt, CheckpointError(str(err))) from None
