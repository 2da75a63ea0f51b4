"""What one step of :class:`dfo.torch.ZerothOrder` saw (``opt.last_step``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class StepInfo:
    """What the last step saw: losses on both sides, projected gradients per direction, the step seed.

    The step rules of :mod:`dfo.torch.methods` fill more: ``loss_base`` (``f(x)``), ``curvature``
    (three-point ``(f_+ - 2 f_0 + f_-) / eps^2`` per direction), ``trials`` (``(a, f(x - a u))`` per
    trial point), ``accepted``, ``noise`` (the measured sigma used), ``combination`` (the k x k weights
    C of the directions ``P_j = sum_i C_ij z_i``), ``forward_passes``, and with per-example losses
    ``shrinkage`` (rho_j per direction) and ``batch_noise`` (standard error of each trial's mean decrease).
    ``mezo-interp`` (:mod:`dfo.torch.interp`) fills ``reused`` (queries reused in the step) and ``interpolation``,
    one dict per round: ``centre`` (C x m coefficients of the centre over the step's directions z_b, one row per
    distinct lr), ``rows`` (the displacements v_e, each C x m), ``values`` (y_e), ``reused`` and ``estimate``
    (C x m: ``g_V = Z estimate``).
    """

    loss_plus: list[float] = field(default_factory=list)
    loss_minus: list[float] = field(default_factory=list)
    projected_grad: list[float] = field(default_factory=list)
    seed: int | None = None
    loss_base: float | None = None
    curvature: list[float] = field(default_factory=list)
    trials: list[tuple[float, float]] = field(default_factory=list)
    accepted: bool | None = None
    noise: float | None = None
    combination: list[list[float]] | None = None
    forward_passes: int = 0
    shrinkage: list[float] = field(default_factory=list)
    batch_noise: list[float] = field(default_factory=list)
    reused: int = 0
    interpolation: list[dict[str, Any]] = field(default_factory=list)
