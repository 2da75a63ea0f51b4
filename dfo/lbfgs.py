"""L-BFGS search directions from estimated gradients (Nocedal 1980).

Berahas, Cao, Choromanski & Scheinberg (2022) compare gradient estimators inside
an L-BFGS line-search method; with noisy gradients a curvature pair (s, y) is
kept only when sᵀy > ε_curv ‖s‖ ‖y‖, so the implicit Hessian stays positive definite.

Example:
    >>> mem = LBFGSMemory(size=5)
    >>> g = np.array([1.0, 2.0])
    >>> bool(np.allclose(mem.direction(g), -g))  # empty memory: steepest descent
    True
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np


@dataclass
class LBFGSMemory:
    """The last ``size`` curvature pairs and the two-loop recursion."""

    size: int = 10
    curvature_tol: float = 1e-10
    pairs: deque = field(default_factory=deque)

    def update(self, s: np.ndarray, y: np.ndarray) -> bool:
        """Store (s, y) if it has positive curvature; returns whether it was kept."""
        sy = float(s @ y)
        if sy <= self.curvature_tol * np.linalg.norm(s) * np.linalg.norm(y):
            return False
        self.pairs.append((s.copy(), y.copy(), 1.0 / sy))
        while len(self.pairs) > self.size:
            self.pairs.popleft()
        return True

    def direction(self, g: np.ndarray) -> np.ndarray:
        """d = −H g by the two-loop recursion (H₀ = sᵀy / yᵀy · I)."""
        q = g.copy()
        alphas = []
        for s, y, rho in reversed(self.pairs):
            a = rho * (s @ q)
            q -= a * y
            alphas.append(a)
        if self.pairs:
            s, y, _ = self.pairs[-1]
            q *= (s @ y) / (y @ y)
        for (s, y, rho), a in zip(self.pairs, reversed(alphas)):
            b = rho * (y @ q)
            q += (a - b) * s
        return -q
