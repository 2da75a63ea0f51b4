"""Deprecated: SST-2 helpers kept for old imports; use :mod:`dfo.torch.tasks` and :mod:`dfo.torch.prompt`.

``load_sst2(split, k=, data_seed=, root=)`` reads ``root`` (default
``$DFO_DATA``, else the checkout's ``../shared/data``); ``PromptClassifier`` defaults to SST-2 with its first template.
"""

from __future__ import annotations

import os
from pathlib import Path

from dfo.torch.prompt import PromptClassifier
from dfo.torch.tasks import DATA_ENV, LEGACY_DATA_ENV, Example, load_split

__all__ = ["Example", "PromptClassifier", "load_sst2"]


def load_sst2(split: str, *, k: int = 16, data_seed: int = 13, root: str | os.PathLike[str] | None = None) -> list[Example]:
    """One SST-2 split (see :func:`dfo.torch.tasks.load_split`); without ``root`` or ``$DFO_DATA``, the checkout's data."""
    if root is None and not (os.environ.get(DATA_ENV) or os.environ.get(LEGACY_DATA_ENV)):
        root = Path(__file__).resolve().parents[3] / "shared" / "data"  # legacy: a source checkout only
    return load_split("sst2", split, k=k, data_seed=data_seed, data_dir=root)
