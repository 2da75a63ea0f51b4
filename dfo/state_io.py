"""A :class:`dfo.Minimizer`'s state out and back in: ``state_dict``, ``load_state_dict``
and the ``OptimizeResult`` of the run so far.

A state is a JSON-able tree with numpy arrays: the :class:`dfo.runstate.RunState` fields
(generated, :func:`dfo.state.to_tree`), the active estimator's own state, the options it
must be resumed with (estimator, step rule) and the history. What a load checks, each a
one-line error: not a state at all (N-M4, N-M5), an unknown layout, another problem size,
another estimator or step rule (N-M2, N-M3), a non-finite x (N-M6). A state of the layout
before typed state (no ``layout`` key) is translated by :mod:`dfo.state_legacy`.

A pending gradient estimate is saved as the generator and estimator states it was drawn
from, not as its query: the load redraws it and refuses a state whose redraw does not give
the saved points (it was saved with other options), so a resumed run is bit-exact.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from scipy.optimize import OptimizeResult

from .runstate import RunState
from .state import from_tree, to_tree
from .state_legacy import upgrade

__all__ = ["LAYOUT", "state_dict_of", "checked_state", "redraw_estimate", "result_of"]

LAYOUT = 2  # state_dict layout (1: the free-form layout before typed state)


def state_dict_of(minimizer, *, history: bool = True) -> dict[str, Any]:
    """The tree of :meth:`dfo.Minimizer.state_dict`."""
    est = minimizer.active_estimator
    out = {"layout": LAYOUT, "n": minimizer.n, "state": to_tree(minimizer.state),
           "estimator": est.state_dict() if hasattr(est, "state_dict") else None,
           "options": {"estimator": minimizer.preset, "step": minimizer.step_name}}
    if history:
        out.update(history=minimizer.history.as_dict(), noise_history=minimizer.noise_history.as_dict())
    return out


def checked_state(state: Any, minimizer) -> tuple[dict[str, Any], RunState]:
    """``state`` (upgraded when of the old layout) and its :class:`RunState`, after the
    checks above against ``minimizer``."""
    if not isinstance(state, dict) or not {"n", "state"} <= set(state) and "x" not in state:  # N-M4, N-M5
        what = sorted(map(str, state)) if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"not a Minimizer state_dict (got {what}); pass what Minimizer.state_dict() returned")
    if state.get("layout") is None:
        state = upgrade(state, minimizer)
    elif state["layout"] != LAYOUT:
        raise ValueError(f"unknown Minimizer state layout {state['layout']!r} (this version reads {LAYOUT})")
    if int(state["n"]) != minimizer.n:
        raise ValueError(f"this state is of a problem of size n={state['n']}, the Minimizer's is n={minimizer.n}")
    mine = {"estimator": minimizer.preset, "step": minimizer.step_name}
    for key, value in (state.get("options") or {}).items():  # N-M2, N-M3: another estimator or step rule
        if key in mine and value != mine[key]:
            raise ValueError(f"this state was saved by a Minimizer with {key}={value!r}; this one has "
                             f"{key}={mine[key]!r} (build it with the same options to resume)")
    if "samples" not in state["state"]:  # saved before sample averaging: one evaluation per point
        state = dict(state, state=dict(state["state"], samples=1))
    new = from_tree(RunState, state["state"])
    if not np.all(np.isfinite(new.x)):  # N-M6
        raise ValueError("this state's x is not finite: not a state a Minimizer saves (edited or corrupt)")
    return state, new


def redraw_estimate(new: RunState, estimator, estimate: Callable[[], None]) -> None:
    """Redraw ``new``'s pending estimate with ``estimate()`` from the generator and
    ``estimator`` states it was drawn from, and check that it gives the saved points."""
    asked, saved_rng, done = new.pending.asked, new.rng.bit_generator.state, new.pending
    new.rng.bit_generator.state = done.ask_rng
    if done.ask_estimator is not None:
        estimator.load_state_dict(done.ask_estimator)
    estimate()
    if new.rng.bit_generator.state != saved_rng or not np.array_equal(new.pending.points, done.points):
        raise ValueError("this state does not redraw its pending estimate: it was saved by a Minimizer "
                         "with other options")
    new.pending.asked = asked


def result_of(minimizer, message: str | None, success: bool | None, status: int | None) -> OptimizeResult:
    """:meth:`dfo.Minimizer.result`: x, fun, jac (the last estimate), counters, the noise
    measurements and the history as arrays."""
    s = minimizer.state
    status = s.status if status is None else status
    return OptimizeResult(
        x=s.x.copy(), fun=s.fx, jac=s.grad, nfev=s.nfev, nit=s.nit,
        success=bool(status == 0 if success is None else success), status=status,
        message=s.stopped if message is None else message, eps_f=s.eps_f, sigma=s.sigma,
        recoveries=s.recoveries, restarts=s.restarts, samples=s.samples, n_nonfinite=s.n_nonfinite,
        estimator=minimizer.active_preset,
        history={k: np.asarray(v) for k, v in minimizer.history.as_dict().items()},
        noise_history={k: np.asarray(v) for k, v in minimizer.noise_history.as_dict().items()})
