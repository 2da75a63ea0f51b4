"""Policy-search iteration time on 1, 2, 4 workers (loky vs a local Dask cluster), and the
bytes one iteration moves for policies of very different sizes.

Part 1 (scaling): ARS V2-t iterations of ``--env`` (N antithetic directions, full
``--horizon``, no evaluation episodes) through ``Trainer.step`` with the evaluator built
by ``dfo.parallel.make_evaluator(backend, n_jobs=w)``. Each configuration gets one
warm-up iteration (worker start, env build) and ``--iterations`` timed ones; the whole
sweep is repeated ``--rounds`` times, configurations interleaved, and the best round's
median is reported (the machine is shared, so the least disturbed round is the fairest
estimate). Parallel efficiency ``E(w) = T(1) / (w T(w))`` uses the same backend's
1-worker time; on a machine with ``c`` cores its ceiling is ``min(1, c/w)``. Every
configuration must end with bit-identical parameters (checked, printed).

Part 2 (traffic): one training iteration per policy on a 2-worker local Dask cluster,
recording pickled sizes of what crosses the process boundary: ``shared`` (rollout
function + spec + the estimator query holding θ and a direction seed + normalizer
snapshot: once per chunk), each item ``(index, sign, seed)`` and each returned
``EpisodeOutcome`` (returns, steps, observation statistics). Also the evaluator's own
``last_traffic`` totals, and what shipping each perturbed parameter vector would cost.

Run from the repo root:

    PYTHONPATH=. python bench/dask_scaling.py                 # Swimmer-v5, N=8, horizon 1000
    PYTHONPATH=. python bench/dask_scaling.py --quick         # a 1-minute smoke run
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from typing import Any

import numpy as np

from dfo.parallel import make_evaluator, payload_bytes
from dfo.policies.training import TrainConfig, Trainer


class RecordingEvaluator:
    """Wraps an evaluator; records pickled sizes of shared, items and results per map call."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.n_workers = inner.n_workers
        self.calls: list[dict[str, Any]] = []

    @property
    def last_traffic(self) -> dict[str, int]:
        return self.inner.last_traffic

    def map(self, fn, items, shared=None):
        items = list(items)
        out = self.inner.map(fn, items, shared)
        self.calls.append({
            "shared": payload_bytes((fn, shared)),
            "items": [payload_bytes(i) for i in items],
            "results": [payload_bytes(o) for o in out],
            "traffic": dict(self.inner.last_traffic),
        })
        return out


