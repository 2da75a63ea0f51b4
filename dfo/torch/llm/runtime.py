"""Where and how a fine-tuning run's model computes: the device, loading a local model (with LoRA adapters),
the precision of the forward passes (``torch.autocast`` over float32 weights) and the per-example loss the
line-search methods read their batch noise from."""

from __future__ import annotations

import contextlib
from typing import Any, Callable

from dfo.torch.llm.config import FinetuneConfig, FinetuneError
from dfo.torch.llm.models import load_lm
from dfo.torch.llm.prompt import PromptClassifier


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


def load_model(cfg: FinetuneConfig, device: Any) -> tuple[Any, Any]:
    """``cfg.model`` and its tokenizer (:func:`dfo.torch.llm.models.load_lm`, local files only) in ``cfg.dtype`` on
    ``device``, with LoRA adapters when ``cfg.lora`` is set.

    Raises:
        FinetuneError: a missing or unreadable model folder (one line), peft missing for ``--lora``.
    """
    import torch

    try:
        model, tok = load_lm(cfg.model, dtype=getattr(torch, cfg.dtype))
    except (FileNotFoundError, ModuleNotFoundError) as exc:
        raise FinetuneError(str(exc)) from None
    except (OSError, ValueError, KeyError) as exc:
        raise FinetuneError(f"cannot load model {cfg.model!r}: {str(exc).splitlines()[0]}") from None
    model = model.to(device)
    return (with_lora(model, cfg.lora) if cfg.lora else model), tok


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


def per_example_loss(clf: PromptClassifier, encoded: Any) -> Any:
    """Cross-entropy of each example of an encoded batch over the label-word logits (its mean is ``clf.loss``)."""
    import torch.nn.functional as F

    return F.cross_entropy(clf.logits(encoded), encoded.labels, reduction="none")


def under(ctx: Callable[[], Any], fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` inside ``ctx()`` (the forward precision of :func:`forward_precision`)."""
    with ctx():
        return fn(*args)


__all__ = ["forward_precision", "load_model", "per_example_loss", "resolve_device", "under", "with_lora"]
