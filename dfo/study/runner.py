"""The study grid: estimator × N × σ × noise × repeats, one row of metrics per cell.

For each cell the R repeated estimates are computed from one batched evaluation of
the objective (all points of all repeats at once, in memory-bounded chunks):

1. for repeat r the estimator is asked exactly as :meth:`ask` would be, with the
   generator ``default_rng(child_r)`` of the cell's ``SeedSequence``, so the
   directions are those of ask/tell;
2. the points x + s σ u_i of every repeat are stacked into one ``(R k, n)`` array,
   evaluated by ``StudyFunction.batch`` and perturbed by the noise model (one draw
   per point, from the cell's noise generator, in ``query.points`` order);
3. differences and the Monte-Carlo assembly c Σ δ_i u_i run as batched array
   operations; interpolation solves each least-squares problem through one SVD
   (which also gives cond(U)).

The result equals ask/tell (:func:`run_cell` with ``vectorized=False``) to
rounding (the tests check 1e-10 relative). Low-rank estimators (subzero, lozo) take
the ask/tell path per repeat, still with one batched evaluation, and add the error
conditional on the sampled subspace, against
:meth:`LowRankEstimator.expected_given_subspace`.

Example:
    >>> from dfo.study.functions import linear_function
    >>> row = run_cell(linear_function(20), "gaussian", n_directions=10, sigma=1e-3, repeats=50, seed=0)
    >>> row["nfev"], 1.0 < row["rel_second_moment"] < 3.5   # (n+1)/N = 2.1
    (11, True)
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass
import numpy as np

from ..estimators import ESTIMATORS, FiniteDifferenceEstimator, LowRankEstimator, get_estimator
from ..estimators.base import NonFiniteValueError, check_finite
from ..radius import sampling_radius
from .functions import Noise, StudyFunction
from .metrics import THETAS, check_gradient, estimate_metrics
from .theory import error_bound, relative_second_moment

#: the ten standard-direction presets (the low-rank ones are opt-in)
STANDARD = ("ffd", "cfd", "gaussian", "central-gaussian", "sphere", "central-sphere",
            "orthogonal", "central-orthogonal", "interpolation", "central-interpolation")
#: the radius choices besides a number
SIGMA_MODES = ("auto", "rule")
_MAX_CHUNK_FLOATS = 8_000_000  # points per evaluation chunk × n (64 MB of float64)


@dataclass(frozen=True, kw_only=True)
class StudySpec:
    """A study grid.

    Args:
        estimators: preset names.
        n_directions: values of N (coordinate presets always use N = n).
        sigmas: radii: floats, ``"auto"`` for the automatic radius (measured noise and
            curvature, :func:`dfo.estimators.auto_radius`, as ``dfo.minimize`` does) or
            ``"rule"`` for the Berahas et al. rule at the known noise level and L, M.
        noises: noise specs (``"none"``, ``"uniform:1e-3"``, ``"relative:1e-3"``, ...).
        repeats: R estimates per cell (≥ 2; ≥ 100 for the published tables).
        seed: base seed; each cell derives its own stream from (seed, cell label).
    """

    estimators: tuple[str, ...] = STANDARD
    n_directions: tuple[int, ...] = (10,)
    sigmas: tuple = ("auto",)
    noises: tuple[str, ...] = ("none",)
    repeats: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        for name in self.estimators:
            if name not in ESTIMATORS:
                raise ValueError(f"unknown estimator {name!r}; known: {', '.join(sorted(ESTIMATORS))}")
        if not self.n_directions or any(int(k) < 1 for k in self.n_directions):
            raise ValueError(f"n_directions must be positive integers, got {self.n_directions}")
        if int(self.repeats) < 2:
            raise ValueError(f"repeats must be >= 2 (bias and variance need two draws), got {self.repeats}")
        for s in self.sigmas:
            if s not in SIGMA_MODES and not (isinstance(s, (int, float)) and np.isfinite(s) and s > 0):
                raise ValueError(f"sigma must be a positive number, 'auto' or 'rule', got {s!r}")
        for text in self.noises:
            Noise.parse(text)

    def cells(self, n: int) -> list[tuple[str, int, object, Noise]]:
        """The (estimator, N, sigma, noise) cells in dimension ``n``, validated."""
        out, seen = [], set()
        for name in self.estimators:
            est = ESTIMATORS[name]()
            for k in self.n_directions:
                k = n if _is_coordinate(est) else int(k)
                if isinstance(est, FiniteDifferenceEstimator) and est.interpolation and k < n:
                    raise ValueError(
                        f"{name} needs N >= n = {n} directions, but the grid has N = {k}; "
                        f"drop N < {n} or the estimator")
                for s in self.sigmas:
                    for text in self.noises:
                        noise = Noise.parse(text)
                        key = (name, k, s, noise)
                        if key not in seen:
                            seen.add(key)
                            out.append(key)
        return out


def _is_coordinate(est) -> bool:
    return isinstance(est, FiniteDifferenceEstimator) and est.directions == "coordinate"


def rounding_level(fx: float) -> float:
    """ε_f of a noise-free double-precision evaluation: machine epsilon × max(1, |f|)."""
    return float(np.finfo(float).eps * max(1.0, abs(fx)))


def resolve_sigma(sigma, estimator: str, func: StudyFunction, noise: Noise, *,
                  rng: np.random.Generator | None = None, n_directions: int | None = None) -> tuple[float, dict]:
    """The cell's σ and how it was chosen: ``(σ, info)``.

    * a number: itself;
    * ``"rule"``: the Berahas et al. radius at ε_f = max(noise, rounding) with the
      function's L and M (1 when unknown or zero);
    * ``"auto"``: :func:`dfo.estimators.auto_radius` on the *observed* function (noise
      included, drawn from ``rng``): measured ε_f, L, M and the preset's rule — what
      ``dfo.minimize`` and ``dfo.estimate_gradient`` use by default. ``info`` carries the
      measured ε_f and the probe's evaluations.
    """
    if sigma == "auto":
        from ..estimators import auto_radius

        gen = np.random.default_rng(0) if rng is None else rng
        probe = auto_radius(lambda p: float(_evaluate(func, p[None, :], noise, gen, 1)[0]), func.x,
                            estimator, n_directions=n_directions, rng=gen)
        return probe["sigma"], {"sigma_mode": "auto", "auto_eps_f": probe["eps_f"],
                                "auto_noise_kind": probe["noise_kind"], "auto_nfev": probe["nfev"]}
    if sigma != "rule":
        return float(sigma), {"sigma_mode": "given"}
    fx = func.fx
    eps_f = max(noise.eps_f(fx), rounding_level(fx))
    L = func.L if func.L else 1.0
    M = func.M if func.M else 1.0
    return sampling_radius(estimator, eps_f, L=L, M=M, n=func.n), {"sigma_mode": "rule"}


def relative_error_bound(estimator: str, func: StudyFunction, sigma: float, noise: Noise) -> float:
    """Berahas et al.'s deterministic bound on ‖g − ∇φ‖/‖∇φ‖ (the exact presets: ffd, cfd and
    the interpolation ones with unit directions) at ε_f = max(noise, rounding); NaN for the
    random estimators or unknown L/M."""
    if not ESTIMATORS[estimator].deterministic or func.L is None or func.M is None:
        return float("nan")
    eps = max(noise.eps_f(func.fx), rounding_level(func.fx))
    bound = error_bound(estimator, n=func.n, sigma=sigma, eps_f=eps, L=func.L, M=func.M, N=func.n)
    return float(bound / np.linalg.norm(func.grad))


def _cell_seed(seed: int, label: str) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(seed), zlib.crc32(label.encode())])


def _evaluate(func: StudyFunction, X: np.ndarray, noise: Noise, rng: np.random.Generator,
              group: int) -> np.ndarray:
    """Observed values at the rows of X (``group`` consecutive rows form one estimate;
    batch functions that declare ``accepts_group`` receive it, e.g. for common seeds)."""
    if getattr(func.batch, "accepts_group", False):
        values = np.asarray(func.batch(X, group=group), dtype=float).reshape(-1)
    else:
        values = np.asarray(func.batch(X), dtype=float).reshape(-1)
    if values.size != X.shape[0]:
        raise ValueError(f"{func.name}: batch returned {values.size} values for {X.shape[0]} points")
    return check_finite(noise.apply(values, X, rng), f"objective {func.name}")


def _asks(est_factory, x, children) -> list:
    """One estimator per repeat (low-rank ones are stateful) and its query."""
    out = []
    for child in children:
        est = est_factory()
        out.append((est, est.ask(x, np.random.default_rng(child))))
    return out


def _points(query, U: np.ndarray | None) -> np.ndarray:
    """``query.points``, reusing the direction matrix ``U`` when given (same arithmetic)."""
    if U is None:
        return query.points
    blocks = [query.x[None, :]] if query.needs_fx else []
    blocks += [query.x[None, :] + s * query.sigma * U for s in query.signs]
    return np.concatenate(blocks, axis=0)


def _batched_values(func, queries, noise, noise_rng, mats=None) -> list[np.ndarray]:
    """Evaluate the points of all queries (chunked), in order; one list entry per query.
    ``mats``: the queries' direction matrices when already generated."""
    k, n = queries[0].nfev, func.n
    per_chunk = max(1, _MAX_CHUNK_FLOATS // max(1, k * n))
    out = []
    for start in range(0, len(queries), per_chunk):
        block = range(start, min(start + per_chunk, len(queries)))
        X = np.concatenate([_points(queries[i], None if mats is None else mats[i]) for i in block], axis=0)
        vals = _evaluate(func, X, noise, noise_rng, k)
        out.extend(vals.reshape(len(block), k))
    return out


def _vectorized_grads(func, queries, values: np.ndarray, est: FiniteDifferenceEstimator, U: np.ndarray):
    """Differences and assembly for all repeats at once (``U``: (R, N, n) directions);
    returns (G, cond or None)."""
    q0 = queries[0]
    R, n, N = len(queries), func.n, q0.directions.n_directions
    vals = values
    if q0.needs_fx:
        f0, vals = vals[:, 0], vals[:, 1:]
    table = vals.reshape(R, len(q0.signs), N)
    sigma = q0.sigma
    if len(q0.signs) == 2:
        delta = (table[:, 0] - table[:, 1]) / (2.0 * sigma)
    else:
        delta = (table[:, 0] - f0[:, None]) / sigma
    if est.interpolation:
        u, s, vt = np.linalg.svd(U, full_matrices=False)  # batched over repeats
        cond = np.divide(s[:, 0], s[:, -1], out=np.full(R, np.inf), where=s[:, -1] > 0)
        bad = ~np.isfinite(cond) | (s[:, -1] <= s[:, 0] * max(N, n) * np.finfo(float).eps)
        if bad.any():
            raise ValueError(f"interpolation directions are rank-deficient in {int(bad.sum())} of {R} "
                             f"repeats (cond={cond[bad][0]:.3g})")
        coef = np.matmul(delta[:, None, :], u)[:, 0, :] / s
        G = np.matmul(coef[:, None, :], vt)[:, 0, :]
        return G, cond
    c = q0.directions.mc_scale(N)
    return c * np.matmul(delta[:, None, :], U)[:, 0, :], None


def run_cell(func: StudyFunction, estimator: str, *, n_directions: int, sigma, noise: Noise | str = "none",
             repeats: int = 100, seed: int = 0, vectorized: bool = True, thetas=THETAS,
             return_estimates: bool = False) -> dict:
    """Run one cell: R estimates of ∇f(x) and their metrics.

    Args:
        func: the study function (with its gradient at ``func.x``).
        estimator: a preset name of :data:`dfo.ESTIMATORS`.
        n_directions: N (coordinate presets need N = n, interpolation N ≥ n).
        sigma: a radius, ``"auto"`` or ``"rule"`` (see :func:`resolve_sigma`).
        noise: a :class:`Noise` or its text form.
        repeats: R.
        seed: base seed (the cell stream also depends on the cell label).
        vectorized: batched assembly (False: ask/tell per repeat, the reference).
        return_estimates: also return the ``(R, n)`` estimates under ``"_estimates"``.

    Returns:
        A flat dict: the cell's parameters, ``nfev`` per estimate, the metrics of
        :func:`estimate_metrics`, ``theory_rel_second_moment`` where known and, for
        low-rank estimators, ``cond_*`` metrics against E[g | subspace].
    """
    noise = Noise.parse(noise) if isinstance(noise, str) else noise
    if int(repeats) < 2:
        raise ValueError(f"repeats must be >= 2, got {repeats}")
    check_gradient(func.grad, func.n, f"gradient of {func.name}")
    probe = get_estimator(estimator, n_directions=int(n_directions))
    if isinstance(probe, FiniteDifferenceEstimator):
        probe.n_for(func.n)  # clear error for N < n (interpolation) or N != n (coordinate)
    radius_rng = np.random.default_rng(_cell_seed(seed, f"{func.name}|{estimator}|{n_directions}|auto|{noise.label}"))
    sig, sigma_info = resolve_sigma(sigma, estimator, func, noise, rng=radius_rng, n_directions=int(n_directions))
    options = {"n_directions": int(n_directions), "sigma": sig}
    probe = get_estimator(estimator, **options)
    label = f"{func.name}|{estimator}|{n_directions}|{sig!r}|{noise.label}"
    ss = _cell_seed(seed, label)
    ask_ss, noise_ss = ss.spawn(2)
    t0 = time.perf_counter()
    pairs = _asks(lambda: get_estimator(estimator, **options), func.x, ask_ss.spawn(int(repeats)))
    queries = [q for _, q in pairs]
    noise_rng = np.random.default_rng(noise_ss)
    fast = vectorized and isinstance(probe, FiniteDifferenceEstimator) and not probe.shaping
    U = np.stack([q.directions.matrix() for q in queries]) if fast else None  # (R, N, n)
    values = _batched_values(func, queries, noise, noise_rng, U)
    cond = None
    if fast:
        G, cond = _vectorized_grads(func, queries, np.asarray(values), probe, U)
    else:
        ests = [e.tell(q, v) for (e, q), v in zip(pairs, values)]
        G = np.stack([e.grad for e in ests])
        if ests[0].info.get("cond") is not None:
            cond = np.array([e.info["cond"] for e in ests])
    if not np.all(np.isfinite(G)):
        raise NonFiniteValueError(f"{estimator}: non-finite gradient estimates in cell {label}")
    row: dict = {
        "problem": func.name, "estimator": estimator, "n": func.n,
        "n_directions": queries[0].directions.n_directions, "sigma": sig,
        "sigma_rule": sigma in SIGMA_MODES, **sigma_info, "noise": noise.label,
        "eps_f": noise.eps_f(func.fx), "repeats": int(repeats), "nfev": queries[0].nfev,
    }
    row.update(estimate_metrics(G, func.grad, thetas=thetas))
    row["theory_rel_second_moment"] = relative_second_moment(estimator, func.n, row["n_directions"])
    row["theory_rel_error_bound"] = relative_error_bound(estimator, func, sig, noise)
    row["interp_cond_median"] = float(np.median(cond)) if cond is not None else np.nan
    if isinstance(probe, LowRankEstimator):
        row.update(_conditional(pairs, G, func.grad, thetas))
    row["time_s"] = time.perf_counter() - t0
    if return_estimates:
        row["_estimates"] = G
    return row


def _conditional(pairs, G: np.ndarray, grad: np.ndarray, thetas) -> dict:
    """Error of each estimate against E[g | its subspace] (low-rank estimators)."""
    ref = np.stack([est.expected_given_subspace(grad, q) for est, q in pairs])
    rn = np.linalg.norm(ref, axis=1)
    err = np.linalg.norm(G - ref, axis=1) / np.where(rn > 0, rn, np.inf)
    out = {"cond_rel_error_median": float(np.median(err))}
    for theta in thetas:
        out[f"cond_p_theta_{theta:g}"] = float(np.mean(err <= theta))
    out["subspace_rel_error_median"] = float(np.median(np.linalg.norm(ref - grad, axis=1) / np.linalg.norm(grad)))
    return out


def run_study(func: StudyFunction, spec: StudySpec, *, progress: bool = False,
              vectorized: bool = True) -> list[dict]:
    """Run every cell of ``spec`` on ``func``; one row per cell (see :func:`run_cell`)."""
    cells = spec.cells(func.n)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(cells), unit="cell", desc=f"study {func.name}")
    rows = []
    try:
        for name, k, s, noise in cells:
            rows.append(run_cell(func, name, n_directions=k, sigma=s, noise=noise, repeats=spec.repeats,
                                 seed=spec.seed, vectorized=vectorized))
            if bar is not None:
                bar.set_postfix(est=name, N=k, refresh=False)
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return rows

