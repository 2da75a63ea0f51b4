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
import os
import shutil
from pathlib import Path
from typing import Any

from dfo.fileio import TMP_MARK, atomic_write_bytes, bad_files, file_digests, staged_dir
from dfo.jsontree import TreeCodec, TreeError, load_json
from dfo.run.checkpoint import CheckpointError  # the one checkpoint error of dfo

FORMAT = "dfo-finetune-checkpoint/1"
POINTER = "checkpoint.json"
#: the files of a ``ckpt-<step>/`` folder, each with its SHA-256 in the pointer
TENSOR_FILES = ("model.safetensors", "state.safetensors")


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
        for f in TENSOR_FILES:  # safetensors writes 0600; a checkpoint's files follow the umask like the rest
            _umask_mode(tmp / f)
        hashes = file_digests(tmp, TENSOR_FILES)
    body = {"format": FORMAT, "step": step, "folder": name, "sha256": hashes, "state": tree, "meta": meta}
    pointer = run_dir / POINTER
    atomic_write_bytes(pointer, json.dumps({"body": body, "sha256": _body_hash(body)}).encode())
    clean(run_dir, keep=name)
    return pointer


def _umask_mode(path: Path) -> None:
    """Give ``path`` the mode a new file gets under the umask (read off its folder, made with ``os.mkdir``)."""
    os.chmod(path, path.parent.stat().st_mode & 0o666)


def clean(run_dir: Path, *, keep: str | None) -> None:
    """Remove ``ckpt-*`` folders other than ``keep`` and leftovers of killed writes."""
    for p in run_dir.glob("ckpt-*"):
        if p.name != keep and p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
    for p in run_dir.glob(f"{POINTER}{TMP_MARK}*"):
        if p.is_file() and not p.is_symlink():
            p.unlink()


#: settings that a checkpoint's optimizer state repeats, checked against the run's settings on load
#: (``param_groups`` entries for every method; the ``zo`` config for the zeroth-order ones, the run's ``zo``)
CHECKED_GROUP_SETTINGS = ("lr", "weight_decay")
CHECKED_ZO_SETTINGS = ("method", "eps", "rank", "refresh", "momentum", "n_directions")
#: largest ``checkpoint.json`` dfo writes is a few MB (history + optimizer tree); more is not a checkpoint
MAX_POINTER_BYTES = 256 * 1024 * 1024


def _check_body(pointer: Path, body: Any) -> None:
    """Refuse a checkpoint body whose fields are not of the written types (a crafted or foreign file)."""
    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"{pointer} is not a checkpoint dfo wrote ({what})")

    if not isinstance(body, dict):
        raise bad("its body is not an object")
    missing = sorted({"format", "step", "folder", "sha256", "state", "meta"} - set(body))
    if missing:
        raise bad(f"missing {missing}")
    if type(body["step"]) is not int or body["step"] < 0:
        raise bad("step is not an integer >= 0")
    if not isinstance(body["folder"], str):
        raise bad("folder is not a name")
    if not isinstance(body["sha256"], dict) or not all(isinstance(v, str) for v in body["sha256"].values()):
        raise bad("sha256 is not a table of hashes")
    meta = body["meta"]
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict) \
            or not isinstance(meta.get("template"), str) or "template_selection" not in meta \
            or not isinstance(meta.get("train_seconds"), (int, float)):
        raise bad("meta lacks config, template, template_selection or train_seconds")


def check_settings(state: Any, meta: dict[str, Any], where: str) -> None:
    """The settings a checkpoint repeats must agree with the run's settings recorded beside them.

    The run's settings (``meta["config"]``) are compared with the command line on resume; the values
    the optimizer will actually use come from the state. An edit of one without the other (FT3: an lr
    of 1e3 in ``param_groups`` while the settings say 2e-5) would train with a value results.json does
    not report, so it is refused. The template a run uses must be its configured one (or, for
    ``template="auto"``, one that the recorded selection scored).

    Raises:
        CheckpointError: a mismatch, naming the setting and both values.
    """
    cfg = meta["config"]
    history = state.get("history") if isinstance(state, dict) else None
    if not (isinstance(history, dict) and isinstance(history.get("loss"), list) and isinstance(history.get("dev"), list)):
        raise CheckpointError(f"{where}: the state has no loss/dev history")
    opt = state.get("optimizer")
    if not isinstance(opt, dict) or not isinstance(opt.get("param_groups"), list):
        raise CheckpointError(f"{where}: the optimizer state has no param_groups")
    seen: list[tuple[str, Any, Any]] = []
    for i, group in enumerate(opt["param_groups"]):
        if not isinstance(group, dict):
            raise CheckpointError(f"{where}: param group {i} is not an object")
        seen += [(f"param group {i} {k}", group.get(k), cfg.get(k)) for k in CHECKED_GROUP_SETTINGS]
    zo = opt.get("zo")
    zo_cfg = cfg.get("zo") if isinstance(cfg.get("zo"), dict) else cfg  # before zo was nested: flat in the config
    if isinstance(zo, dict) and isinstance(zo.get("config"), dict):
        seen += [(f"zo {k}", zo["config"].get(k), zo_cfg.get(k)) for k in CHECKED_ZO_SETTINGS
                 if zo_cfg.get(k) is not None]
    for name, used, recorded in seen:
        if used != recorded:
            raise CheckpointError(f"{where}: the optimizer state says {name}={used!r} but the run's settings say "
                                  f"{recorded!r} (edited or from another run); a checkpoint must not change the "
                                  "settings it was made with")
    template, configured = meta["template"], cfg.get("template")
    selection = meta.get("template_selection")
    if configured != "auto" and template != configured:
        raise CheckpointError(f"{where}: the checkpoint uses template {template!r} but the run's settings say "
                              f"{configured!r} (edited or from another run)")
    if configured == "auto" and not (isinstance(selection, dict) and template in selection):
        raise CheckpointError(f"{where}: template {template!r} is not one the run's template selection scored")


