"""Data and performance profiles (Moré & Wild 2009) of line-search SGD with each
estimator on the Moré–Wild problem set, next to scipy's Nelder–Mead, Powell and
COBYLA (and Py-BOBYQA when installed), at the same evaluation budget.

Every solver sees the objective through :class:`CountingObjective`, which counts
evaluations, records every observed value and stops the run (by raising
:class:`BudgetExhausted`) at the budget, so all solvers are measured the same way
whatever their own notion of a limit.

Convergence test (Moré & Wild 2009, eq. 2.2): a solver solves problem p at
tolerance τ after t evaluations when its best observed value satisfies
f(x) ≤ f_L + τ (f(x0) − f_L), with f_L the smallest value observed by any solver
on p. With t_{p,s} the first such t (∞ if never):

* data profile d_s(α) = |{p : t_{p,s} / (n_p + 1) ≤ α}| / |P|  (α in simplex gradients);
* performance profile ρ_s(α) = |{p : t_{p,s} / min_s t_{p,s} ≤ α}| / |P|.

Settings: ``smooth`` (the problems as given) and ``noisy`` (Wild3 deterministic
relative noise, ε = 1e-3: f (1 + ε ψ(x)), Moré & Wild's eq. 4.3); the line-search
methods get ε_f = ε |f(x0)| (the noise bound at the start point).
"""

from __future__ import annotations

import importlib.util
import math
import time
import warnings
from dataclasses import dataclass

import numpy as np

from ..problems import Wild3, more_wild_problems


class BudgetExhausted(Exception):
    """The evaluation budget of a profile run is spent."""


class CountingObjective:
    """Counts evaluations, records observed values and the incumbent; raises at ``maxfev``.

    The incumbent is the point with the lowest *observed* value so far (what a solver
    stopped by the budget would return). With ``truth`` (the noise-free function), the
    true value at each new incumbent is recorded in ``trajectory`` as
    ``(evaluation count, truth(incumbent))`` pairs, so data profiles can be judged on
    the true function while every solver only ever sees the noisy one.
    """

    def __init__(self, fun, maxfev: int, truth=None) -> None:
        self.fun = fun
        self.maxfev = int(maxfev)
        self.truth = truth
        self.values: list[float] = []
        self.best_value = math.inf
        self.best_x: np.ndarray | None = None
        self.trajectory: list[tuple[int, float]] = []

    def __call__(self, x, *args) -> float:
        if len(self.values) >= self.maxfev:
            raise BudgetExhausted
        x = np.array(x, dtype=float)
        v = float(self.fun(x))
        self.values.append(v if math.isfinite(v) else math.inf)
        if v < self.best_value:
            self.best_value, self.best_x = v, x
            if self.truth is not None:
                self.trajectory.append((len(self.values), float(self.truth(x))))
        return v


@dataclass(frozen=True)
class Solver:
    """One profiled solver: ``kind`` is ``dfo``, ``scipy`` or ``bobyqa``."""

    name: str
    kind: str
    estimator: str | None = None
    direction: str = "gradient"
    method: str | None = None


def default_solvers(include_bobyqa: bool = True) -> list[Solver]:
    """Line-search SGD per estimator, its L-BFGS variant for three, scipy baselines, Py-BOBYQA."""
    out = [Solver(f"ls-{e}", "dfo", e) for e in ("ffd", "cfd", "gaussian", "sphere", "orthogonal", "interpolation")]
    out += [Solver(f"lbfgs-{e}", "dfo", e, "lbfgs") for e in ("ffd", "orthogonal", "interpolation")]
    out += [Solver(m.lower().replace("-", ""), "scipy", method=m) for m in ("Nelder-Mead", "Powell", "COBYLA")]
    if include_bobyqa:
        if importlib.util.find_spec("pybobyqa") is None:
            warnings.warn("Py-BOBYQA is not installed, so the profiles have no 'pybobyqa' curve: "
                          "pip install \"dfo-toolkit[bench]\" (or Py-BOBYQA) to compare with it",
                          MissingPeerWarning, stacklevel=2)
        else:
            out.append(Solver("pybobyqa", "bobyqa"))
    return out


