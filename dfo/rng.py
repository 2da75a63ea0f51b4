"""Random-number conventions: ``rng`` is None, an int seed, or a ``np.random.Generator``."""

from __future__ import annotations

import numpy as np

RngLike = "None | int | np.random.Generator"


def as_generator(rng=None) -> np.random.Generator:
    """``np.random.default_rng`` that passes a Generator through unchanged."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is not None and not isinstance(rng, (int, np.integer, np.random.SeedSequence)):
        raise TypeError(f"rng must be None, an int or a numpy Generator, got {type(rng).__name__}")
    return np.random.default_rng(rng)


def draw_seed(rng: np.random.Generator) -> int:
    """A fresh 63-bit seed for a direction set (regenerable on any worker)."""
    return int(rng.integers(0, 2**63 - 1))
