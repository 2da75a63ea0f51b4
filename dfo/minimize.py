"""The optimization driver: line-search or fixed-rule SGD on estimated gradients.

:class:`Minimizer` is an ask/tell object for users who evaluate points themselves
(on a cluster, in a simulator, by hand); :func:`minimize` drives it with an
evaluator and returns a ``scipy.optimize.OptimizeResult``. One iteration is:

1. ask the estimator for points around x and evaluate them;
2. assemble the gradient estimate g;
3. ``step="armijo"``: noise-tolerant backtracking on x + α d, d = −g or the
   L-BFGS direction (``direction="lbfgs"``) (see
   :mod:`dfo.linesearch`), evaluating f(x) first when the estimator did not;
   ``step="sgd" | "momentum" | "adam"``: apply the update rule.

Every evaluation is counted in ``nfev``. Non-finite values at the estimation
points raise :class:`dfo.NonFiniteValueError`; a non-finite line-search trial is a
rejected trial.

Example:
    >>> import numpy as np
    >>> from dfo.problems import rosenbrock
    >>> p = rosenbrock(4)
    >>> res = minimize(p.fun, p.x0, estimator="interpolation", maxfev=4000, rng=0)
    >>> bool(res.fun < 1e-6)
    True
"""

from __future__ import annotations

from typing import Any, Callable, Generator

import numpy as np
from scipy.optimize import OptimizeResult

from .estimators import get_estimator
from .estimators.base import as_point, check_finite
from .lbfgs import LBFGSMemory
from .linesearch import ArmijoLineSearch
from .optim import UPDATE_RULES
from .radius import default_sigma
from .rng import as_generator

STEPS = ("armijo", *UPDATE_RULES)


