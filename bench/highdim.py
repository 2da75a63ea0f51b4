"""High-dimensional noisy problems: dfo's defaults against interpolation, direct-search,
finite-difference quasi-Newton and evolution-strategy peers (issue 22, item 3).

Problems (scalable, f* = 0, written out here from their classic definitions): extended
Rosenbrock, Broyden tridiagonal, ill-conditioned quadratic (condition 1e4), trigonometric
(Moré, Garbow & Hillstrom 1981, #26), ARWHEAD and DQDRTIC (CUTEst), Dixon–Price,
extended Powell singular, TRIDIA. Noises: ``relative`` f (1 + 1e-3 u), u ~ U[−1, 1], and
``additive`` f + 1e-3 z, z ~ N(0, 1). Budget 100 (n + 1) evaluations and a wall cap per
run (``--cap N:SECONDS``); the judged point is the one a solver returns, or the best
observed one when the budget or the cap stopped it. Solved at τ: φ(x_out) ≤ τ φ(x0) on
the true function (f* = 0).

Solvers: ``dfo`` (``dfo.minimize(f, x0, maxfev=budget, rng=seed)``, defaults), ``pybobyqa``
(``objfun_has_noise=True``), ``cobyla``, ``powell``, ``nelder-mead`` (``adaptive=True``),
``lbfgsb-fd`` (scipy L-BFGS-B, forward differences with step 1e-3: scipy's default 1e-8 is
swamped by noise 1e-3) and ``cma`` (pycma, σ0 = 0.5·max(1, ‖x0‖∞)).

Each run is a subprocess (``--cell``) killed at cap + 15 s (the cap counts from the first
evaluation; start-up is outside it) if a solver does not return to
its objective; it reports progress to a small file, so a killed run is judged at its best
observed point. Finished runs are appended to ``bench/results/highdim_cells.jsonl``
(a rerun skips them). ``OPENBLAS_NUM_THREADS=1`` for every run (one core each; the
timings compare solvers within one run of this script, on one machine).

Usage:
    nice -n 10 python bench/highdim.py --dims 100,1000 --cap 100:10,1000:20
    python bench/highdim.py --report-only
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CELLS = HERE / "results" / "highdim_cells.jsonl"
SOLVERS = ("dfo", "pybobyqa", "cobyla", "powell", "nelder-mead", "lbfgsb-fd", "cma")
NOISES = ("relative", "additive")
TAUS = (1e-3, 1e-5)
NOISE_LEVEL = 1e-3


# -- problems (vectorized numpy; every one has f* = 0) -------------------------------------
def ext_rosenbrock(x):
    a, b = x[0::2], x[1::2]
    return float(np.sum(100.0 * (b - a * a) ** 2 + (1.0 - a) ** 2))


def broyden_tridiagonal(x):
    xp = np.concatenate([[0.0], x, [0.0]])
    r = (3.0 - 2.0 * x) * x - xp[:-2] - 2.0 * xp[2:] + 1.0
    return float(r @ r)


def ill_quadratic(x):
    """½ Σ d_i (x_i − c_i)², d from 1 to 1e4; c_i = 1 + cos(i)/2 (not a round step from x0 = 0,
    which coordinate-step methods could hit exactly)."""
    i = np.arange(x.size)
    d = 1e4 ** (i / max(x.size - 1, 1))
    return float(0.5 * np.sum(d * (x - 1.0 - 0.5 * np.cos(i)) ** 2))


def trigonometric(x):
    n = x.size
    r = n - np.sum(np.cos(x)) + np.arange(1, n + 1) * (1.0 - np.cos(x)) - np.sin(x)
    return float(r @ r)


def arwhead(x):
    return float(np.sum((x[:-1] ** 2 + x[-1] ** 2) ** 2 - 4.0 * x[:-1] + 3.0))


def dixon_price(x):
    i = np.arange(2, x.size + 1)
    return float((x[0] - 1.0) ** 2 + np.sum(i * (2.0 * x[1:] ** 2 - x[:-1]) ** 2))


def ext_powell(x):
    a, b, c, d = x[0::4], x[1::4], x[2::4], x[3::4]
    return float(np.sum((a + 10 * b) ** 2 + 5 * (c - d) ** 2 + (b - 2 * c) ** 4 + 10 * (a - d) ** 4))


def dqdrtic(x):
    return float(np.sum(x[:-2] ** 2 + 100.0 * x[1:-1] ** 2 + 100.0 * x[2:] ** 2))


def tridia(x):
    i = np.arange(2, x.size + 1)
    return float((x[0] - 1.0) ** 2 + np.sum(i * (2.0 * x[1:] - x[:-1]) ** 2))


PROBLEMS = {
    "ext-rosenbrock": (ext_rosenbrock, lambda n: np.tile([-1.2, 1.0], n // 2)),
    "broyden-tridiagonal": (broyden_tridiagonal, lambda n: -np.ones(n)),
    "ill-quadratic": (ill_quadratic, lambda n: np.zeros(n)),
    "trigonometric": (trigonometric, lambda n: np.full(n, 0.2)),  # MGH start 1/n has f(x0) ~ 1e-4: below the noise
    "arwhead": (arwhead, lambda n: np.ones(n)),
    "dixon-price": (dixon_price, lambda n: np.ones(n)),
    "ext-powell": (ext_powell, lambda n: np.tile([3.0, -1.0, 0.0, 1.0], n // 4)),
    "dqdrtic": (dqdrtic, lambda n: np.full(n, 3.0)),
    "tridia": (tridia, lambda n: np.ones(n)),
}


class Stop(Exception):
    """The budget or the wall cap ended the run."""


class Objective:
    """The noisy objective a solver sees: counts, stops at the budget or the cap, times the
    evaluations, and records the best observed point's true value (to a progress file)."""

    def __init__(self, fun, noise: str, seed: int, budget: int, cap: float, progress: Path):
        self.fun, self.noise, self.budget, self.cap, self.progress = fun, noise, budget, cap, progress
        self.gen = np.random.default_rng(seed + 12345)
        self.nfev, self.f_time, self.best, self.best_true = 0, 0.0, math.inf, math.nan
        self.t0 = time.perf_counter()
        self._last_write = 0.0

    def __call__(self, x) -> float:
        if self.nfev >= self.budget:
            raise Stop("budget")
        now = time.perf_counter()
        if now - self.t0 > self.cap:
            raise Stop("wall cap")
        x = np.asarray(x, dtype=float).ravel()
        phi = self.fun(x)
        v = phi * (1 + NOISE_LEVEL * self.gen.uniform(-1, 1)) if self.noise == "relative" \
            else phi + NOISE_LEVEL * self.gen.standard_normal()
        self.nfev += 1
        self.f_time += time.perf_counter() - now
        if v < self.best:
            self.best, self.best_true = v, phi
            if now - self._last_write > 0.02:
                self.write()
        return float(v)

    def write(self, **extra) -> None:
        row = {"nfev": self.nfev, "best_true": self.best_true, "f_time": self.f_time,
               "wall": time.perf_counter() - self.t0, **extra}
        self.progress.write_text(json.dumps(row))
        self._last_write = time.perf_counter()


