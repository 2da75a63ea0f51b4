"""Accuracy metrics of a batch of gradient estimates against a reference gradient.

For R estimates g_1..g_R of ∇f(x) (rows of ``G``):

* relative error e_r = ‖g_r − ∇f‖ / ‖∇f‖, reported as quantiles of log10 e_r;
* p_θ = (1/R) #{r : ‖g_r − ∇f‖ ≤ θ ‖∇f‖}, the event of the norm condition
  of Berahas, Cao, Choromanski & Scheinberg (2022) with θ ∈ {0.1, 0.25, 0.5};
* cosine cos(g_r, ∇f), averaged;
* bias ‖ḡ − ∇f‖ (ḡ the sample mean) and variance tr Cov(g) (sample covariance,
  ddof = 1), so that the mean squared error is bias² + (R−1)/R · variance;
* the relative second moment mean(e_r²) (for Gaussian smoothing on a linear f it
  equals (n+1)/N in expectation, Nesterov & Spokoiny 2017).

Example:
    >>> import numpy as np
    >>> g = np.array([1.0, 0.0])
    >>> m = estimate_metrics(np.array([[1.0, 0.0], [1.0, 1.0]]), g)
    >>> m["p_theta_0.5"], m["cosine_mean"] > 0.85
    (0.5, True)
"""

from __future__ import annotations

import numpy as np

THETAS: tuple[float, ...] = (0.1, 0.25, 0.5)
QUANTILES: dict[str, float] = {"q10": 0.1, "median": 0.5, "q90": 0.9}


def check_gradient(grad, n: int | None = None, name: str = "gradient") -> np.ndarray:
    """A finite, nonzero 1-D reference gradient (of length ``n`` when given)."""
    g = np.asarray(grad, dtype=float)
    if g.ndim != 1 or (n is not None and g.shape[0] != n):
        want = f"({n},)" if n is not None else "(n,)"
        raise ValueError(f"the {name} must have shape {want}, got shape {g.shape}")
    if not np.all(np.isfinite(g)):
        raise ValueError(f"the {name} contains NaN or inf")
    if not np.any(g):
        raise ValueError(f"the {name} is zero: relative errors are undefined; pick a point where ∇f ≠ 0")
    return g


def check_estimates(estimates, n: int) -> np.ndarray:
    """A finite ``(R, n)`` array of estimates with R ≥ 2."""
    G = np.asarray(estimates, dtype=float)
    if G.ndim != 2 or G.shape[1] != n:
        raise ValueError(f"estimates must have shape (R, {n}), got shape {G.shape}")
    if G.shape[0] < 2:
        raise ValueError(f"need at least 2 repeated estimates for bias and variance, got {G.shape[0]}")
    if not np.all(np.isfinite(G)):
        bad = int(np.sum(~np.all(np.isfinite(G), axis=1)))
        raise ValueError(f"{bad} of {G.shape[0]} gradient estimates contain NaN or inf")
    return G


def relative_errors(estimates, grad) -> np.ndarray:
    """‖g_r − ∇f‖ / ‖∇f‖ for each row g_r of ``estimates``."""
    g = check_gradient(grad)
    G = check_estimates(estimates, g.size)
    return np.linalg.norm(G - g, axis=1) / np.linalg.norm(g)


def cosines(estimates, grad) -> np.ndarray:
    """cos(g_r, ∇f) per row (0 for an all-zero estimate)."""
    g = check_gradient(grad)
    G = check_estimates(estimates, g.size)
    norms = np.linalg.norm(G, axis=1) * np.linalg.norm(g)
    return np.divide(G @ g, norms, out=np.zeros(G.shape[0]), where=norms > 0)


def estimate_metrics(estimates, grad, *, thetas=THETAS, prefix: str = "") -> dict[str, float]:
    """All metrics of one study cell as a flat dict (column name -> value).

    Args:
        estimates: ``(R, n)`` gradient estimates.
        grad: the reference gradient, shape ``(n,)``.
        thetas: thresholds θ of p_θ.
        prefix: prepended to every key (``"cond_"`` for the conditional error).
    """
    g = check_gradient(grad)
    G = check_estimates(estimates, g.size)
    gnorm = float(np.linalg.norm(g))
    err = np.linalg.norm(G - g, axis=1) / gnorm
    log_err = np.log10(np.maximum(err, np.finfo(float).tiny))
    out: dict[str, float] = {}
    for key, q in QUANTILES.items():
        out[f"rel_error_{key}"] = float(10.0 ** np.quantile(log_err, q))
    for key, q in QUANTILES.items():
        out[f"log10_rel_error_{key}"] = float(np.quantile(log_err, q))
    out["rel_error_mean"] = float(err.mean())
    out["rel_second_moment"] = float(np.mean(err**2))
    for theta in thetas:
        out[f"p_theta_{theta:g}"] = float(np.mean(err <= theta))
    out["cosine_mean"] = float(cosines(G, g).mean())
    mean = G.mean(axis=0)
    out["bias"] = float(np.linalg.norm(mean - g))
    out["rel_bias"] = out["bias"] / gnorm
    out["variance"] = float(np.sum(G.var(axis=0, ddof=1)))
    out["rel_variance"] = out["variance"] / gnorm**2
    return {prefix + k: v for k, v in out.items()}
