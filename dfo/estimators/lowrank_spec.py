"""The one home of the low-rank direction formulas, shared by numpy and torch.

:class:`dfo.estimators.LowRankEstimator` (numpy, blocks of a flat vector) and
:class:`dfo.torch.ZerothOrder` (torch, tensors of a model) both call this module
for everything that defines a method; neither re-implements a formula.

Methods (:data:`LOWRANK_METHODS`; a new method is one entry) are a direction *family*
plus defaults:

* ``gaussian`` (MeZO, Malladi et al. 2023): ``P = z ~ N(0, I)``, the estimate is
  ``g P`` with ``g = (f(x + σP) − f(x − σP)) / (2σ)``.
* ``subzero`` (Yu et al. 2024, "Zeroth-order fine-tuning of LLMs in random
  subspaces"): for a matrix W (m×n), ``P = √(mn)/r · U Z Vᵀ`` with column-orthonormal
  U (m×r), V (n×r) redrawn every ``refresh`` steps and ``Z ~ N(0, I_{r×r})`` per
  direction; estimate ``g P``, whose mean given (U, V) is ``(mn/r²) U Uᵀ ∇W V Vᵀ``.
* ``lozo`` (Chen et al. 2024, "Enhancing zeroth-order fine-tuning for language
  models with low-rank structures"): ``P = U Vᵀ`` with Gaussian U (m×r) per direction
  and Gaussian V (n×r) redrawn every ``refresh`` steps; estimate ``g P / r``, whose
  mean given V is ``∇W V Vᵀ / r`` and over V is ``∇W`` (E[V Vᵀ] = r I).

Every low-rank direction is ``P = D Vᵀ`` with the m×r *left factor* D
(:func:`left_factor`); estimates, momentum and side paths work on D only.

Momentum (``lozo-m``, any family with ``momentum > 0``): the m×r factor
``N ← β N + (1 − β) w Σᵢ gᵢ Dᵢ / N_dirs`` (w from :func:`estimate_weight`) and the
step is ``N Vᵀ``. The first update sets ``N`` to the estimate itself (as the LOZO
reference code does), so the first step has the size of a LOZO step. When V is
redrawn, ``N`` is carried by least squares: the N' with ``N' V_newᵀ`` closest to
``N V_oldᵀ`` in Frobenius norm, ``N' = N V_oldᵀ V_new (V_newᵀ V_new)⁻¹``
(:func:`carry_momentum`). The LOZO paper's carry ``N V_oldᵀ V_new / n`` is the same
formula with ``V_newᵀ V_new`` replaced by its expectation ``n I``.

Small-matrix rule (:func:`block_rank`): a 2-D block uses rank ``min(r, m, n)``;
anything else gets dense Gaussian directions.

Random streams (exact agreement of numpy and torch): every low-rank random draw is
made here, in float64 with numpy, from a generator keyed by the integers
``(seed, index, tag[, direction])`` through ``np.random.SeedSequence``:
``index`` is the block (numpy) or tensor (torch) position, ``direction`` the
direction number within a step. Subspaces use ``(refresh_seed, index, 0)``: U then
V (subzero, QR with the sign fix of :func:`orthonormal`) or V (lozo); direction
cores use ``(step_seed, index, 1, direction)``: Z (r×r, subzero) or U (m×r, lozo).
Hence the same seeds and shapes give bit-identical factors on both sides; the
m×n directions agree to matmul rounding. Dense Gaussian directions are drawn by each
backend's own fastest generator (numpy: the keyed stream ``(seed, index, 1, direction)``;
torch: chunked ``normal_`` from private generators, see :mod:`dfo.torch.directions`):
same distribution, different numbers.

Example:
    >>> get_method("lozo-m").momentum, block_rank((3, 17), 8), block_rank((5,), 8)
    (0.9, 3, 0)
    >>> u, v = draw_subspace("subzero", (4, 6), 2, seed=1, index=0)
    >>> bool(np.allclose(u.T @ u, np.eye(2))) and v.shape == (6, 2)
    True
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

FAMILIES = ("gaussian", "subzero", "lozo")
LOW_RANK_FAMILIES = ("subzero", "lozo")

_SUBSPACE, _DIRECTION = 0, 1


@dataclass(frozen=True)
class Method:
    """A named method: a direction family and its defaults.

    Attributes:
        name: registry name.
        family: ``"gaussian"``, ``"subzero"`` or ``"lozo"``.
        momentum: default β of the factored momentum (0 = none).
        rank: default r.
        refresh: default steps between subspace redraws (SubZero's T, LOZO's ν).
        reference: the paper.
    """

    name: str
    family: str
    momentum: float = 0.0
    rank: int = 8
    refresh: int = 50
    reference: str = ""

    @property
    def low_rank(self) -> bool:
        return self.family in LOW_RANK_FAMILIES


#: every method, numpy and torch alike (numpy's dense one is the ``central-gaussian`` preset).
#: Defaults rank 8 / refresh 50 for all: the papers' code uses SubZero r = 8 (T = 1000-2000)
#: and LOZO r = 1-4 (ν = 50-100); see docs/torch.md for what was measured.
LOWRANK_METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("mezo", "gaussian", reference="Malladi et al. 2023"),
        Method("subzero", "subzero", reference="Yu et al. 2024"),
        Method("lozo", "lozo", reference="Chen et al. 2024"),
        Method("lozo-m", "lozo", momentum=0.9, reference="Chen et al. 2024 (LOZO-M)"),
    )
}


def get_method(name: str) -> Method:
    """The entry of :data:`LOWRANK_METHODS` called ``name`` (clear error otherwise)."""
    if name not in LOWRANK_METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {tuple(LOWRANK_METHODS)}")
    return LOWRANK_METHODS[name]


def block_rank(shape: tuple[int, ...], rank: int) -> int:
    """Rank used for a block of ``shape``: ``min(rank, m, n)`` for a matrix, 0 (dense) otherwise."""
    if len(shape) != 2 or min(shape) < 1:
        return 0
    return int(min(rank, shape[0], shape[1]))


def refresh_due(step: int, refreshed_at: int | None, refresh: int) -> bool:
    """Whether a block needs a new subspace at ``step`` (it never had one, or ``refresh`` steps passed)."""
    return refreshed_at is None or step - refreshed_at >= refresh


# ------------------------------------------------------------------ random draws
def _stream(*key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


def orthonormal(rng: np.random.Generator, rows: int, rank: int) -> np.ndarray:
    """A rows×rank matrix with orthonormal columns: QR of a Gaussian block, signs fixed.

    Multiplying column j by sign(R_jj) makes Q Haar-distributed and independent of
    the QR implementation (Mezzadri 2007).
    """
    q, r = np.linalg.qr(rng.standard_normal((rows, rank)))
    return q * np.where(np.diag(r) < 0, -1.0, 1.0)


def draw_subspace(family: str, shape: tuple[int, int], r: int, seed: int, index: int
                  ) -> tuple[np.ndarray | None, np.ndarray]:
    """(U, V) of a block: subzero orthonormal U (m×r), V (n×r); lozo (None, Gaussian V)."""
    m, n = shape
    rng = _stream(seed, index, _SUBSPACE)
    if family == "subzero":
        u = orthonormal(rng, m, r)
        return u, orthonormal(rng, n, r)
    if family == "lozo":
        return None, rng.standard_normal((n, r))
    raise ValueError(f"family {family!r} has no subspace")


def draw_core(family: str, shape: tuple[int, int], r: int, seed: int, index: int, direction: int) -> np.ndarray:
    """The per-direction random part: Z (r×r) for subzero, U (m×r) for lozo."""
    rng = _stream(seed, index, _DIRECTION, direction)
    if family == "subzero":
        return rng.standard_normal((r, r))
    if family == "lozo":
        return rng.standard_normal((shape[0], r))
    raise ValueError(f"family {family!r} has no low-rank core")


def draw_dense(seed: int, index: int, direction: int, size: int) -> np.ndarray:
    """A dense N(0, I) direction of ``size`` numbers (numpy side)."""
    return _stream(seed, index, _DIRECTION, direction).standard_normal(size)


# ------------------------------------------------------------------ formulas (numpy or torch arrays)
def direction_scale(family: str, shape: tuple[int, int], r: int) -> float:
    """SubZero's √(mn)/r (so that E‖P‖² = mn, as a Gaussian matrix); 1 for lozo."""
    return math.sqrt(shape[0] * shape[1]) / r if family == "subzero" else 1.0