def _solve(solver: str, obj: Objective, x0: np.ndarray, budget: int, seed: int):
    """Run one solver; returns the point it returned (None if none)."""
    import scipy.optimize as so

    if solver == "dfo":
        import dfo
        return dfo.minimize(obj, x0, maxfev=budget, rng=seed).x
    if solver == "pybobyqa":
        import pybobyqa
        np.random.seed(seed)
        return pybobyqa.solve(obj, x0, maxfun=budget, objfun_has_noise=True, do_logging=False,
                              print_progress=False).x
    if solver == "cma":
        import cma
        es = cma.CMAEvolutionStrategy(x0, 0.5 * max(1.0, float(np.max(np.abs(x0)))),
                                      {"maxfevals": budget, "seed": seed + 1, "verbose": -9, "tolfun": 1e-16,
                                       "tolx": 1e-16, "tolfunhist": 0, "tolflatfitness": 10**9})
        try:
            es.optimize(obj)
        finally:
            pass
        return es.result.xbest
    method, opts = {
        "cobyla": ("COBYLA", {"maxiter": budget, "tol": 1e-14}),
        "powell": ("Powell", {"maxfev": budget, "xtol": 1e-14, "ftol": 1e-14}),
        "nelder-mead": ("Nelder-Mead", {"maxfev": budget, "xatol": 1e-14, "fatol": 1e-14, "adaptive": True}),
        "lbfgsb-fd": ("L-BFGS-B", {"maxfun": budget, "eps": 1e-3, "ftol": 1e-15, "gtol": 1e-12}),
    }[solver]
    return so.minimize(obj, x0, method=method, options=opts).x


