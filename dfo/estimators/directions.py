"""Direction families, each regenerable from ``(seed, index)``.

A direction set is a small frozen (picklable) description: family, dimension,
count and seed. ``matrix()`` regenerates all N directions from the seed and
``row(i)`` one of them, so a worker that receives the seed rebuilds the same
directions bit for bit (OpenAI-ES / ARS style: only scalars cross processes).
Regenerated matrices are kept in a small per-process LRU cache, so a worker
that evaluates many rows of one set builds it once.

Families (N directions in R^n):

* ``gaussian``: u_i ~ N(0, I_n) i.i.d.; E[u uᵀ] = I.
* ``sphere``: u_i uniform on the unit sphere (a normalized Gaussian); E[u uᵀ] = I/n.
* ``orthogonal``: orthonormal rows, the Q factor of the QR of a Gaussian block
  (signs fixed by diag(R) so Q is Haar-distributed); N > n stacks independent blocks.
  Each row is uniform on the sphere, so E[q qᵀ] = I/n as for ``sphere``. In high
  dimension with many directions (n ≥ 512 and N ≥ n/2, where the QR's O(n N²) would
  dominate the optimizer's own time) a block is a subsampled randomized trigonometric
  transform instead (the SRHT of Ailon & Chazelle 2009 / Tropp 2011 with the orthonormal
  DCT-II in place of Hadamard): N distinct rows, drawn at random, of C·D with C the
  orthonormal DCT matrix and D random ±1 signs. Its rows are orthonormal and
  E[q qᵀ] = (1/n) Σ_r diag(C_r²) = I/n as well; it costs O(N n) per block.
* ``coordinate``: the unit vectors e_1..e_n (N = n, deterministic).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

FAMILIES = ("gaussian", "sphere", "orthogonal", "coordinate")
#: orthogonal blocks are randomized DCT rows from this dimension on (when N ≥ n/2)
FAST_ORTHOGONAL_N = 512


@lru_cache(maxsize=2)
def _dct_matrix(n: int) -> np.ndarray:
    """The orthonormal DCT-II matrix C (C Cᵀ = I), rows = frequencies."""
    from scipy.fft import dct

    c = dct(np.eye(n), norm="ortho", axis=0)
    c.setflags(write=False)
    return c


def _orthogonal_block(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """k orthonormal rows in R^n: Haar (QR of a Gaussian block), or randomized DCT rows
    in high dimension (see the module docstring)."""
    if n >= FAST_ORTHOGONAL_N and 2 * k >= n:
        rows = rng.permutation(n)[:k]
        signs = rng.choice(np.array([-1.0, 1.0]), size=n)
        block = _dct_matrix(n)[rows]
        block *= signs  # in place: one N × n pass less
        return block
    q, r = np.linalg.qr(rng.standard_normal((n, k)))
    q *= np.where(np.diag(r) < 0, -1.0, 1.0)  # Haar measure (Mezzadri 2007)
    return q.T


@lru_cache(maxsize=16)
def _directions(family: str, n: int, n_directions: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if family == "gaussian":
        u = rng.standard_normal((n_directions, n))
    elif family == "sphere":
        u = rng.standard_normal((n_directions, n))
        u /= np.linalg.norm(u, axis=1, keepdims=True)
    elif family == "orthogonal":
        blocks, left = [], n_directions
        while left > 0:
            k = min(left, n)
            blocks.append(_orthogonal_block(rng, n, k))
            left -= k
        one = len(blocks) == 1 and blocks[0].flags.c_contiguous  # (a QR block is a transposed view)
        u = blocks[0] if one else np.concatenate(blocks, axis=0)
    elif family == "coordinate":
        u = np.eye(n)[:n_directions]
    else:  # pragma: no cover - guarded by DirectionSet.__post_init__
        raise ValueError(family)
    u.setflags(write=False)
    return u


@dataclass(frozen=True)
class StandardDirections:
    """N directions of one family in R^n, generated from ``seed``.

    Example:
        >>> d = StandardDirections("orthogonal", n=5, n_directions=3, seed=7)
        >>> np.allclose(d.matrix() @ d.matrix().T, np.eye(3))
        True
        >>> np.array_equal(d.row(2), d.matrix()[2])
        True
    """

    family: str
    n: int
    n_directions: int
    seed: int

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"unknown direction family {self.family!r}; known: {', '.join(FAMILIES)}")
        if self.n < 1 or self.n_directions < 1:
            raise ValueError(f"need n >= 1 and n_directions >= 1, got n={self.n}, N={self.n_directions}")
        if self.family == "coordinate" and self.n_directions > self.n:
            raise ValueError(f"coordinate directions: N={self.n_directions} > n={self.n}")

    def matrix(self) -> np.ndarray:
        """All directions as rows, shape ``(n_directions, n)`` (read-only)."""
        return _directions(self.family, self.n, self.n_directions, int(self.seed))

    def row(self, i: int) -> np.ndarray:
        """Direction ``i``, shape ``(n,)``."""
        if not 0 <= i < self.n_directions:
            raise IndexError(f"direction index {i} out of range [0, {self.n_directions})")
        return self.matrix()[i]

    def mc_scale(self, n_used: int) -> float:
        """c such that c · Σ δ_i u_i over ``n_used`` directions is the Monte-Carlo
        gradient estimate: 1/N (gaussian), n/N (sphere, orthogonal), 1 (coordinate)."""
        if self.family == "gaussian":
            return 1.0 / n_used
        if self.family in ("sphere", "orthogonal"):
            return self.n / n_used
        return 1.0  # coordinate: Σ δ_i e_i
