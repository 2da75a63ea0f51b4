"""The optimization loop, :class:`Minimizer`: line-search or fixed-rule descent on
estimated gradients.

:class:`Minimizer` is an explicit-state ask/tell object: ``request`` describes the
next batch of evaluations, ``tell(values)`` reports them, and everything the run
knows lives in plain attributes, so a Minimizer pickles mid-run and
``state_dict()``/``load_state_dict()`` give a JSON tree plus arrays that resume bit
for bit. :func:`minimize` drives it with an evaluator (serial, joblib, dask) and
returns a ``scipy.optimize.OptimizeResult``; the RL trainer drives the same object
with rollouts. One iteration is:

1. ask the estimator for points around x (optionally with episode seeds for common
   random numbers and repeated centre evaluations) and assemble the estimate g;
2. ``step="armijo"``: the noise-tolerant backtracking of Berahas, Cao & Scheinberg
   (2021) on x + α d, d = −g or the L-BFGS direction (:mod:`dfo.linesearch`);
   ``step="sgd" | "momentum" | "adam"``: the update rule (:mod:`dfo.optim`).

Noise is measured, not assumed (``eps_f="auto"``, the default). At the start,
every ``reestimate_every`` iterations and after each failed line search (a
*recovery*, after Berahas, Byrd & Nocedal 2019):

* repeated evaluations at x: differing values mean stochastic noise, ε_f is their
  standard deviation; equal values mean deterministic noise, measured by ECNoise
  (Moré & Wild 2011) on a ladder of spacings scaled to |x|, floored at the
  rounding level machine-ε·|f|;
* five values along a random line give curvature bounds L, M (second and third
  differences, Moré & Wild 2012), hence σ from :func:`dfo.radius.sampling_radius`;
* with ``estimator="auto"`` the forward estimator is swapped for its central
  version while the forward error bound 2√(ε_f L) exceeds 1 % of the directional
  slope (noise dominates).

The run stops, and says why, on: the budget (``success=False``, status 1), the
iteration limit (status 2), ‖g‖ ≤ gtol or the noise floor (``success=True``, status 0:
a failed line search with ‖g‖ ≤ √n × the estimate's error bound, twice in a row; or,
when the noise is at the rounding level, ``stall_iterations`` iterations that do not
beat the best earlier f by 2ε_f, twice in a row),
``max_recoveries`` consecutive failed recoveries (status 3), or the callback (99).
Every evaluation, noise estimation included, is counted in ``nfev``.

See :func:`dfo.minimize` for the driver.
"""

from __future__ import annotations

import dataclasses
import json
import numbers
from typing import Any

import numpy as np
from scipy.optimize import OptimizeResult

from .bounds import Box
from .estimators import ESTIMATORS, get_estimator
from .estimators.base import Query, as_point, check_finite
from .lbfgs import LBFGSMemory
from .linesearch import ArmijoLineSearch
from .noise import curvature_bounds, difference_errors, ecnoise_verdict
from .optim import UPDATE_RULES
from .radius import CENTRAL_FD, FORWARD_FD, sampling_radius
from .rng import as_generator

STEPS = ("armijo", *UPDATE_RULES)
SEED_HIGH = 2**31 - 1  # episode seeds (env.reset takes 32-bit seeds)
EPS = float(np.finfo(float).eps)
AUTO_ESTIMATOR = "orthogonal"
#: estimator="auto" uses central differences while 2√(ε_f L) > CENTRAL_SWITCH × |slope|
CENTRAL_SWITCH = 1e-2


def _central_version(name) -> str | None:
    """The registry's central counterpart of a forward preset (None for others)."""
    entry = ESTIMATORS.get(name) if isinstance(name, str) else None
    return None if entry is None else entry.central_version


def _int_option(name: str, value, *, low: int = 1, none_ok: bool = True) -> int | None:
    """An integer option (not a bool, float or string), at least ``low``."""
    if value is None and none_ok:
        return None
    if isinstance(value, numbers.Real) and not isinstance(value, bool | numbers.Integral) and \
            float(value).is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return int(value)


def _float_option(name: str, value, *, positive: bool = True) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    value = float(value)
    if not np.isfinite(value) or (value <= 0 if positive else value < 0):
        raise ValueError(f"{name} must be a {'positive' if positive else 'non-negative'} finite number, got {value}")
    return value


@dataclasses.dataclass(frozen=True)
class Request:
    """One batch of evaluations the Minimizer needs.

    Attributes:
        kind: ``"noise"`` (repeats or an ECNoise line), ``"curvature"``, ``"estimate"``
            (gradient-estimate points, then centre repeats), ``"center"`` (f(x) after a
            central estimate), ``"trial"`` (line search).
        points: the points, one per row, in the order the values are expected.
        seeds: one episode seed per point when the Minimizer was built with
            ``seeded=True`` (common random numbers: a central direction's ± points share
            one seed, forward differences share the centre's; trials reuse the centre's).
        query: for ``estimate`` requests, the estimator's query (workers may regenerate a
            point from ``(index, sign)``); None when bounds moved some points.
        items: for ``estimate`` requests, ``(index, sign)`` of each point in
            ``query.items`` order followed by ``(-1, 0)`` for each extra centre repeat.
    """

    kind: str
    points: np.ndarray
    seeds: np.ndarray | None = None
    query: Query | None = None
    items: tuple = ()

    def __len__(self) -> int:
        return int(self.points.shape[0])


