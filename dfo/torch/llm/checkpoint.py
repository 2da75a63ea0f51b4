"""Fine-tuning checkpoints: numbered folders of the one dfo checkpoint format, plus the model's weights.

Layout of a run folder::

    RUN/checkpoints/step_00000050/state.json            step, optimizer tree, history, meta (dfo.run.checkpoint)
    RUN/checkpoints/step_00000050/arrays.npz            numpy arrays of the state (none today; written anyway)
    RUN/checkpoints/step_00000050/tensors.safetensors   the optimizer's tensors (generator state, factors, momentum)
    RUN/checkpoints/step_00000050/model.safetensors     the model's weights (``safetensors.torch.save_model``)
    RUN/checkpoints/step_00000050/manifest.json         kind "finetune", the SHA-256 of each file above

The format, its crash-safe writes, its hash checks and its one :class:`CheckpointError` live in
:mod:`dfo.run.checkpoint`: a flipped bit, an edited ``state.json``, a swapped or missing file is
refused with its name, nothing is unpickled (no ``torch.load``), and a kill at any point of a save
leaves the previous checkpoint whole. This module names the folders (:func:`series`:
``step_<8 digits>``, the last :data:`KEEP` kept, as ``dfo train`` keeps its ``iter_`` folders),
writes the model's weights beside the state, and makes the checks that are fine-tuning's own on
load: the state's fields and types, the settings the optimizer state repeats against the run's
recorded settings (:func:`check_settings`), the generator state, and weights that fit the model.

Runs written by an older dfo (``checkpoint.json`` + ``ckpt-<step>/``, format
``dfo-finetune-checkpoint/1``) are not resumed: :func:`refuse_legacy` says so in one line and how to
start the run again.

Example:
    >>> save(run, step=5, model=model, state=job.state_dict())      # doctest: +SKIP
    >>> path, state = load(run, model)                              # doctest: +SKIP
    >>> path.name, state["step"]                                    # doctest: +SKIP
    ('step_00000005', 5)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dfo.run.checkpoint import CheckpointError, Series  # the one checkpoint format and error of dfo

__all__ = ["CHECKPOINT_DIR", "KEEP", "KIND", "MODEL_FILE", "CheckpointError", "check_settings", "load",
           "newest", "refuse_legacy", "save", "series"]

#: the run folder's entry holding the checkpoints (the run-folder layout's ``checkpoint``)
CHECKPOINT_DIR = "checkpoints"
PREFIX = "step_"
WIDTH = 8
#: checkpoints kept (the newest and the one before it, as ``dfo train`` keeps)
KEEP = 2
#: the ``kind`` of a fine-tuning checkpoint's manifest
KIND = "finetune"
#: the model's weights, written by the ``files`` hook of :func:`dfo.run.checkpoint.save`
MODEL_FILE = "model.safetensors"
#: what an older dfo wrote instead (never read; named in :func:`refuse_legacy`'s message)
LEGACY_FORMAT = "dfo-finetune-checkpoint/1"
LEGACY_POINTER = "checkpoint.json"


def series(run_dir: str | os.PathLike) -> Series:
    """The checkpoints of a run folder (``RUN/checkpoints/step_NNNNNNNN/``)."""
    return Series(root=Path(run_dir) / CHECKPOINT_DIR, prefix=PREFIX, width=WIDTH, keep=KEEP,
                  resume_hint="move the newer one out of the folder and --resume again")


def newest(run_dir: str | os.PathLike) -> Path | None:
    """The newest checkpoint folder of a run (None: none)."""
    found = series(run_dir).folders()
    return found[-1] if found else None


def refuse_legacy(run_dir: str | os.PathLike) -> None:
    """Refuse to resume a run of an older dfo (``checkpoint.json`` + ``ckpt-*/``, nothing in ``checkpoints/``).

    Raises:
        CheckpointError: one line saying what the folder holds and how to start the run again.
    """
    run = Path(run_dir)
    if newest(run) is None and ((run / LEGACY_POINTER).exists() or any(run.glob("ckpt-*"))):
        raise CheckpointError(
            f"{run} was written by an older dfo ({LEGACY_FORMAT}: {LEGACY_POINTER} + ckpt-*/), whose checkpoints "
            f"this dfo does not resume; start the run again with its settings (--config {run / 'results.json'} "
            f"if it finished) and --overwrite, or pick another --out")


def save(run_dir: str | os.PathLike, *, step: int, model: Any, state: dict[str, Any]) -> Path:
    """Write the checkpoint of ``step``: ``state`` (:meth:`FinetuneJob.state_dict`: optimizer, history, meta)
    and the model's weights, crash-safely; then remove all but the last :data:`KEEP`.

    Returns:
        The checkpoint folder.
    """
    from safetensors.torch import save_model

    def write_model(folder: Path) -> None:
        path = folder / MODEL_FILE
        save_model(model, str(path))
        os.chmod(path, folder.stat().st_mode & 0o666)  # safetensors writes 0600; follow the umask like the rest

    return series(run_dir).save(step, {**state, "step": step}, kind=KIND, files=write_model)


#: settings that a checkpoint's optimizer state repeats, checked against the run's settings on load
#: (``param_groups`` entries for every method; the ``zo`` config for the zeroth-order ones, the run's ``zo``)
CHECKED_GROUP_SETTINGS = ("lr", "weight_decay")
CHECKED_ZO_SETTINGS = ("method", "eps", "rank", "refresh", "momentum", "n_directions")


def _check_fields(state: Any, where: str) -> None:
    """Refuse a state whose fields are not of the written types (a crafted or foreign checkpoint)."""
    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"{where} is not a checkpoint dfo wrote ({what})")

    if not isinstance(state, dict):
        raise bad("its state is not an object")
    missing = sorted({"step", "optimizer", "history", "meta"} - set(state))
    if missing:
        raise bad(f"missing {missing}")
    if type(state["step"]) is not int or state["step"] < 0:
        raise bad("step is not an integer >= 0")
    meta = state["meta"]
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


def _load_weights(model: Any, path: Path) -> None:
    from safetensors.torch import load_model

    try:
        missing, unexpected = load_model(model, str(path), strict=False)
    except (RuntimeError, ValueError) as exc:
        raise CheckpointError(f"the checkpoint's weights do not fit this model: {str(exc).splitlines()[0]}") from None
    except Exception as exc:  # SafetensorError: a header that does not parse
        raise CheckpointError(f"checkpoint file {path} cannot be read "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    if missing or unexpected:
        raise CheckpointError(f"the checkpoint's weights do not fit this model (missing {sorted(missing)[:3]}, "
                              f"unexpected {sorted(unexpected)[:3]})")


def load(run_dir: str | os.PathLike, model: Any) -> tuple[Path, dict[str, Any]]:
    """Verify and read the newest checkpoint of ``run_dir``, its weights into ``model``.

    Returns:
        ``(checkpoint folder, state)``: the state as :func:`save` got it (``step``, ``optimizer``,
        ``history``, ``meta``), its tensors on the CPU.

    Raises:
        CheckpointError: no checkpoint (or only an older dfo's), a missing, corrupt or edited file (the
            previous checkpoint named when one is kept), a state of the wrong fields, settings the optimizer
            state contradicts, or weights that do not fit ``model``.
    """
    refuse_legacy(run_dir)
    s = series(run_dir)
    ckpt, state = s.load_newest(kind=KIND)
    where = str(ckpt)
    try:
        _check_fields(state, where)
        check_settings(state, state["meta"], where)
        _check_rng(state, where)
        if MODEL_FILE not in {p.name for p in ckpt.iterdir()}:
            raise CheckpointError(f"checkpoint {ckpt} is incomplete: {MODEL_FILE} missing")
    except CheckpointError as err:
        raise s.with_previous(ckpt, err) from None
    _load_weights(model, ckpt / MODEL_FILE)
    return ckpt, state
