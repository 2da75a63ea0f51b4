"""The optimization loop, :class:`Minimizer`: descent on estimated gradients with a step
rule (the noise-tolerant line search, or sgd / momentum / adam).

One iteration, as :meth:`Minimizer.tell` reads:

1. ``probe``: when due, a :class:`dfo.noise.NoiseProbe` measures ε_f (repeats:
   stochastic noise; ECNoise, Moré & Wild 2011: deterministic noise) and curvature
   bounds L, M (Moré & Wild 2012), hence σ by the preset's rule (Berahas, Cao,
   Choromanski & Scheinberg 2022). Due at the start, every ``reestimate_every``
   iterations, after a failed line search (a *recovery*, Berahas, Byrd & Nocedal 2019)
   and on the first stall of the noise-floor test. With ``estimator="auto"`` the forward
   estimator is swapped for its central version while the forward error bound
   2√(ε_f L) exceeds 1 % of the directional slope.
2. ``estimate``: the estimator's query around x (with centre repeats and episode seeds
   for common random numbers when asked: :mod:`dfo.estimate_request`), assembled into g.
3. ``step``: an update rule moves x at once; the line search (Berahas, Cao & Scheinberg
   2021) tries x + α d, d = −g or the L-BFGS direction, until
   f(x + α d) ≤ f(x) + c1 α gᵀd + 2 ε_f or its trials run out (:mod:`dfo.optim`).
4. ``end``: record, then the stop tests: the noise floor (a failed search with ‖g‖
   within the estimate's error bound, twice in a row; or, at the rounding level,
   ``stall_iterations`` iterations that do not beat the best earlier f by 2ε_f, twice
   in a row: status 0), ``max_recoveries`` consecutive failed recoveries (status 3)
   (:mod:`dfo.stopping`).

Every evaluation, noise probes included, counts in ``nfev``. The state is one typed
:class:`RunState` (``state_dict`` generated from its fields, :mod:`dfo.state`; the
checks of a load in :mod:`dfo.state_io`); the
history is an append-only :class:`dfo.state.Trace`, so copying a Minimizer costs the
same at iteration 10 and 10,000. :func:`dfo.minimize` drives it with an evaluator;
the RL trainer drives the same object with rollouts.
"""

from __future__ import annotations

import copy
import dataclasses
from operator import attrgetter
from typing import Any

import numpy as np
from scipy.optimize import OptimizeResult

from .bounds import Box
from .estimate_request import centre_repeats, crn_seeds, estimate_points, estimate_values, rank_nonfinite
from .estimators import ESTIMATORS
from .lbfgs import LBFGSMemory
from .noise import EPS, SEED_HIGH, NoiseProbe, difference_errors
from .optim import STEP_RULES, make_step_rule
from .options import float_option as _float_option
from .options import int_option as _int_option
from .options import estimator_choice, loop_choices
from .request import Request
from .rng import as_generator
from .runstate import Pending, RunState, StallWindow
from .state import Trace
from .state_io import checked_state, redraw_estimate, result_of, state_dict_of
from .stopping import after_iteration, clear_for_restart, error_bound, free_gradient, stop
from .values import as_point, check_finite

__all__ = ["Minimizer", "Request", "RunState", "STEPS", "SEED_HIGH"]

STEPS = tuple(STEP_RULES)
#: estimator="auto" uses central differences while 2√(ε_f L) > CENTRAL_SWITCH × |slope|
CENTRAL_SWITCH = 1e-2
HISTORY = ("nit", "nfev", "fun", "grad_norm", "step_size")
NOISE_HISTORY = ("nit", "nfev", "eps_f", "sigma", "L", "M", "kind", "reason")