def _config(env: str, *, horizon: int, n_directions: int, seed: int = 0, **kw: Any) -> TrainConfig:
    return TrainConfig(env_id=env, episodes=10**9, horizon=horizon, n_directions=n_directions,
                       top_b=max(1, n_directions // 2), n_eval_episodes=0, seed=seed, **kw)


def time_config(backend: str, n_jobs: int, args) -> tuple[float, np.ndarray]:
    """Median seconds per iteration (after one warm-up) and the final parameters."""
    cfg = _config(args.env, horizon=args.horizon, n_directions=args.n_directions)
    spec: Any = "serial" if backend == "serial" else backend
    kw = {} if backend == "serial" else {"n_jobs": n_jobs}
    with make_evaluator(spec, **kw) as ev, Trainer(cfg, evaluator=ev) as tr:
        tr.step()  # warm-up: worker start, env construction, imports
        times = []
        for _ in range(args.iterations):
            t0 = time.perf_counter()
            tr.step()
            times.append(time.perf_counter() - t0)
        return statistics.median(times), tr.params.copy()


def scaling(args) -> None:
    configs = [("serial", 1)] + [(b, w) for b in ("loky", "local-dask") for w in args.workers]
    best: dict[tuple[str, int], float] = {}
    finals: dict[tuple[str, int], np.ndarray] = {}
    for r in range(args.rounds):
        for key in configs:
            t, params = time_config(*key, args)
            best[key] = min(best.get(key, float("inf")), t)
            finals[key] = params
            print(f"<!-- round {r + 1} {key[0]:>10} w={key[1]}: {t:.3f} s/iter -->", flush=True)
    ref = finals[("serial", 1)]
    same = all(np.array_equal(p, ref) for p in finals.values())
    episodes = 2 * args.n_directions
    print(f"\n### Iteration time, {args.env}, N={args.n_directions} directions "
          f"({episodes} episodes x {args.horizon} steps per iteration)\n")
    print("| backend | workers | s / iteration | speed-up vs serial | efficiency T(1)/(w T(w)) | ceiling min(1, cores/w) |")
    print("|---|---|---|---|---|---|")
    cores = os.cpu_count() or 1
    t_serial = best[("serial", 1)]
    print(f"| serial | 1 | {t_serial:.3f} | 1.00x | - | - |")
    for b in ("loky", "local-dask"):
        t1 = best[(b, 1)]
        for w in args.workers:
            t = best[(b, w)]
            print(f"| {b} | {w} | {t:.3f} | {t_serial / t:.2f}x | {t1 / (w * t):.2f} | {min(1.0, cores / w):.2f} |")
    print(f"\nFinal parameters after {1 + args.iterations} iterations identical across all "
          f"{len(finals)} configurations: **{same}**")


def traffic(args) -> None:
    rows = []
    policies = [
        ("Swimmer-v5", "linear", {}),
        ("Humanoid-v5", "linear", {}),
        ("Swimmer-v5", "mlp", {"hidden": (256, 256)}),
    ]
    with make_evaluator("local-dask", n_jobs=2) as inner:
        for env, kind, extra in policies:
            rec = RecordingEvaluator(inner)
            cfg = _config(env, horizon=args.traffic_horizon, n_directions=args.n_directions, policy=kind, **extra)
            with Trainer(cfg, evaluator=rec) as tr:
                row = tr.step()
                n, obs_dim = tr.policy.n_params, tr.policy.obs_dim
            call = rec.calls[0]
            n_items = len(call["items"])
            chunks = call["traffic"]["chunks"]
            rows.append({
                "task": env, "policy": kind if kind == "linear" else f"mlp {extra['hidden']}", "n_params": n,
                "obs_dim": obs_dim, "items": n_items, "chunks": chunks, "shared": call["shared"],
                "item_out": statistics.mean(call["items"]), "item_back": statistics.mean(call["results"]),
                "sent": row["bytes_sent"], "received": row["bytes_received"],
                "naive": n_items * payload_bytes(np.zeros(n)),
            })
    print(f"\n### Bytes per iteration (local-dask, 2 workers, N={args.n_directions}, "
          f"{2 * args.n_directions} rollouts)\n")
    print("| task | policy | n_params | obs_dim | chunks | shared / chunk | out / rollout | back / rollout "
          "| sent / iter | received / iter | shipping θ+σu per rollout instead |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['task']} | {r['policy']} | {r['n_params']:,} | {r['obs_dim']} | {r['chunks']} | "
              f"{r['shared']:,} | {r['item_out']:.0f} | {r['item_back']:.0f} | {r['sent']:,} | "
              f"{r['received']:,} | {r['naive']:,} |")
    print("\nout / rollout = pickled `(index, sign, seed)`; back / rollout = pickled `EpisodeOutcome` "
          "(returns, steps, flag, observation mean/M2 of obs_dim floats each); shared / chunk = "
          "`(rollout_worker, RolloutBatch)` holding θ once. `sent` is the evaluator's `last_traffic` "
          "(an upper bound on dask, which scatters `shared` once per call).")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="Swimmer-v5")
    p.add_argument("--horizon", type=int, default=1000)
    p.add_argument("--n-directions", type=int, default=8)
    p.add_argument("--iterations", type=int, default=4, help="timed iterations per configuration")
    p.add_argument("--rounds", type=int, default=2, help="repeat the sweep; best round reported")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--traffic-horizon", type=int, default=100)
    p.add_argument("--quick", action="store_true", help="horizon 200, 2 iterations, 1 round")
    args = p.parse_args(argv)
    if args.quick:
        args.horizon, args.iterations, args.rounds = 200, 2, 1
    load = os.getloadavg()
    print(f"<!-- {platform.machine()}, {os.cpu_count()} logical CPUs, python {platform.python_version()}, "
          f"load average at start {load[0]:.1f} -->")
    t0 = time.perf_counter()
    scaling(args)
    traffic(args)
    print(f"\n<!-- total {time.perf_counter() - t0:.0f} s, load average at end {os.getloadavg()[0]:.1f} -->")


if __name__ == "__main__":
    main()
