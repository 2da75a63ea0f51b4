"""``minimize(fun, x0, ...)``: the scipy-style driver of :class:`dfo.Minimizer`.

It evaluates the Minimizer's requests with an evaluator (serial, joblib, dask),
enforces the budget and the iteration limit, calls the callback and returns a
``scipy.optimize.OptimizeResult``. It also works as a callable ``method=`` of
``scipy.optimize.minimize``.

Example:
    >>> import numpy as np
    >>> from dfo.problems import rosenbrock
    >>> p = rosenbrock(4)
    >>> res = minimize(p.fun, p.x0, maxfev=4000, rng=0)
    >>> bool(res.fun < 1e-6), res.nfev <= 4000
    (True, True)
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import numpy as np
from scipy.optimize import OptimizeResult

from .minimizer import SEED_HIGH, STEPS, Minimizer, Request
from .parallel import SerialEvaluator, make_evaluator
from .request import point_of
from .options import float_option as _float_option
from .options import int_option as _int_option

__all__ = ["minimize", "Minimizer", "Request", "STEPS"]


def _evaluate_point(fun: Callable, x: np.ndarray) -> float:
    """Evaluate one point."""
    return float(fun(x))


def _evaluate_seeded(fun: Callable, item: tuple) -> float:
    """Evaluate one ``(point, seed)`` pair of a seeded objective."""
    return float(fun(item[0], item[1]))


def _evaluate_item(shared: tuple, item: tuple) -> float:
    """One evaluation on a worker: the point rebuilt from ``(index, sign)`` and the request's
    centre (:meth:`dfo.request.Request.translate`), so an estimate ships its query's seed,
    not its points."""
    fun, center = shared
    index, sign, seed = item
    x = point_of(center, index, sign)
    return float(fun(x) if seed is None else fun(x, seed))


def _run(ev, fun: Callable, req: Request) -> list:
    """Evaluate a request: rows in this process, the request's translation elsewhere."""
    if isinstance(ev, SerialEvaluator):  # the rows themselves, or (row, seed) pairs
        if req.seeds is None:
            return ev.map(_evaluate_point, req.points, shared=fun)
        return ev.map(_evaluate_seeded, [(p, int(s)) for p, s in zip(req.points, req.seeds)], shared=fun)
    center, items = req.translate()
    return ev.map(_evaluate_item, items, shared=(fun, center))


def _evaluate_batch(fun: Callable, req: Request) -> np.ndarray:
    """One call of a vectorized ``fun`` on all of a request's points (and seeds)."""
    values = fun(req.points.copy()) if req.seeds is None else fun(req.points.copy(), np.asarray(req.seeds).copy())
    values = np.asarray(values, dtype=float).ravel()
    if values.size != len(req):
        raise ValueError(f"vectorized fun returned {values.size} values for {len(req)} points")
    return values


class _WithArgs:
    """``fun(x, *args)`` as a picklable one-argument callable."""

    def __init__(self, fun, args):
        self.fun, self.args = fun, tuple(args)

    def __call__(self, x, *seed):
        return self.fun(x, *seed, *self.args)


def _callback_kind(callback) -> str:
    """'new' if the callback takes ``intermediate_result`` (scipy ≥ 1.11), else 'legacy' (xk)."""
    try:
        params = inspect.signature(callback).parameters
    except (TypeError, ValueError):
        return "legacy"
    return "new" if "intermediate_result" in params else "legacy"


