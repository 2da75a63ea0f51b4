"""The Berahas, Cao, Choromanski & Scheinberg (2022) comparison, measured.

For each dimension n and noise level: the number of function evaluations each
estimator needs so that ‖g − ∇φ‖ ≤ θ‖∇φ‖ (θ = 1/2) holds with probability at
least 1 − δ = 0.9, measured on the chained Rosenbrock function at its standard
start x0 (R repeats per N, N on a grid of multiples of n, the smallest grid value
that meets the target is reported), next to the count the theory asks for
(:func:`dfo.study.theory.theoretical_evaluations` for the random estimators; n + 1
or 2n for the deterministic ones when their error bound is below θ‖∇φ‖, else ∞).
Radii follow the paper's rules (:func:`dfo.radius.sampling_radius`) at
ε_f = max(noise level, machine precision × |f|), with L = ‖∇²f(x0)‖₂ and
M = 2400 max|x0|.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from ..estimators.registry import ESTIMATORS
from .functions import Noise, rosenbrock_function
from .runner import rounding_level, run_cell
from .theory import error_bound, evaluations, theoretical_evaluations

_MULT = {
    "ffd": (1.0,), "cfd": (1.0,), "interpolation": (1.0, 1.25, 1.5, 2.0),
    "orthogonal": (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0),
    "gaussian": (0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5, 5.5, 6, 7, 8, 10),
    "sphere": (0.5, 1, 1.5, 2, 2.5, 3, 3.5, 4, 4.5, 5, 5.5, 6, 7, 8, 10),
}
#: coarser grids for n > 100 (tractability at n = 1000)
_MULT_LARGE = {
    "ffd": (1.0,), "cfd": (1.0,), "interpolation": (1.0,),
    "orthogonal": (0.7, 0.75, 0.8, 0.85, 0.9, 1.0),
    "gaussian": (3, 4, 4.5, 5, 5.5, 6, 8), "sphere": (3, 4, 4.5, 5, 5.5, 6, 8),
}


def grid(name: str, n: int) -> tuple[float, ...]:
    """Multiples of n tried for ``name`` in dimension ``n``."""
    return (_MULT_LARGE if n > 100 else _MULT)[name]


@dataclass(frozen=True, kw_only=True)
class BerahasConfig:
    """Settings of the comparison.

    Args:
        dims: the dimensions n.
        estimators: presets compared (grids of N in ``_MULT``).
        noises: noise specs.
        repeats: R per cell for n ≤ 100; ``repeats_large`` for n > 100.
        noises_large: noise specs for n > 100 (fewer, for time).
        theta, delta: the norm condition and its failure probability.
        early_stop: stop an estimator's N grid at the first value meeting the target
            (for n > 100 only, to keep n = 1000 tractable).
    """

    dims: tuple[int, ...] = (10, 100, 1000)
    estimators: tuple[str, ...] = ("ffd", "cfd", "gaussian", "sphere", "orthogonal", "interpolation")
    noises: tuple[str, ...] = ("none", "relative:1e-4")
    repeats: int = 200
    repeats_large: int = 30
    noises_large: tuple[str, ...] = ("none",)
    theta: float = 0.5
    delta: float = 0.1
    seed: int = 0


def _theory_count(name: str, func, noise: Noise, sigma: float, theta: float, delta: float) -> float:
    """Evaluations the theory asks for; ∞ when a deterministic bound exceeds θ‖∇φ‖."""
    n = func.n
    if ESTIMATORS[name].deterministic:
        eps = max(noise.eps_f(func.fx), rounding_level(func.fx))
        bound = error_bound(name, n=n, sigma=sigma, eps_f=eps, L=func.L or 0.0, M=func.M or 0.0, N=n)
        if bound > theta * np.linalg.norm(func.grad):
            return math.inf
    return float(theoretical_evaluations(name, n, theta=theta, delta=delta))


def run_berahas(config: BerahasConfig = BerahasConfig(), *, progress: bool = False):
    """Run the comparison; returns ``(cells, summary)`` lists of row dicts."""
    bar = None
    if progress:
        from tqdm.auto import tqdm
        total = sum(len(grid(e, n)) * len(config.noises if n <= 100 else config.noises_large)
                    for e in config.estimators for n in config.dims)
        bar = tqdm(total=total, unit="cell", desc="berahas")
    cells, summary = [], []
    try:
        for n in config.dims:
            func = rosenbrock_function(n)
            R = config.repeats if n <= 100 else config.repeats_large
            for text in (config.noises if n <= 100 else config.noises_large):
                noise = Noise.parse(text)
                for name in config.estimators:
                    t0 = time.perf_counter()
                    found = None
                    mults = grid(name, n)
                    for m in mults:
                        N = max(1, int(round(m * n)))
                        row = run_cell(func, name, n_directions=N, sigma="rule", noise=noise,
                                       repeats=R, seed=config.seed)
                        cells.append(row)
                        if bar is not None:
                            bar.set_postfix(n=n, est=name, N=N, refresh=False)
                            bar.update(1)
                        if found is None and row[f"p_theta_{config.theta:g}"] >= 1 - config.delta:
                            found = row
                            if n > 100:
                                if bar is not None:
                                    bar.update(len(mults) - mults.index(m) - 1)
                                break
                    theory = _theory_count(name, func, noise, row["sigma"], config.theta, config.delta)
                    measured = found["nfev"] if found else math.inf
                    summary.append({
                        "estimator": name, "n": n, "noise": noise.label, "repeats": R, "sigma": row["sigma"],
                        "measured_n_directions": found["n_directions"] if found else math.inf,
                        "measured_nfev": measured,
                        "p_at_measured": found[f"p_theta_{config.theta:g}"] if found else max(
                            r[f"p_theta_{config.theta:g}"] for r in cells if r["estimator"] == name and r["n"] == n and r["noise"] == noise.label),
                        "largest_nfev_tried": evaluations(name, max(1, int(round(mults[-1] * n)))),
                        "theory_nfev": theory,
                        "theory_over_measured": theory / measured if np.isfinite(measured) and np.isfinite(theory) else math.nan,
                        "nfev_over_n": measured / n,
                        "time_s": time.perf_counter() - t0,
                    })
    finally:
        if bar is not None:
            bar.close()
    return cells, summary
