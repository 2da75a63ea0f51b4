"""The Moré–Wild benchmark set for derivative-free optimization.

J. J. Moré and S. M. Wild, "Benchmarking derivative-free optimization
algorithms", SIAM J. Optim. 20(1):172-191, 2009, define 53 smooth problems
``f(x) = sum_{i=1}^m r_i(x)^2`` from 22 nonlinear least-squares functions:
functions 1-18 are those of Moré, Garbow and Hillstrom, "Testing unconstrained
optimization software", ACM TOMS 7(1):17-41, 1981 (MGH), and 19-22 are the
CUTEr problems BDQRTIC, CUBE, MANCINO and HEART8LS. Each problem is a tuple
``(function id, n, m, s)`` with starting point ``10^s * x_s`` where ``x_s`` is
the standard starting point of the function, and ``2 <= n <= 12``.

Every residual vector ``r`` is written here from the published definitions
together with its analytic Jacobian ``J`` (``J[i, j] = d r_i / d x_j``); the
gradient is ``grad f = 2 J^T r``.

Notes on the definitions (they follow Moré–Wild, where they differ from MGH):
Watson's standard start is ``0.5 * ones`` (MGH uses zeros) and Bard, Box,
Jennrich–Sampson, Brown–Dennis use the ``m`` of the table.

Example:
    >>> from dfo.problems import more_wild_problems, get_problem
    >>> len(more_wild_problems())
    53
    >>> p = get_problem("mw04_rosenbrock_n2_m2_s0")
    >>> round(p(p.x0), 10)
    24.2
"""

from __future__ import annotations

import difflib
from functools import lru_cache, partial
from typing import Callable, NamedTuple

import numpy as np

from .base import Problem, SumOfSquares, SumOfSquaresGradient

__all__ = [
    "MORE_WILD_TABLE",
    "MORE_WILD_FUNCTIONS",
    "MoreWildSpec",
    "more_wild_problem",
    "more_wild_problems",
    "get_problem",
]


class MoreWildSpec(NamedTuple):
    """One row of the Moré–Wild table: function id, ``n``, ``m``, start scale ``s``."""

    fid: int
    n: int
    m: int
    s: int


#: The 53 (function id, n, m, s) rows of Moré & Wild (2009), Table 1 / dfo.dat.
MORE_WILD_TABLE: tuple[MoreWildSpec, ...] = tuple(
    MoreWildSpec(*row)
    for row in (
        (1, 9, 45, 0), (1, 9, 45, 1), (2, 7, 35, 0), (2, 7, 35, 1),
        (3, 7, 35, 0), (3, 7, 35, 1), (4, 2, 2, 0), (4, 2, 2, 1),
        (5, 3, 3, 0), (5, 3, 3, 1), (6, 4, 4, 0), (6, 4, 4, 1),
        (7, 2, 2, 0), (7, 2, 2, 1), (8, 3, 15, 0), (8, 3, 15, 1),
        (9, 4, 11, 0), (10, 3, 16, 0), (11, 6, 31, 0), (11, 6, 31, 1),
        (11, 9, 31, 0), (11, 9, 31, 1), (11, 12, 31, 0), (11, 12, 31, 1),
        (12, 3, 10, 0), (13, 2, 10, 0), (14, 4, 20, 0), (14, 4, 20, 1),
        (15, 6, 6, 0), (15, 7, 7, 0), (15, 8, 8, 0), (15, 9, 9, 0),
        (15, 10, 10, 0), (15, 11, 11, 0), (16, 10, 10, 0), (17, 5, 33, 0),
        (18, 11, 65, 0), (18, 11, 65, 1), (19, 8, 8, 0), (19, 10, 12, 0),
        (19, 11, 14, 0), (19, 12, 16, 0), (20, 5, 5, 0), (20, 6, 6, 0),
        (20, 8, 8, 0), (21, 5, 5, 0), (21, 5, 5, 1), (21, 8, 8, 0),
        (21, 10, 10, 0), (21, 12, 12, 0), (21, 12, 12, 1), (22, 8, 8, 0),
        (22, 8, 8, 1),
    )
)