def minimize(fun: Callable, x0, args: tuple = (), *, estimator="auto", step: str = "armijo",
             bounds=None, tol: float | None = None, options: dict | None = None,
             callback: Callable | None = None, maxfev: int | None = None, maxiter: int | None = None,
             gtol: float = 0.0, evaluator=None, rng=None, seeded: bool = False, progress: bool = False,
             vectorized: bool = False, restarts: int = 0, jac=None, hess=None, hessp=None, constraints=(),
             **kwargs: Any) -> OptimizeResult:
    """Minimize ``fun`` with gradient estimates and line-search (or fixed-rule) descent.

    Follows ``scipy.optimize.minimize`` conventions and works as a callable
    ``method=`` there: ``scipy.optimize.minimize(f, x0, method=dfo.minimize, options={...})``.

    Args:
        fun: ``fun(x, *args) -> float``; with ``seeded=True``, ``fun(x, seed, *args)`` so
            noisy objectives are reproducible and identical in serial and parallel runs.
        x0: starting point. args: extra arguments of ``fun``.
        estimator: preset name (see :data:`dfo.ESTIMATORS`), ``"auto"`` or an estimator.
        step: ``"armijo"`` (noise-tolerant line search) or ``"sgd"``, ``"momentum"``, ``"adam"``.
        bounds: scipy ``Bounds`` or (low, high) pairs; no evaluation leaves the box.
        tol: tolerance on the gradient-estimate norm (sets ``gtol``).
        options: dict of further options (scipy style); merged with ``**kwargs``.
        callback: ``callback(intermediate_result)`` or legacy ``callback(xk)`` after each
            iteration; raising ``StopIteration`` ends the run (status 99).
        maxfev: evaluation budget (default 100 (n + 1)); the run stops before a batch
            that would exceed it (with an update rule, one evaluation is kept for f at the
            returned x).
        maxiter: iteration limit. gtol: stop when ‖g‖ ≤ gtol.
        evaluator: None (serial), an int (joblib jobs), a backend name or an evaluator.
        rng: seed or Generator. progress: show a tqdm progress bar over evaluations.
        restarts: how many times a run that the noise-floor test stopped starts afresh from
            its x while at least two gradient estimates' worth of budget is left
            (:meth:`Minimizer.restart`); the result's ``restarts`` says how many happened.
        vectorized: ``fun`` takes an ``(N, n)`` array (and, with ``seeded=True``, an array of
            N seeds) and returns N values: it is called once per request (a whole gradient
            estimate, a batch of noise repeats, a trial), as pycma's and Py-BOBYQA's users
            batch their simulations. The same values give the same run as one-at-a-time.
        jac, hess, hessp: accepted for scipy compatibility and ignored (derivative-free).
        constraints: only an empty sequence is supported.
        **kwargs: :class:`Minimizer` options (n_directions, sigma, eps_f, lr, line_search,
            direction, repeats, reestimate_every, averaging, ...); ``averaging=True`` averages
            repeated evaluations when the noise hides the progress (stochastic noise only; the
            result's ``samples`` is the last sample size).

    Returns:
        ``OptimizeResult`` with x, fun, jac (last estimate), nfev, nit, success, status,
        message, eps_f, sigma, recoveries, history and noise_history. ``status``: 0 a
        convergence test held (gtol, zero gradient, noise floor; ``success=True``),
        1 maxfev, 2 maxiter, 3 the line search failed after ``max_recoveries``
        recoveries, 99 the callback stopped the run.
    """
    if constraints:
        raise ValueError("dfo.minimize supports box bounds only, not general constraints")
    kw = dict(options or {})
    clash = sorted(k for k in set(kw) & set(kwargs) if kw[k] is not kwargs[k] and kw[k] != kwargs[k])
    if clash:  # N-O3: one setting given two values is ambiguous, never silently resolved
        raise ValueError(f"{clash[0]} given twice with different values: {kwargs[clash[0]]!r} as a keyword and "
                         f"{kw[clash[0]]!r} in options")
    kw.update(kwargs)
    named = {"maxfev": maxfev, "maxiter": maxiter, "gtol": gtol or None, "tol": tol}  # gtol's default 0: not given
    for name, value in named.items():
        if name in kw and value is not None and kw[name] != value:
            raise ValueError(f"{name} given twice with different values: {value!r} as a keyword and "
                             f"{kw[name]!r} in options")
    maxfev = kw.pop("maxfev", maxfev)
    maxiter = kw.pop("maxiter", maxiter)
    gtol = kw.pop("gtol", gtol)
    tol = kw.pop("tol", tol)
    kw.pop("disp", None)
    if tol is not None:
        gtol = _float_option("tol", tol, positive=False)
    gtol = _float_option("gtol", gtol, positive=False)
    maxiter = _int_option("maxiter", maxiter)
    restarts = _int_option("restarts", restarts, low=0)
    if args:
        fun = _WithArgs(fun, args if isinstance(args, tuple) else (args,))
    opt = Minimizer(x0, estimator=estimator, step=step, rng=rng, bounds=bounds, seeded=seeded, **kw)
    n = opt.x.size
    maxfev = 100 * (n + 1) if maxfev is None else _int_option("maxfev", maxfev)
    first_estimate = opt.active_estimator.n_for(n) if hasattr(opt.active_estimator, "n_for") else n
    if maxfev <= first_estimate:
        raise ValueError(f"maxfev={maxfev} is below the cost of one gradient estimate "
                         f"(about {first_estimate + 1} evaluations at n={n})")
    cb_kind = None if callback is None else _callback_kind(callback)
    if vectorized and evaluator is not None:
        raise ValueError("vectorized=True calls fun once per request itself; pass no evaluator")
    own = not hasattr(evaluator, "map")
    ev = make_evaluator(evaluator)
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=maxfev, unit="fev", desc="minimize")
    message, status = f"evaluation budget maxfev={maxfev} reached", 1
    # an update rule leaves f(x) unknown after its step: one evaluation is kept for it at the end
    reserve = 0 if opt.rule.evaluates else 1
    try:
        while True:
            req = opt.request
            if opt.nfev + len(req) > maxfev - reserve:
                break
            nit = opt.nit
            opt.tell(_evaluate_batch(fun, req) if vectorized else _run(ev, fun, req))
            if bar is not None:
                bar.update(len(req))
                if opt.fx is not None:
                    bar.set_postfix(f=f"{opt.fx:.4g}", refresh=False)
            if opt.nit == nit:
                continue
            if opt.stopped and restarts and opt.status == 0 and opt.stopped.startswith("noise floor") \
                    and maxfev - opt.nfev > 2 * (first_estimate + 1):
                restarts -= 1
                opt.restart()
                continue
            if opt.stopped:
                message, status = opt.stopped, opt.status
                break
            if callback is not None:
                try:
                    if cb_kind == "new":
                        callback(intermediate_result=OptimizeResult(x=opt.x.copy(), fun=opt.fx, nit=opt.nit,
                                                                    nfev=opt.nfev))
                    else:
                        callback(opt.x.copy())
                except StopIteration:
                    message, status = "stopped by the callback", 99
                    break
            if gtol > 0 and np.linalg.norm(opt._free_gradient()) <= gtol:
                message, status = f"gradient estimate norm <= gtol={gtol:g}", 0
                break
            if maxiter is not None and opt.nit >= maxiter:
                message, status = f"iteration limit maxiter={maxiter} reached", 2
                break
    finally:
        if bar is not None:
            bar.close()
        if own:
            ev.close()
    if opt.fx is None:
        # fixed-rule steps with central differences never evaluate x itself: one more
        # evaluation (counted) so that the result reports f at the returned x
        seed = int(opt.rng.integers(0, SEED_HIGH)) if seeded else None
        opt.fx = _evaluate_point(fun, opt.x) if seed is None else _evaluate_seeded(fun, (opt.x, seed))
        opt.nfev += 1
    return opt.result(message, status == 0, status)