class Minimizer:
    """Ask/tell driver of one optimization run, with explicit picklable state.

    Args:
        x0: starting point (1-D).
        estimator: preset name, ``"auto"`` (orthogonal directions, central differences
            when noise dominates) or an estimator object.
        step: a rule of :data:`dfo.optim.STEP_RULES`: ``"armijo"``, ``"sgd"``, ``"momentum"``, ``"adam"``.
        n_directions: N per estimate (default n).
        sigma: sampling radius; None: the Berahas et al. rule with measured ε_f, L, M.
        eps_f: ``"auto"`` (measured and re-measured), ``"repeats"`` (each iteration, the
            standard error of the ``repeats`` centre values; needs repeats ≥ 2) or a number.
        lr: step size of an update rule (ignored by ``armijo``).
        line_search: :class:`dfo.linesearch.ArmijoLineSearch` or a dict of its options.
        direction: ``"gradient"``, ``"lbfgs"`` (armijo only) or ``"auto"`` (L-BFGS with
            the line search, the gradient with an update rule).
        memory: L-BFGS pairs kept.
        repeats: centre evaluations per iteration and per line-search trial (armijo).
        first_step: the first trial step is ``first_step·√n/‖g‖`` (an ARS-sized step).
        seeded: requests carry episode seeds drawn from the run's generator.
        bounds: scipy ``Bounds`` or a sequence of n ``(low, high)`` pairs.
        max_step: a trial moves at most ``max_step``·max(‖x‖∞, 1) (None: no cap).
        reestimate_every: iterations between noise/curvature re-estimates (eps_f="auto").
        stall_iterations: the noise-floor window.
        max_recoveries: consecutive failed recoveries before the run stops.
        nonfinite: ``"raise"`` or ``"worst"`` (a non-finite estimation value ranks last).
        averaging: sample averaging on stochastic noise (needs ``eps_f="auto"``, not ``seeded``):
            when the gradient estimate is within its error bound, each point's value becomes
            the mean of k evaluations, k grown by the norm test (:meth:`_grow_samples`).
        rng: None, int or Generator: drives every random choice of the run.
        estimator_options: extra options for the estimator preset.

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
                 line_search=None, direction: str = "auto", memory: int = 10, repeats: int = 1,
                 first_step: float | None = None, seeded: bool = False, bounds=None, max_step: float = 1.0,
                 reestimate_every: int = 10, stall_iterations: int = 10, max_recoveries: int = 3,
                 nonfinite: str = "raise", averaging: bool = False, rng=None, **estimator_options: Any):
        direction, self.eps_mode = loop_choices(step=step, direction=direction, nonfinite=nonfinite, eps_f=eps_f)
        x = as_point(x0, name="x0").copy()
        self.box = Box.parse(bounds, x.size)
        if self.box is not None:
            x = self.box.project(x)
        n_directions = _int_option("n_directions", n_directions)
        self.repeats = _int_option("repeats", repeats)
        self.reestimate_every = _int_option("reestimate_every", reestimate_every)
        stall = _int_option("stall_iterations", stall_iterations)
        self.max_recoveries = _int_option("max_recoveries", max_recoveries, low=0)
        memory = _int_option("memory", memory)
        if self.eps_mode == "repeats" and self.repeats < 2:
            raise ValueError("eps_f='repeats' needs repeats >= 2")
        self.sigma_fixed = sigma is not None
        sigma = None if sigma is None else _float_option("sigma", sigma)
        self.auto_estimator = isinstance(estimator, str) and estimator == "auto"
        self.preset, self.estimator, self.central_estimator = estimator_choice(
            estimator, dict(n_directions=n_directions, sigma=sigma, **estimator_options))
        if self.preset is None:  # an estimator object brings its own σ
            self.sigma_fixed, sigma = True, getattr(self.estimator, "sigma", None)
        self.first_step = None if first_step is None else _float_option("first_step", first_step)
        self.max_step = np.inf if max_step is None else _float_option("max_step", max_step)
        self.step_name = step
        self.rule = make_step_rule(step, lr=None if lr is None else _float_option("lr", lr), line_search=line_search)
        if not self.rule.evaluates and direction != "gradient":
            raise ValueError(f"direction={direction!r} needs step='armijo'")
        self.line_search = self.rule if self.rule.evaluates else None
        self.seeded, self.nonfinite = bool(seeded), nonfinite
        self.averaging = bool(averaging)
        if self.averaging and (self.seeded or self.eps_mode != "auto"):
            raise ValueError("averaging=True needs eps_f='auto' and seeded=False (it averages repeated "
                             "evaluations of stochastic noise measured by the run)")
        self.state = RunState(
            x=x, rng=as_generator(rng), window=StallWindow(stall), rule_state=self._fresh_rule_state(x.size),
            memory=LBFGSMemory(size=memory) if direction == "lbfgs" else None,
            eps_f=0.0 if self.eps_mode != "fixed" else _float_option("eps_f", eps_f, positive=False),
            noise_kind="given" if self.eps_mode == "fixed" else None,
            sigma=float(sigma) if sigma is not None else float("nan"))
        self.history, self.noise_history = Trace(HISTORY), Trace(NOISE_HISTORY)
        self._begin("start")

    def _begin(self, reason: str) -> None:
        """The first request of a run (or a restart): the probe when ε_f or σ is measured."""
        self._probe(reason) if self.eps_mode == "auto" or not self.sigma_fixed else self._estimate()

    def _fresh_rule_state(self, n: int) -> dict:
        rule_state = self.rule.init(n)
        if self.rule.evaluates and self.first_step is not None:
            rule_state["alpha"] = None  # sized from the first estimate
        return rule_state

    # -- what the run is using -------------------------------------------------------
    @property
    def n(self) -> int:
        return int(self.state.x.size)

    @property
    def active_estimator(self):
        return self.central_estimator if self.state.use_central else self.estimator

    @property
    def active_preset(self) -> str | None:
        central = ESTIMATORS[self.preset].central_version if self.preset in ESTIMATORS else None
        return central if self.state.use_central and central else self.preset

    def _central(self) -> bool:
        preset = self.active_preset
        return bool(getattr(self.active_estimator, "central", False)) or (
            preset in ESTIMATORS and ESTIMATORS[preset].central)

    def _scale(self) -> float:
        return max(float(np.max(np.abs(self.state.x))), 1.0)

    def _seeds(self, k: int) -> np.ndarray | None:
        return self.state.rng.integers(0, SEED_HIGH, size=k) if self.seeded else None

    def _ask(self, kind: str, points, seeds=None, **extra) -> None:
        points = np.atleast_2d(np.asarray(points, dtype=float))
        if self.box is not None:
            points = self.box.project(points)  # guards against rounding at the faces
        self.state.pending = Pending(kind, points, seeds, **extra)

    # -- 1. probe ---------------------------------------------------------------------
    def _probe(self, reason: str) -> None:
        s = self.state
        s.probe = NoiseProbe(s.x, fx=s.fx, eps_f=s.eps_f, kind=s.noise_kind, ecnoise_h=s.ecnoise_h,
                             measure_noise=self.eps_mode == "auto", measure_curvature=not self.sigma_fixed,
                             seeded=self.seeded, reason=reason)
        s.probe.start(s.rng, self.box)
        self._ask(s.probe.request_kind, s.probe.points, s.probe.seeds)

    def _tell_probe(self, values: np.ndarray) -> None:
        s, p = self.state, self.state.probe
        p.tell(values, s.rng, self.box)
        s.fx = p.fx  # what the probe has measured so far is the run's (a budget may end it here)
        if p.measure_noise:
            s.noise_kind, s.eps_f, s.ecnoise_h = p.kind, p.eps_f, p.ecnoise_h
        if not p.done:
            self._ask(p.request_kind, p.points, p.seeds)
            return
        s.probe = None
        if p.measure_curvature:
            if s.samples > 1:  # the probe measured one evaluation's noise; the run's values are means of k
                p.eps_used = max(p.eps_used / np.sqrt(s.samples), EPS * abs(p.fx or 0.0))
            s.L, s.M, s.slope = p.L, p.M, p.slope
            if self.central_estimator is not None:
                s.use_central = difference_errors(p.eps_used, s.L, s.M)[0] > CENTRAL_SWITCH * s.slope
            # only presets measure σ (an estimator object brings its own), so the rule is the preset's
            s.sigma = p.radius(self.active_preset, self.n, central=self._central())
        self.noise_history.append(nit=s.nit, nfev=s.nfev, eps_f=s.eps_f, sigma=s.sigma,
                                  L=np.nan if s.L is None else s.L, M=np.nan if s.M is None else s.M,
                                  kind=s.noise_kind or "", reason=p.reason)
        self._estimate()

    # -- 2. estimate ------------------------------------------------------------------
    def _estimate(self) -> None:
        s, est = self.state, self.active_estimator
        ask_rng = s.rng.bit_generator.state
        ask_est = est.state_dict() if hasattr(est, "state_dict") else None
        query = est.ask(s.x, s.rng, fx=None if self.repeats > 1 or self.seeded else s.fx)
        if not self.sigma_fixed or self.box is not None:  # the run's radius, a quarter of the box at most
            box_cap = 0.25 * self.box.width() if self.box is not None and self.box.width() > 0 else np.inf
            query = dataclasses.replace(query, sigma=float(min(s.sigma, box_cap)))
        searching = self.line_search is not None  # f(x) is measured with the estimate
        extra = centre_repeats(query, repeats=self.repeats, seeded=self.seeded, line_search=searching)
        seeds, s.centre_seeds = crn_seeds(query, s.rng, repeats=self.repeats, extra=extra, line_search=searching) \
            if self.seeded else (None, None)
        points, seeds, shape = estimate_points(query, s.x, extra=extra, seeds=seeds, box=self.box)
        if s.samples > 1:  # sample averaging: each point k times in a row (never seeded)
            points = np.repeat(points, s.samples, axis=0)
            if "items" in shape:
                shape["items"] = [item for item in shape["items"] for _ in range(s.samples)]
        self._ask("estimate", points, seeds, query=query, extra=extra, ask_rng=ask_rng, ask_estimator=ask_est, **shape)

    def _tell_estimate(self, values: np.ndarray) -> None:
        s, req = self.state, self.state.pending
        if s.samples > 1:
            values = values.reshape(-1, s.samples).mean(axis=1)
        values, bad = rank_nonfinite(values, self.nonfinite)
        s.n_nonfinite += bad
        est_vals, centre = estimate_values(req, values)
        estimate = self.active_estimator.tell(req.query, est_vals)
        g = estimate.grad
        if centre.size:
            self._measure_centre(centre)
        elif estimate.fx is not None:
            s.fx = float(estimate.fx)
        if s.memory is not None and s.pair_s is not None:
            s.memory.update(s.pair_s, g - s.pair_g)
        s.pair_s = s.pair_g = None
        s.grad = g
        if not self.rule.evaluates:  # an update rule: x moves without evaluating f
            s.x, s.rule_state = self.rule.update(s.x, g, s.rule_state)
            s.x, s.fx = (s.x if self.box is None else self.box.project(s.x)), None
            self._end_iteration(self.rule.lr, failed=False)
        elif s.fx is None:  # a central estimate without f(x): evaluate it
            self._ask("center", np.repeat(s.x[None, :], self.repeats * s.samples, axis=0), self._seeds(self.repeats))
            s.centre_seeds = s.pending.seeds
        else:
            self._search()

    def _tell_center(self, values: np.ndarray) -> None:
        self._measure_centre(check_finite(values))
        self._search()

    def _measure_centre(self, values: np.ndarray) -> None:
        """f(x) as the mean of its repeats (and, with ``eps_f="repeats"``, ε_f as their standard error)."""
        self.state.fx = float(values.mean())
        if self.eps_mode == "repeats":
            self.state.eps_f = float(values.std(ddof=1) / np.sqrt(values.size))

    # -- 3. step (the line search; update rules stepped in _tell_estimate) -------------------
    def _free_gradient(self) -> np.ndarray:
        return free_gradient(self.state.grad, self.state.x, self.box)

    def _search(self) -> None:
        s, g = self.state, self.state.grad
        if not np.any(self._free_gradient()):
            stop(s, "the gradient estimate is exactly zero" if not np.any(g) else
                 "the projected gradient estimate is zero", 0)
            self._end_iteration(0.0 if self.alpha is None else self.alpha, failed=False)
            return
        d = -g if s.memory is None else s.memory.direction(g)
        if float(g @ d) >= 0:  # L-BFGS gave no descent direction for this estimate: reset it
            s.memory.pairs.clear()
            d = -g
        s.direction, s.trials = d, 0
        if self.alpha is None:
            self.alpha = float(self.first_step * np.sqrt(self.n) / max(float(np.linalg.norm(g)), 1e-300))
        self._trial()

    def _trial(self) -> None:
        s = self.state
        step = self.alpha * s.direction
        cap, length = self.max_step * self._scale(), float(np.linalg.norm(step))
        if length > cap:  # at most max_step·max(‖x‖∞, 1) long
            step = step * (cap / length)
        trial = s.x + step if self.box is None else self.box.project(s.x + step)
        seeds = s.centre_seeds
        if self.seeded and seeds is None:
            seeds = self._seeds(self.repeats)
        self._ask("trial", np.repeat(trial[None, :], self.repeats * s.samples, axis=0),
                  None if seeds is None else np.asarray(seeds)[: self.repeats])

    def _tell_trial(self, values: np.ndarray) -> None:
        s, ls = self.state, self.line_search
        f_trial = float(np.mean(values)) if np.all(np.isfinite(values)) else np.nan
        trial = s.pending.points[0]
        step = trial - s.x
        decrease = float(-(s.grad @ step))
        if decrease <= 0 and self.box is not None and s.memory is not None:
            s.memory.pairs.clear()
        if decrease > 0 and ls.accepts(f_trial, s.fx, 1.0, decrease, eps_f=s.eps_f / np.sqrt(s.samples)):
            if s.memory is not None:
                s.pair_s, s.pair_g = step, s.grad
            s.x, s.fx = trial, f_trial
            used, self.alpha = self.alpha, ls.grow(self.alpha)
            self._end_iteration(used, failed=False)
            return
        self.alpha = ls.shrink(self.alpha)
        s.trials += 1
        # alpha_min bounds the step length relative to the scale of x, not α itself
        min_alpha = ls.alpha_min * self._scale() / max(float(np.linalg.norm(s.direction)), 1e-300)
        if s.trials < ls.max_backtracks and self.alpha >= min_alpha:
            self._trial()
            return
        self.alpha = max(self.alpha, min_alpha)
        self._end_iteration(self.alpha, failed=True)

    # -- 4. end of an iteration: record, then the stop tests and recoveries (dfo.stopping) ---
    def _end_iteration(self, step_size: float, *, failed: bool) -> None:
        s = self.state
        s.nit += 1
        f = np.nan if s.fx is None else s.fx
        self.history.append(nit=s.nit, nfev=s.nfev, fun=f, step_size=step_size,
                            grad_norm=float(np.linalg.norm(s.grad)) if s.grad is not None else 0.0)
        s.window.push(f)
        reason = None if s.stopped else after_iteration(
            s, failed=failed, central=self._central(), box=self.box, eps_mode=self.eps_mode,
            sigma_fixed=self.sigma_fixed, max_recoveries=self.max_recoveries,
            reestimate_every=self.reestimate_every)
        if self.averaging and not s.stopped:
            self._grow_samples()
        self._probe(reason) if reason else self._estimate()

    def _grow_samples(self) -> None:
        """Sample averaging (Byrd, Chin, Nocedal & Wu 2012; Bollapragada, Byrd & Nocedal 2018),
        on stochastic noise only (averaging a deterministic noise changes nothing).

        A value that is the mean of k evaluations has noise ε_f/√k. The trigger is the stall
        window at that level: the last ``stall_iterations`` iterations did not lower f by 2ε_f/√k
        below every earlier value, so the noise hides whatever the steps gain. Then k grows to
        the norm test's size, the k' that brings the estimate's error bound b (
        :func:`dfo.stopping.error_bound`) down to ‖P g‖: b scales as ε^{2/3} (central, σ =
        (3ε/M)^{1/3}) or ε^{1/2} (forward, σ = 2√(ε/L)), so k' = k (b/‖P g‖)^3 or k (b/‖P g‖)^4,
        taken within [2k, 4k] (‖P g‖ is itself an estimate); σ follows its rule, σ ← σ (k/k')^{1/6}
        (central) or σ (k/k')^{1/4} (forward), and the window starts afresh. Every evaluation
        counts in ``nfev``."""
        s = self.state
        if s.noise_kind != "stochastic" or s.grad is None or s.L is None or s.M is None:
            return
        k = s.samples
        if not s.window.stalled(s.eps_f / np.sqrt(k)):
            return
        central = self._central()
        b = error_bound(s, central=central)
        gn = float(np.linalg.norm(self._free_gradient()))
        want = k * (b / max(gn, 1e-300)) ** (3.0 if central else 4.0)
        new = int(min(4 * k, max(2 * k, np.ceil(want))))
        s.sigma *= (k / new) ** (1.0 / 6.0 if central else 0.25)
        s.samples = new
        s.window = StallWindow(s.window.size)

    def restart(self) -> None:
        """Start afresh from x after a stop (a restart, as Py-BOBYQA restarts at its noise
        floor): the noise and curvature are measured again and the L-BFGS pairs, the step and
        the stop tests start empty; x, f(x), the counters, the generator and the history stay."""
        clear_for_restart(self.state, self._fresh_rule_state(self.n))
        self._begin("restart")

    # -- ask / tell ---------------------------------------------------------------------
    @property
    def request(self) -> Request:
        """The pending :class:`dfo.request.Request` (reading it counts as asking)."""
        p = self.state.pending
        p.asked = True
        return Request(kind=p.kind, points=p.points, seeds=p.seeds, items=tuple(map(tuple, p.items)),
                       query=p.query if p.plan is None else None)

    def ask(self) -> np.ndarray:
        """The next batch of points to evaluate, shape ``(k, n)``."""
        self.state.pending.asked = True
        return self.state.pending.points.copy()

    def tell(self, values) -> None:
        """Report f at the points of the last :meth:`ask`, in order.

        Raises ``RuntimeError`` when the pending request was not asked (a second tell for
        one ask). A :class:`dfo.NonFiniteValueError` leaves the state untouched: the same
        request is still pending and may be told again.
        """
        s = self.state
        if not s.pending.asked:
            raise RuntimeError("tell() without ask(): the values of this request were already told; "
                               "call ask() (or read .request) for the next one")
        values = np.asarray(values, dtype=float).ravel()
        if values.size != len(s.pending.points):
            raise ValueError(f"expected {len(s.pending.points)} values, got {values.size}")
        kind = s.pending.kind
        snapshot = None
        if kind != "trial" and not np.all(np.isfinite(values)):
            snapshot = copy.deepcopy((self.state, self.estimator, self.central_estimator))
        try:
            s.nfev += values.size
            if s.probe is not None:
                self._tell_probe(values)
            else:
                {"estimate": self._tell_estimate, "center": self._tell_center, "trial": self._tell_trial}[kind](values)
        except BaseException:
            if snapshot is not None:
                self.state, self.estimator, self.central_estimator = snapshot
            raise

    # -- state ----------------------------------------------------------------------------
    def state_dict(self, *, history: bool = True) -> dict[str, Any]:
        """The run's state as a JSON-able tree with numpy arrays, generated from
        :class:`RunState`; ``history=False`` leaves the (growing) history out (:mod:`dfo.state_io`)."""
        return state_dict_of(self, history=history)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (or the layout before typed state, saved at an
        estimate) into a Minimizer built with the same options and problem size; a state
        that does not fit is refused with a one-line error (:mod:`dfo.state_io`)."""
        state, new = checked_state(state, self)
        if "history" in state:
            self.history.load(state["history"])
            self.noise_history.load(state["noise_history"])
        self.state = new
        if new.pending.kind == "estimate":  # redraw the query from the generator state before it
            redraw_estimate(new, self.active_estimator, self._estimate)
        if state.get("estimator") is not None:
            self.active_estimator.load_state_dict(state["estimator"])

    # -- public attributes (the state's fields) and the result ------------------------------
    @property
    def alpha(self) -> float | None:
        """The line search's trial step (None for update rules, or before the first step is sized)."""
        return self.state.rule_state.get("alpha") if self.rule.evaluates else None

    @alpha.setter
    def alpha(self, value: float | None) -> None:
        if self.rule.evaluates:
            self.state.rule_state["alpha"] = value

    def result(self, message: str | None = None, success: bool | None = None, status: int | None = None
               ) -> OptimizeResult:
        """The run so far as an ``OptimizeResult`` (``message``/``status`` default to the stop reason)."""
        return result_of(self, message, success, status)


def _field(name: str) -> property:
    return property(attrgetter(f"state.{name}"), lambda self, v: setattr(self.state, name, v),
                    doc=f"``state.{name}`` (:class:`RunState`)")


for _name in ("x", "fx", "grad", "nfev", "nit", "eps_f", "sigma", "L", "M", "slope", "noise_kind", "use_central",
              "stopped", "status", "recoveries", "n_nonfinite", "samples", "memory", "rule_state", "rng", "direction"):
    setattr(Minimizer, _name, _field(_name))
