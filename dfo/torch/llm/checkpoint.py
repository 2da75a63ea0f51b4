"""Fine-tuning checkpoints that load without unpickling: safetensors for tensors, checksummed JSON for the rest.

A run folder holds ``checkpoint.json`` and the folder it names (``ckpt-<step>/``
with ``model.safetensors`` and ``state.safetensors``). ``checkpoint.json`` carries
the step, the run's settings and history, the optimizer state as a JSON tree
whose tensors are references into ``state.safetensors``, the SHA-256 of both
tensor files, and the SHA-256 of its own body. Loading checks every hash, so a
flipped bit or a swapped file is reported, never silently resumed; no byte of a
checkpoint is ever executed (no pickle, no ``torch.load``).

Writing is crash-safe: the new ``ckpt-<step>/`` is written under a temporary
name and renamed, then ``checkpoint.json`` is replaced atomically, then older
``ckpt-*`` folders are removed. A kill at any point leaves the previous
checkpoint (or the new one) whole.

The JSON tree (:data:`CODEC`, the compact layout of :mod:`dfo.jsontree`) encodes
tensors as ``{"__tensor__": key}``, tuples as ``{"__tuple__": [...]}`` and dicts
whose keys are not plain strings as ``{"__dict__": [[key, value], ...]}``;
everything else is JSON (NaN/inf floats included). Files are written with
:mod:`dfo.fileio`.

Example:
    >>> tensors = {}
    >>> tree = encode({"step": 3, "m": torch.zeros(2), "betas": (0.9, 0.99)}, tensors)   # doctest: +SKIP
    >>> decode(tree, tensors)["betas"]                                                 # doctest: +SKIP
    (0.9, 0.99)
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

from dfo.fileio import TMP_MARK, atomic_write_bytes, bad_files, file_digests, staged_dir
from dfo.jsontree import TreeCodec, TreeError

FORMAT = "dfo-finetune-checkpoint/1"
POINTER = "checkpoint.json"
#: the files of a ``ckpt-<step>/`` folder, each with its SHA-256 in the pointer
TENSOR_FILES = ("model.safetensors", "state.safetensors")


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, tampered with or of another format."""


def _is_tensor(v: Any) -> bool:
    import torch

    return torch.is_tensor(v)


def _cpu_copy(t: Any) -> Any:
    return t.detach().cpu().contiguous().clone()


#: the layout of the state tree (compact JSON, see :mod:`dfo.jsontree`)
CODEC = TreeCodec(leaf_tag="__tensor__", is_leaf=_is_tensor, store=_cpu_copy, root="t", compact=True)


def encode(obj: Any, tensors: dict[str, Any]) -> Any:
    """JSON tree of ``obj``; its tensors go to ``tensors`` under unique keys."""
    return CODEC.encode(obj, tensors)


def decode(tree: Any, tensors: dict[str, Any]) -> Any:
    """Inverse of :func:`encode`.

    Raises:
        CheckpointError: a reference to a missing tensor or an unknown tag.
    """
    try:
        return CODEC.decode(tree, tensors)
    except TreeError as exc:
        raise CheckpointError(f"checkpoint: {exc}") from None


def _body_hash(body: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def save(run_dir: Path, *, step: int, model: Any, state: Any, meta: dict[str, Any]) -> Path:
    """Write the checkpoint of ``step``: model weights, ``state`` (any encodable tree) and ``meta`` (JSON).

    Returns:
        The path of ``checkpoint.json``.
    """
    from safetensors.torch import save_file, save_model

    run_dir.mkdir(parents=True, exist_ok=True)
    name = f"ckpt-{step:08d}"
    tensors: dict[str, Any] = {}
    tree = encode(state, tensors)
    # a ckpt-<step>/ already there was left by an earlier run that died before updating the pointer: replaced
    with staged_dir(run_dir / name, prefix=f"{name}{TMP_MARK}") as tmp:
        save_model(model, str(tmp / "model.safetensors"))
        save_file(tensors, str(tmp / "state.safetensors"))
        hashes = file_digests(tmp, TENSOR_FILES)
    body = {"format": FORMAT, "step": step, "folder": name, "sha256": hashes, "state": tree, "meta": meta}
    pointer = run_dir / POINTER
    atomic_write_bytes(pointer, json.dumps({"body": body, "sha256": _body_hash(body)}).encode())
    clean(run_dir, keep=name)
    return pointer


def clean(run_dir: Path, *, keep: str | None) -> None:
    """Remove ``ckpt-*`` folders other than ``keep`` and leftovers of killed writes."""
    for p in run_dir.glob("ckpt-*"):
        if p.name != keep and p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
    for p in run_dir.glob(f"{POINTER}{TMP_MARK}*"):
        if p.is_file() and not p.is_symlink():
            p.unlink()


def load(run_dir: Path, model: Any) -> tuple[int, Any, dict[str, Any]]:
    """Verify and read the checkpoint of ``run_dir`` into ``model``.

    Returns:
        ``(step, state, meta)``.

    Raises:
        CheckpointError: missing file, bad hash, other format, or weights that do not fit ``model``.
    """
    from safetensors.torch import load_file, load_model

    pointer = run_dir / POINTER
    if not pointer.is_file():
        raise CheckpointError(f"no checkpoint in {run_dir} ({POINTER} missing)")
    try:
        doc = json.loads(pointer.read_text())
        body = doc["body"]
        ok = doc["sha256"] == _body_hash(body)
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{pointer} is not a readable checkpoint ({exc})") from None
    if not ok:
        raise CheckpointError(f"{pointer} fails its checksum (edited or corrupt)")
    if body.get("format") != FORMAT:
        raise CheckpointError(f"{pointer} has format {body.get('format')!r}, expected {FORMAT!r}")
    folder = run_dir / body["folder"]
    if "/" in body["folder"] or not body["folder"].startswith("ckpt-") or folder.is_symlink():
        raise CheckpointError(f"{pointer} names an invalid folder {body['folder']!r}")
    unexpected = sorted(set(body["sha256"]) - set(TENSOR_FILES))
    if unexpected:
        raise CheckpointError(f"{pointer} lists an unexpected file {unexpected[0]!r}")
    missing, changed = bad_files(folder, body["sha256"])
    if missing:
        raise CheckpointError(f"checkpoint file {folder / missing[0]} is missing")
    if changed:
        raise CheckpointError(f"checkpoint file {folder / changed[0]} fails its checksum (edited or corrupt)")
    try:
        missing, unexpected = load_model(model, str(folder / "model.safetensors"), strict=False)
    except (RuntimeError, ValueError) as exc:
        raise CheckpointError(f"the checkpoint's weights do not fit this model: {str(exc).splitlines()[0]}") from None
    if missing or unexpected:
        raise CheckpointError(f"the checkpoint's weights do not fit this model (missing {sorted(missing)[:3]}, "
                              f"unexpected {sorted(unexpected)[:3]})")
    state = decode(body["state"], load_file(str(folder / "state.safetensors")))
    clean(run_dir, keep=body["folder"])
    return int(body["step"]), state, body["meta"]