def run_cell(solver: str, problem: str, n: int, noise: str, seed: int, cap: float, progress: Path) -> dict:
    fun, start = PROBLEMS[problem]
    x0 = start(n).astype(float)
    budget = 100 * (n + 1)
    import scipy.optimize  # noqa: F401  (imports before the clock starts: the cap is the solver's time)
    __import__({"dfo": "dfo", "pybobyqa": "pybobyqa", "cma": "cma"}.get(solver, "scipy.optimize"))
    obj = Objective(fun, noise, seed, budget, cap, progress)
    obj.write(started=True)
    x_out, why = None, "returned"
    try:
        x_out = _solve(solver, obj, x0, budget, seed)
    except Stop as exc:
        why = str(exc)
        obj.write()
    except Exception as exc:  # a crashing solver is judged at its best observed point
        why = f"error: {type(exc).__name__}: {exc}"[:160]
    phi_out = obj.best_true
    if x_out is not None and np.all(np.isfinite(x_out)):
        phi_out = fun(np.asarray(x_out, dtype=float))
    wall = time.perf_counter() - obj.t0
    return {"solver": solver, "problem": problem, "n": n, "noise": noise, "seed": seed, "budget": budget,
            "cap": cap, "f0": fun(x0), "phi_out": phi_out, "nfev": obj.nfev, "wall_s": round(wall, 3),
            "f_time_s": round(obj.f_time, 3), "own_us_per_eval": round((wall - obj.f_time) / max(obj.nfev, 1) * 1e6, 2),
            "stopped": why}


def run_in_subprocess(cell: tuple, cap: float) -> dict:
    solver, problem, n, noise, seed = cell
    with tempfile.TemporaryDirectory() as tmp:
        progress = Path(tmp) / "progress.json"
        env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        cmd = [sys.executable, __file__, "--cell", f"{solver},{problem},{n},{noise},{seed}", "--cell-cap", str(cap),
               "--progress", str(progress)]
        t0 = time.perf_counter()
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=cap + 15, env=env, check=False)
            lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
            if lines:
                return json.loads(lines[-1])
            why = f"error: exit {out.returncode}: {out.stderr.strip().splitlines()[-1:] }"[:160]
        except subprocess.TimeoutExpired:
            why = "killed at cap + 15 s"
        fun, start = PROBLEMS[problem]
        last = json.loads(progress.read_text()) if progress.exists() else {}
        return {"solver": solver, "problem": problem, "n": n, "noise": noise, "seed": seed, "budget": 100 * (n + 1),
                "cap": cap, "f0": fun(start(n).astype(float)), "phi_out": last.get("best_true", math.nan),
                "nfev": last.get("nfev", 0), "wall_s": round(time.perf_counter() - t0, 3),
                "f_time_s": last.get("f_time"), "own_us_per_eval": None, "stopped": why}


def load(path: Path) -> list[dict]:
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()] if path.exists() else []


def solved(r: dict, tau: float) -> bool:
    phi = r["phi_out"]
    return phi is not None and math.isfinite(phi) and phi <= tau * r["f0"]


