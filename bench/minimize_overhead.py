"""dfo.minimize's own time per evaluation: wall time outside the objective / nfev.

A cheap objective (f(x) = ‖x‖², optionally with relative noise of level ``--noise``, so the
probe, recoveries and re-estimates run too) at n = 100 and 1000 with default options and
``maxfev = --budget·(n + 1)``. Each measurement is a fresh process that first runs a short
warm-up (imports, the DCT matrix of the orthogonal directions), then times ``--repeats`` runs
and keeps the fastest; f's own time is measured inside f and subtracted.

Give several source trees (``--trees``, each a folder holding the ``dfo`` package) to
compare code versions: the runs are interleaved (round 1: every tree, round 2: every tree,
...), so a loaded machine slows them alike; the table reports the minimum over rounds per
tree and, for each tree after the first, the median over rounds of its time / the first
tree's time in the same round.

Usage:
    git archive BASE dfo | tar -x -C /tmp/base        # the code before a change
    OMP_NUM_THREADS=1 python bench/minimize_overhead.py --trees /tmp/base . --rounds 7
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

WORKER = r"""
import json, sys, time
import numpy as np
import dfo
n, budget, noise = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
spent = [0.0]
rng = np.random.default_rng(0)
def f(x):
    t0 = time.perf_counter()
    v = float(x @ x)
    if noise:
        v *= 1.0 + noise * rng.uniform(-1.0, 1.0)
    spent[0] += time.perf_counter() - t0
    return v
dfo.minimize(f, np.ones(n), rng=0, maxfev=3 * (n + 1))  # warm-up
best = None
for _ in range(int(sys.argv[4])):
    spent[0] = 0.0
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    res = dfo.minimize(f, np.ones(n), rng=0, maxfev=budget * (n + 1))
    wall = time.perf_counter() - t0
    row = {"nfev": int(res.nfev), "nit": int(res.nit), "fun": float(res.fun),
           "own_us": (wall - spent[0]) / res.nfev * 1e6, "f_us": spent[0] / res.nfev * 1e6}
    best = row if best is None or row["own_us"] < best["own_us"] else best
print(json.dumps(best))
"""


def measure(tree: str, n: int, budget: int, noise: float, repeats: int) -> dict:
    env = dict(os.environ, PYTHONPATH=os.path.abspath(tree), OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", WORKER, str(n), str(budget), str(noise), str(repeats)], env=env,
                         capture_output=True, text=True, check=True, cwd="/")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trees", nargs="+", default=["."])
    ap.add_argument("--n", type=int, nargs="+", default=[100, 1000])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--budget", type=int, default=20, help="maxfev = budget·(n + 1)")
    ap.add_argument("--noise", type=float, default=0.0, help="relative noise level (0: none)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per process (its minimum counts)")
    args = ap.parse_args()
    rows = {(t, n): [] for t in args.trees for n in args.n}
    for _ in range(args.rounds):
        for n in args.n:
            for tree in args.trees:
                rows[tree, n].append(measure(tree, n, args.budget, args.noise, args.repeats))
    print(f"Command: `OMP_NUM_THREADS=1 python bench/minimize_overhead.py --trees {' '.join(args.trees)} "
          f"--n {' '.join(map(str, args.n))} --rounds {args.rounds} --budget {args.budget} --noise {args.noise:g} "
          f"--repeats {args.repeats}`"
          f" ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {os.getloadavg()[0]:.1f})\n")
    print("| n | tree | nfev | fun | own µs/eval (min) | f µs/eval | own / first tree's (median of rounds) |")
    print("|---|---|---|---|---|---|---|")
    for n in args.n:
        first = rows[args.trees[0], n]
        for tree in args.trees:
            r = rows[tree, n]
            same = {(x["nfev"], x["fun"]) for x in r} == {(x["nfev"], x["fun"]) for x in first}
            ratios = sorted(a["own_us"] / b["own_us"] for a, b in zip(r, first))
            ratio = ratios[len(ratios) // 2]
            print(f"| {n} | {tree} | {r[0]['nfev']} | {r[0]['fun']:.6g}{'' if same else ' (differs)'} | "
                  f"{min(x['own_us'] for x in r):.1f} | {min(x['f_us'] for x in r):.2f} | {ratio:.3f} |")


if __name__ == "__main__":
    main()
