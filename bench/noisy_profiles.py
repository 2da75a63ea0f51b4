"""Noisy Moré–Wild profiles: dfo's defaults against Py-BOBYQA and scipy (issue 9).

All 53 Moré–Wild problems (:func:`dfo.problems.more_wild_problems`) × noise models
× seeds, budget ``B (n + 1)`` evaluations (B = 100 by default). Every solver sees the
noisy objective through one :class:`dfo.study.profiles.CountingObjective`, which counts
evaluations and raises at the budget for every solver alike; the point judged is
the one the solver returns, or, when the budget stopped it, the point with the
lowest observed value (what it would have returned).

Convergence test on the TRUE (noise-free) function φ at the judged point x_out:

    φ(x_out) − f* ≤ τ (φ(x0) − f*),   τ ∈ {1e-1, 1e-3, 1e-5},

with f* the smallest true value known for the problem: the published minimum where
there is one, a gradient-based reference solve (scipy ``least_squares`` with the exact
Jacobian, and L-BFGS-B with the exact gradient) and any true value recorded by any
run in the cache. The table counts solved (problem, seed) instances at the returned
point. The data profiles (Moré & Wild 2009) use the same test along the run: t is the
first evaluation count at which the observed-best point passes it, d_s(α) is the
fraction of instances with t ≤ α (n + 1).

Solvers (``--solvers``):

* ``dfo-default``: ``dfo.minimize(f, x0, maxfev=budget, rng=seed)`` — no noise arguments;
* ``dfo-best``: the preset named in ``DFO_BEST`` (stated in the results file);
* ``dfo-averaging``: ``dfo.minimize(f, x0, maxfev=budget, rng=seed, averaging=True)`` (sample
  averaging when the noise hides the progress: an option, measured here);
* ``pybobyqa``: ``pybobyqa.solve(f, x0, maxfun=budget, objfun_has_noise=True)`` (False on
  the noise-free setting);
* ``nelder-mead``, ``powell``, ``cobyla``: ``scipy.optimize.minimize`` with the budget as
  their evaluation limit and tight tolerances (so the budget, not a tolerance, ends them).

Noises (``--noises``): ``relative`` f(1 + 1e-3 u), u ~ U[−1, 1] (Moré–Wild eq. 4.2);
``wild3`` f(1 + 1e-3 ψ(x)) deterministic (eq. 4.3); ``gaussian`` f + 1e-3 z, z ~ N(0, 1);
``additive`` f + 1e-3 u (bounded, |e| ≤ ε_f: the model of Berahas et al.'s analysis);
``nonvanishing`` f + 1e-3 |φ(x0)| u, the level relative noise has at the start, frozen, so
the noise does not shrink at the optimum: relative and nonvanishing differ only there (the
problem sets no absolute scale for it; τ = 1e-3 asks for φ − f* about the noise bound);
``none`` (the smooth check). ``gaussian`` and ``additive`` do not vanish either, but their
level is absolute, so their difficulty follows each problem's scale.

Each run is appended to a JSON-lines cache as it finishes; a rerun skips the runs
already there (``--fresh SOLVERS`` drops those solvers' cached rows first).

Usage (the committed figures):
    nice -n 10 python bench/noisy_profiles.py --jobs 2
    python bench/noisy_profiles.py --report-only        # table + PNG from the cache
Subsets: ``--problems 0-9,20 --seeds 1 --noises wild3 --solvers dfo-default,pybobyqa``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from dfo.problems import AdditiveGaussian, AdditiveUniform, RelativeUniform, Wild3, more_wild_problems
from dfo.study.profiles import BudgetExhausted, CountingObjective, data_profile

HERE = Path(__file__).resolve().parent
#: name -> (noise model, level, whether the level is relative to |φ(x0)|)
NOISES = {"relative": (RelativeUniform, 1e-3, False), "wild3": (Wild3, 1e-3, False),
          "gaussian": (AdditiveGaussian, 1e-3, False), "additive": (AdditiveUniform, 1e-3, False),
          "nonvanishing": (AdditiveUniform, 1e-3, True), "none": (None, 0.0, False)}
SOLVERS = ("dfo-default", "dfo-best", "dfo-averaging", "pybobyqa", "nelder-mead", "powell", "cobyla")
TAUS = (1e-1, 1e-3, 1e-5)
#: dfo's best preset on this bench (options passed to dfo.minimize; no noise arguments). Picked on the
#: even-indexed problems, seed 0, three noises (solved at τ = 1e-1/1e-3/1e-5, of 81): central-orthogonal
#: 75/70/52, default 75/70/53 (the same runs as central-interpolation), cfd 74/70/52, interpolation
#: 74/64/41, orthogonal with d = −g 69/39/27 (all with the default L-BFGS direction unless said).
DFO_BEST = {"estimator": "central-orthogonal"}


def _objective(problem, noise: str, seed: int):
    cls, eps, scaled = NOISES[noise]
    if cls is None:
        return problem.fun
    if scaled:  # the level relative noise has at x0, frozen: it does not shrink towards the optimum
        eps *= abs(float(problem.fun(np.asarray(problem.x0, dtype=float))))
    return cls(problem.fun, eps, rng=seed)


def _run_solver(solver: str, obj: CountingObjective, x0: np.ndarray, budget: int, noisy: bool, seed: int,
                best: dict):
    """Run one solver on ``obj``; returns (x it returned or None, message)."""
    import scipy.optimize

    if solver.startswith("dfo-"):
        import dfo
        opts = {"dfo-default": {}, "dfo-averaging": {"averaging": True}}.get(solver, best)
        res = dfo.minimize(obj, x0, maxfev=budget, rng=seed, **opts)
        return res.x, str(res.message)
    if solver == "pybobyqa":
        import pybobyqa
        np.random.seed(seed)  # Py-BOBYQA's restarts draw from numpy's global generator
        res = pybobyqa.solve(obj, x0, maxfun=budget, objfun_has_noise=noisy, do_logging=False,
                             print_progress=False)
        return (None if res.x is None else res.x), str(res.msg)
    method, opts = {
        "nelder-mead": ("Nelder-Mead", {"maxfev": budget, "xatol": 1e-14, "fatol": 1e-14}),
        "powell": ("Powell", {"maxfev": budget, "xtol": 1e-14, "ftol": 1e-14}),
        "cobyla": ("COBYLA", {"maxiter": budget, "tol": 1e-14}),
    }[solver]
    res = scipy.optimize.minimize(obj, x0, method=method, options=opts)
    return res.x, str(res.message)


def run_one(solver: str, index: int, noise: str, seed: int, budget_gradients: int, best: dict | None = None) -> dict:
    """One run: the returned point's true value and the observed-best trajectory
    (``best``: the dfo-best options; None means the module's ``DFO_BEST`` at call time)."""
    best = DFO_BEST if best is None else best
    problem = more_wild_problems()[index]
    budget = budget_gradients * (problem.n + 1)
    obj = CountingObjective(_objective(problem, noise, seed), budget, truth=problem.fun)
    x0 = np.array(problem.x0, dtype=float)
    t0 = time.perf_counter()
    x_out, message = None, "budget exhausted"
    try:
        x_out, message = _run_solver(solver, obj, x0, budget, noise != "none", seed, best)
    except BudgetExhausted:
        pass
    except Exception as exc:  # a crashing solver is a failed run from its last evaluation on
        message = f"error: {type(exc).__name__}: {exc}"[:200]
    if x_out is None or not np.all(np.isfinite(x_out)):
        x_out = obj.best_x if obj.best_x is not None else x0
    phi_out = float(problem.fun(np.asarray(x_out, dtype=float)))
    return {"solver": solver, "problem": problem.name, "index": index, "n": problem.n, "noise": noise,
            "seed": seed, "budget": budget, "nfev": len(obj.values), "f0": float(problem.fun(x0)),
            "phi_out": phi_out if math.isfinite(phi_out) else None,
            "trajectory": thin([[k, v if math.isfinite(v) else None] for k, v in obj.trajectory]),
            "message": message, "time_s": round(time.perf_counter() - t0, 4),
            **({"options": best} if solver == "dfo-best" else {})}


def thin(trajectory: list) -> list:
    """Keep the entries that lower the true value: the first pass of any test is among them."""
    out, low = [], math.inf
    for k, v in trajectory:
        if v is not None and v < low:
            out.append([k, v])
            low = v
    return out


def reference_minimum(problem) -> float:
    """Smallest true value from the published f_opt and two exact-derivative local solves."""
    import scipy.optimize

    x0 = np.array(problem.x0, dtype=float)
    vals = [float(problem.fun(x0))]
    if problem.f_opt is not None:
        vals.append(float(problem.f_opt))
    try:
        if problem.is_least_squares:
            r = scipy.optimize.least_squares(problem.residual, x0, jac=problem.jacobian, xtol=1e-15,
                                             ftol=1e-15, gtol=1e-15, max_nfev=20000)
            vals.append(float(problem.fun(r.x)))
        r = scipy.optimize.minimize(problem.fun, x0, jac=problem.grad, method="L-BFGS-B",
                                    options={"maxiter": 20000, "ftol": 1e-16, "gtol": 1e-12})
        vals.append(float(problem.fun(r.x)))
    except Exception:  # a reference solve that fails only loses one candidate
        pass
    return min(v for v in vals if math.isfinite(v))


# -- cache ----------------------------------------------------------------------
def _key(r: dict) -> tuple:
    return (r["solver"], r["index"], r["noise"], r["seed"])


def _open(path: Path, mode: str):
    """Text file handle; ``.gz`` paths are gzip members (appending adds a member)."""
    return gzip.open(path, mode + "t") if path.suffix == ".gz" else path.open(mode)


def load_cache(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with _open(path, "r") as fh:
        return [json.loads(line) for line in fh if line.strip()]


# -- evaluation -----------------------------------------------------------------
def f_star(rows: list[dict], problems) -> dict[str, float]:
    """f* per problem: the reference minimum and every true value any run recorded."""
    best = {p.name: reference_minimum(p) for p in problems}
    for r in rows:
        cands = [r["phi_out"]] + [v for _, v in r["trajectory"]]
        cands = [c for c in cands if c is not None and math.isfinite(c)]
        if cands and r["problem"] in best:
            best[r["problem"]] = min(best[r["problem"]], min(cands))
    return best


def solved_at_return(r: dict, fstar: float, tau: float) -> bool:
    phi = r["phi_out"]
    return phi is not None and phi - fstar <= tau * (r["f0"] - fstar)


def solve_time(r: dict, fstar: float, tau: float) -> float:
    """First evaluation count at which the observed-best point passes the test (∞ if never)."""
    target = fstar + tau * (r["f0"] - fstar)
    if r["f0"] <= target:
        return 1.0
    for k, v in r["trajectory"]:
        if v is not None and v <= target:
            return float(k)
    return math.inf


def summarize(rows: list[dict], fstars: dict, solvers, noises) -> list[dict]:
    out = []
    for noise in noises:
        for s in solvers:
            rs = [r for r in rows if r["solver"] == s and r["noise"] == noise]
            if not rs:
                continue
            row = {"noise": noise, "solver": s, "runs": len(rs)}
            for tau in TAUS:
                row[f"solved τ={tau:g}"] = sum(solved_at_return(r, fstars[r["problem"]], tau) for r in rs)
            row["errors"] = sum(r["message"].startswith("error:") for r in rs)
            row["median s/run"] = round(float(np.median([r["time_s"] for r in rs])), 3)
            out.append(row)
    return out


def plot(rows: list[dict], fstars: dict, solvers, noises, budget_gradients: int, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    alphas = np.linspace(0, budget_gradients, 201)
    fig, axes = plt.subplots(len(noises), len(TAUS), figsize=(4.2 * len(TAUS), 3.4 * len(noises)),
                             squeeze=False, sharex=True, sharey=True)
    for i, noise in enumerate(noises):
        for j, tau in enumerate(TAUS):
            ax = axes[i][j]
            for k, s in enumerate(solvers):
                rs = [r for r in rows if r["solver"] == s and r["noise"] == noise]
                if not rs:
                    continue
                times = {(r["problem"], r["seed"]): {s: solve_time(r, fstars[r["problem"]], tau)} for r in rs}
                dims = {(r["problem"], r["seed"]): r["n"] for r in rs}
                style = ":" if s.endswith("-before") else ("-." if s == "dfo-averaging" else
                                                           "-" if s.startswith("dfo") else "--")
                ax.plot(alphas, data_profile(times, dims, s, alphas), style, color=plt.get_cmap("tab10")(k % 10),
                        label=s, lw=1.6)
            ax.set_title(f"{noise}, τ = {tau:g}", fontsize=10)
            ax.set_ylim(0, 1.02)
            ax.grid(alpha=0.3)
            if i == len(noises) - 1:
                ax.set_xlabel("evaluations / (n + 1)")
            if j == 0:
                ax.set_ylabel("fraction solved d_s(α)")
    # one legend for every panel, below them: it covers no curve
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 5), fontsize=9, frameon=False)
    n_inst = len({(r["problem"], r["seed"]) for r in rows})
    fig.suptitle(f"Moré–Wild data profiles on the true function ({n_inst} problem × seed instances per noise)",
                 fontsize=11)
    rows_of_legend = -(-len(labels) // 5)
    height = fig.get_figheight()  # inches: a legend row takes about 0.3 of them, the title 0.35
    fig.tight_layout(rect=(0, (0.3 * rows_of_legend + 0.1) / height, 1, 1 - 0.35 / height))
    fig.savefig(path, dpi=90)
    plt.close(fig)


def markdown(summary: list[dict]) -> str:
    cols = list(summary[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in summary]
    return "\n".join(lines)


def _git_head() -> str:
    """The commit of the dfo package being measured (it may be another worktree)."""
    import dfo
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=Path(dfo.__file__).parent,
                              capture_output=True, text=True, timeout=10).stdout.strip()
    except Exception:
        return "unknown"


def _parse_indices(text: str, count: int) -> list[int]:
    if text == "all":
        return list(range(count))
    out = []
    for part in text.split(","):
        part = part.strip()
        if "-" in part:
            a, b = part.split("-")
            out += list(range(int(a), int(b) + 1))
        elif part:
            out.append(int(part))
    bad = [i for i in out if not 0 <= i < count]
    if bad:
        raise SystemExit(f"noisy_profiles: problem indices {bad} out of range 0-{count - 1}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--problems", default="all", help="indices into the 53 problems: all | 0-9,20")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    ap.add_argument("--noises", default="relative,wild3,gaussian,additive,nonvanishing", help=f"from {', '.join(NOISES)}")
    ap.add_argument("--solvers", default=",".join(SOLVERS), help=f"from {', '.join(SOLVERS)}")
    ap.add_argument("--jobs", type=int, default=1, help="parallel runs (joblib processes)")
    ap.add_argument("--budget", type=int, default=100, help="budget in simplex gradients: B (n + 1)")
    ap.add_argument("--cache", default=str(HERE / "results" / "noisy_profiles_runs.jsonl.gz"),
                    help="JSON-lines cache of the runs (.gz: gzip)")
    ap.add_argument("--out", default=str(HERE / "results" / "noisy_profiles"),
                    help="stem of the .md and .png outputs")
    ap.add_argument("--fresh", default="", help="solvers whose cached runs are dropped and re-run")
    ap.add_argument("--best-options", default="", help="JSON dict of dfo.minimize options for dfo-best "
                    f"(default {json.dumps(DFO_BEST)})")
    ap.add_argument("--report-only", action="store_true", help="only write the table and PNG from the cache")
    ap.add_argument("--notes", default="", help="a markdown file appended to the results file")
    ap.add_argument("--baseline", default="", help="another cache (e.g. an older dfo): its dfo rows are shown "
                    "as '<solver>-before' next to the current ones")
    args = ap.parse_args(argv)

    best = dict(DFO_BEST)
    if args.best_options:
        try:
            best = json.loads(args.best_options)
        except json.JSONDecodeError as exc:
            raise SystemExit(f"noisy_profiles: --best-options is not a JSON object: {exc}") from None
        if not isinstance(best, dict):
            raise SystemExit("noisy_profiles: --best-options must be a JSON object")
    problems = more_wild_problems()
    indices = _parse_indices(args.problems, len(problems))
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    noises = [s.strip() for s in args.noises.split(",") if s.strip()]
    solvers = [s.strip() for s in args.solvers.split(",") if s.strip()]
    for name, known in (("noise", NOISES), ("solver", SOLVERS)):
        for v in noises if name == "noise" else solvers:
            if v not in known:
                raise SystemExit(f"noisy_profiles: unknown {name} {v!r}; known: {', '.join(known)}")
    cache = Path(args.cache)
    cache.parent.mkdir(parents=True, exist_ok=True)
    rows = load_cache(cache)
    fresh = {s.strip() for s in args.fresh.split(",") if s.strip()}
    if fresh:
        rows = [r for r in rows if r["solver"] not in fresh]
        with _open(cache, "w") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in rows)
    done = {_key(r) for r in rows}
    tasks = [(s, i, nz, sd, args.budget, best) for nz in noises for sd in seeds for i in indices for s in solvers
             if (s, i, nz, sd) not in done]
    if not args.report_only and tasks:
        print(f"{len(tasks)} runs to do ({len(done)} cached) -> {cache}", file=sys.stderr)
        t0 = time.perf_counter()
        head = _git_head()
        with _open(cache, "a") as fh:
            if args.jobs > 1:
                from joblib import Parallel, delayed
                results = Parallel(n_jobs=args.jobs, return_as="generator_unordered", batch_size=1)(
                    delayed(run_one)(*t) for t in tasks)
            else:
                results = (run_one(*t) for t in tasks)
            for k, r in enumerate(results, 1):
                r["commit"] = head
                fh.write(json.dumps(r) + "\n")
                fh.flush()
                rows.append(r)
                if k % 50 == 0 or k == len(tasks):
                    print(f"  {k}/{len(tasks)} runs, {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    if args.baseline:
        before = [dict(r, solver=r["solver"] + "-before") for r in load_cache(Path(args.baseline))
                  if r["solver"].startswith("dfo")]
        names = list(dict.fromkeys(r["solver"] for r in before))
        rows = rows + before
        solvers = [x for s in solvers for x in ([s] + [b for b in names if b == s + "-before"])]
    sel = [r for r in rows if r["index"] in set(indices) and r["seed"] in set(seeds)
           and r["noise"] in noises and r["solver"] in solvers]
    if not sel:
        print("noisy_profiles: no runs to report", file=sys.stderr)
        return 1
    fstars = f_star(rows, [problems[i] for i in indices])
    summary = summarize(sel, fstars, solvers, noises)
    out = Path(args.out)
    plot(sel, fstars, solvers, noises, args.budget, out.with_suffix(".png"))
    cmd = "python bench/noisy_profiles.py " + " ".join(sys.argv[1:] if argv is None else argv)
    n_inst = len(indices) * len(seeds)
    text = [f"# Noisy Moré–Wild profiles ({len(indices)} problems × {len(seeds)} seeds = {n_inst} instances per noise)",
            "", f"Command: `{cmd.strip()}`", "",
            f"Budget {args.budget} (n + 1) evaluations. Solved: φ(x_out) − f* ≤ τ (φ(x0) − f*) on the true "
            "function at the point each solver returns. dfo-best = `dfo.minimize(f, x0, "
            + ", ".join(f"{k}={v!r}" for k, v in DFO_BEST.items()) + ")`.",
            f"dfo commit of the dfo rows: {sorted({r.get('commit', '?') for r in sel if r['solver'].startswith('dfo')})}.",
            "", markdown(summary), "", f"Data profiles: `{out.with_suffix('.png').name}`."]
    if args.notes:
        text += ["", Path(args.notes).read_text().strip()]
    out.with_suffix(".md").write_text("\n".join(text) + "\n")
    print(out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
