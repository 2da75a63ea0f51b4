"""Tune the per-task training defaults: successive halving over method, α, ν, N, b.

What is searched. For one task, the grid is the product of

* ``--methods`` (names in ``dfo.policies.methods.METHODS``),
* α and ν given *relative to the task's scale* ``s = a_max / √d_obs`` (largest action
  bound over the root of the observation dimension; ``dfo.envs.presets.task_scale``):
  ``α = c_α · s``, ``ν = c_ν · s`` with ``c_α`` in ``--rel-step-sizes`` and ``c_ν`` in
  ``--rel-noises``. With normalized observations (ARS V2, unit-variance inputs) a
  perturbation ν u of a linear policy moves each action by about ν √d_obs, so ``c_ν`` is
  the exploration noise as a fraction of the action range, and the ARS step (length
  ≈ α √n) scales the same way. This is what makes one rule usable on untuned tasks.
* ``--directions`` pairs ``N:b``,
* ``--policies``: ``linear`` and/or ``mlp:H1,H2,...`` (tanh MLP with those hidden widths).
  For an MLP the scale is ``s = a_max / √h_last`` instead: its output layer starts at
  zero and reads the last hidden layer's ``h_last`` tanh features, so perturbing it by ν u
  moves each action by about ν √(Σ_j h_j²) ≈ ν · 0.6 √h_last (tanh features of unit-variance
  pre-activations have an rms near 0.6): ``h_last`` plays the part of ``d_obs``
  (``dfo.envs.presets.task_scale``).

How it is searched. Successive halving (Jamieson & Talwalkar 2016; Li et al. 2018,
Hyperband): rung r runs every surviving configuration on the *tuning seeds* with an
episode budget ``B_r = B / η^(R−r)``, ranks them and keeps the best ``1/η``. A run stops
as soon as an evaluation (mean true return of the unperturbed policy over
``--eval-episodes`` episodes, not counted in the budget) reaches the task threshold.
Ranking key (best first): more tuning seeds reaching the threshold, then fewer mean env
steps to it over the seeds that reached it, then a higher mean best evaluation return.
The last rung keeps ``--finalists`` configurations (default 3) and a *check* rung reruns
them at the last budget on the tuning seeds plus ``--check-seeds`` (default 102-107); its
ranking names the winner (two seeds cannot rank settings on the locomotion tasks:
``bench/results/ars_episodes.md``, Session 5). ``--check-seeds`` with no value skips it.

Evaluation. ``--evaluate`` runs ``TrainConfig(env_id=ENV)`` with *no* override (i.e. the
defaults in ``envs/presets.py``) on the evaluation seeds (default 0 1 2; the tuning seeds
default to 100 101, disjoint), with the task's default budget, and records episodes and
env steps to the threshold; ``--check-episodes K`` also evaluates the stopped policy on K
fresh episodes (gymnasium's ``reward_threshold`` is meant for a 100-episode mean, while a
5-episode evaluation can pass on easy draws). ``--full-budget`` trains every evaluation run to
the whole budget instead of stopping at the threshold (records of kind ``eval-full``), so
``--check-episodes`` measures the policy a user ends up with. Pick the defaults from the tuning table, write them into
``envs/presets.py``, then run ``--evaluate``: the evaluation table is what docs/rl.md quotes.

Every finished run is one JSON line in ``--jsonl`` (default
``bench/results/tune_presets.jsonl``); a re-run skips runs already there (a run that
reached the threshold within a smaller budget also counts for a larger one), so an
interrupted search resumes where it stopped. ``--table`` rebuilds the markdown
(``bench/results/tune_presets.md``) from the JSON lines alone.

Usage (repo root; ``--jobs`` runs at once, each one serial process):
    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/tune_presets.py InvertedPendulum-v5 --budget 400 --jobs 2
    OMP_NUM_THREADS=1 PYTHONPATH=. python bench/tune_presets.py InvertedPendulum-v5 --evaluate --jobs 2
    PYTHONPATH=. python bench/tune_presets.py --table
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: return thresholds: ARS paper Table 1 (Swimmer .. Humanoid), gymnasium's reward_threshold
#: (InvertedPendulum 950, InvertedDoublePendulum 9100, Reacher -3.75); Pusher has none in
#: gymnasium, the value here is ours (see bench/results/tune_presets.md)
THRESHOLDS = {
    "Swimmer-v5": 325.0, "Hopper-v5": 3120.0, "HalfCheetah-v5": 3430.0, "Walker2d-v5": 4390.0, "Ant-v5": 3580.0,
    "Humanoid-v5": 6000.0, "InvertedPendulum-v5": 950.0, "InvertedDoublePendulum-v5": 9100.0,
    "Reacher-v5": -3.75, "Pusher-v5": -32.0,
}
#: ARS paper (Mania et al. 2018, Table 1) median V2-t episodes to the threshold, where it reports one
PAPER_V2T_EPISODES = {
    "Swimmer-v5": 427, "Hopper-v5": 1973, "HalfCheetah-v5": 1707, "Walker2d-v5": 24_000, "Ant-v5": 20_800,
    "Humanoid-v5": 142_600,
}
DEFAULT_JSONL = "bench/results/tune_presets.jsonl"
#: evaluation-seed index of the check of ``--check-episodes`` (no training iteration reaches it)
CHECK_ITERATION = 10**9
DEFAULT_TABLE = "bench/results/tune_presets.md"


def _sig(x: float, digits: int = 2) -> float:
    """``x`` rounded to ``digits`` significant digits (the presets store round numbers)."""
    return float(f"{x:.{digits}g}")


def command_line() -> str:
    """This process's command, as written in the results' "Commands" list."""
    return "PYTHONPATH=. python bench/tune_presets.py " + " ".join(sys.argv[1:])


def policy_key(r: dict) -> tuple:
    """``(policy, hidden)`` of a spec or record (records before the policy search were linear)."""
    policy = r.get("policy") or "linear"
    return policy, (tuple(r.get("hidden") or ()) if policy == "mlp" else ())


def policy_name(r: dict) -> str:
    policy, hidden = policy_key(r)
    return "linear" if policy == "linear" else f"mlp({','.join(map(str, hidden))})"


def parse_policy(text: str) -> dict:
    """``linear`` or ``mlp:H1,H2,...`` -> ``{"policy": ..., "hidden": [...] or None}``."""
    kind, _, widths = text.partition(":")
    if kind == "linear" and not widths:
        return {"policy": "linear", "hidden": None}
    if kind == "mlp" and widths:
        return {"policy": "mlp", "hidden": [int(h) for h in widths.split(",")]}
    raise argparse.ArgumentTypeError(f"a policy is 'linear' or 'mlp:H1,H2,...', got {text!r}")


def run_key(r: dict) -> tuple:
    return (r["kind"], r["env_id"], r["method"], r["step_size"], r["noise"], r["n_directions"], r["top_b"],
            r["seed"], *policy_key(r))


def one_run(spec: dict) -> dict:
    """One training run, stopped at the threshold; returns its JSON record."""
    from dfo.policies.training import TrainConfig, Trainer

    env_id, threshold = spec["env_id"], THRESHOLDS[spec["env_id"]]
    over = {k: spec[k] for k in ("method", "step_size", "noise", "n_directions", "top_b") if spec.get(k) is not None}
    over["policy"], hidden = policy_key(spec)
    if hidden:
        over["hidden"] = hidden
    probe = TrainConfig(env_id=env_id, **over).resolved()
    eval_every = max(1, round(spec["eval_every_episodes"] / (2 * probe.n_directions)))
    cfg = TrainConfig(env_id=env_id, **over, seed=spec["seed"], episodes=spec["budget"], backend="serial",
                      n_eval_episodes=spec["eval_episodes"], eval_every=eval_every, checkpoint_every=10**9)
    hit: dict = {}
    curve: list = []

    def watch(row: dict) -> None:
        ret = row["eval_return"]
        if ret == ret:
            curve.append((row["episodes"], row["env_steps"], round(float(ret), 2)))
            if ret >= threshold and not hit:
                hit.update(episodes=row["episodes"], env_steps=row["env_steps"])
                if not spec.get("full_budget"):
                    raise StopIteration

    t0 = time.perf_counter()
    check: dict = {}
    with Trainer(cfg, out_dir=None, callback=watch) as tr:
        res = tr.run()
        if spec.get("check_episodes"):  # the stopped policy on many fresh episodes (a seed stream of its own)
            mean, std, _ = tr.evaluate(n_episodes=spec["check_episodes"], iteration=CHECK_ITERATION)
            check = {"check_episodes": spec["check_episodes"], "check_return": round(mean, 3),
                     "check_std": round(std, 3)}
    first = res.history[0]["eval_return"]
    curve.insert(0, (0, 0, round(float(first), 2)))
    evals = [c[2] for c in curve]
    rc = probe
    return {"kind": spec["kind"], "env_id": env_id, "method": rc.method, "step_size": rc.step_size,
            "noise": rc.noise, "n_directions": rc.n_directions, "top_b": rc.top_b, "policy": rc.policy,
            "hidden": list(rc.hidden) if rc.policy == "mlp" else None, "seed": spec["seed"],
            "budget": spec["budget"], "threshold": threshold, "reached_episodes": hit.get("episodes"),
            "reached_env_steps": hit.get("env_steps"), "episodes": res.episodes, "env_steps": res.env_steps,
            "best_eval": max(evals), "final_eval": evals[-1], "eval_episodes": spec["eval_episodes"],
            "eval_every": eval_every, "wall_s": round(time.perf_counter() - t0, 1), "curve": curve,
            "cmd": spec.get("cmd"), **check}


def _cut(r: dict, budget: int) -> dict:
    """Run ``r`` (longer, not reached within ``budget``) as if it had stopped at ``budget`` episodes."""
    curve = [c for c in r["curve"] if c[0] <= budget]
    return dict(r, budget=budget, reached_episodes=None, reached_env_steps=None, episodes=curve[-1][0],
                env_steps=curve[-1][1], best_eval=max(c[2] for c in curve), final_eval=curve[-1][2], curve=curve)


#: record kinds that are training runs: tuning, evaluation (stopped at the threshold), evaluation to the full budget
RUN_KINDS = ("tune", "eval", "eval-full")


class Store:
    """The JSON-lines file of finished runs (append-only; read back on start)."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.records: list[dict] = []
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                if line.strip():
                    self.records.append(json.loads(line))
        self.runs = [r for r in self.records if r["kind"] in RUN_KINDS]

    def lookup(self, spec_key: tuple, budget: int) -> dict | None:
        """A finished run that answers ``spec_key`` at ``budget``: one with that budget, one that
        reached the threshold within ``budget`` episodes, or a longer run cut back to ``budget``
        (its evaluations after ``budget`` episodes dropped, so its best return is not flattered)."""
        exact = within = longer = None
        for r in self.runs:
            if run_key(r) != spec_key:
                continue
            if r["budget"] == budget:
                exact = r
            elif r["reached_episodes"] is not None and r["reached_episodes"] <= budget:
                within = r
            elif r["episodes"] >= budget:
                longer = r
        return exact or within or (longer and _cut(longer, budget))

    def add(self, r: dict) -> None:
        self.records.append(r)
        if r["kind"] in RUN_KINDS:
            self.runs.append(r)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps(r) + "\n")