def left_factor(family: str, shape: tuple[int, int], r: int, core: Any, u: Any = None) -> Any:
    """D of the direction ``P = D Vᵀ``: ``√(mn)/r · U Z`` (subzero) or the Gaussian U (lozo)."""
    if family == "subzero":
        return (u @ core) * direction_scale(family, shape, r)
    return core


def estimate_weight(family: str, r: int) -> float:
    """Weight of ``g P`` in the estimate: LOZO's 1/r (makes it unbiased over V), else 1."""
    return 1.0 / r if family == "lozo" else 1.0


def momentum_coefficients(beta: float, first: bool) -> tuple[float, float]:
    """(keep, add): ``N ← keep N + add · estimate``; the first update takes the estimate whole."""
    return (0.0, 1.0) if first else (beta, 1.0 - beta)


def momentum_update(moment: Any, estimate: Any, beta: float) -> Any:
    """``β N + (1 − β) estimate``, or the estimate itself when there is no momentum yet."""
    if moment is None:
        return estimate * 1.0
    keep, add = momentum_coefficients(beta, False)
    return moment * keep + estimate * add


def _linalg(a: Any) -> Any:
    return np.linalg if isinstance(a, np.ndarray) else sys.modules[type(a).__module__.split(".")[0]].linalg


def carry_momentum(moment: Any, v_old: Any, v_new: Any) -> Any:
    """Least-squares carry of ``N V_oldᵀ`` onto the new row space: ``N V_oldᵀ V_new (V_newᵀ V_new)⁻¹``."""
    coef = _linalg(v_new).solve(v_new.T @ v_new, v_new.T @ v_old)  # (V'ᵀV')⁻¹ V'ᵀ V, r×r
    return moment @ coef.T


def expected_given_subspace(family: str, grad: Any, r: int, u: Any, v: Any) -> Any:
    """E[estimate | subspace] for a matrix block with gradient ``grad`` (linear f, σ → 0)."""
    m, n = grad.shape
    if family == "subzero":
        return (u @ (u.T @ grad @ v) @ v.T) * (m * n / r**2)
    return grad @ v @ v.T / r
