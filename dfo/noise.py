"""Noise-level and curvature estimation for an observed f = φ + noise.

Stochastic noise shows up as differing values at one point; its level is their
standard deviation. Deterministic noise (the same x always gives the same
value) is measured with the difference table of Moré & Wild (2011),
"Estimating computational noise" (ECNoise), along a random line. Curvature
bounds L, M come from second and third differences on another line (Moré & Wild
2012, "Estimating derivatives of noisy simulations"), and with them the sampling
radius of a preset's rule (Berahas, Cao, Choromanski & Scheinberg 2022).

:class:`NoiseProbe` is that measurement as an ask/tell object (it never calls f):
the :class:`dfo.Minimizer` runs one at the start and on each recovery, and
:func:`auto_radius` runs one serially for :func:`dfo.estimate_gradient` and the
estimator studies.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import factorial

import numpy as np

from .bounds import Box
from .radius import CENTRAL_FD, FORWARD_FD, rule, sampling_radius
from .rng import as_generator
from .values import as_point, check_finite

EPS = float(np.finfo(float).eps)
SEED_HIGH = 2**31 - 1  # episode seeds (env.reset takes 32-bit seeds)


@dataclass(frozen=True)
class NoiseEstimate:
    """ε_f with how it was found: ``kind`` is 'stochastic', 'deterministic' or 'none'."""

    eps_f: float
    kind: str
    nfev: int
    level: int | None = None


def ecnoise(values: np.ndarray) -> tuple[float, int] | None:
    """Moré–Wild noise estimate from f at m+1 equally spaced points on a line.

    σ_k = sqrt(γ_k · mean((Δ^k f)²)), γ_k = (k!)² / (2k)!; the first order k whose
    differences change sign and whose estimate agrees within a factor 4 with the
    next two orders is returned as (σ_k, k); None if no order qualifies.
    """
    diffs = np.asarray(values, dtype=float)
    m = diffs.size - 1
    sigmas, signs = [], []
    for k in range(1, m + 1):
        diffs = np.diff(diffs)
        gamma = factorial(k) ** 2 / factorial(2 * k)
        sigmas.append(np.sqrt(gamma * np.mean(diffs**2)))
        signs.append(diffs.min() < 0 < diffs.max())
    for k in range(len(sigmas) - 2):
        trio = sigmas[k:k + 3]
        if signs[k] and min(trio) > 0 and max(trio) <= 4 * min(trio):
            return float(sigmas[k]), k + 1
    return None


def estimate_noise(fun, x, *, n_repeats: int = 10, n_line: int = 8, h: float | None = None,
                   rng=None) -> NoiseEstimate:
    """Estimate the noise level ε_f of ``fun`` near ``x``.

    First ``n_repeats`` evaluations at x: if they differ, the noise is stochastic
    and ε_f is their standard deviation. Otherwise the noise (if any) is
    deterministic, and ECNoise runs on ``n_line + 1`` points x + t h p along a
    random unit direction p.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> est = estimate_noise(lambda x: float(x @ x) + 1e-3 * rng.uniform(-1, 1), np.ones(3), n_repeats=200)
        >>> 0.4e-3 < est.eps_f < 0.8e-3  # std of U(-1e-3, 1e-3) is 5.8e-4
        True
    """
    x = as_point(x)
    gen = as_generator(rng)
    repeated = check_finite([float(fun(x)) for _ in range(n_repeats)])
    if n_repeats > 1 and np.ptp(repeated) > 0:
        return NoiseEstimate(float(np.std(repeated, ddof=1)), "stochastic", n_repeats)
    p = gen.standard_normal(x.size)
    p /= np.linalg.norm(p)
    h = 1e-6 * max(1.0, float(np.linalg.norm(x))) if h is None else float(h)
    ts = np.arange(n_line + 1) - n_line / 2
    line = check_finite([float(fun(x + t * h * p)) for t in ts])
    found = ecnoise(line)
    nfev = n_repeats + line.size
    if found is None:
        return NoiseEstimate(0.0, "none", nfev)
    return NoiseEstimate(found[0], "deterministic", nfev, level=found[1])


# -- pieces for an optimizer that requests its own evaluations ---------------------

def ecnoise_verdict(values: np.ndarray) -> tuple[str, float, int | None]:
    """ECNoise on one line of values, with the Moré–Wild diagnosis when it fails.

    Returns ``("noise", ε_f, order)``; ``("h-too-small", 0, None)`` when fewer than
    half of the values are distinct (the spacing h is below the noise's resolution);
    ``("h-too-large", 0, None)`` otherwise (the differences are dominated by the
    smooth part: no sign change or orders that disagree).
    """
    values = np.asarray(values, dtype=float)
    if np.unique(values).size < max(2, (values.size + 1) // 2):
        return "h-too-small", 0.0, None
    found = ecnoise(values)
    if found is None:
        return "h-too-large", 0.0, None
    return "noise", found[0], found[1]


def curvature_bounds(f_m2: float, f_m1: float, f0: float, f_p1: float, f_p2: float, h: float,
                     eps_f: float) -> tuple[float, float, float]:
    """Directional curvature bounds from five values f(x + t h p), t = −2..2.

    Second and third central differences (Moré & Wild 2012, "Estimating derivatives
    of noisy simulations"), each widened by its worst-case noise so that the result is
    an upper bound consistent with the data:

        L ≤ (|f₁ − 2f₀ + f₋₁| + 4 ε_f) / h²,
        M ≤ (|f₂ − 2f₁ + 2f₋₁ − f₋₂| + 6 ε_f) / (2 h³).

    When the noise dominates, the radius rules fed with these bounds return σ ≈ h:
    the probe width is the largest radius the data can justify.
    Also returns |slope| = |f₁ − f₋₁| / (2h), the directional derivative.
    """
    d2 = abs(f_p1 - 2.0 * f0 + f_m1)
    d3 = abs(f_p2 - 2.0 * f_p1 + 2.0 * f_m1 - f_m2)
    L = (d2 + 4.0 * eps_f) / h**2
    M = (d3 + 6.0 * eps_f) / (2.0 * h**3)
    return float(L), float(M), float(abs(f_p1 - f_m1) / (2.0 * h))


def difference_errors(eps_f: float, L: float, M: float) -> tuple[float, float]:
    """Per-direction error bounds at the optimal radius (Berahas et al. 2022):
    forward 2√(ε_f L) (σ = 2√(ε_f/L)), central ≈ 1.04 (ε_f² M)^{1/3} (σ = (3ε_f/M)^{1/3})."""
    fwd = FORWARD_FD.bound(FORWARD_FD.radius(eps_f, L), eps_f, L)
    cen = CENTRAL_FD.bound(CENTRAL_FD.radius(eps_f, M), eps_f, M)
    return fwd, cen


def _seeds(rng: np.random.Generator, k: int, seeded: bool) -> np.ndarray | None:
    return rng.integers(0, SEED_HIGH, size=k) if seeded else None


@dataclass
class NoiseProbe:
    """The noise and curvature probe as an ask/tell object.

    Stages (each one request of points; ``points``/``seeds`` hold the pending one):

    1. ``repeats``: 2 evaluations at x (6 when the noise is known to be stochastic).
       Differing values: stochastic noise, ε_f = their standard deviation (4 more
       repeats first when there were only 2). Equal values: deterministic noise.
    2. ``line``: ECNoise (Moré & Wild 2011) on f(x + t h p), t = −3..3, p a random unit
       direction, h first 1 % of max(‖x‖∞, 1) (or the spacing that worked before); their
       diagnosis moves h (×1e-2 when h is too large, ×1e2 when too small), at most
       three lines; no noise at any spacing means the rounding level.
    3. ``curvature``: f(x + t h p), t = −2, −1, 1, 2 on a new random line (with f(x) when
       unknown), h first 10 % of the scale, widened ×10 while the noise hides the
       curvature and narrowed ×0.1 while the h and 2h second differences disagree (at
       most three moves); then :func:`curvature_bounds`. A line that overflows is
       retried ×0.1 shorter.

    ε_f is floored at the rounding level machine-ε·|f(x)|. Random draws (directions,
    seeds) come from the ``rng`` passed to :meth:`start` / :meth:`tell`, in a fixed
    order, so a run that probes is reproducible.

    Example (a quadratic with uniform noise of half-width 1e-3, std 5.8e-4):
        >>> gen = np.random.default_rng(0)
        >>> f = lambda x: float(x @ x) + 1e-3 * gen.uniform(-1, 1)
        >>> probe = NoiseProbe(np.ones(3))
        >>> probe.start(np.random.default_rng(1))
        >>> while not probe.done:
        ...     probe.tell([f(p) for p in probe.points], np.random.default_rng(2))
        >>> probe.kind, 1e-4 < probe.eps_f < 2e-3, probe.L > 0
        ('stochastic', True, True)
    """

    x: np.ndarray
    fx: float | None = None
    eps_f: float = 0.0
    kind: str | None = None
    ecnoise_h: float | None = None
    measure_noise: bool = True
    measure_curvature: bool = True
    seeded: bool = False
    reason: str = "start"
    stage: str = ""
    points: np.ndarray | None = None
    seeds: np.ndarray | None = None
    first: np.ndarray | None = None
    p: np.ndarray | None = None
    h: float = 0.0
    tries: int = 0
    move: float = 0.0
    need_fx: bool = False
    eps_used: float = 0.0
    L: float | None = None
    M: float | None = None
    slope: float | None = None
    done: bool = False

    @property
    def request_kind(self) -> str:
        """``"curvature"`` for the curvature line, ``"noise"`` for the other stages."""
        return "curvature" if self.stage == "curvature" else "noise"

    def _scale(self) -> float:
        return max(float(np.max(np.abs(self.x))), 1.0)

    def _unit(self, rng: np.random.Generator, box: Box | None) -> np.ndarray:
        """A random unit direction (zero along coordinates pinned at a bound)."""
        p = rng.standard_normal(self.x.size)
        if box is not None:
            free = (self.x > box.lb) & (self.x < box.ub)
            if free.any():
                p = np.where(free, p, 0.0)
        return p / np.linalg.norm(p)

    def _fit(self, p: np.ndarray, h: float, reach: float, box: Box | None) -> float:
        """Shrink h so that x ± reach·h·p stays inside the box."""
        if box is None:
            return h
        up, down = box.step_limits(self.x, p)
        room = min(up, down)
        return min(h, room / reach) if room > 0 else h

    def _ask(self, stage: str, points: np.ndarray, seeds) -> None:
        self.stage, self.points, self.seeds = stage, points, seeds

    # -- the stages ----------------------------------------------------------------
    def start(self, rng: np.random.Generator, box: Box | None = None) -> None:
        """Draw the first request."""
        if not self.measure_noise:
            self._curvature(rng, box)
        elif self.kind == "deterministic" and self.fx is not None:
            self._line(rng, box)
        else:
            k = 2 if self.kind != "stochastic" else 6
            self._ask("repeats", np.repeat(self.x[None, :], k, axis=0), _seeds(rng, k, self.seeded))

    def _line(self, rng, box, h: float | None = None, tries: int = 0) -> None:
        p = self._unit(rng, box)
        if h is None:
            h = self.ecnoise_h if self.ecnoise_h is not None else 1e-2 * self._scale()
        h = self._fit(p, h, 3.0, box)
        ts = np.array([-3, -2, -1, 1, 2, 3], dtype=float)
        self.p, self.h, self.tries = p, h, tries
        seeds = np.repeat(_seeds(rng, 1, True), ts.size) if self.seeded else None  # one seed: the line's structure
        self._ask("line", self.x[None, :] + (ts * h)[:, None] * p[None, :], seeds)

    def _curvature(self, rng, box, h: float | None = None, tries: int = 0, move: float = 0.0) -> None:
        p = self._unit(rng, box)
        h = self._fit(p, 0.1 * self._scale() if h is None else h, 2.0, box)
        ts = np.array([-2, -1, 1, 2], dtype=float)
        pts = self.x[None, :] + (ts * h)[:, None] * p[None, :]
        self.need_fx = self.fx is None
        if self.need_fx:
            pts = np.vstack([self.x[None, :], pts])
        seeds = np.repeat(_seeds(rng, 1, True), pts.shape[0]) if self.seeded else None
        self.h, self.tries, self.move = h, tries, move
        self._ask("curvature", pts, seeds)

    def _found(self, kind: str, eps: float, fx: float, rng, box) -> None:
        self.kind, self.fx = kind, float(fx)
        self.eps_f = max(eps, EPS * abs(self.fx), 1e-300)
        if self.measure_curvature:
            self._curvature(rng, box)
        else:
            self._finish()

    def _finish(self) -> None:
        self.done, self.stage, self.points, self.seeds = True, "done", None, None

    def tell(self, values, rng: np.random.Generator, box: Box | None = None) -> None:
        """Report f at :attr:`points`; draws the next request or sets :attr:`done`.

        Raises :class:`dfo.NonFiniteValueError` (before changing anything) where a
        non-finite value cannot be worked around.
        """
        values = np.asarray(values, dtype=float).ravel()
        if self.stage == "repeats":
            values = check_finite(values)
            if np.ptp(values) > 0:
                if values.size < 6:  # stochastic: a few more repeats for a usable spread
                    self.first = values
                    self._ask("more-repeats", np.repeat(self.x[None, :], 4, axis=0), _seeds(rng, 4, self.seeded))
                    return
                self._found("stochastic", float(np.std(values, ddof=1)), float(values.mean()), rng, box)
                return
            self.fx = float(values[0])
            self._line(rng, box)
        elif self.stage == "more-repeats":
            values = np.concatenate([self.first, check_finite(values)])
            self.first = None
            self._found("stochastic", float(np.std(values, ddof=1)), float(values.mean()), rng, box)
        elif self.stage == "line":
            self._tell_line(values, rng, box)
        elif self.stage == "curvature":
            self._tell_curvature(values, rng, box)
        else:
            raise RuntimeError(f"the probe has no pending request (stage {self.stage!r})")

    def _tell_line(self, values, rng, box) -> None:
        if not np.all(np.isfinite(values)):  # the line reached an overflow: a shorter one
            if self.tries < 4:
                self._line(rng, box, self.h * 1e-2, self.tries + 1)
                return
            check_finite(values)
        line = np.concatenate([values[:3], [self.fx], values[3:]])
        verdict, eps, _ = ecnoise_verdict(line)
        h, tries = self.h, self.tries
        if verdict == "noise":
            self.ecnoise_h = h
            self._found("deterministic", eps, self.fx, rng, box)
        elif tries < 2:
            self._line(rng, box, h * (1e-2 if verdict == "h-too-large" else 1e2), tries + 1)
        else:  # no noise visible at any spacing: rounding level
            self._found("deterministic", 0.0, self.fx, rng, box)

    def _tell_curvature(self, values, rng, box) -> None:
        if self.need_fx:
            check_finite(values[:1])
        if not np.all(np.isfinite(values)) and self.tries < 4:  # probe too wide: overflow
            if self.need_fx:
                self.fx = float(values[0])
            self._curvature(rng, box, self.h * 0.1, self.tries + 1, -1.0)
            return
        values = check_finite(values)
        if self.need_fx:
            self.fx, values = float(values[0]), values[1:]
        eps = max(self.eps_f, EPS * abs(self.fx), 1e-300)
        f_m2, f_m1, f_p1, f_p2 = values
        h, tries, move = self.h, self.tries, self.move
        # adapt the probe width (Moré & Wild 2012): wider while the noise hides the curvature,
        # narrower while the h and 2h second differences disagree (higher-order terms)
        d2, d2w = abs(f_p1 - 2 * self.fx + f_m1), abs(f_p2 - 2 * self.fx + f_m2)
        d3 = abs(f_p2 - 2 * f_p1 + 2 * f_m1 - f_m2)
        if tries < 3:
            if d2 <= 16 * eps and d3 <= 24 * eps and move >= 0 and h < self._scale():
                self._curvature(rng, box, h * 10.0, tries + 1, 1.0)
                return
            if d2 > 16 * eps and not 0.5 <= d2w / (4 * d2) <= 2.0 and move <= 0:
                self._curvature(rng, box, h * 0.1, tries + 1, -1.0)
                return
        self.eps_used = eps
        self.L, self.M, self.slope = curvature_bounds(f_m2, f_m1, self.fx, f_p1, f_p2, h, eps)
        self._finish()

    def radius(self, preset: str, n: int, *, central: bool) -> float:
        """σ from the preset's rule at the measured ε_f, L, M (Berahas et al. 2022), floored
        at 1e-8 (forward) or 1e-6 (central) × max(‖x‖∞, 1) and capped at the curvature
        probe's width h (the widest radius the data justify)."""
        sigma = sampling_radius(preset, self.eps_used, L=self.L, M=self.M, n=n)
        floor = (1e-6 if central else 1e-8) * self._scale()
        return float(min(max(sigma, floor), self.h))


def auto_radius(fun, x, estimator: str = "orthogonal", *, n_directions: int | None = None, rng=None,
                eps_f: float | None = None, bounds=None) -> dict:
    """The automatic σ for the preset ``estimator`` at ``x``: one :class:`NoiseProbe`
    evaluated serially, then the preset's radius rule (one home for the default radius of
    :func:`dfo.minimize`, :func:`dfo.estimate_gradient` and ``dfo study``).

    Args:
        fun: ``fun(x) -> float``.
        x: the point.
        estimator: a registered preset name.
        n_directions: accepted for symmetry with the estimators (σ does not depend on N).
        rng: None, int or Generator (the probe's directions).
        eps_f: a known noise level (then only the curvature is measured).
        bounds: box bounds; no probe point leaves the box.

    Returns:
        dict with ``sigma``, ``eps_f``, ``noise_kind``, ``L``, ``M``, ``fx`` (f(x) as
        measured) and ``nfev`` (the probe's evaluations).
    """
    x = as_point(x, name="x")
    r = rule(estimator)  # an unknown preset fails here, before any evaluation
    box = Box.parse(bounds, x.size)
    gen = as_generator(rng)
    if box is not None:
        x = box.project(x)
    probe = NoiseProbe(x, measure_noise=eps_f is None, eps_f=0.0 if eps_f is None else float(eps_f),
                       kind=None if eps_f is None else "given")
    probe.start(gen, box)
    nfev = 0
    while not probe.done:
        pts = probe.points if box is None else box.project(probe.points)
        nfev += len(pts)
        probe.tell([float(fun(p)) for p in pts], gen, box)
    sigma = probe.radius(estimator, x.size, central=r.needs == "M")
    return {"sigma": sigma, "eps_f": float(probe.eps_f if eps_f is None else eps_f), "noise_kind": probe.kind,
            "L": probe.L, "M": probe.M, "fx": probe.fx, "nfev": nfev}


__all__ = ["NoiseEstimate", "NoiseProbe", "auto_radius", "curvature_bounds", "difference_errors", "ecnoise",
           "ecnoise_verdict", "estimate_noise"]
