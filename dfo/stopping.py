"""What follows an iteration of :class:`dfo.Minimizer`: the stop tests and the recovery
after a failed line search.

**Noise floor** (status 0). On a noisy f = φ + ε, |ε| ≤ ε_f, a gradient estimate at
radius σ is off from ∇φ by at most the finite-difference error bound of its rule
(Berahas, Cao, Choromanski & Scheinberg 2022; :data:`dfo.radius.FORWARD_FD`,
:data:`dfo.radius.CENTRAL_FD`)

    forward: b(σ) = √n L σ/2 + 2√n ε_f/σ,    central: b(σ) = √n M σ²/6 + √n ε_f/σ.

(a) When a line search fails with ‖P g‖ ≤ b(σ) (P: the projection that zeroes the
components pushing against an active bound), the estimate cannot tell a descent
direction from noise; twice in a row, the run is at its noise floor. (b) At the rounding
level only (ε_f ≤ 10³ u |f|, u the unit roundoff), the stall window
(:class:`dfo.runstate.StallWindow`): no iteration of the last ``stall_iterations`` beat
the best earlier f by 2ε_f, twice in a row. On noisy functions progress below the noise
level per window is still progress, so (b) is not applied there.

**Recovery** (Berahas, Byrd & Nocedal 2019, "Derivative-free optimization of noisy
functions via quasi-Newton methods"). A failed line search while ε_f or σ are measured
means they may be stale: the noise and curvature are measured again and the L-BFGS pairs
(built from noisy gradients) are dropped. ``max_recoveries`` consecutive failures end the
run (status 3).

**Re-estimates.** With ``eps_f="auto"`` the probe also runs every ``reestimate_every``
iterations and on the first stall of test (b) (a noise-floor check before stopping).

Example:
    >>> s = RunState(x=np.zeros(2), rng=np.random.default_rng(0), window=StallWindow(3))
    >>> s.fx, s.eps_f = 1.0, 1e-3
    >>> stop(s, "done", 0); stop(s, "later", 3); (s.stopped, s.status)
    ('done', 0)
"""

from __future__ import annotations

import numpy as np

from .bounds import Box
from .noise import EPS
from .radius import CENTRAL_FD, FORWARD_FD
from .runstate import RunState, StallWindow

__all__ = ["error_bound", "free_gradient", "stop", "after_iteration"]


def free_gradient(g: np.ndarray, x: np.ndarray, box: Box | None) -> np.ndarray:
    """g with the components that push x out of an active bound zeroed (P g)."""
    if box is None:
        return g
    return np.where(((x <= box.lb) & (g > 0)) | ((x >= box.ub) & (g < 0)), 0.0, g)


def error_bound(s: RunState, *, central: bool) -> float:
    """b(σ) of the current estimate: :data:`dfo.radius.CENTRAL_FD` or :data:`dfo.radius.FORWARD_FD`
    at the run's σ, ε_f (at least the rounding level of f(x); ε_f/√k when each value is the mean of
    k evaluations) and L or M."""
    eps = max(s.eps_f / np.sqrt(s.samples), EPS * abs(s.fx or 0.0))
    r = CENTRAL_FD if central else FORWARD_FD
    return r.bound(s.sigma, eps, s.M if r.needs == "M" else s.L, int(s.x.size))


def stop(s: RunState, message: str, status: int) -> None:
    """Stop the run (the first reason given is kept)."""
    if s.stopped is None:
        s.stopped, s.status = message, status


def after_iteration(s: RunState, *, failed: bool, central: bool, box: Box | None, eps_mode: str,
                    sigma_fixed: bool, max_recoveries: int, reestimate_every: int) -> str | None:
    """Apply the stop tests and the recovery rule to a run whose iteration just ended
    (``failed``: its line search found no step). Returns the reason of the probe due next,
    or None when the next gradient estimate comes (also after a stop)."""
    at_floor = failed and s.L is not None and s.M is not None and s.grad is not None and \
        float(np.linalg.norm(free_gradient(s.grad, s.x, box))) <= error_bound(s, central=central)
    s.floor_hits = s.floor_hits + 1 if at_floor else 0
    rounding_only = s.eps_f <= 1e3 * EPS * max(abs(s.fx or 0.0), 1e-300)
    stalled = eps_mode != "repeats" and rounding_only and s.window.stalled(s.eps_f)
    s.stall_hits = s.stall_hits + 1 if stalled else 0
    auto = eps_mode == "auto"
    if s.floor_hits >= 2 or s.stall_hits >= 2:
        what = ("the gradient estimate is within its error bound" if s.floor_hits >= 2 else
                f"no decrease beyond 2 eps_f in {s.window.size + 1} iterations")
        stop(s, f"noise floor: {what} (eps_f={s.eps_f:.3g}, sigma={s.sigma:.3g})", 0)
    elif failed and eps_mode != "repeats" and s.failed_streak + 1 > max_recoveries:
        s.failed_streak += 1
        stop(s, f"line search failed after {max_recoveries} recoveries (noise level eps_f={s.eps_f:.3g})", 3)
    elif failed and (auto or not sigma_fixed):  # a recovery
        s.failed_streak += 1
        s.recoveries += 1
        if s.memory is not None:  # curvature pairs from noisy gradients may mislead
            s.memory.pairs.clear()
            s.pair_s = s.pair_g = None
        return "recovery"
    else:
        s.failed_streak = s.failed_streak + 1 if failed else 0
        if auto and (s.stall_hits == 1 or s.nit % reestimate_every == 0):
            return "noise floor check" if s.stall_hits == 1 else "periodic"
    return None


def clear_for_restart(s: RunState, rule_state: dict) -> None:
    """Empty the stop tests, the step (``rule_state``: the rule's fresh state) and the L-BFGS
    pairs of a stopped run, keeping x, f(x), the counters and the generator."""
    s.stopped = s.status = None
    s.floor_hits = s.stall_hits = s.failed_streak = 0
    s.window = StallWindow(s.window.size)
    s.rule_state = rule_state
    if s.memory is not None:
        s.memory.pairs.clear()
    s.pair_s = s.pair_g = None
    s.restarts += 1