def run_all(specs: list[dict], store: Store, jobs: int) -> list[dict]:
    """Run the specs not yet in the store (``jobs`` at once) and return one record per spec."""
    out: dict[int, dict] = {}
    todo = []
    for i, s in enumerate(specs):
        r = store.lookup(run_key(s), s["budget"])
        if r is not None and s.get("check_episodes") and r.get("check_episodes") != s["check_episodes"]:
            r = None  # run again for the check (same numbers: the runs are deterministic)
        if r is not None:
            out[i] = r
        else:
            todo.append(i)
    if todo:
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            futs = {pool.submit(one_run, specs[i]): i for i in todo}
            for fut in futs:
                r = fut.result()
                store.add(r)
                out[futs[fut]] = r
                print(f"  {policy_name(r)} {r['method']} a={r['step_size']} nu={r['noise']} N={r['n_directions']} b={r['top_b']} "
                      f"seed={r['seed']}: reached={r['reached_episodes']} steps={r['reached_env_steps']} "
                      f"best={r['best_eval']:.1f} ({r['wall_s']}s)", flush=True)
    return [out[i] for i in range(len(specs))]


def score(records: list[dict]) -> tuple:
    """Ranking key of one configuration over its seeds (smaller is better): more seeds
    reaching the threshold, then fewer mean env steps to it over the seeds that reached it,
    then a higher mean best evaluation return."""
    reached = [r["reached_env_steps"] for r in records if r["reached_episodes"] is not None]
    return (-len(reached), float(np.mean(reached)) if reached else 0.0,
            -float(np.mean([r["best_eval"] for r in records])))