class MissingPeerWarning(UserWarning):
    """A peer solver of a profile study is not installed, so its curve is missing (said, never silent)."""


@dataclass(frozen=True, kw_only=True)
class ProfileConfig:
    """Profile run settings.

    Args:
        budget_gradients: budget in simplex gradients: maxfev = budget_gradients (n + 1).
        taus: convergence tolerances τ.
        settings: ``"smooth"`` and/or ``"noisy"``.
        noise_eps: relative level of the Wild3 noise.
        problems: indices into :func:`more_wild_problems` (None = all 53).
        solvers: solver names to keep (None = all of :func:`default_solvers`).
        jobs: joblib workers over runs (1 = serial).
    """

    budget_gradients: int = 100
    taus: tuple[float, ...] = (1e-1, 1e-3, 1e-5)
    settings: tuple[str, ...] = ("smooth", "noisy")
    noise_eps: float = 1e-3
    problems: tuple[int, ...] | None = None
    solvers: tuple[str, ...] | None = None
    jobs: int = 2
    seed: int = 0

    @classmethod
    def quick(cls, seed: int = 0) -> "ProfileConfig":
        return cls(budget_gradients=20, problems=tuple(range(0, 53, 9)), settings=("smooth", "noisy"),
                   solvers=("ls-orthogonal", "ls-gaussian", "lbfgs-interpolation", "neldermead"), jobs=1, seed=seed)


def _objective(problem, setting: str, eps: float):
    if setting == "smooth":
        return problem.fun
    if setting == "noisy":
        return Wild3(problem.fun, eps)
    raise ValueError(f"unknown profile setting {setting!r}; known: smooth, noisy")


def run_one(solver: Solver, problem, setting: str, budget: int, eps: float, seed: int) -> dict:
    """Run ``solver`` on ``problem`` within ``budget`` evaluations; the value history."""
    import scipy.optimize

    fun = _objective(problem, setting, eps)
    f0 = float(fun(problem.x0))
    obj = CountingObjective(fun, budget)
    x0 = np.array(problem.x0, dtype=float)
    t0 = time.perf_counter()
    message = "budget"
    try:
        if solver.kind == "dfo":
            from ..minimize import minimize
            eps_f = eps * abs(f0) if setting == "noisy" else 0.0
            res = minimize(obj, x0, estimator=solver.estimator, direction=solver.direction, maxfev=budget,
                           eps_f=eps_f, rng=seed)
            message = res.message
        elif solver.kind == "scipy":
            opts = {"Nelder-Mead": {"maxfev": budget, "xatol": 1e-14, "fatol": 1e-14},
                    "Powell": {"maxfev": budget, "xtol": 1e-14, "ftol": 1e-14},
                    "COBYLA": {"maxiter": budget, "tol": 1e-14}}[solver.method]
            res = scipy.optimize.minimize(obj, x0, method=solver.method, options=opts)
            message = str(res.message)
        else:
            import pybobyqa
            res = pybobyqa.solve(obj, x0, maxfun=budget, objfun_has_noise=setting == "noisy",
                                 do_logging=False, print_progress=False)
            message = str(res.msg)
    except BudgetExhausted:
        pass
    except Exception as exc:  # a crashing solver is a failed run from that point on; reported
        message = f"error: {type(exc).__name__}: {exc}"[:200]
    return {"solver": solver.name, "problem": problem.name, "n": problem.n, "setting": setting,
            "f0": f0, "values": np.asarray(obj.values), "nfev": len(obj.values), "message": message,
            "time_s": time.perf_counter() - t0}


def run_profiles(config: ProfileConfig, *, progress: bool = False) -> list[dict]:
    """All (setting, solver, problem) runs, in a deterministic order."""
    problems = more_wild_problems()
    if config.problems is not None:
        problems = [problems[i] for i in config.problems]
    solvers = default_solvers()
    if config.solvers is not None:
        unknown = set(config.solvers) - {s.name for s in solvers}
        if unknown:
            raise ValueError(f"unknown profile solvers {sorted(unknown)}; known: {[s.name for s in solvers]}")
        solvers = [s for s in solvers if s.name in config.solvers]
    tasks = [(s, p, setting, config.budget_gradients * (p.n + 1), config.noise_eps, config.seed)
             for setting in config.settings for s in solvers for p in problems]
    if config.jobs > 1:
        from joblib import Parallel, delayed
        return list(Parallel(n_jobs=config.jobs, verbose=5 if progress else 0)(delayed(run_one)(*t) for t in tasks))
    it = tasks
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(tasks, unit="run", desc="profiles")
    return [run_one(*t) for t in it]


