"""Low-rank subspace estimators for parameters made of matrix blocks.

The parameter vector is a concatenation of named blocks (``blocks=[("M", (m, k)),
("b", (m,))]``). Matrix blocks get low-rank perturbations; vector blocks fall
back to Gaussian ones. Differences are central.

* ``subzero`` (Yu et al. 2024, "Zeroth-order fine-tuning of LLMs in random
  subspaces"): P = √(mk)/r · U Z Vᵀ with U (m×r), V (k×r) column-orthonormal,
  refreshed every T steps, Z ~ N(0, I_{r×r}) fresh per direction; g = (1/N) Σ δ_i P_i.
  Given U, V: E[g] = (mk/r²) · U Uᵀ ∇_W f V Vᵀ for a linear f, i.e. proportional to
  the gradient projected on the subspace (:meth:`LowRankEstimator.expected_given_subspace`).
* ``lozo`` (Chen et al. 2024, "Enhancing zeroth-order fine-tuning for language
  models with low-rank structures"): P = U Vᵀ, U ~ N(0) fresh per direction, V ~ N(0)
  kept for ν steps; g = (1/N) Σ δ_i P_i / r, so that E[g] = ∇f for a linear f.
* ``lozo-m``: LOZO with momentum kept in factored form: per matrix block the
  momentum is an m×r factor Mₜ = β Mₜ₋₁ + (1−β) (1/N) Σ δ_i U_i / r and the returned
  direction is Mₜ Vᵀ; at a V refresh the factor is carried over by least squares,
  M ← M V_oldᵀ V_new (V_newᵀ V_new)⁻¹, i.e. the best M with M V_newᵀ ≈ M V_oldᵀ.

The estimator is stateful (step counter, subspaces, momentum): ``state_dict()`` and
``load_state_dict()`` carry it so a run resumes exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..rng import as_generator, draw_seed
from .assembly import assemble
from .base import GradEstimate, Query, as_point

Block = tuple[str, tuple[int, ...]]

#: per-process cache of regenerated direction sets (seeds are fresh 63-bit draws per step)
_CACHE: dict = {}


def default_blocks(n: int) -> list[Block]:
    """One matrix block of the most square shape m×k = n (m ≥ k)."""
    k = max(d for d in range(1, int(np.sqrt(n)) + 1) if n % d == 0)
    return [("x", (n // k, k))]


def _orthonormal(rng: np.random.Generator, m: int, r: int) -> np.ndarray:
    q, rr = np.linalg.qr(rng.standard_normal((m, r)))
    return q * np.where(np.diag(rr) < 0, -1.0, 1.0)


@dataclass(frozen=True)
class LowRankDirections:
    """N low-rank directions, regenerable from ``seed`` given the block factors.

    ``factors[j]`` is (U, V) for a subzero block, (None, V) for a lozo block and
    None for a vector block. The arrays are small ((m + k) r numbers per block).
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
        """All N directions (rows) and the per-block lozo U factors, from the seed.

        Drawn block by block from one generator, for all N directions at once;
        cached per process (a worker evaluating many rows of one set builds it once).
        """
        key = (self.kind, self.seed, self.n_directions, self.blocks,
               tuple(None if f is None else tuple(None if a is None else a.tobytes() for a in f) for f in self.factors))
        hit = _CACHE.get(key)
        if hit is not None:
            return hit
        rng = np.random.default_rng(self.seed)
        N, parts, us = self.n_directions, [], []
        for (_, shape), r, fac in zip(self.blocks, self.ranks, self.factors):
            if fac is None:
                parts.append(rng.standard_normal((N, int(np.prod(shape)))))
                us.append(None)
            elif self.kind == "subzero":
                u, v = fac
                z = rng.standard_normal((N, r, r))
                m, k = shape
                parts.append((np.sqrt(m * k) / r * np.einsum("ma,nab,kb->nmk", u, z, v)).reshape(N, -1))
                us.append(None)
            else:
                _, v = fac
                u = rng.standard_normal((N, shape[0], r))
                parts.append(np.einsum("nma,ka->nmk", u, v).reshape(N, -1))
                us.append(u)
        matrix = np.concatenate(parts, axis=1)
        matrix.setflags(write=False)
        if len(_CACHE) >= 4:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = (matrix, us)
        return matrix, us

    def row(self, i: int) -> np.ndarray:
        if not 0 <= i < self.n_directions:
            raise IndexError(f"direction index {i} out of range [0, {self.n_directions})")
        return self._generate()[0][i]

    def matrix(self) -> np.ndarray:
        return self._generate()[0]

    def lozo_factors(self, i: int) -> list:
        """The per-block U_i of direction i (lozo), None for other blocks."""
        return [None if u is None else u[i] for u in self._generate()[1]]


