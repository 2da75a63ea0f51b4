"""The noise-tolerant Armijo line search of ``mezo-ls`` and ``fzoo-ls`` on the step's own batch.

The formulas and papers are in :mod:`dfo.torch.methods` (``mezo-ls``): the noise ``sigma`` of ``f`` on a fixed
batch is measured by repeating ``f(x)`` every ``noise_every`` steps; a trial ``x - a u`` is accepted when
``f_0 - f(x - a u) >= c a s + 2 sigma + slack SE`` (``SE``: the standard error of the batch's mean decrease,
with per-example losses); ``a`` halves after each rejection, ``ls_trials`` trials in all. The search's state,
``rule = {"alpha", "noise_sq", "noise_n"}``, is the optimizer's and is checkpointed with it.

Example:
    >>> rule = {"alpha": None, "noise_sq": 0.0, "noise_n": 0}
    >>> measure_noise(rule, 1.0, step=0, every=50, evaluate=lambda side, j: 1.5)
    >>> rule["noise_sq"], rule["noise_n"]
    (0.125, 1)
"""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from dfo.torch.config import ZOConfig
from dfo.torch.stepinfo import StepInfo


def measure_noise(rule: dict[str, Any], f0: float, *, step: int, every: int,
                  evaluate: Callable[[str, int], float]) -> None:
    """Repeat ``f(x)`` (on the first step and every ``every`` steps) and add ``(f_0 - f_0')^2 / 2`` to the noise."""
    if rule["noise_n"] == 0 or step % every == 0:
        again = evaluate("+0 (repeat)", 0)  # the noise of f on this batch, measured
        rule["noise_sq"] += (f0 - again) ** 2 / 2
        rule["noise_n"] += 1


def search(u: np.ndarray, slope: float, curv: float | None, f0: float, info: StepInfo, *, config: ZOConfig,
           rule: dict[str, Any], active: list[Any], decay: Callable[[Any], float],
           move: Callable[[np.ndarray], None], evaluate: Callable[[str, int], float],
           per_example: dict[str, np.ndarray]) -> None:
    """Try ``x - a u`` (``u`` and the moves in z coordinates) until a trial is accepted or ``ls_trials`` are spent.

    Accepted: the parameters stay at the trial, shrunk by weight decay, and ``alpha <- 2 a``. Rejected: back at
    ``x`` and ``alpha <- a`` (the last, halved trial). Fills ``info.noise``, ``trials``, ``batch_noise``,
    ``accepted``.
    """
    cfg = config
    sigma_f = math.sqrt(rule["noise_sq"] / rule["noise_n"])
    info.noise = sigma_f
    alpha = rule["alpha"] if rule["alpha"] is not None else (active[0].group["lr"] if active else 0.0)
    a_try = min(alpha, slope / curv) if (curv is not None and curv > 0 and slope > 0) else alpha
    info.accepted = False
    if slope > 0 and a_try > 0:
        for t in range(cfg.ls_trials):
            move(-a_try * u)
            ft = evaluate("-a u", t)
            info.trials.append((a_try, ft))
            e0, et = per_example.get("+00"), per_example.get(f"-a u{t}")
            se = 0.0  # standard error of the batch's mean decrease, from the per-example decreases
            if e0 is not None and et is not None and e0.size == et.size > 1:
                se = float((e0 - et).std(ddof=1)) / math.sqrt(e0.size)
            info.batch_noise.append(se)
            if f0 - ft >= cfg.ls_c * a_try * slope + 2 * sigma_f + cfg.ls_batch_slack * se:
                info.accepted = True
                break
            a_try /= 2
    if info.accepted:
        rule["alpha"] = 2 * a_try
        for s in active:
            shrink = 1.0 - s.group["lr"] * decay(s)
            if shrink != 1.0:
                s.p.mul_(shrink)
    else:
        move(np.zeros(len(u)))
        rule["alpha"] = a_try if a_try > 0 else alpha
