"""Calling the closure of :class:`dfo.torch.ZerothOrder`: the model's mode during the forward passes and the
checks on the loss it returns.

With ``model=`` given, the closure runs with the model in eval mode (dropout off, as the MeZO/LOZO reference
trainers do), its train/eval flags restored afterwards; with ``eval_mode=False`` the caller's mode is kept and
a warning is given once when dropout is active. The closure returns a scalar (tensor or float; the
line-search methods also take a 1-D tensor of per-example losses, whose mean is the loss); a non-finite
loss raises ``FloatingPointError``.

Example:
    >>> import torch
    >>> read_loss(torch.tensor([1.0, 2.0]), per_example=True, step=0, side="+eps", i=0)
    (1.5, array([1., 2.]))
"""

from __future__ import annotations

import contextlib
import math
import warnings
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn


def dropout_active(model: nn.Module) -> bool:
    """Whether a forward pass of ``model`` in its current mode would apply dropout."""
    for m in model.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd) and m.training and m.p > 0:
            return True
    cfg = getattr(model, "config", None)
    if model.training and cfg is not None:
        for key, v in vars(cfg).items():
            if "dropout" in key and isinstance(v, float) and v > 0:
                return True
    return False


class ForwardMode:
    """The model's mode for the closure: eval mode (flags restored after), or a one-time warning when
    ``eval_mode`` is False and dropout stays on. ``model`` None: nothing to do."""

    def __init__(self, model: nn.Module | None, eval_mode: bool) -> None:
        self.model = model
        self.eval_mode = bool(eval_mode)
        self.warned_dropout = False

    @contextlib.contextmanager
    def __call__(self) -> Iterator[None]:
        model = self.model
        if model is None:
            yield
            return
        if not self.eval_mode:
            if not self.warned_dropout and dropout_active(model):
                self.warned_dropout = True
                warnings.warn("ZerothOrder(eval_mode=False): dropout is active, so the two forward passes of a step "
                              "see different networks and the loss difference is mostly dropout noise; put the "
                              "model in eval mode or use eval_mode=True", RuntimeWarning, stacklevel=3)
            yield
            return
        modes = [(m, m.training) for m in model.modules()]
        model.eval()
        try:
            yield
        finally:
            for m, mode in modes:
                m.training = mode


def read_loss(out: Any, *, per_example: bool, step: int, side: str, i: int) -> tuple[float, np.ndarray | None]:
    """The loss the closure returned and its per-example losses (a 1-D tensor, when ``per_example`` allows it).

    Raises:
        TypeError: not a scalar (nor, with ``per_example``, a 1-D tensor).
        FloatingPointError: NaN or infinite (``step``, ``side`` and ``i`` name the query).
    """
    examples = None
    if torch.is_tensor(out):
        if out.numel() != 1 and not (per_example and out.ndim == 1):
            raise TypeError(f"the closure must return a scalar loss, got a tensor of shape {tuple(out.shape)}"
                            + (" (per-example losses, a 1-D tensor, only for the line-search methods)"
                               if out.ndim == 1 else ""))
        if out.numel() != 1:  # per-example losses: the loss is their mean, the spread is the batch noise
            examples = out.detach().double().cpu().numpy()
            value = float(examples.mean())
        else:
            value = float(out.detach().item())  # exact for every dtype (float64 losses keep their digits)
    elif isinstance(out, (int, float)):
        value = float(out)
    else:
        raise TypeError(f"the closure must return a scalar tensor or a float, got {type(out).__name__}")
    if not math.isfinite(value):
        raise FloatingPointError(
            f"ZerothOrder step {step}: loss at theta {side} * z (direction {i}) is {value}; "
            "parameters were restored (lower eps or lr, or check the closure)"
        )
    return value, examples
