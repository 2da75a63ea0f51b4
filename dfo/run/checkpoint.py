"""The one checkpoint format of dfo: a folder holding a JSON tree, its arrays, and a manifest of SHA-256s.

Every job of the run harness (``dfo train``, ``dfo finetune``) writes its checkpoints with
:func:`save` and reads them with :func:`load`. A checkpoint is a folder::

    CKPT/state.json            the state as a JSON tree (:data:`CODEC`); each array is {"__array__": key}
    CKPT/arrays.npz            the numpy arrays of the state (read with ``allow_pickle=False``)
    CKPT/tensors.safetensors   the torch tensors of the state, only when it holds some
    CKPT/<files>               what the job's ``files`` hook wrote (the RL policy, a model's weights)
    CKPT/manifest.json         {"format": "dfo-checkpoint", "version": 2, "kind": "train",
                                "files": {name: SHA-256 of every other file}}

The state is a tree of dicts, lists, tuples, ``None``, numbers, strings, numpy arrays and
torch tensors. Arrays and tensors are cut out of the tree (:func:`encode`): numpy arrays go to
``arrays.npz``, torch tensors (moved to the CPU) to ``tensors.safetensors`` through
``safetensors.torch``, imported only when the state holds a tensor (torch is never imported
otherwise). A job that must write more (``save_model`` of a model with tied weights, the policy
files ``dfo evaluate`` reads) passes ``files=lambda folder: ...``: what it writes is covered by
the manifest like the rest.

Safety. A checkpoint is filled under a hidden temporary name and renamed into place
(:func:`dfo.fileio.staged_dir`), so a kill leaves the previous checkpoint or the new one,
never half of one. :func:`load` checks the manifest first: a file that is missing, not listed,
a symbolic link, or whose SHA-256 differs (truncated, bit-flipped, edited, the JSON state
included) is refused with a one-line :class:`CheckpointError` naming the file. Nothing is ever
unpickled or executed: the tree is plain JSON with a closed set of tags, ``arrays.npz`` is read
with ``allow_pickle=False`` (an object array is refused when saving), tensors only through
safetensors. The manifest guards against corruption and careless edits, not against someone
who can rewrite it.

Versions. ``version`` 2 is this layout. Version 1 is the RL trainer's layout before it
(``manifest.json`` ``{"format": 1}``, ``state.json`` + ``state.npz``); :func:`verify` checks its
hashes, :func:`load` refuses it in one line, and :mod:`dfo.policies.checkpoint` reads it so older
``dfo train`` runs resume. A newer version is refused with a line asking for a newer dfo.

A job keeps numbered checkpoints in a :class:`Series` (``RUN/checkpoints/iter_000012/``; the
last ``keep`` kept, temporary folders of a killed run removed, a corrupt newest one reported
with the previous good one named).

Example:
    >>> import tempfile, pathlib, numpy as np
    >>> d = pathlib.Path(tempfile.mkdtemp()) / "ckpt"
    >>> _ = save(d, {"step": 3, "x": np.arange(3.0), "betas": (0.9, 0.99)}, kind="demo")
    >>> sorted(p.name for p in d.iterdir())
    ['arrays.npz', 'manifest.json', 'state.json']
    >>> state = load(d, kind="demo")
    >>> state["x"].tolist(), state["betas"]
    ([0.0, 1.0, 2.0], (0.9, 0.99))

    Torch tensors in the state (needs the ``llm`` extra for ``safetensors``)::

        save(d, {"step": 3, "optimizer": opt.state_dict()}, kind="finetune",
             files=lambda folder: safetensors.torch.save_model(model, str(folder / "model.safetensors")))
        state = load(d, kind="finetune")        # tensors come back on the CPU
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import shutil
import sys
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dfo.fileio import atomic_write_bytes, bad_files, file_digests, staged_dir
from dfo.jsontree import TreeCodec, TreeError, load_json

FORMAT = "dfo-checkpoint"
VERSION = 2
#: the RL trainer's layout before :data:`VERSION` 2 (``{"format": 1}`` manifests, ``state.npz``)
LEGACY_VERSION = 1
MANIFEST = "manifest.json"
STATE = "state.json"
ARRAYS = "arrays.npz"
TENSORS = "tensors.safetensors"
#: names the format writes itself; a ``files`` hook must not write them
RESERVED = (MANIFEST, STATE, ARRAYS, TENSORS)
#: prefix of the temporary folder a checkpoint is filled in (``.tmp-XXXXXXXX`` beside it)
TMP_PREFIX = ".tmp-"
#: a manifest lists a handful of files; anything this large is not one dfo wrote
MAX_MANIFEST_BYTES = 1024 * 1024
#: the largest ``state.json`` dfo writes is a few MB (histories, optimizer trees)
MAX_STATE_BYTES = 256 * 1024 * 1024


class CheckpointError(ValueError):
    """A checkpoint that is missing, incomplete, corrupt, edited, or of another kind or version."""


def _is_tensor(value: Any) -> bool:
    torch = sys.modules.get("torch")  # a tensor exists only if torch is imported: never import it here
    return torch is not None and torch.is_tensor(value)


def _is_leaf(value: Any) -> bool:
    return isinstance(value, np.ndarray) or _is_tensor(value)


def _store(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value
    return value.detach().cpu().contiguous().clone()


#: the layout of ``state.json``: plain JSON where it can be (lists, string-keyed dicts), tuples as
#: ``{"__tuple__": [...]}``, other dicts as ``{"__dict__": [[key, value], ...]}`` (integer keys
#: survive), arrays and tensors as ``{"__array__": key}`` (see :mod:`dfo.jsontree`)
CODEC = TreeCodec(leaf_tag="__array__", is_leaf=_is_leaf, store=_store, root="s", compact=True)


def encode(state: Any) -> tuple[Any, dict[str, np.ndarray], dict[str, Any]]:
    """Split ``state`` into a JSON tree, its numpy arrays and its torch tensors.

    Raises:
        TypeError: a value that cannot be checkpointed (an object, an object array); the message names its path.
    """
    leaves: dict[str, Any] = {}
    tree = CODEC.encode(state, leaves)
    arrays = {k: v for k, v in leaves.items() if isinstance(v, np.ndarray)}
    for key, arr in arrays.items():
        if arr.dtype.hasobject:
            raise TypeError(f"cannot checkpoint an array of Python objects at {key} (it would need pickle)")
    tensors = {k: v for k, v in leaves.items() if k not in arrays}
    return tree, arrays, tensors


def decode(tree: Any, arrays: dict[str, Any], tensors: dict[str, Any] | None = None) -> Any:
    """Inverse of :func:`encode`.

    Raises:
        CheckpointError: a reference to an array that is not stored, or an unknown tag.
    """
    try:
        return CODEC.decode(tree, {**arrays, **(tensors or {})})
    except TreeError as exc:
        raise CheckpointError(str(exc)) from None


@dataclasses.dataclass(frozen=True)
class Manifest:
    """What ``manifest.json`` says.

    Attributes:
        version: :data:`VERSION`, or :data:`LEGACY_VERSION` for the RL layout before it.
        kind: the job that wrote it (``"train"``, ``"finetune"``); ``None`` in version 1.
        files: ``{name: SHA-256}`` of every other file of the checkpoint.
    """

    version: int
    kind: str | None
    files: dict[str, str]


def write_manifest(directory: str | os.PathLike, *, kind: str) -> None:
    """Write ``manifest.json``: format, version, ``kind`` and the SHA-256 of every other file of ``directory``."""
    directory = Path(directory)
    files = file_digests(directory, sorted(p.name for p in directory.iterdir() if p.name != MANIFEST))
    doc = {"format": FORMAT, "version": VERSION, "kind": kind, "files": files}
    atomic_write_bytes(directory / MANIFEST, json.dumps(doc, indent=1, sort_keys=True).encode())


def _plain_file_name(name: Any) -> bool:
    """A file name inside the checkpoint folder: no separators, not ``.``/``..``, not hidden, no NUL."""
    return (isinstance(name, str) and 0 < len(name) <= 255 and not name.startswith(".")
            and not any(c in name for c in "/\\\0"))


def _read_manifest(directory: Path) -> Manifest:
    mpath = directory / MANIFEST
    if mpath.is_symlink() or not mpath.is_file():
        raise CheckpointError(f"checkpoint {directory} has no {MANIFEST} (incomplete, or written by an older dfo)")
    try:
        doc = load_json(mpath, what=MANIFEST, max_bytes=MAX_MANIFEST_BYTES, max_depth=2)
        files = doc["files"]
        if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
            raise TypeError("'files' is not a mapping of names to hashes")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {directory}: corrupt {MANIFEST}: {exc}") from None
    if doc.get("format") == LEGACY_VERSION:
        return Manifest(version=LEGACY_VERSION, kind=None, files=files)
    version, kind = doc.get("version"), doc.get("kind")
    if doc.get("format") != FORMAT or type(version) is not int or not isinstance(kind, str):
        raise CheckpointError(f"checkpoint {directory}: {MANIFEST} is not a dfo checkpoint manifest "
                              f"(format {doc.get('format')!r}, version {version!r}, kind {kind!r})")
    if version > VERSION:
        raise CheckpointError(f"checkpoint {directory} has format version {version}, newer than the {VERSION} "
                              "this dfo reads: upgrade dfo to resume it")
    if version < VERSION:
        raise CheckpointError(f"checkpoint {directory} has format version {version}, which this dfo no longer "
                              "reads: resume it with the dfo that wrote it, or start a new run")
    return Manifest(version=version, kind=kind, files=files)


def verify(directory: str | os.PathLike) -> Manifest:
    """Check a checkpoint folder against its ``manifest.json`` (any version this dfo reads).

    Returns:
        The manifest.

    Raises:
        CheckpointError: a symbolic link, a missing or unreadable manifest, a name outside the
            folder, a file that is missing, not listed, or whose SHA-256 differs (the message names it).
    """
    directory = Path(directory)
    if directory.is_symlink():
        raise CheckpointError(f"checkpoint {directory} is a symbolic link; refusing to read through it")
    if not directory.is_dir():
        raise CheckpointError(f"checkpoint {directory} is not a folder")
    links = sorted(p.name for p in directory.iterdir() if p.is_symlink())
    if links:
        raise CheckpointError(f"checkpoint {directory} holds symbolic links {links}; refusing to read through them")
    manifest = _read_manifest(directory)
    outside = sorted(n for n in manifest.files if not _plain_file_name(n))
    if outside:  # "../../config.json", "/etc/hostname": a hash oracle for files outside the checkpoint
        raise CheckpointError(f"checkpoint {directory}: {MANIFEST} lists {outside[:3]}, which are not plain file "
                              "names of the checkpoint")
    extra = sorted({p.name for p in directory.iterdir() if p.name != MANIFEST} - set(manifest.files))
    missing, changed = bad_files(directory, manifest.files)
    if missing:
        raise CheckpointError(f"checkpoint {directory} is incomplete: {missing} listed in {MANIFEST} but missing")
    if extra:
        raise CheckpointError(f"checkpoint {directory} holds files not in its {MANIFEST}: {extra}")
    if changed:
        raise CheckpointError(f"checkpoint {directory}: corrupt {', '.join(changed)}: SHA-256 does not match the "
                              f"checksum in {MANIFEST} (edited, truncated or bit-flipped)")
    return manifest


def save(directory: str | os.PathLike, state: Any, *, kind: str,
         files: Callable[[Path], None] | None = None) -> Path:
    """Write ``state`` as the checkpoint folder ``directory`` (replaced whole if it exists).

    Args:
        directory: the checkpoint folder; its parent must exist.
        state: a tree of dicts, lists, tuples, ``None``, numbers, strings, numpy arrays and torch tensors.
        kind: the job writing it (``"train"``, ``"finetune"``); :func:`load` checks it.
        files: ``files(folder)`` writes more files into the folder being filled (not the names of
            :data:`RESERVED`); the manifest covers them.

    Returns:
        ``directory``.

    Raises:
        TypeError: a value of ``state`` that cannot be checkpointed.
        ValueError: ``files`` wrote a reserved name.
    """
    directory = Path(directory)
    tree, arrays, tensors = encode(state)
    with staged_dir(directory, prefix=TMP_PREFIX) as tmp:
        if files is not None:
            files(tmp)
            clash = sorted(n for n in RESERVED if (tmp / n).exists())
            if clash:
                raise ValueError(f"a checkpoint's extra files must not be named {clash}: the format writes them")
        atomic_write_bytes(tmp / STATE, json.dumps(tree, indent=1).encode())
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(tmp / ARRAYS, buf.getvalue())
        if tensors:
            from safetensors.torch import save_file

            save_file(tensors, str(tmp / TENSORS))
            os.chmod(tmp / TENSORS, tmp.stat().st_mode & 0o666)  # safetensors writes 0600; follow the umask
        write_manifest(tmp, kind=kind)
    return directory


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise CheckpointError(f"checkpoint file {path} cannot be read ({type(exc).__name__}: {exc})") from None


def _read_tensors(path: Path) -> dict[str, Any]:
    try:
        from safetensors.torch import load_file

        return load_file(str(path))
    except ImportError as exc:
        raise CheckpointError(f"checkpoint file {path} holds torch tensors: reading it needs torch and "
                              f"safetensors (pip install 'dfo[llm]'): {exc}") from None
    except Exception as exc:  # SafetensorError (bad header), RuntimeError, OSError, ...
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise CheckpointError(f"checkpoint file {path} cannot be read ({type(exc).__name__}: {first})") from None


def load(directory: str | os.PathLike, *, kind: str) -> Any:
    """Verify a checkpoint folder (:func:`verify`) and return its state.

    Raises:
        CheckpointError: anything :func:`verify` refuses, a checkpoint of another ``kind`` or version,
            or a file that does not parse; one line naming the file.
    """
    directory = Path(directory)
    manifest = verify(directory)
    if manifest.version == LEGACY_VERSION:
        raise CheckpointError(f"checkpoint {directory} is in the version-1 layout of an older dfo (state.npz), "
                              f"which only `dfo train` reads; this needs a {kind!r} checkpoint")
    if manifest.kind != kind:
        raise CheckpointError(f"checkpoint {directory} is a {manifest.kind!r} checkpoint, not a {kind!r} one")
    missing = sorted({STATE, ARRAYS} - set(manifest.files))
    if missing:
        raise CheckpointError(f"checkpoint {directory} is incomplete: {missing} missing")
    try:
        tree = load_json(directory / STATE, what=f"{STATE}", max_bytes=MAX_STATE_BYTES)
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {directory}: corrupt {exc}") from None
    arrays = _read_arrays(directory / ARRAYS)
    tensors = _read_tensors(directory / TENSORS) if TENSORS in manifest.files else {}
    return decode(tree, arrays, tensors)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Series:
    """Numbered checkpoints of one run in one folder (``root/<prefix><number>/``), the newest ``keep`` kept.

    Attributes:
        root: the folder holding the checkpoints (created on the first save).
        prefix: the name of each checkpoint before its number (``"iter_"``).
        width: digits of the number (zero-padded, so names sort like numbers).
        keep: how many checkpoints to keep (older ones are removed after a save).
        resume_hint: how to resume from an older checkpoint, ``{path}`` replaced by it; added to the
            error about a corrupt newest one.

    Example:
        >>> import tempfile, pathlib
        >>> s = Series(root=pathlib.Path(tempfile.mkdtemp()), prefix="iter_")
        >>> _ = [s.save(i, {"i": i}, kind="demo") for i in (1, 2, 3)]
        >>> [p.name for p in s.folders()], s.load_newest(kind="demo")[1]
        (['iter_000002', 'iter_000003'], {'i': 3})
    """

    root: Path
    prefix: str
    width: int = 6
    keep: int = 2
    resume_hint: str = "resume from it"

    def name(self, number: int) -> str:
        """The folder name of checkpoint ``number``."""
        return f"{self.prefix}{int(number):0{self.width}d}"

    def _check_root(self) -> None:
        if self.root.is_symlink():
            raise CheckpointError(f"{self.root} is a symbolic link; a run folder must hold real files only")

    def folders(self) -> list[Path]:
        """The checkpoint folders, oldest first (links and files of the same name are left out)."""
        self._check_root()
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir()
                      if p.name.startswith(self.prefix) and p.is_dir() and not p.is_symlink())

    def remove_stale(self) -> list[str]:
        """Remove the temporary folders a killed save left in ``root``; their names."""
        gone = []
        for p in self.root.iterdir():
            if p.name.startswith(TMP_PREFIX):
                if p.is_symlink() or not p.is_dir():
                    p.unlink()
                else:
                    shutil.rmtree(p, ignore_errors=True)
                gone.append(p.name)
        return gone

    def save(self, number: int, state: Any, *, kind: str, files: Callable[[Path], None] | None = None) -> Path:
        """:func:`save` checkpoint ``number`` (replacing one of that number), then remove all but the last ``keep``."""
        self._check_root()
        self.root.mkdir(parents=True, exist_ok=True)
        self.remove_stale()
        final = save(self.root / self.name(number), state, kind=kind, files=files)
        for old in self.folders()[:-self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def newest(self) -> Path:
        """The newest checkpoint folder.

        Raises:
            CheckpointError: there is none.
        """
        found = self.folders()
        if not found:
            raise CheckpointError(f"no checkpoint found in {self.root.parent} "
                                  f"(expected {self.root}/{self.name(0).replace('0', 'N')}/)")
        return found[-1]

    def with_previous(self, ckpt: Path, err: CheckpointError) -> CheckpointError:
        """``err`` about ``ckpt``, with the previous good checkpoint (kept) and how to resume from it named."""
        older = [c for c in self.folders() if c.name < ckpt.name]
        hint = (f"; the previous checkpoint {older[-1]} is kept: {self.resume_hint.format(path=older[-1])}"
                if older else "; no older checkpoint exists")
        return CheckpointError(f"{err}{hint}")

    def load_newest(self, *, kind: str) -> tuple[Path, Any]:
        """The newest checkpoint and its state (:func:`load`).

        Raises:
            CheckpointError: none, or the newest is corrupt (the message names the previous one).
        """
        ckpt = self.newest()
        try:
            return ckpt, load(ckpt, kind=kind)
        except CheckpointError as err:
            raise self.with_previous(ckpt, err) from None
