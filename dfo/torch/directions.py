"""Regenerable random directions for the torch optimizer.

A direction is never stored whole: it is identified by a 63-bit seed and
regenerated tensor by tensor.

* Dense Gaussian directions come from a private ``torch.Generator`` (one per
  device) re-seeded with ``mix(seed, k)`` for the k-th tensor and drawn with
  ``normal_`` in chunks of :data:`CHUNK` numbers into one reusable scratch buffer:
  the extra memory is one chunk, not one tensor, and no fresh pages are touched
  at each step. The stream depends on ``CHUNK`` (a constant), not on threads.
* Low-rank factors come from :mod:`dfo.estimators.lowrank_spec` (numpy, float64,
  keyed streams), so numpy and torch draw the same factors for the same seeds;
  :func:`to_torch` converts them.

Example:
    >>> import torch
    >>> gens = Generators()
    >>> a, b = torch.zeros(3), torch.zeros(3)
    >>> add_gaussian_(a, gens, mix(7, 0), 1.0); add_gaussian_(b, gens, mix(7, 0), 1.0)
    >>> bool(torch.equal(a, b)) and bool(a.abs().sum() > 0)
    True
"""

from __future__ import annotations

import numpy as np
import torch

_MASK63 = (1 << 63) - 1
_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15

#: numbers drawn per ``normal_`` call (4 MB in float32): the scratch buffer's size
CHUNK = 1 << 20


def mix(seed: int, k: int) -> int:
    """A per-tensor seed from a direction seed and a tensor index (splitmix64 step)."""
    z = (seed + _GOLDEN * (k + 1)) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (z ^ (z >> 31)) & _MASK63


class Generators:
    """One private ``torch.Generator`` and one scratch buffer per device (and dtype)."""

    def __init__(self) -> None:
        self._gens: dict[torch.device, torch.Generator] = {}
        self._scratch: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}

    def get(self, device: torch.device, seed: int) -> torch.Generator:
        """The generator of ``device``, re-seeded with ``seed``."""
        gen = self._gens.get(device)
        if gen is None:
            gen = torch.Generator(device=device)
            self._gens[device] = gen
        gen.manual_seed(seed)
        return gen

    def scratch(self, device: torch.device, dtype: torch.dtype, n: int) -> torch.Tensor:
        """A reusable buffer of at least ``min(n, CHUNK)`` numbers (first ``n`` returned when smaller)."""
        key = (device, dtype)
        buf = self._scratch.get(key)
        size = min(n, CHUNK)
        if buf is None or buf.numel() < size:
            buf = torch.empty(max(size, 0 if buf is None else buf.numel()), dtype=dtype, device=device)
            self._scratch[key] = buf
        return buf[:size]


def add_gaussian_(target: torch.Tensor, gens: Generators, seed: int, alpha: float) -> None:
    """``target += alpha z`` with ``z ~ N(0, I)`` regenerated from ``seed``, chunk by chunk."""
    if alpha == 0.0:
        return
    gen = gens.get(target.device, seed)
    flat = target.view(-1) if target.is_contiguous() else None
    if flat is None:  # rare: non-contiguous parameter; draw it whole
        target.add_(torch.empty_like(target).normal_(generator=gen), alpha=alpha)
        return
    n = flat.numel()
    for start in range(0, n, CHUNK):
        stop = min(start + CHUNK, n)
        z = gens.scratch(target.device, target.dtype, stop - start)[: stop - start]
        z.normal_(generator=gen)
        flat[start:stop].add_(z, alpha=alpha)


def factor_dtype(p: torch.Tensor) -> torch.dtype:
    """Dtype of the small low-rank factors of ``p``: float64 for float64, else float32."""
    return torch.float64 if p.dtype == torch.float64 else torch.float32


def to_torch(a: np.ndarray, like: torch.Tensor) -> torch.Tensor:
    """A spec-drawn float64 numpy factor as a tensor in ``like``'s factor dtype and device."""
    return torch.from_numpy(np.ascontiguousarray(a)).to(device=like.device, dtype=factor_dtype(like))
