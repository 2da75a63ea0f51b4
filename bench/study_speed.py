"""Speed of the vectorized study runner vs the ask/tell loop.

Target (issue 4): 10 estimators × 6 values of N × 100 repeats at n = 100 in under a
minute on 2 cores. Coordinate presets (ffd, cfd) use N = n, so they contribute one
cell each; the other 8 presets run all 6 values of N.

    OPENBLAS_NUM_THREADS=1 PYTHONPATH=. python bench/study_speed.py [--problem rosenbrock] [--reference]

``--reference`` also times the ask/tell path (one estimator call per repeat) on the
same grid, and prints the ratio.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # many small LAPACK calls: threads only thrash

from dfo.study.functions import make_function  # noqa: E402
from dfo.study.runner import STANDARD, StudySpec, run_study  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--problem", default="rosenbrock")
    ap.add_argument("--dim", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=100)
    ap.add_argument("--reference", action="store_true")
    args = ap.parse_args()
    func = make_function(args.problem, args.dim)
    Ns = (100, 120, 150, 200, 300, 400)
    spec = StudySpec(estimators=STANDARD, n_directions=Ns, sigmas=(1e-4,), noises=("none",),
                     repeats=args.repeats, seed=0)
    n_cells = len(spec.cells(func.n))
    t0 = time.perf_counter()
    rows = run_study(func, spec)
    t_vec = time.perf_counter() - t0
    evals = sum(r["nfev"] * r["repeats"] for r in rows)
    print(f"# study speed: {func.name}, {len(STANDARD)} estimators x N in {Ns} x {args.repeats} repeats")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}")
    print(f"cells: {n_cells}, function evaluations: {evals:,}")
    print(f"vectorized: {t_vec:.1f} s  (target < 60 s: {'met' if t_vec < 60 else 'MISSED'})")
    slow = sorted(rows, key=lambda r: -r["time_s"])[:3]
    print("slowest cells: " + ", ".join(f"{r['estimator']} N={r['n_directions']} {r['time_s']:.2f}s" for r in slow))
    if args.reference:
        t0 = time.perf_counter()
        run_study(func, spec, vectorized=False)
        t_ref = time.perf_counter() - t0
        print(f"ask/tell per repeat: {t_ref:.1f} s  (vectorized is {t_ref / t_vec:.1f}x faster)")


if __name__ == "__main__":
    main()