def config_specs(env_id: str, args) -> list[dict]:
    from dfo.envs.presets import task_scale

    out = []
    for pol, m, ca, cn, nb in itertools.product(args.policies, args.methods, args.rel_step_sizes, args.rel_noises,
                                                args.directions):
        s = task_scale(env_id, hidden=pol["hidden"] if pol["policy"] == "mlp" else None)
        n, b = (int(v) for v in nb.split(":"))
        out.append({"env_id": env_id, "method": m, "step_size": _sig(ca * s), "noise": _sig(cn * s),
                    "n_directions": n, "top_b": b, **pol})
    return out


def _rung(env_id: str, configs: list[dict], seeds: list[int], budget: int, rung: int, search: str, args,
          store: Store, check: bool = False) -> list[dict]:
    """Run ``configs`` on ``seeds`` with ``budget`` episodes, record the ranking, return the configs best first."""
    specs = [dict(c, kind="tune", seed=s, budget=budget, eval_episodes=args.eval_episodes,
                  eval_every_episodes=args.eval_every_episodes) for c in configs for s in seeds]
    recs = run_all(specs, store, args.jobs)
    k = len(seeds)
    scores = [score(recs[i * k:(i + 1) * k]) for i in range(len(configs))]
    ranked = sorted(range(len(configs)), key=lambda i: scores[i])
    store.add({"kind": "rung", "env_id": env_id, "search": search, "cmd": command_line(), "rung": rung,
               "budget": budget, "tune_seeds": seeds, "check": check,
               "ranked": [dict(configs[i], score=list(scores[i]),
                               episodes=[x["reached_episodes"] for x in recs[i * k:(i + 1) * k]])
                          for i in ranked]})
    return [configs[i] for i in ranked]