def solve_times(runs: list[dict], tau: float) -> dict[tuple[str, str], dict[str, float]]:
    """t_{p,s} per (setting, problem) -> {solver: evaluations to solve (∞ if not)}."""
    by_prob: dict = {}
    for r in runs:
        by_prob.setdefault((r["setting"], r["problem"]), []).append(r)
    out = {}
    for key, rs in by_prob.items():
        f_l = min([float(np.min(r["values"])) for r in rs if r["values"].size] + [rs[0]["f0"]])
        f0 = rs[0]["f0"]
        target = f_l + tau * (f0 - f_l)
        times = {}
        for r in rs:
            hit = np.flatnonzero(r["values"] <= target)
            times[r["solver"]] = float(hit[0] + 1) if hit.size and f0 > f_l else (math.inf if f0 > f_l else 1.0)
        out[key] = times
    return out


def data_profile(times: dict, dims: dict, solver: str, alphas: np.ndarray) -> np.ndarray:
    """d_s(α): fraction of problems solved within α (n_p + 1) evaluations."""
    t = np.array([times[k][solver] / (dims[k] + 1) for k in times])
    return np.array([np.mean(t <= a) for a in alphas])


def performance_profile(times: dict, solver: str, alphas: np.ndarray) -> np.ndarray:
    """ρ_s(α): fraction of problems with t_{p,s} ≤ α min_s t_{p,s}."""
    ratios = []
    for k, ts in times.items():
        best = min(ts.values())
        ratios.append(ts[solver] / best if math.isfinite(best) else math.inf)
    ratios = np.array(ratios)
    return np.array([np.mean(ratios <= a) for a in alphas])


#: colours of the baselines (the dfo solvers take their estimator's colour, report.estimator_colours)
BASELINE_COLOURS = {"neldermead": "#000000", "powell": "#999999", "cobyla": "#a6761d", "pybobyqa": "#1b9e77"}


def solver_style(name: str) -> tuple[str, object]:
    """(line style, colour) of a profiled solver, the same in every figure: ``ls-E`` solid and ``lbfgs-E``
    dashed in estimator E's colour, baselines dotted in their own colours."""
    from .report import estimator_colours

    if name.startswith(("ls-", "lbfgs-")):
        kind, est = name.split("-", 1)
        return ("-" if kind == "ls" else "--"), estimator_colours([est])[est]
    return ":", BASELINE_COLOURS.get(name, "#17becf")


