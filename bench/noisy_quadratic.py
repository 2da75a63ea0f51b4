"""Issue 9's noisy quadratic, every solver side by side with default arguments.

f(x) = ½xᵀAx + bᵀx + U[−1e-3, 1e-3], n = 20, A = MMᵀ/n + I with M, b ~ N(0, 1) from seed
12345 (the construction of ``tests/test_minimize.py``), noise stream seeded 1000 + seed,
x0 = 0. Each solver runs through the counting wrapper of ``bench/noisy_profiles.py``
(same budget enforcement, same returned-point rule) and is judged on the true gap
φ(x_out) − φ* at the point it returns. dfo gets no noise arguments; Py-BOBYQA gets
``objfun_has_noise=True``.

    python bench/noisy_quadratic.py --budgets 2100 20000 --seeds 0 1 2 > bench/results/noisy_quadratic.md
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from dfo.study.profiles import BudgetExhausted, CountingObjective
from noisy_profiles import SOLVERS, _run_solver

N = 20


def problem(seed: int):
    """(noisy f, true φ − φ*) for one noise seed."""
    g = np.random.default_rng(12345)
    m = g.standard_normal((N, N))
    a = m @ m.T / N + np.eye(N)
    b = g.standard_normal(N)
    xs = np.linalg.solve(a, -b)
    f_star = 0.5 * xs @ a @ xs + b @ xs
    noise = np.random.default_rng(1000 + seed)
    return (lambda x: float(0.5 * x @ a @ x + b @ x + noise.uniform(-1e-3, 1e-3)),
            lambda x: float(0.5 * x @ a @ x + b @ x - f_star))


def run(solver: str, seed: int, budget: int) -> tuple[float, int, float]:
    f, gap = problem(seed)
    obj = CountingObjective(f, budget)
    t0 = time.perf_counter()
    x_out = None
    try:
        x_out, _ = _run_solver(solver, obj, np.zeros(N), budget, True, seed, {"estimator": "central-orthogonal"})
    except BudgetExhausted:
        pass
    if x_out is None or not np.all(np.isfinite(x_out)):
        x_out = obj.best_x
    return gap(np.asarray(x_out, dtype=float)), len(obj.values), time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budgets", type=int, nargs="+", default=[2100, 20000])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--solvers", nargs="+", default=[s for s in SOLVERS if s != "dfo-best"])
    args = ap.parse_args(argv)
    print("| solver | budget | f − f* at the returned point (per seed) | median | evaluations used (per seed) |")
    print("|---|---|---|---|---|")
    for budget in args.budgets:
        for solver in args.solvers:
            rows = [run(solver, s, budget) for s in args.seeds]
            gaps = [r[0] for r in rows]
            print(f"| {solver} | {budget} | {', '.join(f'{g:.2e}' for g in gaps)} | {np.median(gaps):.2e} | "
                  f"{', '.join(str(r[1]) for r in rows)} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
