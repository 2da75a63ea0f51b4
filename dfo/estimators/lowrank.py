"""Low-rank subspace estimators for parameters made of matrix blocks.

The parameter vector is a concatenation of named blocks (``blocks=[("M", (m, k)),
("b", (m,))]``). Matrix blocks get low-rank perturbations; vector blocks fall
back to Gaussian ones. Differences are central.

The formulas (SubZero's √(mk)/r scale, LOZO's 1/r weight, LOZO-M's factored
momentum and its least-squares carry at a refresh, the small-matrix rule, the QR
sign fix, the random streams and the defaults) live in
:mod:`dfo.estimators.lowrank_spec`, which the torch optimizer calls too:

* ``subzero`` (Yu et al. 2024): P = √(mk)/r · U Z Vᵀ, U, V column-orthonormal,
  refreshed every T steps, Z ~ N(0, I_{r×r}) fresh per direction; g = (1/N) Σ δ_i P_i.
  Given U, V: E[g] = (mk/r²) · U Uᵀ ∇_W f V Vᵀ for a linear f
  (:meth:`LowRankEstimator.expected_given_subspace`).
* ``lozo`` (Chen et al. 2024): P = U Vᵀ, U ~ N(0) fresh per direction, V ~ N(0)
  kept for ν steps; g = (1/N) Σ δ_i P_i / r, so that E[g] = ∇f for a linear f.
* ``lozo-m``: per matrix block the momentum is an m×r factor M (the returned
  direction is M Vᵀ), M ← β M + (1−β) (1/N) Σ δ_i U_i / r after the first step (which
  sets M to the estimate), carried over a V refresh by least squares.

The estimator is stateful (step counter, subspaces, momentum): ``state_dict()`` and
``load_state_dict()`` carry it so a run resumes exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..rng import as_generator, draw_seed
import dfo.estimators.lowrank_spec as spec
from .assembly import assemble
from .base import GradEstimate, Query, as_point

Block = tuple[str, tuple[int, ...]]

#: per-process cache of regenerated direction sets (seeds are fresh 63-bit draws per step)
_CACHE: dict = {}


def default_blocks(n: int) -> list[Block]:
    """One matrix block of the most square shape m×k = n (m ≥ k)."""
    k = max(d for d in range(1, int(np.sqrt(n)) + 1) if n % d == 0)
    return [("x", (n // k, k))]


@dataclass(frozen=True)
class LowRankDirections:
    """N low-rank directions, regenerable from ``seed`` given the block factors.

    ``factors[j]`` is (U, V) for a subzero block, (None, V) for a lozo block and
    None for a vector block. The arrays are small ((m + k) r numbers per block).
    Block j of direction i is drawn from the spec's stream ``(seed, j, 1, i)``,
    exactly as the torch optimizer draws tensor j (see :mod:`.lowrank_spec`).
    """

    kind: str
    blocks: tuple
    ranks: tuple
    factors: tuple
    n_directions: int
    seed: int

    @property
    def n(self) -> int:
        return int(sum(np.prod(shape) for _, shape in self.blocks))

    def _generate(self) -> tuple[np.ndarray, list]:
        """All N directions (rows) and the per-block left factors D_i (P_i = D_i Vᵀ).

        Cached per process (a worker evaluating many rows of one set builds it once).
        """
        key = (self.kind, self.seed, self.n_directions, self.blocks,
               tuple(None if f is None else tuple(None if a is None else a.tobytes() for a in f) for f in self.factors))
        hit = _CACHE.get(key)
        if hit is not None:
            return hit
        N, parts, lefts = self.n_directions, [], []
        for j, ((_, shape), r, fac) in enumerate(zip(self.blocks, self.ranks, self.factors)):
            size = int(np.prod(shape))
            if fac is None:
                parts.append(np.stack([spec.draw_dense(self.seed, j, i, size) for i in range(N)]))
                lefts.append(None)
                continue
            u, v = fac
            d = np.stack([spec.left_factor(self.kind, shape, r, spec.draw_core(self.kind, shape, r, self.seed, j, i), u)
                          for i in range(N)])
            parts.append(np.einsum("nma,ka->nmk", d, v).reshape(N, -1))
            lefts.append(d)
        matrix = np.concatenate(parts, axis=1)
        matrix.setflags(write=False)
        if len(_CACHE) >= 4:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = (matrix, lefts)
        return matrix, lefts

    def row(self, i: int) -> np.ndarray:
        if not 0 <= i < self.n_directions:
            raise IndexError(f"direction index {i} out of range [0, {self.n_directions})")
        return self._generate()[0][i]

    def matrix(self) -> np.ndarray:
        return self._generate()[0]

    def left_factors(self, i: int) -> list:
        """The per-block left factor D_i of direction i (P_i = D_i Vᵀ), None for vector blocks."""
        return [None if d is None else d[i] for d in self._generate()[1]]


@dataclass(kw_only=True)
class LowRankEstimator:
    """SubZero / LOZO / LOZO-M gradient estimator (central differences).

    Args:
        kind: a low-rank family of :mod:`.lowrank_spec`, ``"subzero"`` or ``"lozo"``.
        blocks: ``[(name, shape), ...]`` splitting x; None = one near-square matrix.
        rank: r (clipped to min(m, k) per block); None = the spec's default.
        refresh: steps between subspace refreshes (T for subzero, ν for lozo); None = default.
        n_directions: N perturbations per step.
        sigma: sampling radius.
        momentum: β of the factored momentum (0 = plain; the ``lozo-m`` preset uses 0.9).
        shaping: shapers applied before assembly.

    Example:
        >>> est = LowRankEstimator(kind="subzero", blocks=[("W", (4, 3))], rank=2, sigma=1e-3)
        >>> q = est.ask(np.zeros(12), rng=0)
        >>> q.points.shape
        (2, 12)
    """

    kind: str = "subzero"
    blocks: list | None = None
    rank: int | None = None
    refresh: int | None = None
    n_directions: int = 1
    sigma: float = 1e-3
    momentum: float = 0.0
    shaping: tuple = ()
    step: int = field(default=0, init=False)
    _factors: tuple | None = field(default=None, init=False, repr=False)
    _moment: list | None = field(default=None, init=False, repr=False)
    _refreshed_at: int | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in spec.LOW_RANK_FAMILIES:
            raise ValueError(f"unknown low-rank kind {self.kind!r}; known: {', '.join(spec.LOW_RANK_FAMILIES)}")
        default = spec.get_method(self.kind)
        self.rank = default.rank if self.rank is None else self.rank
        self.refresh = default.refresh if self.refresh is None else self.refresh
        if self.rank < 1 or self.refresh < 1 or self.n_directions < 1:
            raise ValueError("rank, refresh and n_directions must all be >= 1")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.momentum and self.kind != "lozo":
            raise ValueError("factored momentum is defined for lozo only (lozo-m)")

    # -- blocks and subspaces -------------------------------------------------
    def _resolve_blocks(self, n: int) -> tuple:
        blocks = default_blocks(n) if self.blocks is None else [(str(a), tuple(int(d) for d in s)) for a, s in self.blocks]
        total = sum(int(np.prod(s)) for _, s in blocks)
        if total != n:
            raise ValueError(f"blocks {blocks} hold {total} numbers but x has {n}")
        for name, shape in blocks:
            if len(shape) not in (1, 2):
                raise ValueError(f"block {name!r} must be a vector or a matrix, got shape {shape}")
        return tuple(blocks)

    def ranks_for(self, blocks) -> tuple:
        return tuple(spec.block_rank(shape, self.rank) for _, shape in blocks)

    def _refresh(self, blocks, ranks, seed: int) -> tuple:
        return tuple(None if r == 0 else spec.draw_subspace(self.kind, shape, r, seed, j)
                     for j, ((_, shape), r) in enumerate(zip(blocks, ranks)))

    def _carry_momentum(self, new_factors) -> None:
        if self._moment is None or self._factors is None:
            return
        for j, (old, new) in enumerate(zip(self._factors, new_factors)):
            if old is None or self._moment[j] is None:
                continue
            self._moment[j] = spec.carry_momentum(self._moment[j], old[1], new[1])

    # -- ask / tell -------------------------------------------------------------
    def ask(self, x, rng=None, *, fx: float | None = None) -> Query:
        x = as_point(x)
        gen = as_generator(rng)
        blocks = self._resolve_blocks(x.size)
        ranks = self.ranks_for(blocks)
        if self._factors is None or spec.refresh_due(self.step, self._refreshed_at, self.refresh):
            new = self._refresh(blocks, ranks, draw_seed(gen))
            self._carry_momentum(new)
            self._factors, self._refreshed_at = new, self.step
        self.step += 1
        dirs = LowRankDirections(self.kind, blocks, ranks, self._factors, int(self.n_directions), draw_seed(gen))
        return Query(x=x, sigma=float(self.sigma), directions=dirs, signs=(1, -1), needs_fx=False, fx=fx)

    def _weights(self, dirs: LowRankDirections) -> np.ndarray | None:
        w = [spec.estimate_weight(self.kind, r) if r else 1.0 for r in dirs.ranks]
        if all(x == 1.0 for x in w):
            return None
        return np.concatenate([np.full(int(np.prod(s)), x) for (_, s), x in zip(dirs.blocks, w)])

    def tell(self, query: Query, values) -> GradEstimate:
        dirs = query.directions
        est = assemble(query, values, shaping=self.shaping, weights=self._weights(dirs))
        if not self.momentum:
            return est
        return self._momentum_step(query, est)

    def _momentum_step(self, query: Query, est: GradEstimate) -> GradEstimate:
        """LOZO-M: fold this step's estimate into the factored momentum."""
        dirs = query.directions
        keep, delta = est.info["kept"], est.info["delta"]
        if self._moment is None:
            self._moment = [None] * len(dirs.blocks)
        lefts = [dirs.left_factors(int(i)) for i in keep]  # per kept direction, all blocks at once
        out, offset = [], 0
        for j, ((_, shape), r, fac) in enumerate(zip(dirs.blocks, dirs.ranks, dirs.factors)):
            size = int(np.prod(shape))
            if fac is None:  # vector block: ordinary momentum on the estimate
                piece = est.grad[offset:offset + size]
            else:
                w = spec.estimate_weight(self.kind, r)
                piece = sum(d * left[j] for d, left in zip(delta, lefts)) * (w / len(keep))
            self._moment[j] = spec.momentum_update(self._moment[j], piece, self.momentum)
            out.append(self._moment[j] if fac is None else (self._moment[j] @ fac[1].T).ravel())
            offset += size
        return GradEstimate(grad=np.concatenate(out), fx=est.fx, nfev=est.nfev, info=est.info)

    def expected_given_subspace(self, grad: np.ndarray, query: Query) -> np.ndarray:
        """E[g | subspace] for a function with gradient ``grad`` (linear model, σ → 0).

        Per matrix block with gradient G: subzero (mk/r²) U Uᵀ G V Vᵀ (expectation
        over Z); lozo G V Vᵀ / r (expectation over U; its mean over V is G again);
        vector blocks: G itself.
        """
        dirs = query.directions
        out, offset = [], 0
        for (_, shape), r, fac in zip(dirs.blocks, dirs.ranks, dirs.factors):
            size = int(np.prod(shape))
            piece = grad[offset:offset + size]
            if fac is None:
                out.append(piece)
            else:
                out.append(spec.expected_given_subspace(self.kind, piece.reshape(shape), r, *fac).ravel())
            offset += size
        return np.concatenate(out)

    # -- state ------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"step": self.step, "factors": self._factors, "moment": self._moment,
                "refreshed_at": self._refreshed_at}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])
        self._factors = state["factors"]
        self._moment = state["moment"]
        at = state.get("refreshed_at")
        if at is None and self._factors is not None:  # older states: refreshes happened at multiples of refresh
            at = (self.step - 1) // self.refresh * self.refresh
        self._refreshed_at = at