def plot_profiles(times_by_tau: dict, dims: dict, solvers: list[str], settings: list[str], budget_gradients: int,
                  out) -> tuple[list, list[dict]]:
    """One PNG per (setting, τ): data profile (left) and performance profile (right); returns (paths, summary).

    ``times_by_tau[τ][(setting, problem)][solver]`` are the evaluations to solve (∞: not solved);
    ``dims[(setting, problem)]`` the problem's n.
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from pathlib import Path

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary, paths = [], []
    for tau, times in times_by_tau.items():
        for setting in settings:
            sub = {k[1]: v for k, v in times.items() if k[0] == setting}
            sub_dims = {k[1]: n for k, n in dims.items() if k[0] == setting}
            alphas_d = np.linspace(0, budget_gradients, 201)
            alphas_p = np.logspace(0, 2, 200)
            fig, (a1, a2) = plt.subplots(1, 2, figsize=(13, 4.6))
            for s in solvers:
                style, color = solver_style(s)
                a1.plot(alphas_d, data_profile(sub, sub_dims, s, alphas_d), style, color=color, label=s, lw=1.4)
                a2.plot(alphas_p, performance_profile(sub, s, alphas_p), style, color=color, lw=1.4)
                marks = sorted({a for a in (10, 25, 50) if a < budget_gradients} | {budget_gradients})
                d = data_profile(sub, sub_dims, s, np.array(marks, dtype=float))
                summary.append({"setting": setting, "tau": tau, "solver": s,
                                **{f"solved@{a}": float(v) for a, v in zip(marks, d)}})
            a1.set_xlabel("simplex gradients α (evaluations / (n + 1))")
            a1.set_ylabel("fraction of problems solved d_s(α)")
            a1.set_title(f"data profile, {setting}, τ = {tau:g}", fontsize=10)
            a2.set_xscale("log")
            a2.set_xlabel("performance ratio α")
            a2.set_ylabel("ρ_s(α)")
            a2.set_title(f"performance profile, {setting}, τ = {tau:g}", fontsize=10)
            for ax in (a1, a2):
                ax.set_ylim(-0.02, 1.02)
                ax.grid(alpha=0.3)
            fig.legend(*a1.get_legend_handles_labels(), loc="center right", fontsize=8, frameon=False,
                       title="solid: line search, dashed: L-BFGS,\ndotted: baselines", title_fontsize=7)
            fig.tight_layout(rect=(0, 0, 0.83, 1))
            p = out / f"profile_{setting}_tau{tau:g}.png"
            fig.savefig(p, dpi=100)
            plt.close(fig)
            paths.append(p)
    return paths, summary


def replot_profiles(out, budget_gradients: int = 100) -> list:
    """Redraw the profile PNGs of a finished run from its ``runs.csv`` (the t_tau_* columns), computing nothing."""
    from pathlib import Path

    from .report import read_csv

    rows = read_csv(Path(out) / "runs.csv")
    taus = [float(c[len("t_tau_"):]) for c in rows[0] if c.startswith("t_tau_")]
    solvers = list(dict.fromkeys(r["solver"] for r in rows))
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    times_by_tau = {}
    for tau in taus:
        times: dict = {}
        for r in rows:
            t = r[f"t_tau_{tau:g}"]
            times.setdefault((r["setting"], r["problem"]), {})[r["solver"]] = float(t)
        times_by_tau[tau] = times
    dims = {(r["setting"], r["problem"]): int(r["n"]) for r in rows}
    return plot_profiles(times_by_tau, dims, solvers, settings, budget_gradients, out)[0]


def write_profiles(runs: list[dict], config: ProfileConfig, out) -> list:
    """runs.csv (one row per run with t per τ), profiles.md and one PNG per (setting, τ)."""
    from pathlib import Path

    from .report import markdown_table

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    solvers = list(dict.fromkeys(r["solver"] for r in runs))
    settings = list(dict.fromkeys(r["setting"] for r in runs))
    rows = [{k: v for k, v in r.items() if k != "values"} | {"f_best": float(np.min(r["values"])) if r["values"].size else math.nan}
            for r in runs]
    times_by_tau = {tau: solve_times(runs, tau) for tau in config.taus}
    for tau, times in times_by_tau.items():
        for row in rows:
            row[f"t_tau_{tau:g}"] = times[(row["setting"], row["problem"])][row["solver"]]
    dims = {(r["setting"], r["problem"]): r["n"] for r in runs}
    paths, summary = plot_profiles(times_by_tau, dims, solvers, settings, config.budget_gradients, out)
    import csv
    cols = list(rows[0])
    with (out / "runs.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)
    n_prob = len({r["problem"] for r in runs})
    text = [f"# Data profiles: fraction of {n_prob} Moré–Wild problems solved", "",
            f"Budget {config.budget_gradients} (n + 1) evaluations; columns solved@α give d_s(α) "
            "(α in simplex gradients). f_L = best value any solver found.", "",
            markdown_table(summary, list(summary[0]))]
    errors: dict = {}
    for r in runs:
        if r["message"].startswith("error:"):
            errors.setdefault((r["setting"], r["solver"]), []).append(r)
    if errors:
        text += ["", "Runs that ended in an exception (counted as unsolved after their last evaluation):", ""]
        for (setting, s), rs in errors.items():
            text.append(f"- {setting} {s}: {len(rs)} runs, e.g. {rs[0]['problem']}: {rs[0]['message']}")
    (out / "profiles.md").write_text("\n".join(text) + "\n")
    return [out / "runs.csv", out / "profiles.md", *paths]