def _load_tensors(what: Path, read: Any) -> Any:
    """``read()`` a safetensors file; any failure to parse it is a CheckpointError naming it."""
    try:
        return read()
    except CheckpointError:
        raise
    except Exception as exc:  # SafetensorError (bad header), RuntimeError, OSError, ...
        raise CheckpointError(f"checkpoint file {what} cannot be read ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from None


def _check_rng(state: Any, where: str) -> None:
    """A generator state in the optimizer state must be one ``torch.Generator`` accepts (FT12)."""
    import torch

    zo = state.get("optimizer", {}).get("zo") if isinstance(state, dict) else None
    rng = zo.get("rng") if isinstance(zo, dict) else None
    if rng is None:
        return
    try:
        torch.Generator().set_state(rng)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{where}: the optimizer's generator state is damaged "
                              f"({str(exc).splitlines()[0]})") from None


def load(run_dir: Path, model: Any) -> tuple[int, Any, dict[str, Any]]:
    """Verify and read the checkpoint of ``run_dir`` into ``model``.

    Returns:
        ``(step, state, meta)``.

    Raises:
        CheckpointError: missing file, bad hash, other format, or weights that do not fit ``model``.
    """
    from safetensors.torch import load_file, load_model

    pointer = run_dir / POINTER
    if pointer.is_symlink() or not pointer.is_file():
        raise CheckpointError(f"no checkpoint in {run_dir} ({POINTER} missing)")
    try:
        doc = load_json(pointer, what=str(pointer), max_bytes=MAX_POINTER_BYTES)
        body = doc["body"]
        ok = doc["sha256"] == _body_hash(body)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{pointer} is not a readable checkpoint ({exc})") from None
    if not ok:
        raise CheckpointError(f"{pointer} fails its checksum (edited or corrupt)")
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        fmt = body.get("format") if isinstance(body, dict) else None
        raise CheckpointError(f"{pointer} has format {fmt!r}, expected {FORMAT!r}")
    _check_body(pointer, body)
    folder = run_dir / body["folder"]
    if not _is_ckpt_name(body["folder"]) or folder.is_symlink():
        raise CheckpointError(f"{pointer} names an invalid folder {body['folder']!r}")
    unexpected = sorted(set(body["sha256"]) - set(TENSOR_FILES))
    if unexpected:
        raise CheckpointError(f"{pointer} lists an unexpected file {unexpected[0]!r}")
    missing, changed = bad_files(folder, body["sha256"])
    if missing:
        raise CheckpointError(f"checkpoint file {folder / missing[0]} is missing")
    if changed:
        raise CheckpointError(f"checkpoint file {folder / changed[0]} fails its checksum (edited or corrupt)")
    tensors = _load_tensors(folder / "state.safetensors", lambda: load_file(str(folder / "state.safetensors")))
    state = decode(body["state"], tensors)
    check_settings(state, body["meta"], str(pointer))
    _check_rng(state, str(pointer))
    try:
        missing, unexpected = load_model(model, str(folder / "model.safetensors"), strict=False)
    except (RuntimeError, ValueError) as exc:
        raise CheckpointError(f"the checkpoint's weights do not fit this model: {str(exc).splitlines()[0]}") from None
    except Exception as exc:  # SafetensorError: a header that does not parse
        raise CheckpointError(f"checkpoint file {folder / 'model.safetensors'} cannot be read "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    if missing or unexpected:
        raise CheckpointError(f"the checkpoint's weights do not fit this model (missing {sorted(missing)[:3]}, "
                              f"unexpected {sorted(unexpected)[:3]})")
    clean(run_dir, keep=body["folder"])
    return body["step"], state, body["meta"]


def _is_ckpt_name(name: str) -> bool:
    """``ckpt-<8 digits>``: the only folder names :func:`save` writes (no ``/``, no ``..``)."""
    return len(name) == 13 and name.startswith("ckpt-") and name[5:].isdigit()
