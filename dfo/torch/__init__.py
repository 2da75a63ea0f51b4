"""Zeroth-order fine-tuning of torch models (MeZO, SubZero, LOZO, LOZO-M).

Importing :mod:`dfo` never imports torch; this subpackage does.

Example:
    >>> from dfo.torch import ZerothOrder        # doctest: +SKIP
    >>> opt = ZerothOrder(model.parameters(), method="subzero", lr=1e-6, model=model)  # doctest: +SKIP
    >>> loss = opt.step(lambda: model(**batch).loss)                                  # doctest: +SKIP
"""

from dfo.torch.config import ZOConfig
from dfo.torch.methods import ZO_METHODS
from dfo.torch.optimizer import ZerothOrder
from dfo.torch.stepinfo import StepInfo

__all__ = ["StepInfo", "ZOConfig", "ZO_METHODS", "ZerothOrder"]


def __getattr__(name: str):
    """Submodules on first use: ``import dfo.torch; dfo.torch.hf.ZOTrainer`` (PEP 562)."""
    if name in ("hf", "llm", "directions", "sidepath"):
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