def tune(env_id: str, args, store: Store) -> None:
    """Successive halving on the tuning seeds, then the finalists' check (module docstring)."""
    configs = config_specs(env_id, args)
    rungs = args.rungs
    pols = " ".join(policy_name(p) for p in args.policies)
    search = ((f"policies {pols}; " if pols != "linear" else "") + f"methods {' '.join(args.methods)}; c_alpha {' '.join(map(str, args.rel_step_sizes))}; "
              f"c_nu {' '.join(map(str, args.rel_noises))}; N:b {' '.join(args.directions)}; budget {args.budget}, "
              f"eta {args.eta}, {rungs} rungs")
    check_seeds = [s for s in args.check_seeds if s not in args.tune_seeds]
    if check_seeds:
        search += f", finalists {args.finalists} checked on seeds {' '.join(map(str, check_seeds))}"
    for r in range(rungs):
        budget = max(1, int(round(args.budget / args.eta ** (rungs - 1 - r))))
        print(f"{env_id}: rung {r}, {len(configs)} configurations x {len(args.tune_seeds)} seeds, "
              f"budget {budget} episodes", flush=True)
        ranked = _rung(env_id, configs, list(args.tune_seeds), budget, r, search, args, store)
        keep = max(1, math.ceil(len(configs) / args.eta)) if r < rungs - 1 else (args.finalists if check_seeds else 1)
        configs = ranked[:keep]
    if check_seeds:
        seeds = list(args.tune_seeds) + check_seeds
        print(f"{env_id}: check, {len(configs)} finalists x {len(seeds)} seeds, budget {budget} episodes", flush=True)
        configs = _rung(env_id, configs, seeds, budget, rungs, search, args, store, check=True)
    print(f"{env_id}: best configuration {configs[0]}", flush=True)


