"""``dfo demo``: the core on a noisy test problem, one line per estimator.

Minimizes the chained Rosenbrock function (n = 10 by default) observed with
additive uniform noise of level ε_f, with the noise-tolerant line search and every
estimator of :data:`dfo.ESTIMATORS` (or those named) at the same evaluation budget,
and prints a table of the final optimality gaps. A new registry entry shows up here
without an edit.
"""

from __future__ import annotations

import argparse
import time

import numpy as np



def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--n", type=int, default=10, help="dimension of the Rosenbrock problem (default 10)")
    parser.add_argument("--noise", type=float, default=1e-8, help="additive uniform noise level eps_f (default 1e-8)")
    parser.add_argument("--maxfev", type=int, default=20000, help="evaluation budget per estimator (default 20000)")
    parser.add_argument("--estimators", default=None,
                        help="comma-separated presets (default: every estimator in dfo.ESTIMATORS)")
    parser.add_argument("--direction", choices=["gradient", "lbfgs"], default="lbfgs",
                        help="search direction of the line search (default lbfgs, as in Berahas et al. 2022)")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    import dfo
    from dfo.problems import AdditiveUniform, rosenbrock

    problem = rosenbrock(args.n)
    if args.estimators is None:
        names = list(dfo.ESTIMATORS)
    else:
        names = [s.strip() for s in args.estimators.split(",") if s.strip()]
    for name in names:
        if name not in dfo.ESTIMATORS:
            raise SystemExit(f"dfo demo: unknown estimator {name!r}; known: {', '.join(sorted(dfo.ESTIMATORS))}")
    print(f"Rosenbrock n={args.n}, additive uniform noise eps_f={args.noise:g}, budget {args.maxfev} evaluations, "
          f"line search on the {args.direction} direction\n")
    print(f"| estimator | f(x) final | ‖x − 1‖ | nfev | iterations | seconds |")
    print("|---|---|---|---|---|---|")
    for name in names:
        noisy = AdditiveUniform(problem.fun, args.noise, rng=args.seed) if args.noise > 0 else problem.fun
        t0 = time.perf_counter()
        res = dfo.minimize(noisy, problem.x0, estimator=name, direction=args.direction, eps_f=args.noise,
                           maxfev=args.maxfev, rng=args.seed)
        print(f"| {name} | {problem.fun(res.x):.3e} | {np.linalg.norm(res.x - 1):.2e} | {res.nfev} | {res.nit} | "
              f"{time.perf_counter() - t0:.1f} |")
    return 0