@dataclass(kw_only=True)
class LowRankEstimator:
    """SubZero / LOZO / LOZO-M gradient estimator (central differences).

    Args:
        kind: ``"subzero"`` or ``"lozo"``.
        blocks: ``[(name, shape), ...]`` splitting x; None = one near-square matrix.
        rank: r (clipped to min(m, k) per block).
        refresh: steps between subspace refreshes (T for subzero, ν for lozo).
        n_directions: N perturbations per step.
        sigma: sampling radius.
        momentum: β of lozo-m's factored momentum (0 = plain lozo).
        shaping: shapers applied before assembly.

    Example:
        >>> est = LowRankEstimator(kind="subzero", blocks=[("W", (4, 3))], rank=2, sigma=1e-3)
        >>> q = est.ask(np.zeros(12), rng=0)
        >>> q.points.shape
        (2, 12)
    """

    kind: str = "subzero"
    blocks: list | None = None
    rank: int = 2
    refresh: int = 10
    n_directions: int = 1
    sigma: float = 1e-3
    momentum: float = 0.0
    shaping: tuple = ()
    step: int = field(default=0, init=False)
    _factors: tuple | None = field(default=None, init=False, repr=False)
    _moment: list | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in ("subzero", "lozo"):
            raise ValueError(f"unknown low-rank kind {self.kind!r}; known: subzero, lozo")
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
        return tuple(min(self.rank, *shape) if len(shape) == 2 else 0 for _, shape in blocks)

    def _refresh(self, blocks, ranks, rng: np.random.Generator) -> tuple:
        factors = []
        for (_, shape), r in zip(blocks, ranks):
            if len(shape) == 1:
                factors.append(None)
            elif self.kind == "subzero":
                factors.append((_orthonormal(rng, shape[0], r), _orthonormal(rng, shape[1], r)))
            else:
                factors.append((None, rng.standard_normal((shape[1], r))))
        return tuple(factors)

    def _carry_momentum(self, new_factors) -> None:
        if self._moment is None or self._factors is None:
            return
        for j, (old, new) in enumerate(zip(self._factors, new_factors)):
            if old is None or self._moment[j] is None:
                continue
            v_old, v_new = old[1], new[1]
            self._moment[j] = self._moment[j] @ (v_old.T @ v_new) @ np.linalg.inv(v_new.T @ v_new)

    # -- ask / tell -------------------------------------------------------------
    def ask(self, x, rng=None, *, fx: float | None = None) -> Query:
        x = as_point(x)
        gen = as_generator(rng)
        blocks = self._resolve_blocks(x.size)
        ranks = self.ranks_for(blocks)
        if self._factors is None or self.step % self.refresh == 0:
            new = self._refresh(blocks, ranks, gen)
            self._carry_momentum(new)
            self._factors = new
        self.step += 1
        dirs = LowRankDirections(self.kind, blocks, ranks, self._factors, int(self.n_directions), draw_seed(gen))
        return Query(x=x, sigma=float(self.sigma), directions=dirs, signs=(1, -1), needs_fx=False, fx=fx)

    def _weights(self, dirs: LowRankDirections) -> np.ndarray | None:
        if self.kind != "lozo":
            return None
        return np.concatenate([
            np.full(int(np.prod(s)), 1.0 / r if len(s) == 2 else 1.0) for (_, s), r in zip(dirs.blocks, dirs.ranks)
        ])

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
        beta = self.momentum
        if self._moment is None:
            self._moment = [None] * len(dirs.blocks)
        out, offset = [], 0
        for j, ((_, shape), r, fac) in enumerate(zip(dirs.blocks, dirs.ranks, dirs.factors)):
            size = int(np.prod(shape))
            if fac is None:  # vector block: ordinary momentum on the estimate
                piece = est.grad[offset:offset + size]
                prev = self._moment[j] if self._moment[j] is not None else np.zeros(size)
                self._moment[j] = beta * prev + (1 - beta) * piece
                out.append(self._moment[j])
            else:
                u_mean = sum(d * dirs.lozo_factors(int(i))[j] for d, i in zip(delta, keep)) / (len(keep) * r)
                prev = self._moment[j] if self._moment[j] is not None else np.zeros_like(u_mean)
                self._moment[j] = beta * prev + (1 - beta) * u_mean
                out.append((self._moment[j] @ fac[1].T).ravel())
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
            elif self.kind == "subzero":
                u, v = fac
                g = piece.reshape(shape)
                out.append((shape[0] * shape[1] / r**2 * (u @ (u.T @ g @ v) @ v.T)).ravel())
            else:
                v = fac[1]
                out.append((piece.reshape(shape) @ v @ v.T / r).ravel())
            offset += size
        return np.concatenate(out)

    # -- state ------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"step": self.step, "factors": self._factors, "moment": self._moment}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])
        self._factors = state["factors"]
        self._moment = state["moment"]