def evaluate(env_id: str, args, store: Store) -> None:
    from dfo.policies.training import TrainConfig

    cfg = TrainConfig(env_id=env_id).resolved()
    budget = args.budget or cfg.episodes
    specs = [dict(env_id=env_id, kind="eval-full" if args.full_budget else "eval", cmd=command_line(),
                  full_budget=args.full_budget, seed=s, budget=budget, eval_episodes=args.eval_episodes,
                  eval_every_episodes=args.eval_every_episodes, method=cfg.method, step_size=cfg.step_size,
                  noise=cfg.noise, n_directions=cfg.n_directions, top_b=cfg.top_b, policy=cfg.policy,
                  check_episodes=args.check_episodes,
                  hidden=list(cfg.hidden) if cfg.policy == "mlp" else None) for s in args.eval_seeds]
    run_all(specs, store, args.jobs)


# -- tables -------------------------------------------------------------------------------------
def _cell(r: dict, what: str) -> str:
    if r["reached_episodes"] is None:
        return f"> {r['episodes'] if what == 'episodes' else r['env_steps']}"
    return str(r["reached_episodes"] if what == "episodes" else r["reached_env_steps"])


def _bests(rs: list[dict]) -> str:
    return ", ".join(f"{r['best_eval']:.1f}" for r in rs)


def _checks(rs: list[dict]) -> str:
    if not all(r.get("check_episodes") for r in rs):
        return "–"
    return f"K = {rs[0]['check_episodes']}: " + ", ".join(f"{r['check_return']:.2f} ± {r['check_std']:.2f}" for r in rs)


def _median(rs: list[dict], key: str) -> str:
    vals = [r[key] if r["reached_episodes"] is not None else math.inf for r in rs]
    m = float(np.median(vals))
    return f"{m:.0f}" if math.isfinite(m) else "not reached"


def _search_cmd(r: dict) -> str | None:
    """The command of a rung record written before commands were recorded (from its search)."""
    if not r.get("search"):
        return None
    parts = dict(p.strip().split(" ", 1) for p in r["search"].split(";"))
    budget, eta, rungs = (x.split()[-1] if i < 2 else x.split()[0] for i, x in enumerate(parts["budget"].split(",")))
    return (f"PYTHONPATH=. python bench/tune_presets.py {r['env_id']} --budget {budget} --eta {eta} --rungs {rungs} "
            f"--methods {parts['methods']} --rel-step-sizes {parts['c_alpha']} --rel-noises {parts['c_nu']} "
            f"--directions {parts['N:b']} --jobs 1")


def _current(env_id: str) -> tuple:
    """``(policy name, method, α, ν, N, b), budget`` of the task's current preset."""
    from dfo.policies.training import TrainConfig

    c = TrainConfig(env_id=env_id).resolved()
    pol = {"policy": c.policy, "hidden": list(c.hidden)}
    return (policy_name(pol), c.method, c.step_size, c.noise, c.n_directions, c.top_b), c.episodes


