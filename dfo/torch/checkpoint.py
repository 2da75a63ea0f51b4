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

The JSON tree encodes tensors as ``{"__tensor__": key}``, tuples as
``{"__tuple__": [...]}`` and dicts whose keys are not plain strings as
``{"__dict__": [[key, value], ...]}``; everything else is JSON (NaN/inf floats
included).

Example:
    >>> tensors = {}
    >>> tree = encode({"step": 3, "m": torch.zeros(2), "betas": (0.9, 0.99)}, tensors)   # doctest: +SKIP
    >>> decode(tree, tensors)["betas"]                                                 # doctest: +SKIP
    (0.9, 0.99)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from dfo.fileio import atomic_write_bytes, sha256_file

FORMAT = "dfo-finetune-checkpoint/1"
POINTER = "checkpoint.json"


class CheckpointError(ValueError):
    """A checkpoint that is missing, corrupt, tampered with or of another format."""


def encode(obj: Any, tensors: dict[str, Any], path: str = "t") -> Any:
    """JSON tree of ``obj``; its tensors go to ``tensors`` under unique keys."""
    import numpy as np
    import torch

    if torch.is_tensor(obj):
        key = f"{path}#{len(tensors)}"
        tensors[key] = obj.detach().cpu().contiguous().clone()
        return {"__tensor__": key}
    if isinstance(obj, (bool, str)) or obj is None:
        return obj
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        return float(obj)
    if isinstance(obj, tuple):
        return {"__tuple__": [encode(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [encode(v, tensors, f"{path}.{i}") for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: encode(v, tensors, f"{path}.{k}") for k, v in obj.items()}
        return {"__dict__": [[encode(k, tensors, path), encode(v, tensors, f"{path}.{i}")]
                             for i, (k, v) in enumerate(obj.items())]}
    raise TypeError(f"cannot store a {type(obj).__name__} in a checkpoint (at {path})")


def decode(tree: Any, tensors: dict[str, Any]) -> Any:
    """Inverse of :func:`encode`.

    Raises:
        CheckpointError: a reference to a missing tensor or an unknown tag.
    """
    if isinstance(tree, list):
        return [decode(v, tensors) for v in tree]
    if isinstance(tree, dict):
        if len(tree) == 1:
            (tag, val), = tree.items()
            if tag == "__tensor__":
                if val not in tensors:
                    raise CheckpointError(f"checkpoint refers to a tensor {val!r} that is not stored")
                return tensors[val]
            if tag == "__tuple__":
                return tuple(decode(v, tensors) for v in val)
            if tag == "__dict__":
                return {_hashable(decode(k, tensors)): decode(v, tensors) for k, v in val}
        if any(k.startswith("__") for k in tree):
            raise CheckpointError(f"unknown entry in checkpoint: {sorted(tree)[:3]}")
        return {k: decode(v, tensors) for k, v in tree.items()}
    return tree


def _hashable(key: Any) -> Any:
    if isinstance(key, list):
        raise CheckpointError("checkpoint has a list as a dict key")
    return key


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
    final = run_dir / name
    tmp = run_dir / f"{name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    tensors: dict[str, Any] = {}
    tree = encode(state, tensors)
    save_model(model, str(tmp / "model.safetensors"))
    save_file(tensors, str(tmp / "state.safetensors"))
    hashes = {f: sha256_file(tmp / f) for f in ("model.safetensors", "state.safetensors")}
    for f in hashes:
        with open(tmp / f, "rb") as fh:
            os.fsync(fh.fileno())
    if final.exists():  # left by an earlier run that died before updating the pointer
        shutil.rmtree(final)
    os.replace(tmp, final)
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
    for p in run_dir.glob(f"{POINTER}.tmp-*"):
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
    for f, digest in body["sha256"].items():
        if f not in ("model.safetensors", "state.safetensors"):
            raise CheckpointError(f"{pointer} lists an unexpected file {f!r}")
        p = folder / f
        if not p.is_file() or p.is_symlink():
            raise CheckpointError(f"checkpoint file {p} is missing")
        if sha256_file(p) != digest:
            raise CheckpointError(f"checkpoint file {p} fails its checksum (edited or corrupt)")
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
