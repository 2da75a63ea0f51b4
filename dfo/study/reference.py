"""Reference gradients of seeded objectives (RL) by common random numbers.

An RL objective has no known gradient: ``f(x, seed)`` is the negated return of an
episode whose randomness is fixed by ``seed``. With m common seeds s_1..s_m the
CRN average F_m(x) = (1/m) Σ_j f(x, s_j) is a deterministic function of x, and

    ĝ = (1/B) Σ_b Σ_{i=1}^n [F_m(x + σ q_{b,i}) − F_m(x − σ q_{b,i})] / (2σ) · q_{b,i}

with B independent orthonormal bases {q_{b,i}} (central differences in random
rotated coordinates, each basis a full estimate) is the reference gradient. Using
the same seeds at every point removes the episode-to-episode noise from the
differences (common random numbers; Glasserman & Yao 1992; ARS/ES use the same
trick for antithetic pairs). The spread of the B per-basis estimates gives the
reference's own standard error, and the spread of f(x, s_j) over seeds gives the
noise level ε_f a single evaluation carries.

:func:`seeded_study_function` then wraps the objective for :func:`run_cell`: every
evaluated point gets a fresh seed from a seeded stream (independent episodes, as in
training), and the reference gradient is the target.

Example:
    >>> import numpy as np
    >>> f = lambda x, seed: float(x @ x) + 1e-3 * np.random.default_rng(seed).standard_normal()
    >>> ref = reference_gradient(f, np.ones(3), n_seeds=4, n_bases=2, sigma=1e-2, rng=0)
    >>> np.allclose(ref.grad, 2.0, atol=1e-6), ref.nfev
    (True, 52)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..estimators.base import as_point, check_finite
from ..estimators.directions import StandardDirections
from ..rng import as_generator, draw_seed
from .functions import StudyFunction

SeededObjective = Callable[[np.ndarray, int], float]


@dataclass(frozen=True)
class ReferenceGradient:
    """A reference gradient and what it cost.

    Attributes:
        grad: ĝ, shape (n,).
        stderr: ‖standard error‖ of ĝ from the spread of the per-basis estimates (NaN if B = 1).
        fx: F_m(x), the CRN mean at x.
        eps_f: standard deviation of f(x, s_j) over the seeds (noise of one evaluation).
        nfev: evaluations used (m (2 n B + 1)).
        seeds: the common seeds.
    """

    grad: np.ndarray
    stderr: float
    fx: float
    eps_f: float
    nfev: int
    seeds: tuple[int, ...]


def _eval(fun: SeededObjective, items, evaluator) -> np.ndarray:
    if evaluator is None:
        return check_finite([float(fun(p, s)) for p, s in items], "seeded objective")
    return check_finite(evaluator.map(_call, items, shared=fun), "seeded objective")


def _call(fun, item) -> float:
    return float(fun(item[0], item[1]))


def reference_gradient(fun: SeededObjective, x, *, n_seeds: int = 8, n_bases: int = 2, sigma: float = 1e-2,
                       rng=None, evaluator=None) -> ReferenceGradient:
    """Large central estimate of ∇F_m at ``x`` with common random numbers (see module doc).

    Args:
        fun: ``fun(x, seed) -> float`` (deterministic given the seed).
        x: the point.
        n_seeds: m, common seeds per point.
        n_bases: B, independent orthonormal bases (2 n B directions in all).
        sigma: the differencing radius.
        rng: seed or Generator for the bases and the common seeds.
        evaluator: anything with ``map(fn, items, shared)`` (see :mod:`dfo.parallel`); None = serial.
    """
    x = as_point(x)
    if n_seeds < 1 or n_bases < 1:
        raise ValueError(f"need n_seeds >= 1 and n_bases >= 1, got {n_seeds}, {n_bases}")
    if not (np.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma must be positive, got {sigma}")
    gen = as_generator(rng)
    n = x.size
    seeds = tuple(int(s) for s in gen.integers(0, 2**31 - 1, size=n_seeds))
    dirs = StandardDirections("orthogonal", n, n * n_bases, draw_seed(gen)).matrix()
    pts = np.concatenate([x[None, :], x + sigma * dirs, x - sigma * dirs])
    items = [(p, s) for p in pts for s in seeds]
    vals = _eval(fun, items, evaluator).reshape(len(pts), n_seeds)
    at_x = vals[0]
    mean = vals.mean(axis=1)
    k = n * n_bases
    delta = (mean[1:1 + k] - mean[1 + k:]) / (2 * sigma)
    per_basis = np.stack([delta[b * n:(b + 1) * n] @ dirs[b * n:(b + 1) * n] for b in range(n_bases)])
    grad = per_basis.mean(axis=0)
    stderr = float(np.linalg.norm(per_basis.std(axis=0, ddof=1)) / np.sqrt(n_bases)) if n_bases > 1 else float("nan")
    eps = float(at_x.std(ddof=1)) if n_seeds > 1 else 0.0
    return ReferenceGradient(grad=grad, stderr=stderr, fx=float(at_x.mean()), eps_f=eps,
                             nfev=len(items), seeds=seeds)


class SeededBatch:
    """``X -> values`` for a seeded objective; seeds come from one seeded stream, so a
    study run is reproducible (serial or parallel).

    ``crn=False``: every row gets a fresh seed (independent episodes). ``crn=True``:
    the rows of one estimate (consecutive groups of ``group`` rows, passed by the runner)
    share one seed: common random numbers within an estimate, as antithetic ES/ARS pairs.
    """

    accepts_group = True

    def __init__(self, fun: SeededObjective, rng=None, evaluator=None, *, crn: bool = False) -> None:
        self.fun = fun
        self.gen = as_generator(rng)
        self.evaluator = evaluator
        self.crn = bool(crn)

    def __call__(self, X: np.ndarray, group: int | None = None) -> np.ndarray:
        m = X.shape[0]
        if self.crn and group:
            if m % group:
                raise ValueError(f"{m} rows do not split into estimates of {group} points")
            seeds = np.repeat(self.gen.integers(0, 2**31 - 1, size=m // group), group)
        else:
            seeds = self.gen.integers(0, 2**31 - 1, size=m)
        return _eval(self.fun, list(zip(X, (int(s) for s in seeds))), self.evaluator)


def seeded_study_function(fun: SeededObjective, x, ref: ReferenceGradient, *, name: str = "seeded",
                          rng=None, evaluator=None, crn: bool = False) -> StudyFunction:
    """A :class:`StudyFunction` whose target is the reference gradient ``ref.grad``
    (``crn``: one common seed for all points of one estimate, see :class:`SeededBatch`)."""
    x = as_point(x)
    return StudyFunction(name, x.size, x, ref.grad, SeededBatch(fun, rng, evaluator, crn=crn))


#: Seeded objectives that live outside ``dfo`` and are reached by name: ``"module:function"``,
#: imported only when a study asks for one (``dfo`` imports nothing from ``policies``/``envs``).
SEEDED_OBJECTIVES: dict[str, str] = {"rl": "dfo.policies.objective:study_objective"}


def seeded_objective(kind: str):
    """The factory registered under ``kind`` in :data:`SEEDED_OBJECTIVES` (imported now)."""
    import importlib

    if kind not in SEEDED_OBJECTIVES:
        raise ValueError(f"unknown seeded objective {kind!r}; known: {sorted(SEEDED_OBJECTIVES)}")
    module_name, attr = SEEDED_OBJECTIVES[kind].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:  # pragma: no cover - depends on the RL extra
        raise ImportError(f"--problem {kind}:ENV needs the policies/envs packages and gymnasium[mujoco]: {exc}") from exc
    return getattr(module, attr)


def rl_objective(env_id: str, *, horizon: int = 100, hidden: tuple[int, ...] = ()):
    """The seeded RL objective ``(params, seed) -> -return`` of a linear (or MLP) policy and its start x.

    Built by the factory registered as ``"rl"`` (``dfo.policies.objective.study_objective``).
    """
    return seeded_objective("rl")(env_id, horizon=horizon, hidden=hidden)
