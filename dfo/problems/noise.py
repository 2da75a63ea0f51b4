"""Noise models that turn a smooth objective into a noisy one.

The smooth function ``f_s`` is observed as ``f(x) = f_s(x) + e(x)``:

=====================  =============================================  =============
model                  observed value                                  ``eps_f`` is
=====================  =============================================  =============
``AdditiveUniform``    ``f_s(x) + eps_f * u``, ``u ~ U[-1, 1]``        a bound
``AdditiveGaussian``   ``f_s(x) + eps_f * z``, ``z ~ N(0, 1)``         a std
``RelativeUniform``    ``f_s(x) * (1 + eps_f * u)``, ``u ~ U[-1, 1]``  a relative bound
``Wild3``              ``f_s(x) * (1 + eps_f * psi(x))``               a relative bound
=====================  =============================================  =============

``RelativeUniform`` is the stochastic noise of Moré & Wild (2009, eq. 4.2).
``Wild3`` is their deterministic noise (eqs. 4.3-4.4): with
``phi0(x) = 0.9 sin(100 ||x||_1) cos(100 ||x||_inf) + 0.1 cos(||x||_2)``,
``psi(x) = phi0(x) (4 phi0(x)^2 - 3)`` (the Chebyshev polynomial ``T_3``, so
``|psi| <= 1``); it is a function of ``x`` only, oscillating at high frequency.

Stochastic models draw from their own ``numpy.random.Generator`` when called as
``noisy(x)``, or from ``default_rng(seed)`` when called as ``noisy(x, seed)``:
the seeded form makes every value a function of ``(x, seed)`` alone, so serial
and parallel evaluation give the same numbers. All models pickle (to joblib
workers) when the wrapped function does.

``noise_bound(fx)`` gives the absolute noise level at a point with smooth value
``fx`` (``eps_f`` for additive models, ``eps_f * |fx|`` for relative ones), the
quantity the radius and line-search rules of Berahas et al. call ``eps_f``.

Example:
    >>> import numpy as np
    >>> from dfo.problems import rosenbrock, AdditiveUniform
    >>> noisy = AdditiveUniform(rosenbrock(2), eps_f=1e-3, rng=0)
    >>> noisy(np.ones(2), seed=7) == noisy(np.ones(2), seed=7)
    True
"""

from __future__ import annotations

from typing import Callable

import numpy as np

__all__ = [
    "NoiseModel",
    "AdditiveUniform",
    "AdditiveGaussian",
    "RelativeUniform",
    "Wild3",
    "wild3_psi",
    "NOISE_MODELS",
]

SeedLike = None | int | np.random.SeedSequence


class NoiseModel:
    """Base class: wraps ``fun`` and adds noise of level ``eps_f``.

    Subclasses implement :meth:`_perturb`.

    Attributes:
        fun: the smooth objective ``x -> f_s(x)``.
        eps_f: the noise level (bound or standard deviation, see ``kind``).
        kind: ``"bound"`` (|noise| <= eps_f) or ``"std"`` (standard deviation).
        relative: whether the noise scales with ``|f_s(x)|``.
        deterministic: whether the noise is a function of ``x`` alone.
    """

    kind: str = "bound"
    relative: bool = False
    deterministic: bool = False

    def __init__(
        self,
        fun: Callable[[np.ndarray], float],
        eps_f: float,
        *,
        rng: None | int | np.random.Generator = None,
    ) -> None:
        if not callable(fun):
            raise TypeError(f"{type(self).__name__} needs a callable fun, got {type(fun).__name__}")
        eps = float(eps_f)
        if not np.isfinite(eps) or eps < 0:
            raise ValueError(f"{type(self).__name__}: eps_f must be finite and >= 0, got {eps_f!r}")
        self.fun = fun
        self.eps_f = eps
        self.rng = np.random.default_rng(rng)

    def __call__(self, x: np.ndarray, seed: SeedLike = None) -> float:
        """Observed value at ``x``; with ``seed`` the noise depends on ``(x, seed)`` only."""
        fx = float(self.fun(x))
        if self.deterministic:
            gen = None
        else:
            gen = self.rng if seed is None else np.random.default_rng(seed)
        return self._perturb(np.asarray(x, dtype=float), fx, gen)

    def smooth(self, x: np.ndarray) -> float:
        """The noise-free value ``f_s(x)``."""
        return float(self.fun(x))

    def noise_bound(self, fx: float = 1.0) -> float:
        """Absolute noise level at a point whose smooth value is ``fx``."""
        return self.eps_f * abs(fx) if self.relative else self.eps_f

    def _perturb(self, x: np.ndarray, fx: float, gen: np.random.Generator) -> float:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(fun={self.fun!r}, eps_f={self.eps_f!r})"


class AdditiveUniform(NoiseModel):
    """``f_s(x) + eps_f * u`` with ``u ~ U[-1, 1]``; ``|noise| <= eps_f``."""

    def _perturb(self, x, fx, gen):
        return fx + self.eps_f * gen.uniform(-1.0, 1.0)


class AdditiveGaussian(NoiseModel):
    """``f_s(x) + eps_f * z`` with ``z ~ N(0, 1)``; ``eps_f`` is the standard deviation."""

    kind = "std"

    def _perturb(self, x, fx, gen):
        return fx + self.eps_f * gen.standard_normal()


class RelativeUniform(NoiseModel):
    """``f_s(x) (1 + eps_f * u)``, ``u ~ U[-1, 1]`` (Moré & Wild 2009, eq. 4.2)."""

    relative = True

    def _perturb(self, x, fx, gen):
        return fx * (1.0 + self.eps_f * gen.uniform(-1.0, 1.0))


def wild3_psi(x: np.ndarray) -> float:
    """Moré–Wild deterministic noise ``psi(x) = phi0 (4 phi0^2 - 3)`` in ``[-1, 1]``."""
    x = np.asarray(x, dtype=float)
    a = np.abs(x)
    phi0 = 0.9 * np.sin(100.0 * a.sum()) * np.cos(100.0 * a.max()) + 0.1 * np.cos(
        np.sqrt(x @ x)
    )
    return float(phi0 * (4.0 * phi0**2 - 3.0))


class Wild3(NoiseModel):
    """Deterministic high-frequency noise ``f_s(x) (1 + eps_f psi(x))`` (Moré & Wild 2009).

    The noise depends on ``x`` only: ``rng`` and ``seed`` are accepted and ignored.
    """

    relative = True
    deterministic = True

    def _perturb(self, x, fx, gen):
        return fx * (1.0 + self.eps_f * wild3_psi(x))


#: name -> noise model class
NOISE_MODELS: dict[str, type[NoiseModel]] = {
    "uniform": AdditiveUniform,
    "gaussian": AdditiveGaussian,
    "relative": RelativeUniform,
    "wild3": Wild3,
}