class Minimizer:
    """Ask/tell driver of one optimization run, with explicit picklable state.

    Args:
        x0: starting point (1-D).
        estimator: preset name, ``"auto"`` (orthogonal directions, central differences
            when noise dominates) or an estimator object.
        step: ``"armijo"`` or an update rule: ``"sgd"``, ``"momentum"``, ``"adam"``.
        n_directions: N per estimate (default n).
        sigma: sampling radius; None: the Berahas et al. rule with measured ε_f, L, M.
        eps_f: ``"auto"`` (measured and re-measured), ``"repeats"`` (each iteration, the
            standard error of the ``repeats`` centre values; needs repeats ≥ 2) or a
            number used exactly.
        lr: step size of an update rule (ignored by ``armijo``).
        line_search: :class:`ArmijoLineSearch` or a dict of its options.
        direction: ``"gradient"`` (d = −g), ``"lbfgs"`` (armijo only) or ``"auto"``
            (L-BFGS with the line search, the gradient with an update rule).
        memory: L-BFGS pairs kept.
        repeats: centre evaluations per iteration and per line-search trial (armijo).
        first_step: the first trial step is ``first_step·√n/‖g‖`` (an ARS-sized step)
            instead of ``line_search.alpha0``.
        seeded: requests carry episode seeds drawn from the run's generator.
        bounds: box bounds (scipy ``Bounds`` or pairs); nothing is evaluated outside.
        max_step: a line-search trial moves at most ``max_step``·max(‖x‖∞, 1) (None: no
            cap); keeps a huge early gradient from throwing x onto a distant plateau.
        reestimate_every: iterations between noise/curvature re-estimates (eps_f="auto").
        stall_iterations: the noise-floor window: when this many iterations do not beat the
            best earlier f by 2ε_f, twice in a row, the run stops.
        max_recoveries: consecutive failed recoveries before the run stops.
        nonfinite: ``"raise"`` (:class:`dfo.NonFiniteValueError`) or ``"worst"`` (a
            non-finite estimation value ranks behind every finite one of its batch).
        rng: None, int or Generator: drives every random choice of the run.
        estimator_options: extra options for the estimator preset (shaping, rank, ...).

    Example:
        >>> opt = Minimizer(np.zeros(2), estimator="cfd", step="sgd", lr=0.25, sigma=1e-3, rng=0)
        >>> for _ in range(50):
        ...     pts = opt.ask()
        ...     opt.tell([float(np.sum((p - 3) ** 2)) for p in pts])
        >>> bool(np.allclose(opt.x, 3))
        True
    """

    def __init__(self, x0, *, estimator="auto", step: str = "armijo", n_directions: int | None = None,
                 sigma: float | None = None, eps_f: float | str = "auto", lr: float | None = None,
                 line_search: ArmijoLineSearch | dict | None = None, direction: str = "auto",
                 memory: int = 10, repeats: int = 1, first_step: float | None = None, seeded: bool = False,
                 bounds=None, max_step: float = 1.0, reestimate_every: int = 10, stall_iterations: int = 10, max_recoveries: int = 3, nonfinite: str = "raise",
                 rng=None, **estimator_options: Any):
        if direction not in ("auto", "gradient", "lbfgs"):
            raise ValueError(f"unknown direction {direction!r}; known: auto, gradient, lbfgs")
        if direction == "auto":  # L-BFGS for the line search (measured: bench/results/noisy_profiles.md)
            direction = "lbfgs" if step == "armijo" else "gradient"
        if step not in STEPS:
            raise ValueError(f"unknown step {step!r}; known: {', '.join(STEPS)}")
        if nonfinite not in ("raise", "worst"):
            raise ValueError(f"nonfinite must be 'raise' or 'worst', got {nonfinite!r}")
        x = as_point(x0, name="x0").copy()
        n = x.size
        self.box = Box.parse(bounds, n)
        if self.box is not None:
            x = self.box.project(x)
        self.x = x
        n_directions = _int_option("n_directions", n_directions)
        self.repeats = _int_option("repeats", repeats)
        self.reestimate_every = _int_option("reestimate_every", reestimate_every)
        self.stall_iterations = _int_option("stall_iterations", stall_iterations)
        self.max_recoveries = _int_option("max_recoveries", max_recoveries, low=0)
        memory = _int_option("memory", memory)
        if isinstance(eps_f, str):
            if eps_f not in ("auto", "repeats"):
                raise ValueError(f"eps_f must be a number, 'auto' or 'repeats', got {eps_f!r}")
            if eps_f == "repeats" and self.repeats < 2:
                raise ValueError("eps_f='repeats' needs repeats >= 2")
            self.eps_mode = eps_f
            self.eps_f = 0.0
        else:
            self.eps_mode = "fixed"
            self.eps_f = _float_option("eps_f", eps_f, positive=False)
        self.sigma_fixed = sigma is not None
        if sigma is not None:
            sigma = _float_option("sigma", sigma)
        # estimators: the named preset and (for "auto") its central version
        self.auto_estimator = isinstance(estimator, str) and estimator == "auto"
        name = AUTO_ESTIMATOR if self.auto_estimator else estimator
        self.preset = name if isinstance(name, str) else None
        opts = dict(n_directions=n_directions, sigma=sigma, **estimator_options)
        self.estimator = get_estimator(name, **(opts if isinstance(name, str) else {}))
        if not isinstance(name, str):
            if any(v is not None for v in opts.values()):
                raise ValueError("options cannot be applied to an estimator instance; build it with them")
            self.sigma_fixed = True
            sigma = getattr(self.estimator, "sigma", None)
        central_name = _central_version(name)  # estimator="auto" switches to it when noise dominates
        self.central_estimator = (get_estimator(central_name, **opts)
                                  if self.auto_estimator and central_name else None)
        self.use_central = False
        self.sigma = float(sigma) if sigma is not None else float("nan")  # measured before the first estimate
        self.L: float | None = None
        self.M: float | None = None
        self.slope: float | None = None
        self.step_name = step
        self.first_step = None if first_step is None else _float_option("first_step", first_step)
        self.max_step = np.inf if max_step is None else _float_option("max_step", max_step)
        if step == "armijo":
            opts_ls = line_search if isinstance(line_search, dict) else {}
            base = line_search if isinstance(line_search, ArmijoLineSearch) else ArmijoLineSearch(**opts_ls)
            self.line_search: ArmijoLineSearch | None = base
            self.alpha: float | None = None if self.first_step is not None else base.alpha0
            self.rule = None
            self.rule_state: dict = {}
            self.memory = LBFGSMemory(size=memory) if direction == "lbfgs" else None
        else:
            if direction != "gradient":
                raise ValueError(f"direction={direction!r} needs step='armijo'")
            self.line_search = None
            self.alpha = None
            self.memory = None
            self.rule = UPDATE_RULES[step](**({} if lr is None else {"lr": _float_option("lr", lr)}))
            self.rule_state = self.rule.init(n)
        self.seeded = bool(seeded)
        self.nonfinite = nonfinite
        self.rng = as_generator(rng)
        # run state
        self.fx: float | None = None
        self.grad: np.ndarray | None = None
        self.nfev = 0
        self.nit = 0
        self.n_nonfinite = 0
        self.stopped: str | None = None
        self.status: int | None = None
        self.recoveries = 0
        self.failed_streak = 0
        self.floor_hits = 0
        self.stall_hits = 0
        self.direction: np.ndarray | None = None
        self.pair: tuple | None = None  # (s, g) of the last accepted step, for L-BFGS
        self.history: dict[str, list] = {"nit": [], "nfev": [], "fun": [], "grad_norm": [], "step_size": []}
        self.noise_history: dict[str, list] = {"nit": [], "nfev": [], "eps_f": [], "sigma": [], "L": [],
                                               "M": [], "kind": [], "reason": []}
        self.noise_kind = "given" if self.eps_mode == "fixed" else None
        self.ecnoise_h: float | None = None
        # the phase machine: what the pending request is and what it needs on tell
        self.phase = ""
        self.work: dict[str, Any] = {}
        self.pending: Request | None = None
        self._ask_state: tuple | None = None
        self._begin_start()

    # -- small helpers ----------------------------------------------------------------
    @property
    def n(self) -> int:
        return int(self.x.size)

    @property
    def active_estimator(self):
        return self.central_estimator if self.use_central else self.estimator

    def _central(self) -> bool:
        preset = self.active_preset
        return bool(getattr(self.active_estimator, "central", False)) or (
            preset in ESTIMATORS and ESTIMATORS[preset].central)

    @property
    def active_preset(self) -> str | None:
        if self.use_central and _central_version(self.preset):
            return _central_version(self.preset)
        return self.preset

    def _scale(self) -> float:
        return max(float(np.max(np.abs(self.x))), 1.0)

    def _seeds(self, k: int) -> np.ndarray | None:
        return self.rng.integers(0, SEED_HIGH, size=k) if self.seeded else None

    def _unit(self) -> np.ndarray:
        """A random unit direction (zero along coordinates pinned at a bound)."""
        p = self.rng.standard_normal(self.n)
        if self.box is not None:
            free = (self.x > self.box.lb) & (self.x < self.box.ub)
            if free.any():
                p = np.where(free, p, 0.0)
        return p / np.linalg.norm(p)

    def _line_fit(self, p: np.ndarray, h: float, reach: float) -> float:
        """Shrink h so that x ± reach·h·p stays inside the box."""
        if self.box is None:
            return h
        up, down = self.box.step_limits(self.x, p)
        room = min(up, down)
        return min(h, room / reach) if room > 0 else h

    def _set(self, kind: str, points: np.ndarray, seeds=None, **extra) -> None:
        points = np.atleast_2d(np.asarray(points, dtype=float))
        if self.box is not None:
            points = self.box.project(points)  # guards against rounding at the faces
        self.phase = kind
        self.pending = Request(kind=kind, points=points, seeds=seeds, query=extra.pop("query", None),
                               items=extra.pop("items", ()))

    # -- phases ------------------------------------------------------------------------
    def _begin_start(self) -> None:
        if self.eps_mode == "auto":
            self._begin_noise("start")
        elif not self.sigma_fixed:
            self.work = {"reason": "start"}
            self._begin_curvature()
        else:
            self._begin_estimate()

    def _begin_noise(self, reason: str) -> None:
        self.work = {"reason": reason}
        if self.noise_kind == "deterministic" and self.fx is not None:
            self._begin_line()
            return
        k = 2 if self.noise_kind != "stochastic" else 6
        self._set("noise", np.repeat(self.x[None, :], k, axis=0), self._seeds(k))
        self.work["stage"] = "repeats"

    def _begin_line(self, h: float | None = None, tries: int = 0) -> None:
        p = self._unit()
        if h is None:
            h = self.ecnoise_h if self.ecnoise_h is not None else 1e-2 * self._scale()
        h = self._line_fit(p, h, 3.0)
        ts = np.array([-3, -2, -1, 1, 2, 3], dtype=float)
        self.work.update(stage="line", p=p, h=h, tries=tries)
        seeds = np.repeat(self._seeds(1), ts.size) if self.seeded else None  # one seed: the line's structure
        self._set("noise", self.x[None, :] + (ts * h)[:, None] * p[None, :], seeds)

    def _tell_noise(self, values: np.ndarray) -> None:
        w = self.work
        if w["stage"] == "repeats":
            values = check_finite(values)
            if np.ptp(values) > 0:
                if values.size < 6:  # stochastic: a few more repeats for a usable spread
                    w["first"] = values
                    self._set("noise", np.repeat(self.x[None, :], 4, axis=0), self._seeds(4))
                    w["stage"] = "more-repeats"
                    return
                self._noise_found("stochastic", float(np.std(values, ddof=1)), float(values.mean()))
                return
            self.fx = float(values[0])
            self._begin_line()
            return
        if w["stage"] == "more-repeats":
            values = np.concatenate([w["first"], check_finite(values)])
            self._noise_found("stochastic", float(np.std(values, ddof=1)), float(values.mean()))
            return
        # an ECNoise line: values at t = -3..3 with the centre in the middle
        if not np.all(np.isfinite(values)):  # the line reached an overflow: a shorter one
            if w["tries"] < 4:
                self._begin_line(w["h"] * 1e-2, w["tries"] + 1)
                return
            check_finite(values)
        line = np.concatenate([values[:3], [self.fx], values[3:]])
        verdict, eps, _ = ecnoise_verdict(line)
        h, tries = w["h"], w["tries"]
        if verdict == "noise":
            self.ecnoise_h = h
            self._noise_found("deterministic", eps, self.fx)
        elif tries < 2:
            self._begin_line(h * (1e-2 if verdict == "h-too-large" else 1e2), tries + 1)
        else:  # no noise visible at any spacing: rounding level
            self._noise_found("deterministic", 0.0, self.fx)

    def _noise_found(self, kind: str, eps: float, fx: float) -> None:
        self.noise_kind = kind
        self.fx = float(fx)
        self.eps_f = max(eps, EPS * abs(self.fx), 1e-300)
        if self.sigma_fixed:
            self._noise_done()
        else:
            self._begin_curvature()

    def _begin_curvature(self, h: float | None = None, tries: int = 0, move: float = 0.0) -> None:
        p = self._unit()
        h = self._line_fit(p, 0.1 * self._scale() if h is None else h, 2.0)
        ts = np.array([-2, -1, 1, 2], dtype=float)
        pts = self.x[None, :] + (ts * h)[:, None] * p[None, :]
        need_fx = self.fx is None
        if need_fx:
            pts = np.vstack([self.x[None, :], pts])
        seeds = None
        if self.seeded:
            seeds = np.repeat(self._seeds(1), pts.shape[0])
        self.work.update(stage="curvature", h=h, need_fx=need_fx, tries=tries, move=move)
        self._set("curvature", pts, seeds)

    def _tell_curvature(self, values: np.ndarray) -> None:
        if self.work["need_fx"]:
            check_finite(values[:1])
        if not np.all(np.isfinite(values)) and self.work["tries"] < 4:  # probe too wide: overflow
            if self.work["need_fx"]:
                self.fx = float(values[0])
            self._begin_curvature(self.work["h"] * 0.1, self.work["tries"] + 1, -1.0)
            return
        values = check_finite(values)
        if self.work["need_fx"]:
            self.fx, values = float(values[0]), values[1:]
        eps = max(self.eps_f, EPS * abs(self.fx), 1e-300)
        f_m2, f_m1, f_p1, f_p2 = values
        h, tries, move = self.work["h"], self.work["tries"], self.work["move"]
        # adapt the probe width (Moré & Wild 2012): wider while the noise hides the curvature,
        # narrower while the h and 2h second differences disagree (higher-order terms)
        d2, d2w = abs(f_p1 - 2 * self.fx + f_m1), abs(f_p2 - 2 * self.fx + f_m2)
        d3 = abs(f_p2 - 2 * f_p1 + 2 * f_m1 - f_m2)
        if tries < 3:
            if d2 <= 16 * eps and d3 <= 24 * eps and move >= 0 and h < self._scale():
                self._begin_curvature(h * 10.0, tries + 1, 1.0)
                return
            if d2 > 16 * eps and not 0.5 <= d2w / (4 * d2) <= 2.0 and move <= 0:
                self._begin_curvature(h * 0.1, tries + 1, -1.0)
                return
        self.work["probe"] = h
        self.L, self.M, self.slope = curvature_bounds(f_m2, f_m1, self.fx, f_p1, f_p2, h, eps)
        if self.auto_estimator and self.central_estimator is not None:
            fwd, _ = difference_errors(eps, self.L, self.M)
            self.use_central = fwd > CENTRAL_SWITCH * self.slope
        # only presets measure σ (an estimator object brings its own), so the rule is the preset's
        sigma = sampling_radius(self.active_preset, eps, L=self.L, M=self.M, n=self.n)
        floor = (1e-6 if self._central() else 1e-8) * self._scale()
        self.sigma = float(min(max(sigma, floor), h))
        self._noise_done()

    def _noise_done(self) -> None:
        h = self.noise_history
        for k, v in (("nit", self.nit), ("nfev", self.nfev), ("eps_f", self.eps_f), ("sigma", self.sigma),
                     ("L", np.nan if self.L is None else self.L), ("M", np.nan if self.M is None else self.M),
                     ("kind", self.noise_kind or ""), ("reason", self.work.get("reason", ""))):
            h[k].append(v)
        self._begin_estimate()

    def _begin_estimate(self) -> None:
        est = self.active_estimator
        rng_before = self.rng.bit_generator.state
        est_before = est.state_dict() if hasattr(est, "state_dict") else None
        query = est.ask(self.x, self.rng, fx=self._query_fx())
        query = self._query_sigma(query)
        self._ask_state = (rng_before, est_before)
        central = len(query.signs) == 2
        items = list(query.items)
        extra = 0  # centre repeats after the estimate's own points (armijo)
        if self.line_search is not None and (self.repeats > 1 or self.seeded):
            extra = self.repeats - int(query.needs_fx)
        seeds = centre_seeds = None
        if self.seeded:
            if central:  # one seed per direction, shared by its + and − points
                dir_seeds = [int(s) for s in self._seeds(query.directions.n_directions)]
                seeds = [dir_seeds[i] if i >= 0 else dir_seeds[0] for i, _ in items]
                centre_seeds = [int(s) for s in self._seeds(extra)] if extra else []
            else:  # forward: the centre's seed for every direction (common random numbers)
                own = [int(s) for s in self._seeds(max(self.repeats if self.line_search else 1, 1))]
                seeds = [own[0]] * len(items)
                centre_seeds = own[:self.repeats] if self.line_search is not None else []
                if not query.needs_fx:
                    centre_seeds = centre_seeds[:extra]
            seeds = np.array(seeds + (centre_seeds[-extra:] if extra else []), dtype=np.int64)
            centre_seeds = np.array(centre_seeds, dtype=np.int64)
        items += [(-1, 0)] * extra
        self.work = {"extra": extra, "centre_seeds": centre_seeds}
        if self.box is None:
            points = query.points
            if extra:
                points = np.vstack([points, np.repeat(self.x[None, :], extra, axis=0)])
            self._set("estimate", points, seeds, query=query, items=tuple(items))
            return
        # bounds: move each point inside and remember how to rebuild the query's values
        plan, pts = self.box.plan_query(query)
        self.work["plan"] = plan
        if extra:
            pts += [self.x] * extra
        point_seeds = None
        if seeds is not None:
            point_seeds = np.array([seeds[0]] * len(pts), dtype=np.int64)
        self._set("estimate", np.array(pts), point_seeds, query=None, items=())
        self.work["query"] = query

    def _query_fx(self) -> float | None:
        """f(x) handed to the estimator: None when the centre is re-evaluated (repeats, seeds)."""
        if self.repeats > 1 or self.seeded:
            return None
        return self.fx

    def _query_sigma(self, query: Query) -> Query:
        """The query at the run's current radius (capped at a quarter of the box)."""
        if self.sigma_fixed and self.box is None:
            return query
        sigma = self.sigma
        if self.box is not None and self.box.width() > 0:
            sigma = min(sigma, 0.25 * self.box.width())
        return dataclasses.replace(query, sigma=float(sigma))

    def _rank_nonfinite(self, values: np.ndarray) -> np.ndarray:
        bad = ~np.isfinite(values)
        if not bad.any():
            return values
        if self.nonfinite == "raise":
            check_finite(values)
        good = values[~bad]
        values = values.copy()
        self.n_nonfinite += int(bad.sum())
        if good.size == 0:  # all tie: nothing to learn from this batch (a zero estimate)
            values[:] = 0.0
            return values
        worst = float(good.max()) + max(float(np.ptp(good)), abs(float(good.max())) * 1e-12, 1e-12)
        values[bad] = worst
        return values

    def _tell_estimate(self, values: np.ndarray) -> None:
        values = self._rank_nonfinite(values)
        extra = self.work["extra"]
        if "plan" in self.work:
            query = self.work["query"]
            plan = self.work["plan"]
            est_vals = plan[:, :-1] @ values[:values.size - extra]
            if query.fx is not None:
                est_vals = est_vals + plan[:, -1] * query.fx
        else:
            query = self.pending.query
            est_vals = values[:values.size - extra]
        centre = values[values.size - extra:] if extra else np.empty(0)
        estimate = self.active_estimator.tell(query, est_vals)
        if query.needs_fx:
            centre = np.concatenate([values[:1], centre])
        g = estimate.grad
        if centre.size:
            self.fx = float(centre.mean())
            if self.eps_mode == "repeats":
                self.eps_f = float(centre.std(ddof=1) / np.sqrt(centre.size))
        elif estimate.fx is not None:
            self.fx = float(estimate.fx)
        centre_seeds = self.work.get("centre_seeds")
        self.work = {"centre_seeds": centre_seeds}
        if self.memory is not None and self.pair is not None:
            s_k, g_old = self.pair
            self.memory.update(s_k, g - g_old)
        self.pair = None
        self.grad = g
        if self.line_search is None:
            self.x, self.rule_state = self.rule.update(self.x, g, self.rule_state)
            if self.box is not None:
                self.x = self.box.project(self.x)
            self.fx = None
            self._end_iteration(self.rule.lr, failed=False)
            return
        if self.fx is None:  # central estimate without f(x): evaluate it
            self._set("center", np.repeat(self.x[None, :], self.repeats, axis=0), self._seeds(self.repeats))
            self.work["centre_seeds"] = self.pending.seeds
            return
        self._begin_search()

    def _tell_center(self, values: np.ndarray) -> None:
        values = check_finite(values)
        self.fx = float(values.mean())
        if self.eps_mode == "repeats":
            self.eps_f = float(values.std(ddof=1) / np.sqrt(values.size))
        self._begin_search()

    def _free_gradient(self) -> np.ndarray:
        g = self.grad
        if self.box is None:
            return g
        out = ((self.x <= self.box.lb) & (g > 0)) | ((self.x >= self.box.ub) & (g < 0))
        return np.where(out, 0.0, g)

    def _begin_search(self) -> None:
        g = self.grad
        if not np.any(self._free_gradient()):
            self._stop("the gradient estimate is exactly zero" if not np.any(g) else
                       "the projected gradient estimate is zero", 0)
            self._end_iteration(0.0 if self.alpha is None else self.alpha, failed=False)
            return
        d = -g if self.memory is None else self.memory.direction(g)
        if float(g @ d) >= 0:  # L-BFGS gave no descent direction for this estimate: reset it
            self.memory.pairs.clear()
            d = -g
        self.direction = d
        if self.alpha is None:
            self.alpha = float(self.first_step * np.sqrt(self.n) / max(float(np.linalg.norm(g)), 1e-300))
        self.work.update(trials=0)
        self._begin_trial()

    def _trial_point(self) -> np.ndarray:
        """x + α d, its length capped at ``max_step``·max(‖x‖∞, 1) (projected onto the box)."""
        step = self.alpha * self.direction
        cap = self.max_step * self._scale()
        length = float(np.linalg.norm(step))
        if length > cap:
            step = step * (cap / length)
        t = self.x + step
        return t if self.box is None else self.box.project(t)

    def _begin_trial(self) -> None:
        trial = self._trial_point()
        seeds = self.work.get("centre_seeds")
        if self.seeded and seeds is None:
            seeds = self._seeds(self.repeats)
        if seeds is not None:
            seeds = np.asarray(seeds)[: self.repeats]
        self._set("trial", np.repeat(trial[None, :], self.repeats, axis=0), seeds)
        self.work["trial"] = trial

    def _tell_trial(self, values: np.ndarray) -> None:
        ls = self.line_search
        f_trial = float(np.mean(values)) if np.all(np.isfinite(values)) else np.nan
        trial = self.work["trial"]
        step = trial - self.x
        decrease = float(-(self.grad @ step))
        if decrease <= 0 and self.box is not None and self.memory is not None:
            self.memory.pairs.clear()
        test = dataclasses.replace(ls, eps_f=self.eps_f) if ls.eps_f != self.eps_f else ls
        if decrease > 0 and test.accepts(f_trial, self.fx, 1.0, decrease):
            if self.memory is not None:
                self.pair = (step, self.grad)
            self.x, self.fx = trial, f_trial
            used = self.alpha
            self.alpha = ls.grow(self.alpha)
            self._end_iteration(used, failed=False)
            return
        self.alpha = ls.shrink(self.alpha)
        self.work["trials"] += 1
        # alpha_min bounds the step length relative to the scale of x, not α itself
        min_alpha = ls.alpha_min * self._scale() / max(float(np.linalg.norm(self.direction)), 1e-300)
        if self.work["trials"] < ls.max_backtracks and self.alpha >= min_alpha:
            self._begin_trial()
            return
        self.alpha = max(self.alpha, min_alpha)
        self._end_iteration(self.alpha, failed=True)

    def _end_iteration(self, step_size: float, *, failed: bool) -> None:
        self.nit += 1
        gn = float(np.linalg.norm(self.grad)) if self.grad is not None else 0.0
        self._record(gn, step_size)
        if self.stopped:
            self._begin_estimate()
            return
        auto = self.eps_mode == "auto"
        # noise floor, two tests: (a) a failed line search with ‖g‖ within the estimate's own
        # error bound, twice in a row (fresh estimates in between); (b) with noise at the
        # rounding level only, the last ``stall_iterations`` iterations did not beat the best
        # earlier f by 2ε_f, twice in a row (on noisy functions progress below the noise
        # level per window is still progress: measured on the noisy Moré–Wild set)
        at_floor = False
        if failed and self.L is not None and self.M is not None and self.grad is not None:
            at_floor = float(np.linalg.norm(self._free_gradient())) <= self._error_bound()
        self.floor_hits = self.floor_hits + 1 if at_floor else 0
        funs = self.history["fun"]
        w = self.stall_iterations
        stalled = False
        rounding_only = self.eps_f <= 1e3 * EPS * max(abs(self.fx or 0.0), 1e-300)
        if self.eps_mode != "repeats" and rounding_only and len(funs) > w:
            before, recent = np.asarray(funs[:-w], dtype=float), np.asarray(funs[-w:], dtype=float)
            if np.isfinite(before).any() and np.isfinite(recent).any():
                stalled = bool(np.nanmin(recent) > np.nanmin(before) - 2.0 * self.eps_f)
        self.stall_hits = self.stall_hits + 1 if stalled else 0
        if self.floor_hits >= 2 or self.stall_hits >= 2:
            what = ("the gradient estimate is within its error bound" if self.floor_hits >= 2 else
                    f"no decrease beyond 2 eps_f in {w + 1} iterations")
            self._stop(f"noise floor: {what} (eps_f={self.eps_f:.3g}, sigma={self.sigma:.3g})", 0)
            self._begin_estimate()
            return
        if failed:
            self.failed_streak += 1
            if self.eps_mode != "repeats" and self.failed_streak > self.max_recoveries:
                self._stop(f"line search failed after {self.max_recoveries} recoveries "
                           f"(noise level eps_f={self.eps_f:.3g})", 3)
                self._begin_estimate()
                return
            if auto or not self.sigma_fixed:
                self.recoveries += 1
                if self.memory is not None:
                    self.memory.pairs.clear()  # curvature pairs from noisy gradients may mislead
                    self.pair = None
                self._begin_noise("recovery") if auto else self._begin_recovery_curvature()
                return
        else:
            self.failed_streak = 0
        if auto and self.stall_hits == 1:
            self._begin_noise("noise floor check")
            return
        if auto and self.nit % self.reestimate_every == 0:
            self._begin_noise("periodic")
            return
        self._begin_estimate()

    def _begin_recovery_curvature(self) -> None:
        self.work = {"reason": "recovery"}
        self._begin_curvature()

    def _error_bound(self) -> float:
        """The finite-difference error bound of the current estimate at its radius: the bound of
        :data:`dfo.radius.CENTRAL_FD` or :data:`dfo.radius.FORWARD_FD` (Berahas et al. 2022)."""
        eps = max(self.eps_f, EPS * abs(self.fx or 0.0))
        r = CENTRAL_FD if self._central() else FORWARD_FD
        return r.bound(self.sigma, eps, self.M if r.needs == "M" else self.L, self.n)

    def _stop(self, message: str, status: int) -> None:
        if self.stopped is None:
            self.stopped, self.status = message, status

    def _record(self, grad_norm: float, step_size: float) -> None:
        h = self.history
        h["nit"].append(self.nit)
        h["nfev"].append(self.nfev)
        h["fun"].append(np.nan if self.fx is None else self.fx)
        h["grad_norm"].append(grad_norm)
        h["step_size"].append(step_size)

    # -- ask / tell ---------------------------------------------------------------
    @property
    def request(self) -> Request:
        """The pending :class:`Request` (points, seeds, kind, query)."""
        return self.pending

    def ask(self) -> np.ndarray:
        """The next batch of points to evaluate, shape ``(k, n)``."""
        return self.pending.points.copy()

    def tell(self, values) -> None:
        """Report f at the points of the last :meth:`ask`, in order.

        A :class:`dfo.NonFiniteValueError` leaves the state untouched: the same request
        is still pending and may be told again.
        """
        values = np.asarray(values, dtype=float).ravel()
        if values.size != len(self.pending):
            raise ValueError(f"expected {len(self.pending)} values, got {values.size}")
        snapshot = None
        if not np.all(np.isfinite(values)) and self.phase != "trial":
            import copy
            snapshot = copy.deepcopy(self.__dict__)
        try:
            handler = {"noise": self._tell_noise, "curvature": self._tell_curvature,
                       "estimate": self._tell_estimate, "center": self._tell_center,
                       "trial": self._tell_trial}[self.phase]
            self.nfev += values.size
            handler(values)
        except BaseException:
            if snapshot is not None:
                self.__dict__.update(snapshot)
            raise

    # -- state ----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The run's state as a JSON-able tree with numpy arrays (no pickle needed).

        The pending request is stored by its ingredients (for an estimate: the
        generator and estimator state before the ask, which regenerate the query).
        """
        def arr(v):
            return None if v is None else np.array(v, dtype=float)

        work = {}
        for k, v in self.work.items():
            if k == "query":
                continue
            work[k] = np.array(v) if isinstance(v, np.ndarray) else v
        return {
            "x": self.x.copy(), "fx": self.fx, "grad": arr(self.grad), "nfev": self.nfev, "nit": self.nit,
            "alpha": self.alpha, "eps_f": self.eps_f, "sigma": self.sigma, "L": self.L, "M": self.M,
            "slope": self.slope, "use_central": self.use_central, "noise_kind": self.noise_kind,
            "ecnoise_h": self.ecnoise_h, "stopped": self.stopped, "status": self.status,
            "recoveries": self.recoveries, "failed_streak": self.failed_streak, "floor_hits": self.floor_hits,
            "stall_hits": self.stall_hits,
            "n_nonfinite": self.n_nonfinite, "direction": arr(self.direction),
            "rng": json.dumps(self.rng.bit_generator.state),
            "rule_state": {k: (np.array(v) if isinstance(v, np.ndarray) else v) for k, v in self.rule_state.items()},
            "memory": None if self.memory is None else [[s.copy(), y.copy()] for s, y, _ in self.memory.pairs],
            "pair": None if getattr(self, "pair", None) is None else [self.pair[0].copy(), self.pair[1].copy()],
            "history": {k: list(v) for k, v in self.history.items()},
            "noise_history": {k: list(v) for k, v in self.noise_history.items()},
            "phase": self.phase, "work": work,
            "pending": {"points": self.pending.points.copy(),
                        "seeds": None if self.pending.seeds is None else self.pending.seeds.copy(),
                        "items": [list(i) for i in self.pending.items]},
            "ask_state": None if self._ask_state is None else [json.dumps(self._ask_state[0]), self._ask_state[1]],
            "estimator": (self.active_estimator.state_dict()
                          if hasattr(self.active_estimator, "state_dict") else None),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output into a Minimizer built with the same options."""
        self.x = np.array(state["x"], dtype=float)
        self.fx = None if state["fx"] is None else float(state["fx"])
        self.grad = None if state["grad"] is None else np.array(state["grad"], dtype=float)
        for k in ("nfev", "nit", "recoveries", "failed_streak", "floor_hits", "stall_hits", "n_nonfinite"):
            setattr(self, k, int(state[k]))
        for k in ("alpha", "eps_f", "sigma", "L", "M", "slope", "ecnoise_h"):
            setattr(self, k, None if state[k] is None else float(state[k]))
        self.use_central = bool(state["use_central"])
        self.noise_kind, self.stopped = state["noise_kind"], state["stopped"]
        self.status = None if state["status"] is None else int(state["status"])
        self.direction = None if state["direction"] is None else np.array(state["direction"], dtype=float)
        self.rule_state = {k: (np.array(v) if isinstance(v, np.ndarray | list) else v)
                           for k, v in state["rule_state"].items()}
        if self.memory is not None:
            self.memory.pairs.clear()
            for s, y in state["memory"]:
                self.memory.update(np.array(s, dtype=float), np.array(y, dtype=float))
        self.pair = None if state["pair"] is None else (np.array(state["pair"][0]), np.array(state["pair"][1]))
        self.history = {k: list(v) for k, v in state["history"].items()}
        self.noise_history = {k: list(v) for k, v in state["noise_history"].items()}
        self.phase = state["phase"]
        self.work = dict(state["work"])
        pend = state["pending"]
        seeds = None if pend["seeds"] is None else np.array(pend["seeds"], dtype=np.int64)
        query = None
        if self.phase == "estimate":
            rng_before, est_before = state["ask_state"]
            est = self.active_estimator
            rng = np.random.default_rng()
            rng.bit_generator.state = json.loads(rng_before)
            if est_before is not None:
                est.load_state_dict(est_before)
            query = self._query_sigma(est.ask(self.x, rng, fx=self._query_fx()))
            self._ask_state = (json.loads(rng_before), est_before)
            if self.box is not None:
                self.work["query"], query = query, None
        if state.get("estimator") is not None:
            self.active_estimator.load_state_dict(state["estimator"])
        self.rng = np.random.default_rng()
        self.rng.bit_generator.state = json.loads(state["rng"])
        self.pending = Request(kind=self.phase, points=np.array(pend["points"], dtype=float), seeds=seeds,
                               query=query, items=tuple(tuple(i) for i in pend["items"]))

    # -- result -----------------------------------------------------------------------
    def result(self, message: str | None = None, success: bool | None = None, status: int | None = None
               ) -> OptimizeResult:
        """The run so far as an ``OptimizeResult`` (``message``/``status`` default to the stop reason)."""
        status = self.status if status is None else status
        message = self.stopped if message is None else message
        if success is None:
            success = status == 0
        return OptimizeResult(
            x=self.x.copy(), fun=self.fx, jac=self.grad, nfev=self.nfev, nit=self.nit,
            success=bool(success), status=status, message=message,
            eps_f=self.eps_f, sigma=self.sigma, recoveries=self.recoveries, n_nonfinite=self.n_nonfinite,
            estimator=self.active_preset,
            history={k: np.asarray(v) for k, v in self.history.items()},
            noise_history={k: np.asarray(v) for k, v in self.noise_history.items()},
        )
