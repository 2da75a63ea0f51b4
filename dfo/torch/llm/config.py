"""The settings of a fine-tuning run (``dfo finetune``): :class:`FinetuneConfig`, which holds the optimizer's
:class:`dfo.torch.ZOConfig` as ``zo``, their JSON form (an older run's flat layout upgraded) and the rule
for which settings a resumed run may change.

Example:
    >>> cfg = FinetuneConfig(model="smollm2", method="lozo", lr=1e-5)
    >>> cfg.zo.method, cfg.zo.rank == FinetuneConfig(model="m", method="lozo").zo.rank
    ('lozo', True)
    >>> old = {"model": "m", "method": "subzero", "eps": 0.01, "rank": 4, "refresh": None}  # before zo existed
    >>> FinetuneConfig.from_dict(old).zo.eps
    0.01
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any

from dfo.torch.methods import ZO_METHODS
from dfo.torch.config import ZOConfig
from dfo.torch.llm.tasks import TaskError, get_task

#: ``--method``: the optimizer's (:data:`dfo.torch.methods.ZO_METHODS`: the low-rank spec's and the step rules), and adam
FINETUNE_METHODS = (*ZO_METHODS, "adam")
#: default learning rates, measured with SmolLM2-135M on SST-2 (bench/results/torch_quality.md): ZO at 2e-5
#: learned (+3.4 test points for MeZO after 1000 steps) while 1e-6 (MeZO's OPT value) left the model at its
#: zero-shot accuracy after 200 steps; Adam at 1e-5. Larger models usually need smaller values.
DEFAULT_LR = {**{m: 2e-5 for m in ZO_METHODS}, "adam": 1e-5}
DTYPES = ("float32", "bfloat16", "float16")
#: half-precision forward passes over float32 weights (``torch.autocast``)
AUTOCAST_DTYPES = ("bfloat16", "float16")
#: at most this many (class-balanced) dev examples score each template for ``template="auto"``
SELECTION_DEV_SIZE = 256
#: settings that may differ when a run is resumed
RESUME_MAY_CHANGE = ("steps", "device", "data_dir", "out_dir", "save_model", "test_size", "checkpoint_every")


class FinetuneError(ValueError):
    """A setting, file or folder that prevents the run; the message names it."""


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
        method: a zeroth-order method of the registry :data:`dfo.torch.methods.ZO_METHODS` (the spec's low-rank
            methods and the step rules, every one listed in :data:`FINETUNE_METHODS` and the choices of
            ``--method``) or ``adam`` (backprop) (None: the method of ``zo``, mezo without it).
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
        probe: before the first step, fit the label-word head by linear probing (:mod:`dfo.torch.llm.probe`:
            one forward pass per training batch reads the final hidden states, counted in the budget; ridge
            toward the label words' rows, its strength by cross-validation on the training set); the steps
            then train the body under that head (LP-then-ZO). Causal LMs only (None = on for a causal LM
            whose folder holds no fitted head, off otherwise; measured in bench/results/torch_quality.md).
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
    probe: bool | None = None
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


def upgrade_saved_config(data: dict[str, Any]) -> dict[str, Any]:
    """:func:`upgrade_config` for a config a run wrote (``results.json``, a checkpoint): ``probe`` absent means
    False, since runs written before the learned head existed had none (flags left out mean the default, None)."""
    data = upgrade_config(data)
    data.setdefault("probe", False)
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


def check_resumable(saved: dict[str, Any], cfg: FinetuneConfig) -> None:
    """The run's settings must be the checkpoint's (:data:`RESUME_MAY_CHANGE` aside); both are read through
    :meth:`FinetuneConfig.from_dict`, so a checkpoint of the flat layout compares with its defaults filled in."""
    try:
        before = _flat_settings(asdict(FinetuneConfig.from_dict(upgrade_saved_config(dict(saved)))))
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
    for key, value in jsonable(tree).items():
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def jsonable(v: Any) -> Any:
    """``v`` as it reads back from JSON (tuples as lists)."""
    return json.loads(json.dumps(v))


__all__ = ["AUTOCAST_DTYPES", "DEFAULT_LR", "DTYPES", "FINETUNE_METHODS", "FinetuneConfig", "FinetuneError",
           "RESUME_MAY_CHANGE", "SELECTION_DEV_SIZE", "check_resumable", "jsonable", "upgrade_config", "upgrade_saved_config", "zo_config"]
