"""Time per gradient estimate outside the objective vs the time of its evaluations.

For n in {10, 100, 1000, 10000} and several estimators, measures in one run:
  * overhead: ask() + building the points + tell(), i.e. everything but f;
  * f time: the evaluations the estimate needs, for the chained Rosenbrock
    function (a cheap objective: ~µs per call) — any real objective (a MuJoCo
    rollout: ~0.1 s; an LLM forward: ~1 s) makes the ratio far smaller.

Usage:
    OMP_NUM_THREADS=1 python bench/estimator_overhead.py [--repeats 5] > bench/results/estimator_overhead.md

Run it with one BLAS thread: on a loaded 2-core machine OpenBLAS threads made one
100×100 QR take 0.4 s instead of 1 ms (measured here).
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

import dfo
from dfo.problems import rosenbrock


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"# Estimator overhead ({platform.processor() or platform.machine()}, numpy {np.__version__})\n")
    print("Command: `OMP_NUM_THREADS=1 python bench/estimator_overhead.py --repeats %d`\n" % args.repeats)
    print("Overhead = ask + points + tell (no f); f time = the estimate's evaluations of the chained Rosenbrock.")
    print("N = min(n, 200) except interpolation (N = n); coordinate and interpolation are skipped at n = 10000 "
          "(their n×n point matrix alone is 0.8 GB).\n")
    print("| n | estimator | N | nfev | overhead ms | f time ms | overhead / f time | overhead per evaluation µs |")
    print("|---|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(0)
    for n in (10, 100, 1000, 10000):
        p = rosenbrock(n)
        x = p.x0 + 0.1
        for name in ("cfd", "gaussian", "central-gaussian", "orthogonal", "interpolation", "subzero"):
            if n == 10000 and name in ("cfd", "interpolation"):
                continue
            N = n if name in ("cfd", "interpolation") else min(n, 200)
            est = dfo.get_estimator(name, n_directions=None if name == "cfd" else N, sigma=1e-4, **({"rank": 4} if name == "subzero" else {}))
            query = est.ask(x, rng)
            points = query.points
            values = np.array([p.fun(pt) for pt in points])

            def overhead():
                q = est.ask(x, rng)
                q.points  # noqa: B018 - building the points is part of the overhead
                est.tell(q, values)

            t_over = best_time(overhead, args.repeats)
            t_f = best_time(lambda: [p.fun(pt) for pt in points], args.repeats)
            print(f"| {n} | {name} | {N} | {query.nfev} | {1e3 * t_over:.2f} | {1e3 * t_f:.2f} | "
                  f"{t_over / t_f:.2f} | {1e6 * t_over / query.nfev:.1f} |", flush=True)


if __name__ == "__main__":
    main()
