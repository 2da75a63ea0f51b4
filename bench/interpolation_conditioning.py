"""Interpolation directions: cond(U) and P(‖g − ∇φ‖ ≤ ½‖∇φ‖) at N = n (issue 9).

    PYTHONPATH=. python bench/interpolation_conditioning.py > bench/results/interpolation_conditioning.md

Run from a checkout of another commit (with that checkout on PYTHONPATH) to compare
direction designs; the script prints which dfo it imported.
"""
import sys
import numpy as np
import dfo
from dfo.study.functions import rosenbrock_function
from dfo.study.runner import run_cell

print("dfo from", dfo.__file__)
for n, R in ((10, 50), (100, 50), (1000, 5)):
    conds = []
    for s in range(R):
        e = dfo.get_estimator("interpolation", sigma=1e-4)
        q = e.ask(np.zeros(n), s)
        sv = np.linalg.svd(q.directions.matrix(), compute_uv=False)
        conds.append(sv[0] / sv[-1])
    print(f"n={n}: median cond(U) at N=n over {R} draws = {np.median(conds):.3g}")
func = rosenbrock_function(100)
for noise in ("none", "relative:1e-4", "relative:1e-3"):
    for name in ("interpolation", "orthogonal"):
        row = run_cell(func, name, n_directions=100, sigma="rule", noise=noise, repeats=200, seed=0)
        print(f"n=100 {noise:14s} {name:14s} sigma={row['sigma']:.3g} P(err<=0.5)={row['p_theta_0.5']:.3f} "
              f"median rel err={row['rel_error_median']:.3g} cond={row['interp_cond_median']:.3g}")
