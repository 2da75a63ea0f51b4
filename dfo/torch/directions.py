"""Regenerable random directions for zeroth-order optimizers.

A direction is never stored whole: it is identified by a 63-bit seed and
regenerated tensor by tensor from a private ``torch.Generator`` (one per device),
re-seeded with ``mix(seed, k)`` for the k-th parameter. Regeneration is therefore
independent of the order in which tensors are visited, so perturb, restore and
update can each walk the parameters in one pass.

Example:
    >>> import torch
    >>> gens = Generators()
    >>> p = torch.zeros(3)
    >>> z1 = gaussian_like(p, gens, mix(7, 0)); z2 = gaussian_like(p, gens, mix(7, 0))
    >>> bool(torch.equal(z1, z2))
    True
"""

from __future__ import annotations

import torch

_MASK63 = (1 << 63) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def mix(seed: int, k: int) -> int:
    """A per-tensor seed from a direction seed and a tensor index (splitmix64 step)."""
    z = (seed + _GOLDEN * (k + 1)) & ((1 << 64) - 1)
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & ((1 << 64) - 1)
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & ((1 << 64) - 1)
    return (z ^ (z >> 31)) & _MASK63


class Generators:
    """One private ``torch.Generator`` per device, created on first use."""

    def __init__(self) -> None:
        self._gens: dict[torch.device, torch.Generator] = {}

    def get(self, device: torch.device, seed: int) -> torch.Generator:
        """The generator of ``device``, re-seeded with ``seed``."""
        gen = self._gens.get(device)
        if gen is None:
            gen = torch.Generator(device=device)
            self._gens[device] = gen
        gen.manual_seed(seed)
        return gen


def gaussian_like(p: torch.Tensor, gens: Generators, seed: int) -> torch.Tensor:
    """z ~ N(0, I) with the shape, dtype and device of ``p`` (``normal_`` in place)."""
    return torch.empty_like(p).normal_(generator=gens.get(p.device, seed))


def factor_dtype(p: torch.Tensor) -> torch.dtype:
    """Dtype of the small low-rank factors of ``p``: float64 for float64, else float32."""
    return torch.float64 if p.dtype == torch.float64 else torch.float32


def gaussian(
    shape: tuple[int, ...], device: torch.device, gens: Generators, seed: int, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """A standard Gaussian tensor of ``shape`` on ``device``."""
    return torch.empty(shape, dtype=dtype, device=device).normal_(generator=gens.get(device, seed))


def orthonormal(
    rows: int, rank: int, device: torch.device, gens: Generators, seed: int, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """A ``rows x rank`` matrix with orthonormal columns (QR of a Gaussian block)."""
    q, r = torch.linalg.qr(gaussian((rows, rank), device, gens, seed, dtype))
    # sign fix makes Q Haar-distributed and independent of the QR implementation
    return q * torch.sign(torch.diagonal(r)).where(torch.diagonal(r) != 0, torch.ones((), dtype=dtype, device=device))