def report(rows: list[dict], cmd: str) -> str:
    out = [f"# High-dimensional noisy problems ({len(PROBLEMS)} problems, relative and additive noise {NOISE_LEVEL:g})",
           "", f"Command: `{cmd}`", "",
           "Budget 100 (n + 1) evaluations, one seed (0), wall cap per run as in the column; solved: φ(x_out) ≤ τ φ(x0) "
           "on the true function (f* = 0 for every problem). `capped`: runs the wall cap stopped before the budget. "
           "`own µs/eval`: the solver's wall time outside the objective, per evaluation (median). "
           "Timings: one core per run (OPENBLAS_NUM_THREADS=1) on a 2-core machine shared with other jobs; they "
           "compare solvers within this table only.", ""]
    for n in sorted({r["n"] for r in rows}):
        out += [f"## n = {n}", "", "| noise | solver | runs | solved τ=1e-3 | solved τ=1e-5 | capped | median wall s | "
                "median own µs/eval | median nfev |", "|---|---|---|---|---|---|---|---|---|"]
        for noise in NOISES:
            for s in SOLVERS:
                sel = [r for r in rows if r["n"] == n and r["noise"] == noise and r["solver"] == s]
                if not sel:
                    continue
                own = [r["own_us_per_eval"] for r in sel if r.get("own_us_per_eval") is not None]
                capped = sum(r["stopped"] in ("wall cap", "killed at cap + 15 s") for r in sel)
                out.append(f"| {noise} | {s} | {len(sel)} | {sum(solved(r, 1e-3) for r in sel)} | "
                           f"{sum(solved(r, 1e-5) for r in sel)} | {capped} | {np.median([r['wall_s'] for r in sel]):.2f} | "
                           f"{np.median(own) if own else float('nan'):.1f} | {int(np.median([r['nfev'] for r in sel]))} |")
        out.append("")
    out += ["## Per problem (fraction of the gap left, φ(x_out)/φ(x0))", ""]
    for n in sorted({r["n"] for r in rows}):
        for noise in NOISES:
            sel = [r for r in rows if r["n"] == n and r["noise"] == noise]
            if not sel:
                continue
            solvers = [s for s in SOLVERS if any(r["solver"] == s for r in sel)]
            out += [f"n = {n}, {noise}:", "", "| problem | " + " | ".join(solvers) + " |",
                    "|---" * (len(solvers) + 1) + "|"]
            for p in PROBLEMS:
                cells = []
                for s in solvers:
                    r = next((r for r in sel if r["problem"] == p and r["solver"] == s), None)
                    cells.append("" if r is None or r["phi_out"] is None else f"{r['phi_out'] / r['f0']:.1e}")
                out.append(f"| {p} | " + " | ".join(cells) + " |")
            out.append("")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dims", default="100,1000")
    ap.add_argument("--noises", default=",".join(NOISES))
    ap.add_argument("--solvers", default=",".join(SOLVERS))
    ap.add_argument("--problems", default=",".join(PROBLEMS))
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--cap", default="100:10,1000:20,10000:120", help="wall cap per run, n:seconds")
    ap.add_argument("--cells", default=str(CELLS))
    ap.add_argument("--out", default=str(HERE / "results" / "highdim.md"))
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument("--notes", default="", help="a markdown file appended to the results file")
    ap.add_argument("--cell", default="", help=argparse.SUPPRESS)
    ap.add_argument("--cell-cap", type=float, default=0.0, help=argparse.SUPPRESS)
    ap.add_argument("--progress", default="", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.cell:
        solver, problem, n, noise, seed = args.cell.split(",")
        print(json.dumps(run_cell(solver, problem, int(n), noise, int(seed), args.cell_cap, Path(args.progress))))
        return 0
    caps = {int(k): float(v) for k, v in (kv.split(":") for kv in args.cap.split(","))}
    cells_path = Path(args.cells)
    rows = load(cells_path)
    done = {(r["solver"], r["problem"], r["n"], r["noise"], r["seed"]) for r in rows}
    todo = [(s, p, int(n), nz, int(sd)) for n in args.dims.split(",") for nz in args.noises.split(",")
            for p in args.problems.split(",") for s in args.solvers.split(",") for sd in args.seeds.split(",")]
    todo = [c for c in todo if c not in done]
    if not args.report_only:
        print(f"{len(todo)} runs to do ({len(done)} done) -> {cells_path}", file=sys.stderr)
        for k, cell in enumerate(todo, 1):
            r = run_in_subprocess(cell, caps[cell[2]])
            with cells_path.open("a") as fh:
                fh.write(json.dumps(r) + "\n")
            rows.append(r)
            gap = r["phi_out"] / r["f0"] if r["phi_out"] is not None else float("nan")
            print(f"[{k}/{len(todo)}] {cell} gap {gap:.2e} nfev {r['nfev']} wall {r['wall_s']:.1f}s {r['stopped']}",
                  file=sys.stderr, flush=True)
    cmd = "python bench/highdim.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text = report(rows, cmd.strip())
    if args.notes:
        text += "\n" + Path(args.notes).read_text().strip()
    Path(args.out).write_text(text + "\n")
    print(Path(args.out).read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
