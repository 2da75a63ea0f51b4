"""Sampling radius rules, each derived from an error bound.

Setting (Berahas, Cao, Choromanski & Scheinberg 2022, "A theoretical and empirical
comparison of gradient approximations in derivative-free optimization", FoCM): the
observed f = φ + ε with |ε| ≤ ε_f, ∇φ L-Lipschitz, ∇²φ M-Lipschitz. Every estimator's
deviation from ∇φ (the whole error for the deterministic estimators, the bias
‖E g − ∇φ‖ for the random ones) is bounded by a sum of a smoothness term that grows
with σ and a noise term that falls with σ:

    b(σ) = a(n) K σ^{q−1} + e(n) ε_f / σ,    K = L (q = 2) or K = M (q = 3).

Setting b'(σ) = 0 gives the radius

    σ* = ( e(n) ε_f / ((q − 1) a(n) K) )^{1/q}.

A :class:`RadiusRule` holds (K, a(n), e(n)) with a(n) = a₀ n^α, e(n) = e₀ n^β, and
each preset's registry entry (:data:`dfo.estimators.ESTIMATORS`) holds its rule, so the
rule, its bound and its dependence on n have one home. The rules:

===========================  ============================  =============================
estimator                    bound b(σ)                    σ*
===========================  ============================  =============================
ffd, orthogonal,             √n L σ/2 + 2√n ε_f/σ          2 √(ε_f / L)
interpolation (unit dirs)
cfd, central-orthogonal,     √n M σ²/6 + √n ε_f/σ          (3 ε_f / M)^{1/3}
central-interpolation
gaussian                     √n L σ + √n ε_f/σ             √(ε_f / L)
sphere                       L σ + n ε_f/σ                 √(n ε_f / L)
central-gaussian             n M σ²/2 + √n ε_f/σ           (ε_f / (√n M))^{1/3}
central-sphere               M σ²/2 + n ε_f/σ              (n ε_f / M)^{1/3}
===========================  ============================  =============================

The first four rows are the paper's. For interpolation with unit directions the bound
carries an extra factor ‖U⁻¹‖ √N/√n on both terms, which leaves σ* unchanged.

**Central Gaussian / central sphere (derived here).** The central estimator's mean is
the gradient of the smoothed function: for u ~ N(0, I),
E[(φ(x+σu) − φ(x−σu))/(2σ) u] = ∇F(x) with F(x) = E φ(x + σu), so its bias is
E[∇φ(x + σu)] − ∇φ(x). Expanding ∇φ(x + σu) = ∇φ(x) + σ∇²φ(x)u + r with
‖r‖ ≤ M σ² ‖u‖²/2 and using E[u] = 0, the first-order term vanishes and

    ‖∇F(x) − ∇φ(x)‖ ≤ (M σ²/2) E‖u‖² = n M σ²/2.

The noise part is E[(ε₊ − ε₋)/(2σ) u] with |ε₊ − ε₋|/(2σ) ≤ ε_f/σ, bounded by
(ε_f/σ) E‖u‖ ≤ √n ε_f/σ (the paper's noise term for Gaussian smoothing). Minimizing
n M σ²/2 + √n ε_f/σ gives σ³ = ε_f/(√n M): σ is (3√n)^{1/3} times smaller than CFD's.
For the sphere, n (φ(x+σu) − φ(x−σu))/(2σ) u with u uniform on the unit sphere has mean
∇ of the ball average F(x) = E φ(x + σv), v uniform in the unit ball, so the bias is
bounded by (M σ²/2) E‖v‖² ≤ M σ²/2, and the noise term is n ε_f/σ (the factor n of the
estimator, as in the forward sphere rule). Minimizing M σ²/2 + n ε_f/σ gives
σ³ = n ε_f / M: (n/3)^{1/3} times larger than CFD's.

Low-rank presets (subzero, lozo, lozo-m) keep CFD's per-direction rule (their entries
say so); no bound for their matrix directions is derived here.

The noise level ε_f comes from :mod:`dfo.noise`.

Example:
    >>> round(sampling_radius("ffd", 1e-6, L=1.0), 6)
    0.002
    >>> round(sampling_radius("cfd", 1e-6, M=3.0), 6)
    0.01
    >>> round(sampling_radius("central-sphere", 1e-6, M=1.0, n=27), 6)
    0.03
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RadiusRule:
    """The bound b(σ) = a₀ n^α K σ^{q−1} + e₀ n^β ε_f/σ and the σ that minimizes it.

    Attributes:
        needs: ``"L"`` (K = L, q = 2: forward differences) or ``"M"`` (K = M, q = 3: central).
        a0, alpha: the smoothness coefficient a(n) = a0 n^alpha.
        e0, beta: the noise coefficient e(n) = e0 n^beta.
        source: where the bound comes from.
    """

    needs: str
    a0: float
    alpha: float
    e0: float
    beta: float
    source: str = ""

    def __post_init__(self) -> None:
        if self.needs not in ("L", "M"):
            raise ValueError(f"a radius rule needs 'L' or 'M', got {self.needs!r}")
        if not (self.a0 > 0 and self.e0 > 0):
            raise ValueError("radius rule coefficients must be positive")

    @property
    def q(self) -> int:
        return 2 if self.needs == "L" else 3

    @property
    def uses_n(self) -> bool:
        """Whether σ* depends on the dimension n."""
        return self.alpha != self.beta

    def coefficients(self, n: int | None) -> tuple[float, float]:
        """(a(n), e(n)); n may be None only when the rule does not use it."""
        if (self.alpha or self.beta) and (n is None or n < 1):
            if self.uses_n:
                raise ValueError("this radius rule depends on the dimension: pass n")
            n = 1  # n^α and n^β cancel in σ*; any n gives the same radius
        n = 1 if n is None else int(n)
        return self.a0 * n**self.alpha, self.e0 * n**self.beta

    def bound(self, sigma: float, eps_f: float, K: float, n: int | None = None) -> float:
        """b(σ): the error (or bias) bound at radius σ."""
        a, e = self.coefficients(n)
        return float(a * K * sigma ** (self.q - 1) + e * eps_f / sigma)

    def radius(self, eps_f: float, K: float, n: int | None = None) -> float:
        """σ* = (e ε_f / ((q − 1) a K))^{1/q}."""
        a, e = self.coefficients(n)
        return float((e * eps_f / ((self.q - 1) * a * K)) ** (1.0 / self.q))


#: the rules of the table in the module docstring (referenced by the registry entries)
FORWARD_FD = RadiusRule("L", 0.5, 0.5, 2.0, 0.5, "Berahas et al. 2022, forward differences / interpolation")
CENTRAL_FD = RadiusRule("M", 1.0 / 6.0, 0.5, 1.0, 0.5, "Berahas et al. 2022, central differences")
GAUSSIAN = RadiusRule("L", 1.0, 0.5, 1.0, 0.5, "Berahas et al. 2022, Gaussian smoothing")
SPHERE = RadiusRule("L", 1.0, 0.0, 1.0, 1.0, "Berahas et al. 2022, sphere smoothing")
CENTRAL_GAUSSIAN = RadiusRule("M", 0.5, 1.0, 1.0, 0.5, "derived in dfo.radius: n M σ²/2 + √n ε_f/σ")
CENTRAL_SPHERE = RadiusRule("M", 0.5, 0.0, 1.0, 1.0, "derived in dfo.radius: M σ²/2 + n ε_f/σ")


#: preset name -> its rule; filled by the estimator registry (:mod:`dfo.estimators.registry`)
#: as presets are registered, so this module imports nothing of the registry
NAMED_RULES: dict[str, RadiusRule] = {}


def name_rule(name: str, radius_rule: RadiusRule) -> None:
    """Record the rule of the preset ``name`` (called by :func:`dfo.estimators.register`)."""
    if not isinstance(radius_rule, RadiusRule):
        raise TypeError(f"preset {name!r}: a radius rule (dfo.radius.RadiusRule) is required")
    NAMED_RULES[name] = radius_rule


def rule(estimator: str) -> RadiusRule:
    """The radius rule of the preset ``estimator`` (from its registry entry)."""
    if not isinstance(estimator, str):
        raise TypeError(f"radius rules are looked up by preset name, got {type(estimator).__name__}")
    found = NAMED_RULES.get(estimator)
    if found is None:
        raise ValueError(f"no radius rule for estimator {estimator!r}: it is not a registered preset "
                         f"(known: {', '.join(sorted(NAMED_RULES))})")
    return found


def sampling_radius(estimator: str, eps_f: float, *, L: float | None = None,
                    M: float | None = None, n: int | None = None) -> float:
    """The sampling radius σ* for the preset ``estimator`` at noise level ``eps_f``.

    Args:
        estimator: a preset name of :data:`dfo.ESTIMATORS`.
        eps_f: the noise level (> 0).
        L, M: Lipschitz constants of ∇φ and ∇²φ; the rule says which one it needs
            (``rule(name).needs``).
        n: the dimension (needed by the rules that depend on it).
    """
    r = rule(estimator)
    if not (np.isfinite(eps_f) and eps_f > 0):
        raise ValueError(f"eps_f must be a positive number, got {eps_f}")
    K = L if r.needs == "L" else M
    if K is None or not (np.isfinite(K) and K > 0):
        what = "L > 0 (Lipschitz constant of the gradient)" if r.needs == "L" else \
            "M > 0 (Lipschitz constant of the Hessian)"
        raise ValueError(f"{estimator}: its radius rule needs {what}, got {K}")
    if r.uses_n and (n is None or int(n) < 1):
        raise ValueError(f"{estimator}: its radius rule depends on the dimension n; pass n")
    return r.radius(float(eps_f), float(K), n)


__all__ = ["RadiusRule", "rule", "name_rule", "NAMED_RULES", "sampling_radius", "FORWARD_FD", "CENTRAL_FD",
           "GAUSSIAN", "SPHERE", "CENTRAL_GAUSSIAN", "CENTRAL_SPHERE"]

