"""Train a linear policy on InvertedPendulum-v5 with ARS V2-t through the Python API.

Runs in a few seconds on one core; prints the evaluation return before and after.

    PYTHONPATH=. python examples/train_pendulum.py [--method orthogonal] [--out runs/pendulum]
"""

from __future__ import annotations

import argparse

from dfo.policies.training import TrainConfig, Trainer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", default="ars-v2t")
    ap.add_argument("--episodes", type=int, default=96)
    ap.add_argument("--out", default=None, help="run directory (progress.csv, checkpoints); none = in memory")
    args = ap.parse_args()
    cfg = TrainConfig(env_id="InvertedPendulum-v5", method=args.method, episodes=args.episodes, horizon=200,
                      n_directions=4, top_b=4, step_size=0.2, noise=0.1, eval_every=4, backend="serial")
    with Trainer(cfg, out_dir=args.out) as trainer:
        result = trainer.run()
    print(f"{cfg.method}: eval return {result.history[0]['eval_return']:.1f} -> {result.eval_return:.1f} "
          f"after {result.episodes} episodes ({result.message})")


if __name__ == "__main__":
    main()
