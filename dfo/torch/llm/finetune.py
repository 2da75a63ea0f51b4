"""Prompt fine-tuning of a local causal or masked LM (the library layer of ``dfo finetune``).

A loop around :class:`dfo.torch.ZerothOrder` (or ``torch.optim.Adam`` with
backprop, ``method="adam"``, the reference ceiling) and
:class:`dfo.torch.llm.prompt.PromptClassifier`: each step samples a batch from the
k-shot training set (indices from ``default_rng([seed, step])``, so a resumed run
sees the same batches), takes one step, and every ``eval_every`` steps evaluates
on a class-balanced dev sample. ``template="auto"`` picks the prompt with the
best zero-shot dev accuracy (never the test set) and reports every template's score.

Run folder (``out_dir``): ``checkpoint.json`` + ``ckpt-<step>/`` (safetensors and
checksummed JSON, see :mod:`dfo.torch.llm.checkpoint`; nothing is unpickled),
``results.json`` and, after training, ``model/`` written with ``save_pretrained``
(safetensors) together with the tokenizer. An existing run is never overwritten
unless asked (``overwrite=True``); ``resume=True`` continues it. Ctrl-C or SIGTERM
during a run stops after the current step, writes a checkpoint and raises
:class:`Stopped` (a second Ctrl-C aborts at once). Models load from local folders
only (``HF_HUB_OFFLINE=1``).

Example:
    >>> cfg = FinetuneConfig(model="smollm2", method="subzero", steps=100, out_dir="runs/sst2",
    ...                      data_dir="/data")                                    # doctest: +SKIP
    >>> finetune(cfg)["test"]["accuracy"]                                          # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dfo.torch.methods import ZO_METHODS
from dfo.torch.optimizer import ZOConfig
from dfo.fileio import TMP_MARK, atomic_write_bytes, staged_dir
from dfo.interrupts import StopFlag
from dfo.run import FINETUNE as RUN_LAYOUT
from dfo.run import open_run_folder, run_folder_job
from dfo.torch.llm import checkpoint as ckpt_io
from dfo.torch.llm.card import model_card
from dfo.torch.llm.models import load_lm
from dfo.torch.llm.prompt import Interrupted, PromptClassifier, choose_template
from dfo.torch.llm.tasks import TASKS, TaskError, balanced_subset, get_task, load_split

#: ``--method``: the optimizer's (:data:`dfo.torch.methods.ZO_METHODS`: the low-rank spec's and the step rules), and adam
FINETUNE_METHODS = (*ZO_METHODS, "adam")
#: default learning rates, measured with SmolLM2-135M on SST-2 (bench/results/torch_quality.md): ZO at 2e-5
#: learned (+3.4 test points for MeZO after 1000 steps) while 1e-6 (MeZO's OPT value) left the model at its
#: zero-shot accuracy after 200 steps; Adam at 1e-5. Larger models usually need smaller values.
DEFAULT_LR = {**{m: 2e-5 for m in ZO_METHODS}, "adam": 1e-5}
DTYPES = ("float32", "bfloat16", "float16")
#: half-precision forward passes over float32 weights (``torch.autocast``)
AUTOCAST_DTYPES = ("bfloat16", "float16")
#: files and folders a run writes (dfo.run's layout); ``overwrite`` removes those its manifest lists
ARTIFACTS = RUN_LAYOUT.entries
#: at most this many (class-balanced) dev examples score each template for ``template="auto"``
SELECTION_DEV_SIZE = 256
#: settings that may differ when a run is resumed
RESUME_MAY_CHANGE = ("steps", "device", "data_dir", "out_dir", "save_model", "test_size", "checkpoint_every")


class FinetuneError(ValueError):
    """A setting, file or folder that prevents the run; the message names it."""


class Stopped(Exception):
    """The run stopped on Ctrl-C / SIGTERM; ``step`` is the last completed step, ``saved`` the checkpoint (or None)."""

    def __init__(self, signum: int, step: int, saved: Path | None) -> None:
        self.signum, self.step, self.saved = signum, step, saved
        name = signal.Signals(signum).name
        where = f"checkpoint saved to {saved.parent}; continue with --resume" if saved else "nothing to save yet"
        super().__init__(f"stopped by {name} after step {step}: {where}")


@dataclass(frozen=True, kw_only=True)
class FinetuneConfig:
    """Everything a fine-tuning run depends on (saved with the results).

    Attributes:
        model: local Hugging Face causal- or masked-LM folder, or ``"smollm2"``.
        task: a :data:`dfo.torch.llm.tasks.TASKS` name, or a task file ``*.json`` (:func:`dfo.torch.llm.tasks.task_from_json`).
        template: a template of the task, or ``"auto"``: the best zero-shot accuracy on (at most
            :data:`SELECTION_DEV_SIZE` class-balanced examples of) the dev sample.
        label_words: one word per class replacing the template's (needs an explicit template).
        calibrate: report (and select templates by) contextually calibrated accuracy.
        method: a zeroth-order method of :data:`dfo.torch.methods.ZO_METHODS` (``mezo``, ``subzero``, ``lozo``,
            ``lozo-m``, ``mezo-orth``, ``mezo-ls``, ``fzoo``, ``fzoo-ls``) or ``adam`` (backprop)
            (None: the method of ``zo``, mezo without it).
        lr: learning rate (None: :data:`DEFAULT_LR` of the method).
        weight_decay: ``theta <- theta - lr wd theta`` each step (``adam``: its own weight decay).
        zo: the zeroth-order optimizer's settings (:class:`dfo.torch.ZOConfig`: eps, rank, refresh, momentum,
            n_directions, line search...; its method is ``method``); None for ``adam``. Left at None for a
            zeroth-order method it is ``ZOConfig(method)``: every default from the method's registry entry,
            and the config records the values used.
        steps: optimizer steps (0: evaluate zero-shot).
        forward_passes: budget of training forward passes (None: no budget): the run stops before a
            step that could take it past the budget (``steps`` still caps it). Evaluation passes do not count.
        lora: rank R of LoRA adapters (peft, on every linear layer except the output head, alpha = 2R);
            only the adapters are trained and ``model/`` holds the adapter (``PeftModel.from_pretrained``).
        batch_size: training examples per step.
        k, data_seed: which k-shot split.
        seed: optimizer and batch-sampling seed.
        eval_every: dev evaluation period in steps (0: only at the end).
        dev_size, test_size: class-balanced samples of the dev / test sets (None: all).
        checkpoint_every: steps between checkpoints (0: only at the end and on a stop).
        out_dir: run folder (None: nothing is written).
        data_dir: data folder (None: ``$DFO_DATA``).
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``...
        dtype: ``"float32"``, ``"bfloat16"`` or ``"float16"``: the dtype the weights are stored,
            perturbed and updated in. ZO steps in half precision round at each in-place write and
            the weights drift (``bench/results/torch_precision_drift.md``); prefer ``autocast``.
        autocast: ``"bfloat16"`` / ``"float16"``: run every forward pass under ``torch.autocast``
            while the weights, perturbations and updates stay float32 (needs ``dtype="float32"``);
            None: forward passes in ``dtype``.
        max_length: prompt length cap in tokens (None: the task's).
        save_model: write ``out_dir/model`` with ``save_pretrained`` after training.
    """

    model: str
    task: str = "sst2"
    template: str = "auto"
    label_words: tuple[str, ...] | None = None
    calibrate: bool = False
    method: str | None = None
    lr: float | None = None
    weight_decay: float = 0.0
    zo: ZOConfig | None = None
    steps: int = 1000
    forward_passes: int | None = None
    lora: int | None = None
    batch_size: int = 16
    k: int = 16
    data_seed: int = 13
    seed: int = 0
    eval_every: int = 0
    dev_size: int | None = None
    test_size: int | None = None
    checkpoint_every: int = 0
    out_dir: str | None = None
    data_dir: str | None = None
    device: str = "auto"
    dtype: str = "float32"
    autocast: str | None = None
    max_length: int | None = None
    save_model: bool = True

    def __post_init__(self) -> None:
        if self.method is None:
            object.__setattr__(self, "method", self.zo.method if isinstance(self.zo, ZOConfig) else "mezo")
        _known_method(self.method)
        if self.method == "adam":
            if self.zo is not None:
                raise FinetuneError(_ADAM_TAKES_NO_ZO)
        elif self.zo is None:
            object.__setattr__(self, "zo", zo_config(self.method))
        elif not isinstance(self.zo, ZOConfig):
            raise FinetuneError(f"zo must be a ZOConfig, got {type(self.zo).__name__} (FinetuneConfig.from_dict "
                                "reads the JSON form)")
        elif self.zo.method != self.method:
            raise FinetuneError(f"method {self.method!r} and zo.method {self.zo.method!r} differ")
        if self.lr is None:
            object.__setattr__(self, "lr", DEFAULT_LR[self.method])
        task = get_task(self.task)
        if self.template != "auto":
            task.template(self.template)
        elif self.label_words is not None:
            raise FinetuneError("--label-words needs an explicit --template (the words belong to one prompt)")
        if self.label_words is not None and len(self.label_words) != task.n_classes:
            raise FinetuneError(f"{self.task} needs {task.n_classes} label words, got {list(self.label_words)}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise FinetuneError(f"--lr must be a positive finite number, got {self.lr}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise FinetuneError(f"--weight-decay must be >= 0 and finite, got {self.weight_decay}")
        ints = {"steps": 0, "batch_size": 1, "k": 1, "eval_every": 0, "checkpoint_every": 0, "seed": 0}
        for name, low in ints.items():
            if getattr(self, name) < low:
                raise FinetuneError(f"--{name.replace('_', '-')} must be >= {low}, got {getattr(self, name)}")
        if not 0 <= self.seed < 2**63:
            raise FinetuneError(f"--seed must be in [0, 2**63), got {self.seed}")
        for name in ("dev_size", "test_size", "max_length", "forward_passes", "lora"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise FinetuneError(f"--{name.replace('_', '-')} must be >= 1, got {v}")
        if self.dtype not in DTYPES:
            raise FinetuneError(f"--dtype must be one of {', '.join(DTYPES)}, got {self.dtype!r}")
        if self.autocast is not None:
            if self.autocast not in AUTOCAST_DTYPES:
                raise FinetuneError(f"--autocast must be one of {', '.join(AUTOCAST_DTYPES)}, got {self.autocast!r}")
            if self.dtype != "float32":
                raise FinetuneError(f"--autocast keeps float32 weights and runs the forward passes in {self.autocast}; "
                                    f"it cannot be combined with --dtype {self.dtype}")


    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FinetuneConfig:
        """The config of its JSON form (``asdict``, a ``results.json``'s ``"config"``, a checkpoint's), the
        flat form of runs made before ``zo`` existed included (:func:`upgrade_config`).

        Raises:
            FinetuneError: unknown keys, or a setting the config refuses.
        """
        data = upgrade_config(dict(data))
        zo = data.get("zo")
        if isinstance(zo, dict):
            method = _known_method(data.get("method") or zo.get("method") or "mezo")
            settings = {k: v for k, v in zo.items() if k != "method"}
            if method == "adam" and settings:
                raise FinetuneError(_ADAM_TAKES_NO_ZO)
            data["method"], data["zo"] = method, None if method == "adam" else zo_config(method, **settings)
        if isinstance(data.get("label_words"), list):
            data["label_words"] = tuple(data["label_words"])
        try:
            return cls(**data)
        except TypeError as exc:  # unknown or missing keys
            raise FinetuneError(str(exc)) from None


_ADAM_TAKES_NO_ZO = "zeroth-order settings (zo) do not apply to --method adam (it takes --lr and --weight-decay)"


def _known_method(method: str) -> str:
    if method not in FINETUNE_METHODS:
        raise FinetuneError(f"unknown method {method!r}; choose one of {', '.join(FINETUNE_METHODS)}")
    return method


#: the optimizer settings a FinetuneConfig listed itself before they moved into its ``zo`` (a :class:`ZOConfig`)
FLAT_ZO_FIELDS = ("eps", "rank", "refresh", "momentum", "n_directions")


def upgrade_config(data: dict[str, Any]) -> dict[str, Any]:
    """A config's JSON object in the current layout: an older run's flat ``eps``, ``rank``, ``refresh``,
    ``momentum``, ``n_directions`` moved into ``zo`` (dropped for ``adam``, which never used them).
    A current object is returned as it is."""
    flat = {k: data.pop(k) for k in FLAT_ZO_FIELDS if k in data}
    if flat and "zo" not in data:
        zo = {k: v for k, v in flat.items() if v is not None}
        data["zo"] = None if data.get("method") == "adam" else zo
    elif flat:
        raise FinetuneError(f"settings {sorted(flat)} belong in zo (the config has both)")
    return data


def zo_config(method: str, **settings: Any) -> ZOConfig:
    """``ZOConfig(method, **settings)``, its refusals as :class:`FinetuneError` naming the flag (``--eps``)."""
    try:
        return ZOConfig(method=method, **settings)
    except TypeError as exc:
        raise FinetuneError(f"zo: {exc}") from None
    except ValueError as exc:
        msg = str(exc)
        name = msg.split(" ", 1)[0]
        known = name in ZOConfig.__dataclass_fields__
        raise FinetuneError(f"--{name.replace('_', '-')}{msg[len(name):]}" if known else msg) from None


def resolve_device(name: str) -> Any:
    """``torch.device`` for ``name`` (``"auto"``: CUDA if available, else CPU).

    Raises:
        FinetuneError: malformed name, or a device this machine does not have.
    """
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise FinetuneError(f"--device {name!r} is not a device name (cpu, cuda, cuda:N, mps)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise FinetuneError(f"--device {name}: no CUDA device on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise FinetuneError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise FinetuneError(f"--device {name}: MPS is not available")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise FinetuneError(f"--device {name}: unsupported device type {dev.type!r}")
    return dev


def prepare_run_dir(out: Path, *, resume: bool, overwrite: bool) -> None:
    """Lock, check (and with ``overwrite`` clear) the run folder: :func:`dfo.run.open_run_folder`'s rules,
    the lock held until :func:`finetune` ends.

    Raises:
        dfo.run.RunFolderError: another process writes it, not a folder, unwritable, symlinks, or it holds
            a run and neither flag was given (:func:`finetune` reports it as :class:`FinetuneError`).
    """
    open_run_folder(out, RUN_LAYOUT, resume=resume, overwrite=overwrite)


def _load_model(cfg: FinetuneConfig, device: Any) -> tuple[Any, Any]:
    import torch

    try:
        model, tok = load_lm(cfg.model, dtype=getattr(torch, cfg.dtype))
    except (FileNotFoundError, ModuleNotFoundError) as exc:
        raise FinetuneError(str(exc)) from None
    except (OSError, ValueError, KeyError) as exc:
        raise FinetuneError(f"cannot load model {cfg.model!r}: {str(exc).splitlines()[0]}") from None
    return model.to(device), tok


def forward_precision(cfg: FinetuneConfig, device: Any) -> Callable[[], Any]:
    """A context factory for the forward passes: ``torch.autocast`` to ``cfg.autocast`` on ``device``, or none.

    Only forward passes run under it, never the optimizer's own arithmetic (directions, updates), so
    the weights stay float32 and the ``+eps z, -2 eps z, +eps z`` round trip adds no half-precision rounding.
    """
    import torch

    if cfg.autocast is None:
        return contextlib.nullcontext
    dtype = getattr(torch, cfg.autocast)
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


def with_lora(model: Any, rank: int) -> Any:
    """``model`` with LoRA adapters of rank ``rank`` (peft; alpha = 2 rank, no dropout) on every linear layer
    but the output head; the base weights are frozen, so ``ZerothOrder`` sees the adapters only.

    Raises:
        FinetuneError: peft is not installed (it is in the ``llm`` extra).
    """
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError:
        raise FinetuneError("--lora needs peft: pip install 'dfo[llm]' (or pip install peft)") from None
    cfg = LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules="all-linear", bias="none")
    return get_peft_model(model, cfg)


def _check_resumable(saved: dict[str, Any], cfg: FinetuneConfig) -> None:
    """The run's settings must be the checkpoint's (:data:`RESUME_MAY_CHANGE` aside); both are read through
    :meth:`FinetuneConfig.from_dict`, so a checkpoint of the flat layout compares with its defaults filled in."""
    try:
        before = _flat_settings(asdict(FinetuneConfig.from_dict(saved)))
    except (FinetuneError, TaskError) as exc:
        raise FinetuneError(f"--resume: the checkpoint's settings do not load ({exc})") from None
    now = _flat_settings(asdict(cfg))
    diff = [k for k in now if k.split(".")[0] not in RESUME_MAY_CHANGE and now[k] != before.get(k)]
    if diff:
        raise FinetuneError("--resume: the checkpoint was made with different settings: "
                            + ", ".join(f"{k} {before.get(k)!r} -> {now[k]!r}" for k in diff))


def _flat_settings(tree: dict[str, Any]) -> dict[str, Any]:
    """``{"zo": {"eps": ...}}`` as ``{"zo.eps": ...}``, values as JSON gives them back."""
    out: dict[str, Any] = {}
    for key, value in _jsonable(tree).items():
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def per_example_loss(clf: PromptClassifier, encoded: Any) -> Any:
    """Cross-entropy of each example of an encoded batch over the label-word logits (its mean is ``clf.loss``)."""
    import torch.nn.functional as F

    return F.cross_entropy(clf.logits(encoded), encoded.labels, reduction="none")


def _under(ctx: Callable[[], Any], fn: Callable[..., Any], *args: Any) -> Any:
    with ctx():
        return fn(*args)


def _jsonable(v: Any) -> Any:
    return json.loads(json.dumps(v))


@run_folder_job(FinetuneError)  # holds the run-folder lock for the call; refusals as FinetuneError
def finetune(
    cfg: FinetuneConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    callback: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run (or resume) a fine-tuning job.

    Args:
        cfg: the run.
        resume: continue from ``cfg.out_dir``'s checkpoint.
        overwrite: replace a run already in ``cfg.out_dir``.
        progress: show a tqdm progress bar.
        callback: called with a dict (``step``, ``loss``, ...) after every step.

    Returns:
        ``config``, ``template``, ``label_words``, ``template_selection`` (dev scores when
        ``template="auto"``), ``dev`` / ``test`` evaluations (accuracy raw and calibrated,
        predicted-class balance), ``history`` (loss per step, dev evaluations), timings.

    Raises:
        FinetuneError: a bad setting, folder or file (one-line message).
        Stopped: Ctrl-C / SIGTERM (after writing a checkpoint when ``out_dir`` is set).
    """
    import torch
    from tqdm.auto import tqdm

    out = Path(cfg.out_dir) if cfg.out_dir else None
    if resume and out is None:
        raise FinetuneError("--resume needs --out (the run folder to continue)")
    device = resolve_device(cfg.device)
    task = get_task(cfg.task)
    try:
        train = load_split(task, "train", k=cfg.k, data_seed=cfg.data_seed, data_dir=cfg.data_dir)
        dev = balanced_subset(load_split(task, "dev", k=cfg.k, data_seed=cfg.data_seed, data_dir=cfg.data_dir),
                              cfg.dev_size, task.n_classes, seed=cfg.data_seed)
        test = balanced_subset(load_split(task, "test", data_dir=cfg.data_dir), cfg.test_size, task.n_classes)
    except TaskError as exc:
        raise FinetuneError(str(exc)) from None
    if out is not None:
        prepare_run_dir(out, resume=resume, overwrite=overwrite)
    model, tok = _load_model(cfg, device)
    if cfg.lora:
        model = with_lora(model, cfg.lora)
    amp = forward_precision(cfg, device)
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.method == "adam":
        opt: Any = torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        from dfo.torch import ZerothOrder

        try:
            opt = ZerothOrder(params, lr=cfg.lr, weight_decay=cfg.weight_decay, model=model, seed=cfg.seed,
                              **asdict(cfg.zo))
        except ValueError as exc:  # settings only the optimizer checks (e.g. momentum range)
            raise FinetuneError(str(exc)) from None
    history: dict[str, list] = {"loss": [], "dev": [], "forward_passes": []}
    start, train_seconds, template, selection = 0, 0.0, cfg.template, None
    with StopFlag() as stop:
        if resume:
            try:
                start, state, meta = ckpt_io.load(out, model)
            except ckpt_io.CheckpointError as exc:
                raise FinetuneError(f"--resume: {exc}") from None
            _check_resumable(meta["config"], cfg)
            if start > cfg.steps:
                raise FinetuneError(f"--resume: the checkpoint is at step {start}, past --steps {cfg.steps}")
            try:
                opt.load_state_dict(state["optimizer"])
            except (ValueError, KeyError, TypeError) as exc:
                raise FinetuneError(f"--resume: the checkpoint's optimizer state does not fit this run ({exc})") from None
            history, train_seconds = state["history"], meta["train_seconds"]
            history.setdefault("forward_passes", [])
            template, selection = meta["template"], meta["template_selection"]
        elif template == "auto":
            try:
                pick = balanced_subset(dev, SELECTION_DEV_SIZE, task.n_classes, seed=cfg.data_seed)
                with amp():
                    template, selection = choose_template(model, tok, task, pick, calibrate=cfg.calibrate,
                                                          max_length=cfg.max_length, should_stop=stop)
            except Interrupted:
                raise Stopped(stop.signum, 0, None) from None
            except TaskError as exc:
                raise FinetuneError(str(exc)) from None
        try:
            clf = PromptClassifier(model, tok, task=task, template=template, label_words=cfg.label_words,
                                   max_length=cfg.max_length)
        except TaskError as exc:
            raise FinetuneError(str(exc)) from None

        def meta_now() -> dict[str, Any]:
            return {"config": _jsonable(asdict(cfg)), "template": template, "template_selection": selection,
                    "train_seconds": train_seconds}

        last_saved = start if resume else -1

        def save(step: int) -> Path | None:
            nonlocal last_saved
            if out is None:
                return None
            if step != last_saved:
                state = {"optimizer": opt.state_dict(), "history": history}  # ZO state_dict folds side paths first
                ckpt_io.save(out, step=step, model=model, state=state, meta=meta_now())
                last_saved = step
            return out / ckpt_io.POINTER

        def evaluate_dev(step: int) -> dict[str, Any]:
            with amp():
                ev = clf.evaluate(dev, should_stop=stop).as_dict()
            history["dev"].append([step, ev])
            return ev

        def stopped(step: int) -> Stopped:
            return Stopped(stop.signum, step, save(step))

        model.eval()  # dropout off in every forward pass (ZO and backprop alike)
        bar = tqdm(range(start, cfg.steps), total=cfg.steps, initial=start, disable=not progress, desc=cfg.method)
        try:
            # an evaluation due at the resumed step that a stop cut short
            if cfg.eval_every and start and start % cfg.eval_every == 0 and \
                    not any(s == start for s, _ in history["dev"]):
                evaluate_dev(start)
            per_step = 1 if cfg.method == "adam" else opt.config.max_forward_passes()
            for step in bar:
                used = history["forward_passes"][-1] if history["forward_passes"] else 0
                if cfg.forward_passes is not None and used + per_step > cfg.forward_passes:
                    break  # the next step could pass the budget
                idx = np.random.default_rng([cfg.seed, step]).choice(
                    len(train), size=min(cfg.batch_size, len(train)), replace=False)
                batch = [train[i] for i in idx]
                t0 = time.perf_counter()
                encoded = clf.encode_batch(batch)  # once per step: every forward of a ZO step reuses it
                if cfg.method == "adam":
                    opt.zero_grad(set_to_none=True)
                    with amp():
                        loss_t = clf.loss(encoded)
                    loss_t.backward()
                    opt.step()
                    loss = float(loss_t.detach())
                else:
                    try:  # the line-search methods read the batch noise from per-example losses
                        if opt.config.entry.line_search:
                            loss = opt.step(lambda: _under(amp, per_example_loss, clf, encoded))
                        else:
                            loss = opt.step(lambda: _under(amp, clf.loss, encoded))
                    except FloatingPointError as exc:
                        raise FinetuneError(f"step {step + 1}: {exc} (try a smaller --lr or --eps)") from None
                train_seconds += time.perf_counter() - t0
                history["loss"].append(float(loss))
                history["forward_passes"].append(used + (1 if cfg.method == "adam" else opt.last_step.forward_passes))
                info: dict[str, Any] = {"step": step + 1, "loss": float(loss)}
                if cfg.eval_every and (step + 1) % cfg.eval_every == 0:
                    try:
                        info["dev"] = evaluate_dev(step + 1)
                    except Interrupted:
                        raise stopped(step + 1) from None
                bar.set_postfix(loss=f"{np.mean(history['loss'][-20:]):.4f}",
                                **({"dev": f"{history['dev'][-1][1]['accuracy']:.3f}"} if history["dev"] else {}))
                if callback:
                    callback(info)
                if stop():
                    raise stopped(step + 1)
                if cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0:
                    save(step + 1)
            done_steps = len(history["loss"])
            if done_steps > start:
                save(done_steps)
            if hasattr(opt, "flush"):
                opt.flush()
            with amp():
                dev_ev = clf.evaluate(dev, should_stop=stop)
                test_ev = clf.evaluate(test, should_stop=stop)
        except Interrupted:
            raise stopped(max(start, len(history["loss"]))) from None
        finally:
            bar.close()
    result = {
        "config": _jsonable(asdict(cfg)),
        "task": task.name,
        "template": template,
        "label_words": list(clf.label_words),
        "template_selection": selection,
        "device": str(device),
        "steps": len(history["loss"]),
        "forward_passes": history["forward_passes"][-1] if history["forward_passes"] else 0,
        "forward_passes_per_step": 1 if cfg.method == "adam" else (
            opt.config.max_forward_passes() if not opt.config.entry.line_search else "variable"),
        "backward_passes_per_step": 1 if cfg.method == "adam" else 0,
        "dev": dev_ev.as_dict(),
        "test": test_ev.as_dict(),
        "accuracy": {"dev": dev_ev.headline(cfg.calibrate), "test": test_ev.headline(cfg.calibrate),
                     "calibrated": cfg.calibrate},
        "final_train_loss": float(np.mean(history["loss"][-20:])) if history["loss"] else None,
        "history": history,
        "train_seconds": train_seconds,
    }
    if out is not None:
        if cfg.save_model and len(history["loss"]) > 0:
            with staged_dir(out / "model", prefix=f"model{TMP_MARK}") as tmp:
                model.save_pretrained(tmp, safe_serialization=True)
                tok.save_pretrained(tmp)
                (tmp / "README.md").write_text(model_card(result), encoding="utf-8")  # the model card
        atomic_write_bytes(out / "results.json", json.dumps(result, indent=2).encode())
    if hasattr(opt, "close"):
        opt.close()
    return result


__all__ = ["AUTOCAST_DTYPES", "FinetuneConfig", "FinetuneError", "FINETUNE_METHODS", "Stopped", "TASKS", "finetune",
           "resolve_device", "with_lora"]
