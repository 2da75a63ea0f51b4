"""The method registry of :class:`dfo.torch.ZerothOrder`: the spec's methods plus the torch-only step rules.

The four low-rank/dense methods of :mod:`dfo.estimators.lowrank_spec` (``mezo``, ``subzero``,
``lozo``, ``lozo-m``; shared with the numpy core) keep their entries there and are listed here
unchanged with the ``spsa`` step. The entries below add *step rules* on dense Gaussian directions
``z_i`` regenerated from seeds (:mod:`dfo.torch.directions`; a direction is never stored whole).
They live here, not in the numpy spec, because they are rules for the torch optimizer's step
(several forward passes, trial points, measured noise) rather than direction families of a flat vector.

``mezo-orth`` — k orthonormal directions (Choromanski et al. 2018, "Structured evolution with
  compact architectures for scalable policy optimization", orthogonal ES; the numpy core's
  ``orthogonal`` estimator). The k Gaussian directions ``Z = [z_1 .. z_k]`` (d x k) are
  orthonormalised through their k x k Gram matrix ``G = Z^T Z = L L^T`` (Cholesky), accumulated
  chunk by chunk from the seeds: ``Q = Z L^{-T}`` has ``Q^T Q = I``. Direction j is
  ``P_j = sqrt(d) q_j = sqrt(d) sum_i z_i (L^{-T})_{ij}``, applied by regenerating the z_i with
  those weights. Estimate (two-sided, unbiased since ``E[Q Q^T] = (k/d) I``):
  ``g = (1/k) sum_j g_j P_j``, ``g_j = (f(x + eps P_j) - f(x - eps P_j)) / (2 eps)``; 2k passes.

``mezo-ls`` — MeZO's two-sided estimate with a noise-tolerant Armijo line search on the step's own
  batch (Berahas, Cao & Scheinberg 2021, "Global convergence rate analysis of a generic line search
  algorithm with noise", SIAM J. Optim.; Berahas, Cao, Choromanski & Scheinberg 2022, "A theoretical
  and empirical comparison of gradient approximations in derivative-free optimization", FoCM).
  With ``f_0 = f(x)`` on the batch, the search direction ``u = (1/k) sum_j g_j z_j`` and its
  estimated slope ``s = (1/k) sum_j g_j^2`` (``grad . z_j ~= g_j``), the trial ``x - a u`` on the
  *same* batch is accepted only when ``f_0 - f(x - a u) >= c a s + 2 sigma``, where ``sigma`` is
  the noise of ``f`` on a fixed batch, *measured* by repeating ``f(x)`` (``sigma^2`` = mean of
  ``(f_0 - f_0')^2 / 2`` over the repeats, one every ``noise_every`` steps). The paper's relaxed
  rule adds ``2 sigma`` to the right side to guarantee termination; here the slack is subtracted
  (only decreases beyond the noise count) and termination comes from the trial cap.
  *Batch noise.* When the closure returns per-example losses (a 1-D tensor; ``dfo finetune`` does),
  the batch's own sampling noise is measured too: (i) each slope is shrunk by the positive-part
  James-Stein factor ``rho_j = max(0, 1 - SE_j^2 / g_j^2)``, ``SE_j^2`` the variance of the
  per-example slopes ``(l_e(x + eps z_j) - l_e(x - eps z_j)) / (2 eps)`` over the batch size, so
  ``u = (1/k) sum_j rho_j g_j z_j`` and ``s = (1/k) sum_j rho_j g_j^2``; (ii) a trial must also beat
  ``ls_batch_slack`` (default 1) standard errors of the mean of the per-example decreases
  ``l_e(x) - l_e(x - a u)``. Without (i)-(ii) the search took the batch's Newton step and the held-out
  loss rose (aidreams260K: dev loss 0.83 -> 0.99 in 500 passes; ``bench/results/torch_rules.md``).
  The first trial is ``a = min(alpha, s / (u^T H u))`` with ``u^T H u`` from the three-point stencils
  ``c_j = (f(x + eps z_j) - 2 f_0 + f(x - eps z_j)) / eps^2`` (cross terms neglected); accepted:
  ``alpha <- 2 a``; rejected: ``a <- a / 2`` and retry (``ls_trials`` in all), else no move and
  ``alpha <- a / 2``. ``alpha`` starts at ``lr`` (one length for all parameter groups). Passes:
  ``1 + 2k +`` trials (+1 per noise repeat). Weight decay is applied after an accepted step.

``fzoo-ls`` — ``fzoo``'s direction with the line search above (``f(x)`` and the trials on the step's batch;
  the slope along the normalised direction is ``sum_i u_i (f_i - fbar) / eps``, no curvature cap).

``fzoo`` — batched one-sided differences with a normalised step (Dang et al. 2025, "FZOO: Fast
  zeroth-order optimizer for fine-tuning large language models towards Adam-scale speed"): n
  perturbed losses ``f_i = f(x + eps z_i)`` share one baseline, the step is divided by their
  standard deviation ``sigma_f``: ``x <- x - lr (1 / (n - 1)) sum_i ((f_i - fbar) / sigma_f) z_i``.
  FZOO's baseline is an extra forward ``f(x)`` (n + 1 passes; ``baseline="base"`` here, then the
  sum is divided by n); the default ``baseline="mean"`` uses ``fbar = mean_i f_i`` instead: n passes,
  and the shared one-sided curvature bias ``eps z^T H z / 2 ~= eps tr(H) / 2`` cancels (the factor
  ``1/(n-1)`` makes ``E[(f_i - fbar) z_i] / eps`` equal ``(1 - 1/n) grad``, corrected). The
  normalisation makes ``lr`` the length scale of the step: per coordinate about ``lr / sqrt(n)``.

``mezo-interp`` — linear interpolation over k regenerated directions with reuse of the step's recent queries
  (Wang et al. 2024, "ReLIZO: Sample reusable linear interpolation-based zeroth-order optimization", NeurIPS;
  the formulas and what is reused are in :mod:`dfo.torch.interp`). The estimate is the least-norm interpolant
  ``g_V = V (V^T V)^{-1} y`` over k central conditions ``y_e = (f(c + v_e) - f(c - v_e)) / 2``, a fresh
  ``v = eps z_b`` (two passes) or an earlier query ``q`` of the step with ``v = q - c`` (one pass: its mirror
  ``c - v``), ``V^T V`` from the Gram matrix of the seeds; exact ``P_V grad f`` on a quadratic. The step is
  ``c <- c - lr (d / k) g_V``, ``rounds`` times per step on the step's batch, up to ``reuse`` (default k // 2)
  reused conditions in each round after the first: at most ``2 k rounds`` passes per step.

Every entry of :data:`ZO_METHODS` records its defaults; ``ZerothOrder(method=...)`` reads them.

Example:
    >>> get("mezo-ls").step, get("fzoo").n_directions, get("lozo").family, get("mezo-interp").rounds
    ('spsa', 8, 'lozo', 2)
"""

