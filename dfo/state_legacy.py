"""Loading a :class:`dfo.Minimizer` state of the layout before typed state (layout 1).

That layout saved free-form attributes, a ``phase`` and a ``work`` dict. A state saved
at an estimate (the phase every RL-trainer checkpoint is in: it saves between
iterations) is translated into the typed layout; the Minimizer then redraws the
pending estimate from the saved generator state and checks that it matches the saved
points, so a translation that is not exact is refused. Any other phase is refused with
a one-line error.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

OLD_KEYS = ("x", "fx", "grad", "nfev", "nit", "phase", "work", "pending", "ask_state", "history", "rng")


def upgrade(old: dict[str, Any], minimizer) -> dict[str, Any]:
    """The typed-layout tree (without its ``layout`` key) of a layout-1 ``old`` state, for
    ``minimizer`` (whose options give the L-BFGS memory size and the stall window)."""
    missing = [k for k in OLD_KEYS if k not in old]
    if missing:
        raise ValueError(f"not a Minimizer state: no 'layout' and the old layout's keys {missing} are missing")
    if old["phase"] != "estimate":
        raise ValueError(f"a Minimizer state of the old layout loads only between iterations (at an estimate); "
                         f"this one was saved in its {old['phase']!r} phase")
    x = np.asarray(old["x"], dtype=float)
    if x.size != minimizer.n:
        raise ValueError(f"this state is of a problem of size n={x.size}, the Minimizer's is n={minimizer.n}")
    mem = minimizer.state.memory
    if (old["memory"] is None) != (mem is None):
        raise ValueError("this state's L-BFGS memory does not match the Minimizer's direction option")
    w, funs = minimizer.state.window.size, [float(f) for f in old["history"]["fun"]]
    before = [f for f in funs[:max(len(funs) - w, 0)] if np.isfinite(f)]
    rule_state = {"alpha": old["alpha"]} if minimizer.rule.evaluates else dict(old["rule_state"])
    pend, work = old["pending"], old["work"]
    pairs = None if mem is None else [[np.asarray(s, float), np.asarray(y, float),
                                       1.0 / float(np.asarray(s, float) @ np.asarray(y, float))]
                                      for s, y in old["memory"]]
    tree = {
        "x": x, "rng": old["rng"], "probe": None,
        "pending": {"kind": "estimate", "points": np.asarray(pend["points"], float), "seeds": pend["seeds"],
                    "items": [list(i) for i in pend["items"]], "asked": True, "extra": int(work.get("extra", 0)),
                    "plan": work.get("plan"), "ask_rng": json.loads(old["ask_state"][0]),
                    "ask_estimator": old["ask_state"][1]},
        "window": {"size": w, "recent": funs[-w:], "best_before": min(before, default=float("inf")),
                   "older": max(len(funs) - w, 0)},
        "fx": old["fx"], "grad": old["grad"], "direction": old["direction"],
        "pair_s": None if old["pair"] is None else old["pair"][0],
        "pair_g": None if old["pair"] is None else old["pair"][1],
        "centre_seeds": work.get("centre_seeds"), "trials": 0, "restarts": 0, "rule_state": rule_state,
        "memory": None if mem is None else {"size": mem.size, "curvature_tol": mem.curvature_tol, "pairs": pairs},
        **{k: old[k] for k in ("eps_f", "noise_kind", "ecnoise_h", "L", "M", "slope", "sigma", "use_central",
                               "nfev", "nit", "n_nonfinite", "recoveries", "failed_streak", "floor_hits",
                               "stall_hits", "stopped", "status")},
    }
    return {"n": x.size, "state": tree, "estimator": old.get("estimator"),
            "history": old["history"], "noise_history": old["noise_history"]}