class Minimizer:
    """Ask/tell driver of one optimization run.

    Args:
        x0: starting point (1-D).
        estimator: preset name or estimator object.
        step: ``"armijo"`` or an update rule: ``"sgd"``, ``"momentum"``, ``"adam"``.
        n_directions, sigma: estimator options (sigma defaults to the Berahas et al.
            rule with L = M = 1 at noise level ``eps_f``).
        eps_f: noise level used by the line search and the default radius.
        lr: step size of the update rule (ignored by ``armijo``).
        line_search: :class:`ArmijoLineSearch` options (``eps_f`` is filled in).
        direction: ``"gradient"`` (line-search SGD, d = −g) or ``"lbfgs"`` (d = −H g from
            the last ``memory`` curvature pairs of estimated gradients; armijo only).
        rng: None, int or Generator: drives every random choice of the run.
        estimator_options: extra options for the estimator preset (shaping, rank, ...).

    Example:
        >>> opt = Minimizer(np.zeros(2), estimator="cfd", step="sgd", lr=0.25, rng=0)
        >>> for _ in range(50):
        ...     pts = opt.ask()
        ...     opt.tell([float(np.sum((p - 3) ** 2)) for p in pts])
        >>> np.allclose(opt.x, 3)
        True
    """

    def __init__(self, x0, *, estimator="orthogonal", step: str = "armijo", n_directions: int | None = None,
                 sigma: float | None = None, eps_f: float = 0.0, lr: float | None = None,
                 line_search: ArmijoLineSearch | dict | None = None, direction: str = "gradient",
                 memory: int = 10, rng=None, **estimator_options: Any):
        if direction not in ("gradient", "lbfgs"):
            raise ValueError(f"unknown direction {direction!r}; known: gradient, lbfgs")
        self.x = as_point(x0, name="x0").copy()
        if step not in STEPS:
            raise ValueError(f"unknown step {step!r}; known: {', '.join(STEPS)}")
        if sigma is None:
            sigma = default_sigma(estimator, self.x.size, eps_f)
        self.estimator = get_estimator(estimator, n_directions=n_directions, sigma=sigma, **estimator_options)
        self.step_name = step
        if step == "armijo":
            opts = line_search if isinstance(line_search, dict) else {}
            base = line_search if isinstance(line_search, ArmijoLineSearch) else ArmijoLineSearch(eps_f=eps_f, **opts)
            self.line_search: ArmijoLineSearch | None = base
            self.alpha = base.alpha0
            self.rule = None
            self.memory = LBFGSMemory(size=memory) if direction == "lbfgs" else None
        else:
            if direction != "gradient":
                raise ValueError(f"direction={direction!r} needs step='armijo'")
            self.line_search = None
            self.memory = None
            self.rule = UPDATE_RULES[step](**({} if lr is None else {"lr": lr}))
            self.rule_state = self.rule.init(self.x.size)
        self.rng = as_generator(rng)
        self.fx: float | None = None
        self.grad: np.ndarray | None = None
        self.nfev = 0
        self.nit = 0
        self.stopped: str | None = None
        self.history: dict[str, list] = {"nit": [], "nfev": [], "fun": [], "grad_norm": [], "step_size": []}
        self._pending: np.ndarray | None = None
        self._pending_pair: tuple | None = None
        self.direction: np.ndarray | None = None
        self._gen = self._iterations()
        self._pending = next(self._gen)

    # -- the algorithm, written as a coroutine over batches of points -------------
    def _iterations(self) -> Generator[np.ndarray, np.ndarray, None]:
        while True:
            query = self.estimator.ask(self.x, self.rng, fx=self.fx)
            estimate = self.estimator.tell(query, (yield query.points))
            if estimate.fx is not None:
                self.fx = estimate.fx
            g = estimate.grad
            if self._pending_pair is not None:
                s_k, g_old = self._pending_pair
                self.memory.update(s_k, g - g_old)
                self._pending_pair = None
            self.grad = g
            if self.line_search is not None:
                if self.fx is None:
                    self.fx = float(check_finite((yield self.x[None, :]))[0])
                ls = self.line_search
                if not np.any(g):
                    self.stopped = "the gradient estimate is exactly zero"
                    self.nit += 1
                    self._record(0.0, self.alpha)
                    continue
                d = -g if self.memory is None else self.memory.direction(g)
                decrease = float(-(g @ d))
                if decrease <= 0:  # L-BFGS gave no descent direction for this estimate: reset it
                    self.memory.pairs.clear()
                    d, decrease = -g, float(g @ g)
                self.direction = d
                accepted = False
                for _ in range(ls.max_backtracks):
                    trial = self.x + self.alpha * d
                    f_trial = float(np.asarray((yield trial[None, :]), dtype=float)[0])
                    if ls.accepts(f_trial, self.fx, self.alpha, decrease):
                        if self.memory is not None:
                            self._pending_pair = (trial - self.x, g)
                        self.x, self.fx, accepted = trial, f_trial, True
                        break
                    self.alpha = ls.shrink(self.alpha)
                    if self.alpha < ls.alpha_min:
                        break
                step_size = self.alpha
                if accepted:
                    self.alpha = ls.grow(self.alpha)
                elif self.alpha < ls.alpha_min:
                    self.stopped = f"line search step fell below alpha_min={ls.alpha_min:g}"
            else:
                self.x, self.rule_state = self.rule.update(self.x, g, self.rule_state)
                self.fx, step_size = None, self.rule.lr
            self.nit += 1
            self._record(float(np.linalg.norm(g)), step_size)

    def _record(self, grad_norm: float, step_size: float) -> None:
        h = self.history
        h["nit"].append(self.nit)
        h["nfev"].append(self.nfev)
        h["fun"].append(np.nan if self.fx is None else self.fx)
        h["grad_norm"].append(grad_norm)
        h["step_size"].append(step_size)

    # -- ask / tell ---------------------------------------------------------------
    def ask(self) -> np.ndarray:
        """The next batch of points to evaluate, shape ``(k, n)``."""
        return self._pending.copy()

    def tell(self, values) -> None:
        """Report f at the points of the last :meth:`ask`, in order."""
        values = np.asarray(values, dtype=float).ravel()
        if values.size != self._pending.shape[0]:
            raise ValueError(f"expected {self._pending.shape[0]} values, got {values.size}")
        self.nfev += values.size
        self._pending = self._gen.send(values)

    def result(self, message: str, success: bool) -> OptimizeResult:
        return OptimizeResult(
            x=self.x.copy(), fun=self.fx, jac=self.grad, nfev=self.nfev, nit=self.nit,
            success=success, message=message,
            history={k: np.asarray(v) for k, v in self.history.items()},
        )