# ---------------------------------------------------------------------------
# Data of MGH functions 8, 9, 10, 17, 18.
_BARD_Y = np.array([0.14, 0.18, 0.22, 0.25, 0.29, 0.32, 0.35, 0.39, 0.37, 0.58,
                    0.73, 0.96, 1.34, 2.10, 4.39])
_KO_V = np.array([4.0, 2.0, 1.0, 0.5, 0.25, 0.167, 0.125, 0.1, 0.0833, 0.0714, 0.0625])
_KO_Y = np.array([0.1957, 0.1947, 0.1735, 0.1600, 0.0844, 0.0627, 0.0456, 0.0342,
                  0.0323, 0.0235, 0.0246])
_MEYER_Y = np.array([34780.0, 28610.0, 23650.0, 19630.0, 16370.0, 13720.0, 11540.0,
                     9744.0, 8261.0, 7030.0, 6005.0, 5147.0, 4427.0, 3820.0, 3307.0,
                     2872.0])
_OSB1_Y = np.array([0.844, 0.908, 0.932, 0.936, 0.925, 0.908, 0.881, 0.850, 0.818,
                    0.784, 0.751, 0.718, 0.685, 0.658, 0.628, 0.603, 0.580, 0.558,
                    0.538, 0.522, 0.506, 0.490, 0.478, 0.467, 0.457, 0.448, 0.438,
                    0.431, 0.424, 0.420, 0.414, 0.411, 0.406])
_OSB2_Y = np.array([1.366, 1.191, 1.112, 1.013, 0.991, 0.885, 0.831, 0.847, 0.786,
                    0.725, 0.746, 0.679, 0.608, 0.655, 0.616, 0.606, 0.602, 0.626,
                    0.651, 0.724, 0.649, 0.649, 0.694, 0.644, 0.624, 0.661, 0.612,
                    0.558, 0.533, 0.495, 0.500, 0.423, 0.395, 0.375, 0.372, 0.391,
                    0.396, 0.405, 0.428, 0.429, 0.523, 0.562, 0.607, 0.653, 0.672,
                    0.708, 0.633, 0.668, 0.645, 0.632, 0.591, 0.559, 0.597, 0.625,
                    0.739, 0.710, 0.729, 0.720, 0.636, 0.581, 0.428, 0.292, 0.162,
                    0.098, 0.054])


