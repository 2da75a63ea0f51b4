"""Tune ARS's step size and noise on Swimmer-v5 with Optuna, pruning weak trials through the training callback.

Each trial is one ``dfo.train`` run. After every iteration the callback reports the latest
evaluation return to Optuna at x = training episodes; when Optuna's pruner (the median rule:
stop a trial whose return is below the median of earlier trials at the same point) says so,
the callback returns ``False``, which ends the run, and the trial is marked pruned. Seeds
differ per trial (``seed = base + trial number``) so the search does not tune to one seed's
luck; confirm a winner on fresh seeds before trusting it (``bench/seed_sweep.py``).

Needs ``pip install optuna``. Runs serially in one process (``n_jobs=1`` per trial); for
parallel trials, start several copies of this script against one Optuna storage
(``--storage sqlite:///swimmer.db``).

    python examples/optuna_swimmer.py --trials 20 --episodes 400
"""

from __future__ import annotations

import argparse
import math

import optuna

import dfo


def make_objective(episodes: int, base_seed: int):
    def objective(trial: optuna.Trial) -> float:
        step_size = trial.suggest_float("step_size", 0.01, 0.5, log=True)
        noise = trial.suggest_float("noise", 0.01, 0.5, log=True)
        pruned = False

        def report(row: dict) -> bool | None:
            nonlocal pruned
            value = row.get("eval_return")
            if value is None or not math.isfinite(value):
                return None  # no evaluation on this iteration
            trial.report(value, step=int(row["episodes"]))
            if trial.should_prune():
                pruned = True
                return False  # ends the dfo.train run
            return None

        result = dfo.train("Swimmer-v5", method="orthogonal", n_directions=4, top_b=4, step_size=step_size,
                           noise=noise, episodes=episodes, seed=base_seed + trial.number, n_jobs=1,
                           progress=False, callback=report)
        if pruned:
            raise optuna.TrialPruned(f"pruned at {result.episodes} episodes (eval {result.eval_return:.1f})")
        return float(result.eval_return)

    return objective


def main(argv: list[str] | None = None) -> optuna.Study:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--episodes", type=int, default=400, help="training episodes per trial")
    ap.add_argument("--seed", type=int, default=0, help="sampler seed and first training seed")
    ap.add_argument("--storage", default=None, help="Optuna storage URL (several processes share one study)")
    args = ap.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize", storage=args.storage, study_name="dfo-swimmer" if args.storage else None,
        load_if_exists=bool(args.storage), sampler=optuna.samplers.TPESampler(seed=args.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=args.episodes // 4))
    study.optimize(make_objective(args.episodes, args.seed), n_trials=args.trials)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    print(f"{len(done)} complete, {len(pruned)} pruned; best eval return {study.best_value:.1f} with "
          f"step_size={study.best_params['step_size']:.3g}, noise={study.best_params['noise']:.3g}")
    return study


if __name__ == "__main__":
    main()