def _evaluate(fun: Callable, item) -> float:
    """Evaluate one point; ``item`` is a point or ``(point, seed)`` for seeded objectives."""
    if isinstance(item, tuple):
        return float(fun(item[0], item[1]))
    return float(fun(item))


def minimize(fun: Callable, x0, *, estimator="orthogonal", step: str = "armijo", maxfev: int | None = None,
             maxiter: int | None = None, gtol: float = 0.0, evaluator=None, callback: Callable | None = None,
             rng=None, seeded: bool = False, progress: bool = False, **options: Any) -> OptimizeResult:
    """Minimize ``fun`` with gradient estimates and line-search (or fixed-rule) SGD.

    Args:
        fun: ``fun(x) -> float``; with ``seeded=True``, ``fun(x, seed) -> float`` so that
            noisy objectives are reproducible and identical in serial and parallel runs.
        x0: starting point.
        estimator: preset name (see :data:`dfo.ESTIMATORS`) or estimator object.
        step: ``"armijo"`` (noise-tolerant line search) or ``"sgd"``, ``"momentum"``, ``"adam"``.
        maxfev: evaluation budget (default 100 (n + 1)); the run stops before an
            iteration that would exceed it.
        maxiter: iteration limit. gtol: stop when ‖g‖ ≤ gtol.
        evaluator: None (serial), an int (joblib jobs), a backend name or an evaluator
            (see :func:`dfo.parallel.make_evaluator`).
        callback: ``callback(intermediate_result)`` after each iteration; raising
            ``StopIteration`` ends the run.
        rng: seed or Generator. progress: show a tqdm progress bar over evaluations.
        **options: passed to :class:`Minimizer` (n_directions, sigma, eps_f, lr, line_search, ...).

    Returns:
        ``OptimizeResult`` with x, fun, jac (last estimate), nfev, nit, success, message, history.
    """
    from .parallel import make_evaluator

    opt = Minimizer(x0, estimator=estimator, step=step, rng=rng, **options)
    n = opt.x.size
    maxfev = 100 * (n + 1) if maxfev is None else int(maxfev)
    seeds = np.random.default_rng(opt.rng.integers(2**63)) if seeded else None
    own = not hasattr(evaluator, "map")
    ev = make_evaluator(evaluator)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=maxfev, unit="fev", desc="minimize")
    message, success = f"evaluation budget maxfev={maxfev} reached", True
    try:
        while True:
            points = opt.ask()
            if opt.nfev + len(points) > maxfev:
                break
            items = list(points) if seeds is None else [(p, int(s)) for p, s in zip(points, seeds.integers(2**63, size=len(points)))]
            nit = opt.nit
            opt.tell(ev.map(_evaluate, items, shared=fun))
            if bar is not None:
                bar.update(len(points))
                if opt.fx is not None:
                    bar.set_postfix(f=f"{opt.fx:.4g}", refresh=False)
            if opt.nit == nit:
                continue
            if opt.stopped:
                message, success = opt.stopped, True
                break
            if callback is not None:
                try:
                    callback(OptimizeResult(x=opt.x.copy(), fun=opt.fx, nit=opt.nit, nfev=opt.nfev))
                except StopIteration:
                    message = "stopped by the callback"
                    break
            if gtol > 0 and np.linalg.norm(opt.grad) <= gtol:
                message = f"gradient estimate norm <= gtol={gtol:g}"
                break
            if maxiter is not None and opt.nit >= maxiter:
                message = f"iteration limit maxiter={maxiter} reached"
                break
    finally:
        if bar is not None:
            bar.close()
        if own:
            ev.close()
    if opt.fx is None:
        # fixed-rule steps with central differences never evaluate x itself: one more
        # evaluation (counted) so that the result reports f at the returned x
        opt.fx = _evaluate(fun, opt.x if seeds is None else (opt.x, int(seeds.integers(2**63))))
        opt.nfev += 1
    return opt.result(message, success)