# ---------------------------------------------------------------------------
# 1-3: linear functions r = A x - b; A and b depend only on (n, m).
def _linear_system(fid: int, n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    if fid == 1:  # full rank: r_i = x_i [i <= n] - (2/m) sum_j x_j - 1
        A = -2.0 / m * np.ones((m, n))
        A[:n, :n] += np.eye(n)
        return A, np.ones(m)
    if fid == 2:  # rank 1: r_i = i * sum_j j x_j - 1
        return np.outer(np.arange(1, m + 1), np.arange(1, n + 1)).astype(float), np.ones(m)
    # fid == 3, rank 1 with zero columns and rows:
    # r_i = (i - 1) * sum_{j=2}^{n-1} j x_j - 1 for i < m, r_m = -1
    A = np.zeros((m, n))
    A[: m - 1, 1 : n - 1] = np.outer(np.arange(m - 1), np.arange(2, n))
    return A, np.ones(m)


def _affine_r(x: np.ndarray, m: int, A: np.ndarray, b: np.ndarray) -> np.ndarray:
    return A @ x - b


def _affine_j(x: np.ndarray, m: int, A: np.ndarray, b: np.ndarray) -> np.ndarray:
    return A.copy()


# 4: Rosenbrock. r = (10 (x2 - x1^2), 1 - x1)
def _rosen_r(x, m):
    return np.array([10.0 * (x[1] - x[0] ** 2), 1.0 - x[0]])


def _rosen_j(x, m):
    return np.array([[-20.0 * x[0], 10.0], [-1.0, 0.0]])


# 5: Helical valley. theta = atan(x2/x1)/(2 pi) (+ 1/2 if x1 < 0, 1/4 if x1 = 0)
def _helical_r(x, m):
    if x[0] > 0:
        th = np.arctan(x[1] / x[0]) / (2 * np.pi)
    elif x[0] < 0:
        th = np.arctan(x[1] / x[0]) / (2 * np.pi) + 0.5
    else:
        th = 0.25
    rad = np.hypot(x[0], x[1])
    return np.array([10.0 * (x[2] - 10.0 * th), 10.0 * (rad - 1.0), x[2]])


def _helical_j(x, m):
    r2 = x[0] ** 2 + x[1] ** 2
    rad = np.sqrt(r2)
    c = 100.0 / (2 * np.pi * r2)  # d theta/dx = (-x2, x1) / (2 pi r^2)
    return np.array([
        [c * x[1], -c * x[0], 10.0],
        [10.0 * x[0] / rad, 10.0 * x[1] / rad, 0.0],
        [0.0, 0.0, 1.0],
    ])


# 6: Powell singular.
_S5, _S10 = np.sqrt(5.0), np.sqrt(10.0)


def _powell_r(x, m):
    return np.array([
        x[0] + 10.0 * x[1],
        _S5 * (x[2] - x[3]),
        (x[1] - 2.0 * x[2]) ** 2,
        _S10 * (x[0] - x[3]) ** 2,
    ])


def _powell_j(x, m):
    a = 2.0 * (x[1] - 2.0 * x[2])
    d = 2.0 * _S10 * (x[0] - x[3])
    return np.array([
        [1.0, 10.0, 0.0, 0.0],
        [0.0, 0.0, _S5, -_S5],
        [0.0, a, -2.0 * a, 0.0],
        [d, 0.0, 0.0, -d],
    ])


# 7: Freudenstein and Roth.
def _froth_r(x, m):
    u, v = x
    return np.array([
        -13.0 + u + ((5.0 - v) * v - 2.0) * v,
        -29.0 + u + ((1.0 + v) * v - 14.0) * v,
    ])


def _froth_j(x, m):
    v = x[1]
    return np.array([[1.0, 10.0 * v - 3.0 * v**2 - 2.0], [1.0, 3.0 * v**2 + 2.0 * v - 14.0]])


# 8: Bard. u_i = i, v_i = 16 - i, w_i = min(u_i, v_i); r_i = y_i - (x1 + u/(v x2 + w x3))
_BARD_U = np.arange(1.0, 16.0)
_BARD_V = 16.0 - _BARD_U
_BARD_W = np.minimum(_BARD_U, _BARD_V)


def _bard_r(x, m):
    return _BARD_Y - (x[0] + _BARD_U / (_BARD_V * x[1] + _BARD_W * x[2]))


def _bard_j(x, m):
    den2 = (_BARD_V * x[1] + _BARD_W * x[2]) ** 2
    return np.column_stack([-np.ones(15), _BARD_U * _BARD_V / den2, _BARD_U * _BARD_W / den2])


# 9: Kowalik and Osborne. r_i = y_i - x1 v (v + x2) / (v (v + x3) + x4)
def _ko_r(x, m):
    v = _KO_V
    return _KO_Y - x[0] * v * (v + x[1]) / (v * (v + x[2]) + x[3])


def _ko_j(x, m):
    v = _KO_V
    num = v * (v + x[1])
    den = v * (v + x[2]) + x[3]
    return np.column_stack([
        -num / den,
        -x[0] * v / den,
        x[0] * num * v / den**2,
        x[0] * num / den**2,
    ])


# 10: Meyer. r_i = x1 exp(x2 / (t_i + x3)) - y_i, t_i = 45 + 5 i
_MEYER_T = 45.0 + 5.0 * np.arange(1, 17)


def _meyer_r(x, m):
    return x[0] * np.exp(x[1] / (_MEYER_T + x[2])) - _MEYER_Y


def _meyer_j(x, m):
    T = _MEYER_T + x[2]
    E = np.exp(x[1] / T)
    return np.column_stack([E, x[0] * E / T, -x[0] * x[1] * E / T**2])


# 11: Watson. t_i = i/29 (i = 1..29):
# r_i = sum_{j=2}^n (j-1) x_j t^{j-2} - (sum_{j=1}^n x_j t^{j-1})^2 - 1,
# r_30 = x1, r_31 = x2 - x1^2 - 1.
_WATSON_T = np.arange(1, 30) / 29.0


def _watson_parts(n: int) -> tuple[np.ndarray, np.ndarray]:
    j = np.arange(n)
    P = _WATSON_T[:, None] ** j  # t^{j-1} in 1-based j
    D = np.zeros_like(P)
    D[:, 1:] = j[1:] * _WATSON_T[:, None] ** (j[1:] - 1)  # (j-1) t^{j-2}
    return P, D


def _watson_r(x, m):
    P, D = _watson_parts(x.size)
    s2 = P @ x
    return np.concatenate([D @ x - s2**2 - 1.0, [x[0], x[1] - x[0] ** 2 - 1.0]])


def _watson_j(x, m):
    n = x.size
    P, D = _watson_parts(n)
    s2 = P @ x
    J = np.zeros((31, n))
    J[:29] = D - 2.0 * s2[:, None] * P
    J[29, 0] = 1.0
    J[30, 0] = -2.0 * x[0]
    J[30, 1] = 1.0
    return J


# 12: Box three-dimensional. t_i = i/10:
# r_i = exp(-t x1) - exp(-t x2) - x3 (exp(-t) - exp(-10 t))
def _box_r(x, m):
    t = np.arange(1, m + 1) / 10.0
    return np.exp(-t * x[0]) - np.exp(-t * x[1]) - x[2] * (np.exp(-t) - np.exp(-10.0 * t))


def _box_j(x, m):
    t = np.arange(1, m + 1) / 10.0
    return np.column_stack([
        -t * np.exp(-t * x[0]),
        t * np.exp(-t * x[1]),
        -(np.exp(-t) - np.exp(-10.0 * t)),
    ])


# 13: Jennrich and Sampson. r_i = 2 + 2 i - exp(i x1) - exp(i x2)
def _js_r(x, m):
    i = np.arange(1, m + 1, dtype=float)
    return 2.0 + 2.0 * i - np.exp(i * x[0]) - np.exp(i * x[1])


def _js_j(x, m):
    i = np.arange(1, m + 1, dtype=float)
    return np.column_stack([-i * np.exp(i * x[0]), -i * np.exp(i * x[1])])


# 14: Brown and Dennis. t_i = i/5:
# r_i = (x1 + t x2 - e^t)^2 + (x3 + x4 sin t - cos t)^2
def _bd_parts(x, m):
    t = np.arange(1, m + 1) / 5.0
    a = x[0] + t * x[1] - np.exp(t)
    b = x[2] + np.sin(t) * x[3] - np.cos(t)
    return t, a, b


def _bd_r(x, m):
    _, a, b = _bd_parts(x, m)
    return a**2 + b**2


def _bd_j(x, m):
    t, a, b = _bd_parts(x, m)
    return np.column_stack([2 * a, 2 * a * t, 2 * b, 2 * b * np.sin(t)])


# 15: Chebyquad. r_i = (1/n) sum_j T_i(2 x_j - 1) - int_0^1 T_i(2 s - 1) ds,
# the integral being -1/(i^2 - 1) for even i and 0 for odd i.
def _cheb_tables(x: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows i = 1..m: T_i(y_j) and T_i'(y_j) for y = 2x - 1 (three-term recurrence)."""
    y = 2.0 * x - 1.0
    T = np.empty((m + 1, x.size))
    dT = np.empty((m + 1, x.size))
    T[0], dT[0] = 1.0, 0.0
    T[1], dT[1] = y, 1.0
    for k in range(1, m):
        T[k + 1] = 2.0 * y * T[k] - T[k - 1]
        dT[k + 1] = 2.0 * T[k] + 2.0 * y * dT[k] - dT[k - 1]
    return T[1:], dT[1:]


def _cheb_r(x, m):
    T, _ = _cheb_tables(x, m)
    return T.mean(axis=1) + _cheb_shift(m)


def _cheb_shift(m: int) -> np.ndarray:
    shift = np.zeros(m)
    even = np.arange(2, m + 1, 2, dtype=float)
    shift[1::2] = 1.0 / (even**2 - 1.0)
    return shift


def _cheb_j(x, m):
    _, dT = _cheb_tables(x, m)
    return dT * (2.0 / x.size)


# 16: Brown almost-linear. r_i = x_i + sum_j x_j - (n + 1) (i < n), r_n = prod_j x_j - 1
def _bal_r(x, m):
    n = x.size
    return np.concatenate([x[:-1] + x.sum() - (n + 1.0), [np.prod(x) - 1.0]])


def _bal_j(x, m):
    n = x.size
    J = np.ones((n, n))
    J[np.arange(n - 1), np.arange(n - 1)] += 1.0
    # d prod / d x_k = prod_{j != k} x_j, by prefix and suffix products (no division).
    pre = np.concatenate([[1.0], np.cumprod(x[:-1])])
    suf = np.concatenate([np.cumprod(x[::-1][:-1])[::-1], [1.0]])
    J[n - 1] = pre * suf
    return J


# 17: Osborne 1. t_i = 10 (i - 1): r_i = y_i - (x1 + x2 e^{-x4 t} + x3 e^{-x5 t})
_OSB1_T = 10.0 * np.arange(33)


def _osb1_r(x, m):
    t = _OSB1_T
    return _OSB1_Y - (x[0] + x[1] * np.exp(-x[3] * t) + x[2] * np.exp(-x[4] * t))


def _osb1_j(x, m):
    t = _OSB1_T
    e1, e2 = np.exp(-x[3] * t), np.exp(-x[4] * t)
    return np.column_stack([-np.ones(33), -e1, -e2, x[1] * t * e1, x[2] * t * e2])


# 18: Osborne 2. t_i = (i - 1)/10:
# r_i = y_i - (x1 e^{-x5 t} + sum_{k=2}^4 x_k e^{-x_{k+4} (t - x_{k+7})^2})
_OSB2_T = np.arange(65) / 10.0


def _osb2_r(x, m):
    t = _OSB2_T
    model = x[0] * np.exp(-x[4] * t)
    for k in (1, 2, 3):
        model = model + x[k] * np.exp(-x[k + 4] * (t - x[k + 7]) ** 2)
    return _OSB2_Y - model


def _osb2_j(x, m):
    t = _OSB2_T
    J = np.zeros((65, 11))
    e0 = np.exp(-x[4] * t)
    J[:, 0] = -e0
    J[:, 4] = x[0] * t * e0
    for k in (1, 2, 3):
        d = t - x[k + 7]
        e = np.exp(-x[k + 4] * d**2)
        J[:, k] = -e
        J[:, k + 4] = x[k] * d**2 * e
        J[:, k + 7] = -2.0 * x[k] * x[k + 4] * d * e
    return J


# 19: BDQRTIC (CUTEr). For i = 1..n-4: r_i = 3 - 4 x_i,
# r_{n-4+i} = x_i^2 + 2 x_{i+1}^2 + 3 x_{i+2}^2 + 4 x_{i+3}^2 + 5 x_n^2.
_BDQ_W = np.array([1.0, 2.0, 3.0, 4.0])


def _bdq_r(x, m):
    k = x.size - 4
    quad = sum(_BDQ_W[j] * x[j : j + k] ** 2 for j in range(4)) + 5.0 * x[-1] ** 2
    return np.concatenate([3.0 - 4.0 * x[:k], quad])


def _bdq_j(x, m):
    n = x.size
    k = n - 4
    J = np.zeros((2 * k, n))
    i = np.arange(k)
    J[i, i] = -4.0
    for j in range(4):
        J[k + i, i + j] += 2.0 * _BDQ_W[j] * x[i + j]
    J[k:, n - 1] += 10.0 * x[-1]
    return J


# 20: CUBE (CUTEr). r_1 = x1 - 1, r_i = 10 (x_i - x_{i-1}^3)
def _cube_r(x, m):
    return np.concatenate([[x[0] - 1.0], 10.0 * (x[1:] - x[:-1] ** 3)])


def _cube_j(x, m):
    n = x.size
    J = np.zeros((n, n))
    J[0, 0] = 1.0
    i = np.arange(1, n)
    J[i, i] = 10.0
    J[i, i - 1] = -30.0 * x[:-1] ** 2
    return J


# 21: MANCINO (CUTEr). v_ij = sqrt(x_i^2 + i/j),
# r_i = 1400 x_i + (i - 50)^3 + sum_j v_ij (sin^5(log v_ij) + cos^5(log v_ij)).
def _mancino_v(x):
    n = x.size
    i = np.arange(1, n + 1, dtype=float)
    return i, np.sqrt(x[:, None] ** 2 + i[:, None] / i[None, :])


def _mancino_r(x, m):
    i, v = _mancino_v(x)
    lv = np.log(v)
    g = v * (np.sin(lv) ** 5 + np.cos(lv) ** 5)
    return 1400.0 * x + (i - 50.0) ** 3 + g.sum(axis=1)


def _mancino_j(x, m):
    _, v = _mancino_v(x)
    s, c = np.sin(np.log(v)), np.cos(np.log(v))
    dg = s**5 + c**5 + 5.0 * s**4 * c - 5.0 * c**4 * s  # d/dv [v (s^5 + c^5)]
    return np.diag(1400.0 + (dg * x[:, None] / v).sum(axis=1))


def _mancino_x0(n: int) -> np.ndarray:
    i = np.arange(1, n + 1, dtype=float)
    q = np.sqrt(i[:, None] / i[None, :])
    lq = np.log(q)
    ss = (q * (np.sin(lq) ** 5 + np.cos(lq) ** 5)).sum(axis=1)
    return -8.710996e-4 * ((i - 50.0) ** 3 + ss)


# 22: HEART8LS (CUTEr), x = (a, b, c, d, t, u, v, w).
def _heart_r(x, m):
    a, b, c, d, t, u, v, w = x
    return np.array([
        a + b + 0.69,
        c + d + 0.044,
        t * a + u * b - v * c - w * d + 1.57,
        v * a + w * b + t * c + u * d + 1.31,
        a * (t**2 - v**2) - 2 * c * t * v + b * (u**2 - w**2) - 2 * d * u * w + 2.65,
        c * (t**2 - v**2) + 2 * a * t * v + d * (u**2 - w**2) + 2 * b * u * w - 2.0,
        a * t * (t**2 - 3 * v**2) + c * v * (v**2 - 3 * t**2)
        + b * u * (u**2 - 3 * w**2) + d * w * (w**2 - 3 * u**2) + 12.6,
        c * t * (t**2 - 3 * v**2) - a * v * (v**2 - 3 * t**2)
        + d * u * (u**2 - 3 * w**2) - b * w * (w**2 - 3 * u**2) - 9.48,
    ])


def _heart_j(x, m):
    a, b, c, d, t, u, v, w = x
    tv, uw = t**2 - v**2, u**2 - w**2
    p1, p2 = t**3 - 3 * t * v**2, u**3 - 3 * u * w**2  # t(t^2-3v^2), u(u^2-3w^2)
    q1, q2 = v**3 - 3 * v * t**2, w**3 - 3 * w * u**2  # v(v^2-3t^2), w(w^2-3u^2)
    return np.array([
        [1, 1, 0, 0, 0, 0, 0, 0],
        [0, 0, 1, 1, 0, 0, 0, 0],
        [t, u, -v, -w, a, b, -c, -d],
        [v, w, t, u, c, d, a, b],
        [tv, uw, -2 * t * v, -2 * u * w,
         2 * a * t - 2 * c * v, 2 * b * u - 2 * d * w,
         -2 * a * v - 2 * c * t, -2 * b * w - 2 * d * u],
        [2 * t * v, 2 * u * w, tv, uw,
         2 * c * t + 2 * a * v, 2 * d * u + 2 * b * w,
         2 * a * t - 2 * c * v, 2 * b * u - 2 * d * w],
        [p1, p2, q1, q2,
         3 * a * tv - 6 * c * t * v, 3 * b * uw - 6 * d * u * w,
         -6 * a * t * v - 3 * c * tv, -6 * b * u * w - 3 * d * uw],
        [-q1, -q2, p1, p2,
         3 * c * tv + 6 * a * t * v, 3 * d * uw + 6 * b * u * w,
         -6 * c * t * v + 3 * a * tv, -6 * d * u * w + 3 * b * uw],
    ], dtype=float)


# ---------------------------------------------------------------------------
class _Function(NamedTuple):
    slug: str
    residual: Callable | None  # None for the linear functions (built from A, b)
    jacobian: Callable | None
    x0: Callable[[int], np.ndarray]


def _const(*values: float) -> Callable[[int], np.ndarray]:
    return partial(_fixed_start, values=values)


def _fixed_start(n: int, values: tuple[float, ...]) -> np.ndarray:
    return np.array(values, dtype=float)


def _fill(value: float) -> Callable[[int], np.ndarray]:
    return partial(_filled_start, value=value)


def _filled_start(n: int, value: float) -> np.ndarray:
    return np.full(n, value)


def _cheb_x0(n: int) -> np.ndarray:
    return np.arange(1, n + 1) / (n + 1.0)


#: function id -> (slug, residual, jacobian, standard starting point as a function of n)
MORE_WILD_FUNCTIONS: dict[int, _Function] = {
    1: _Function("linear_full_rank", None, None, _fill(1.0)),
    2: _Function("linear_rank1", None, None, _fill(1.0)),
    3: _Function("linear_rank1_zero_cols_rows", None, None, _fill(1.0)),
    4: _Function("rosenbrock", _rosen_r, _rosen_j, _const(-1.2, 1.0)),
    5: _Function("helical_valley", _helical_r, _helical_j, _const(-1.0, 0.0, 0.0)),
    6: _Function("powell_singular", _powell_r, _powell_j, _const(3.0, -1.0, 0.0, 1.0)),
    7: _Function("freudenstein_roth", _froth_r, _froth_j, _const(0.5, -2.0)),
    8: _Function("bard", _bard_r, _bard_j, _fill(1.0)),
    9: _Function("kowalik_osborne", _ko_r, _ko_j, _const(0.25, 0.39, 0.415, 0.39)),
    10: _Function("meyer", _meyer_r, _meyer_j, _const(0.02, 4000.0, 250.0)),
    11: _Function("watson", _watson_r, _watson_j, _fill(0.5)),
    12: _Function("box3d", _box_r, _box_j, _const(0.0, 10.0, 20.0)),
    13: _Function("jennrich_sampson", _js_r, _js_j, _const(0.3, 0.4)),
    14: _Function("brown_dennis", _bd_r, _bd_j, _const(25.0, 5.0, -5.0, -1.0)),
    15: _Function("chebyquad", _cheb_r, _cheb_j, _cheb_x0),
    16: _Function("brown_almost_linear", _bal_r, _bal_j, _fill(0.5)),
    17: _Function("osborne1", _osb1_r, _osb1_j, _const(0.5, 1.5, 1.0, 0.01, 0.02)),
    18: _Function("osborne2", _osb2_r, _osb2_j,
                  _const(1.3, 0.65, 0.65, 0.7, 0.6, 3.0, 5.0, 7.0, 2.0, 4.5, 5.5)),
    19: _Function("bdqrtic", _bdq_r, _bdq_j, _fill(1.0)),
    20: _Function("cube", _cube_r, _cube_j, _fill(0.5)),
    21: _Function("mancino", _mancino_r, _mancino_j, _mancino_x0),
    22: _Function("heart8", _heart_r, _heart_j,
                  _const(-0.3, -0.39, 0.3, -0.344, -1.2, 2.69, 1.59, -1.5)),
}


def _linear_f_opt(fid: int, n: int, m: int) -> float:
    """Closed-form minima of MGH functions 1-3 (MGH 1981, section 3)."""
    if fid == 1:
        return float(m - n)
    if fid == 2:
        return m * (m - 1) / (2.0 * (2 * m + 1))
    return (m * m + 3 * m - 6) / (2.0 * (2 * m - 3))


#: Published minimum values (MGH 1981, rounded as printed there) keyed by
#: (function id, n, m); zero-residual functions have f* = 0 at a known root.
_PUBLISHED_F_OPT: dict[tuple[int, int, int], float] = {
    (4, 2, 2): 0.0,
    (5, 3, 3): 0.0,
    (6, 4, 4): 0.0,
    (7, 2, 2): 0.0,
    (8, 3, 15): 8.21487e-3,
    (9, 4, 11): 3.07505e-4,
    (10, 3, 16): 87.9458,
    (11, 6, 31): 2.28767e-3,
    (11, 9, 31): 1.39976e-6,
    (11, 12, 31): 4.72238e-10,
    (12, 3, 10): 0.0,
    (13, 2, 10): 124.362,
    (14, 4, 20): 85822.2,
    (15, 6, 6): 0.0,
    (15, 7, 7): 0.0,
    (15, 8, 8): 3.51687e-3,
    (15, 9, 9): 0.0,
    (16, 10, 10): 0.0,
    (17, 5, 33): 5.46489e-5,
    (18, 11, 65): 4.01377e-2,
    (20, 5, 5): 0.0,
    (20, 6, 6): 0.0,
    (20, 8, 8): 0.0,
}


def _problem_name(spec: MoreWildSpec) -> str:
    slug = MORE_WILD_FUNCTIONS[spec.fid].slug
    return f"mw{spec.fid:02d}_{slug}_n{spec.n}_m{spec.m}_s{spec.s}"


def more_wild_problem(fid: int, n: int, m: int, s: int = 0) -> Problem:
    """Build one Moré–Wild problem from its table row ``(fid, n, m, s)``.

    Args:
        fid: function number 1..22 (see :data:`MORE_WILD_FUNCTIONS`).
        n: dimension; must be one the function allows.
        m: number of residuals.
        s: starting point ``x0 = 10**s * x_standard``.

    Returns:
        A least-squares :class:`Problem` with ``fun = ||r||^2`` and
        ``grad = 2 J^T r``; ``f_opt`` is set where MGH publish it.

    Raises:
        ValueError: for an unknown function id or an inconsistent ``(n, m)``.
    """
    if fid not in MORE_WILD_FUNCTIONS:
        raise ValueError(f"unknown Moré–Wild function id {fid!r}; expected 1..22")
    spec = MoreWildSpec(int(fid), int(n), int(m), int(s))
    func = MORE_WILD_FUNCTIONS[fid]
    x0 = func.x0(spec.n) * 10.0**spec.s
    if x0.shape != (spec.n,) or spec.m < spec.n:
        raise ValueError(
            f"Moré–Wild function {fid} ({func.slug}) does not accept n={n}, m={m}"
        )
    L = None
    if fid <= 3:
        A, b = _linear_system(fid, spec.n, spec.m)
        residual = partial(_affine_r, m=spec.m, A=A, b=b)
        jacobian = partial(_affine_j, m=spec.m, A=A, b=b)
        f_opt: float | None = _linear_f_opt(fid, spec.n, spec.m)
        L = 2.0 * float(np.linalg.norm(A, 2)) ** 2  # Hessian of ||Ax - b||^2 is 2 A^T A
    else:
        residual = partial(func.residual, m=spec.m)
        jacobian = partial(func.jacobian, m=spec.m)
        f_opt = _PUBLISHED_F_OPT.get((spec.fid, spec.n, spec.m))
    r0 = residual(x0)
    if r0.shape != (spec.m,):
        raise ValueError(
            f"Moré–Wild function {fid} ({func.slug}) has m={r0.size} residuals, not m={m}"
        )
    return Problem(
        name=_problem_name(spec),
        n=spec.n,
        x0=x0,
        fun=SumOfSquares(residual),
        grad=SumOfSquaresGradient(residual, jacobian),
        residual=residual,
        jacobian=jacobian,
        m=spec.m,
        f_opt=f_opt,
        L=L,
    )


@lru_cache(maxsize=1)
def _all_problems() -> tuple[Problem, ...]:
    return tuple(more_wild_problem(*spec) for spec in MORE_WILD_TABLE)


def more_wild_problems() -> list[Problem]:
    """The 53 Moré–Wild problems, in the order of the paper's table."""
    return list(_all_problems())


def get_problem(name: str) -> Problem:
    """Look up a Moré–Wild problem by name, e.g. ``"mw07_freudenstein_roth_n2_m2_s1"``.

    Raises:
        KeyError: for an unknown name, suggesting the closest known names.
    """
    by_name = {p.name: p for p in _all_problems()}
    if name in by_name:
        return by_name[name]
    close = difflib.get_close_matches(str(name), list(by_name), n=3, cutoff=0.5)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise KeyError(f"unknown Moré–Wild problem {name!r}{hint} (see more_wild_problems())")