def table(store: Store) -> str:
    cmds: list[str] = []
    for r in store.records:
        c = r.get("cmd") or (_search_cmd(r) if r["kind"] == "rung" else None)
        c = c and re.sub(r" --jsonl \S*tune_presets.jsonl", "", c)  # the default file, wherever it was run
        if c and c not in cmds and r["kind"] in ("rung", "eval", "eval-full"):
            cmds.append(c)
    lines = ["# Per-task defaults: tuning and evaluation", "",
             "Commands (repo root, `OMP_NUM_THREADS=1`; the JSON lines are `bench/results/tune_presets.jsonl`, "
             "this file is `python bench/tune_presets.py --table`):", ""]
    lines += [f"    {c}" for c in cmds] + [""]
    lines += ["A run reaches the threshold at the first evaluation (mean true return of the unperturbed policy "
              "over 5 episodes, every ~16 training episodes, not counted) at or above it. Tuning seeds 100, 101 (more where a rung lists them); "
              "evaluation seeds 0, 1, 2. Thresholds: " + ", ".join(f"{k} {v:g}" for k, v in THRESHOLDS.items())
              + " (Pusher's is ours, fixed before tuning: gymnasium's 0 cannot be reached). α and ν are the "
              "absolute values; the search grid is relative to s = a_max/√d_obs (see the script's docstring). "
              "Rungs of searches scored by an earlier ranking rule are left out (their runs are in the JSON lines).",
              ""]
    evals: dict = {}
    for r in store.runs:
        if r["kind"] == "eval":
            cfg = (policy_name(r), r["method"], r["step_size"], r["noise"], r["n_directions"], r["top_b"])
            evals.setdefault((r["env_id"], cfg, r["budget"]), {})[r["seed"]] = r
    lines += ["## Defaults on the evaluation seeds (`dfo train ENV`, no other argument)", "",
              "Rows marked *now* are the current presets of `envs/presets.py`; the others are earlier defaults.", "",
              "| task (threshold) | now | policy | method | α | ν | N | b | budget (episodes) | seeds | episodes to "
              "threshold (per seed) | median | env steps to threshold (per seed) | median | best eval (per seed) | "
              "stopped policy: mean ± std over K fresh episodes (per seed) |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (env, cfg, budget), by_seed in sorted(evals.items()):
        rs = [by_seed[s] for s in sorted(by_seed)]
        pol, m, a, nu, n, b = cfg
        now = "*now*" if (cfg, budget) == _current(env) else ""
        lines.append(f"| {env} ({THRESHOLDS[env]:g}) | {now} | {pol} | {m} | {a:g} | {nu:g} | {n} | {b} | {budget} | "
                     f"{', '.join(str(r['seed']) for r in rs)} | {', '.join(_cell(r, 'episodes') for r in rs)} | "
                     f"{_median(rs, 'reached_episodes')} | {', '.join(_cell(r, 'steps') for r in rs)} | "
                     f"{_median(rs, 'reached_env_steps')} | {_bests(rs)} | {_checks(rs)} |")
    full: dict = {}
    for r in store.runs:
        if r["kind"] == "eval-full":
            cfg = (policy_name(r), r["method"], r["step_size"], r["noise"], r["n_directions"], r["top_b"])
            full.setdefault((r["env_id"], cfg, r["budget"]), {})[r["seed"]] = r
    if full:
        lines += ["", "## Defaults trained to the whole budget (`--evaluate --full-budget`): the policy a user ends up with",
                  "", "| task (threshold) | now | policy | method | budget (episodes) | seeds | first evaluation at or above "
                  "the threshold (episodes, per seed) | last 5-episode evaluation (per seed) | final policy: mean ± std "
                  "over K fresh episodes (per seed) |", "|---|---|---|---|---|---|---|---|---|"]
        for (env, cfg, budget), by_seed in sorted(full.items()):
            rs = [by_seed[s] for s in sorted(by_seed)]
            now = "*now*" if (cfg, budget) == _current(env) else ""
            firsts = ", ".join("–" if r["reached_episodes"] is None else str(r["reached_episodes"]) for r in rs)
            finals = ", ".join(f"{r['final_eval']:.2f}" for r in rs)
            lines.append(f"| {env} ({THRESHOLDS[env]:g}) | {now} | {cfg[0]} | {cfg[1]} | {budget} | "
                         f"{', '.join(str(r['seed']) for r in rs)} | {firsts} | {finals} | {_checks(rs)} |")
    rungs: dict = {}
    for r in store.records:
        if r["kind"] == "rung" and r.get("search"):  # searches without one were scored by an older rule
            rungs.setdefault((r["env_id"], r.get("search", "")), {})[r["rung"]] = r  # latest run of a search wins
    for (env, search), by_rung in sorted(rungs.items()):
        lines += ["", f"## Tuning: {env} (threshold {THRESHOLDS[env]:g})", "", f"Search: {search}.", "",
                  "| rung | budget (episodes) | configurations | tuning seeds | best 6: [policy] method α ν N:b → episodes "
                  "to threshold per seed (– = not reached), mean env steps over the seeds that reached it, mean best eval |",
                  "|---|---|---|---|---|"]
        for rung in sorted(by_rung):
            r = by_rung[rung]
            best = "; ".join(
                (f"{policy_name(c)} " if policy_name(c) != "linear" else "")
                + f"{c['method']} {c['step_size']:g} {c['noise']:g} {c['n_directions']}:{c['top_b']} → "
                f"{', '.join('–' if e is None else str(e) for e in c['episodes'])}, {c['score'][1]:.0f}, "
                f"{-c['score'][2]:.0f}"
                for c in r["ranked"][:6])
            label = "check" if r.get("check") else rung
            lines.append(f"| {label} | {r['budget']} | {len(r['ranked'])} | "
                         f"{', '.join(map(str, r['tune_seeds']))} | {best} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("env_ids", nargs="*", help="tasks to tune (or evaluate with --evaluate)")
    ap.add_argument("--methods", nargs="+", default=["ars-v2t", "orthogonal"])
    ap.add_argument("--rel-step-sizes", nargs="+", type=float, default=[0.03, 0.1, 0.3],
                    help="c_alpha: alpha = c_alpha * a_max / sqrt(d_obs) (linear; sqrt(h_last) for an MLP)")
    ap.add_argument("--rel-noises", nargs="+", type=float, default=[0.03, 0.1, 0.3],
                    help="c_nu: nu = c_nu * a_max / sqrt(d_obs) (linear; sqrt(h_last) for an MLP)")
    ap.add_argument("--directions", nargs="+", default=["4:4", "8:4", "16:8"], help="N:b pairs")
    ap.add_argument("--policies", nargs="+", type=parse_policy, default=[parse_policy("linear")],
                    help="policies searched: linear and/or mlp:H1,H2,... (default linear); an MLP's alpha and nu "
                         "are relative to a_max / sqrt(h_last)")
    ap.add_argument("--budget", type=int, default=None,
                    help="episodes of the last rung (tuning; required) or per run (--evaluate; default: the preset's)")
    ap.add_argument("--eta", type=int, default=3, help="halving rate: keep 1/eta per rung")
    ap.add_argument("--rungs", type=int, default=3)
    ap.add_argument("--tune-seeds", nargs="+", type=int, default=[100, 101])
    ap.add_argument("--check-seeds", nargs="*", type=int, default=[102, 103, 104, 105, 106, 107],
                    help="seeds the finalists are run on again before a winner is named (none: no check)")
    ap.add_argument("--finalists", type=int, default=3, help="configurations the check reruns")
    ap.add_argument("--eval-seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--eval-episodes", type=int, default=5)
    ap.add_argument("--eval-every-episodes", type=int, default=16, help="evaluate about every this many episodes")
    ap.add_argument("--evaluate", action="store_true", help="run the current presets on the evaluation seeds")
    ap.add_argument("--full-budget", action="store_true",
                    help="--evaluate: train to the whole budget instead of stopping at the threshold")
    ap.add_argument("--check-episodes", type=int, default=None,
                    help="--evaluate: also report the stopped policy's mean return over this many fresh episodes")
    ap.add_argument("--jobs", type=int, default=1, help="runs at once (separate processes)")
    ap.add_argument("--jsonl", default=DEFAULT_JSONL)
    ap.add_argument("--table", nargs="?", const=DEFAULT_TABLE, default=None,
                    help="write the markdown table (default path %(const)s) from the JSON lines and exit")
    args = ap.parse_args()
    store = Store(args.jsonl)
    if args.table:
        Path(args.table).write_text(table(store))
        print(table(store))
        return
    unknown = [e for e in args.env_ids if e not in THRESHOLDS]
    if unknown or not args.env_ids:
        sys.exit(f"tune_presets: give task ids with a threshold ({', '.join(THRESHOLDS)}); got {unknown or 'none'}")
    for env_id in args.env_ids:
        if args.evaluate:
            evaluate(env_id, args, store)
        else:
            if args.budget is None:
                sys.exit("tune_presets: --budget EPISODES is required when tuning")
            tune(env_id, args, store)


if __name__ == "__main__":
    main()