from __future__ import annotations

from dataclasses import dataclass

from dfo.estimators import lowrank_spec as spec

STEPS = ("spsa", "orth", "fzoo", "interp")


@dataclass(frozen=True)
class TorchMethod:
    """One method of :class:`dfo.torch.ZerothOrder`.

    Attributes:
        name: registry name.
        family: direction family of :mod:`dfo.estimators.lowrank_spec` (``gaussian`` for the step rules).
        step: ``spsa`` (two-sided, k independent directions), ``orth`` (two-sided, k orthonormalised
            directions), ``fzoo`` (one-sided, shared baseline, normalised step) or ``interp`` (least-norm
            interpolation with reuse, :mod:`dfo.torch.interp`).
        line_search: Armijo line search on the step's batch instead of a fixed ``lr``.
        n_directions: default k (n for ``fzoo``).
        momentum, rank, refresh: the spec's defaults (low-rank families only).
        rounds: estimate-and-move rounds per step on the step's batch (``interp`` only; 1 for the others).
        reference: the paper.
    """

    name: str
    family: str
    step: str = "spsa"
    line_search: bool = False
    n_directions: int = 1
    momentum: float = 0.0
    rank: int = 8
    refresh: int = 50
    rounds: int = 1
    reference: str = ""

    @property
    def low_rank(self) -> bool:
        return self.family in spec.LOW_RANK_FAMILIES

    @property
    def new_rule(self) -> bool:
        """Whether the step is one of this module's rules (not the spec's plain two-sided step)."""
        return self.step != "spsa" or self.line_search


def _from_spec(m: spec.Method) -> TorchMethod:
    return TorchMethod(m.name, m.family, momentum=m.momentum, rank=m.rank, refresh=m.refresh, reference=m.reference)


#: every method of the torch optimizer: the spec's (same entries, same defaults) and the step rules
ZO_METHODS: dict[str, TorchMethod] = {
    **{name: _from_spec(m) for name, m in spec.LOWRANK_METHODS.items()},
    "mezo-orth": TorchMethod("mezo-orth", "gaussian", step="orth", n_directions=4,
                             reference="Choromanski et al. 2018 (orthogonal directions)"),
    "mezo-ls": TorchMethod("mezo-ls", "gaussian", line_search=True, n_directions=1,
                           reference="Berahas, Cao & Scheinberg 2021; Berahas et al. 2022 (noisy Armijo)"),
    "fzoo": TorchMethod("fzoo", "gaussian", step="fzoo", n_directions=8,
                        reference="Dang et al. 2025 (FZOO)"),
    "fzoo-ls": TorchMethod("fzoo-ls", "gaussian", step="fzoo", line_search=True, n_directions=8,
                           reference="Dang et al. 2025 (FZOO) + Berahas et al. 2022 (noisy Armijo)"),
    "mezo-interp": TorchMethod("mezo-interp", "gaussian", step="interp", n_directions=4, rounds=2,
                               reference="Wang et al. 2024 (ReLIZO: linear interpolation reusing queries)"),
}


def get(name: str) -> TorchMethod:
    """The entry called ``name`` (one clear error otherwise); the spec's methods are read from the spec
    at each call, so the spec stays the one home of their defaults."""
    if name in spec.LOWRANK_METHODS:
        return _from_spec(spec.LOWRANK_METHODS[name])
    if name not in ZO_METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {tuple(ZO_METHODS)}")
    return ZO_METHODS[name]
