"""SST-2 prompt fine-tuning of a causal LM: zero-shot vs MeZO vs SubZero vs LOZO at equal forward passes.

Each data seed runs in its own subprocess (``--jobs`` at a time); inside it every
method fine-tunes a fresh copy of the model for the same number of steps (two
forward passes per step, same batches, same lr and eps) through
:func:`dfo.torch.finetune.finetune`, then reports accuracy on the first
``--test-size`` sentences of ``test.tsv``. Zero-shot accuracy does not depend on
the data seed and is measured once.

Example:
    $ python bench/torch_sst2.py --model smollm2 --k 16 --steps 60 --batch 8 --lr 1e-5 \\
          --seeds 13 42 --test-size 200 --threads 1 --jobs 2 --out bench/results/torch_sst2.md
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def worker(args: argparse.Namespace, seed: int | None) -> None:
    import torch

    from dfo.torch.finetune import FinetuneConfig, finetune

    torch.set_num_threads(args.threads)
    common = dict(model=args.model, k=args.k, batch_size=args.batch, lr=args.lr, eps=args.eps, rank=args.rank,
                  refresh=args.refresh, test_size=args.test_size, dev_size=args.dev_size)
    if seed is None:
        res = finetune(FinetuneConfig(**common, steps=0), progress=False)
        print("RESULT " + json.dumps({"method": "zero-shot", "seed": None, "test": res["test_accuracy"],
                                      "dev": res["dev_accuracy"], "fwd": 0}), flush=True)
        return
    for method in args.methods:
        res = finetune(FinetuneConfig(**common, method=method, steps=args.steps, data_seed=seed, seed=seed),
                       progress=False)
        loss = res["history"]["loss"]
        print("RESULT " + json.dumps({
            "method": method, "seed": seed, "test": res["test_accuracy"], "dev": res["dev_accuracy"],
            "fwd": res["forward_passes"], "loss_first": sum(loss[:10]) / len(loss[:10]),
            "loss_last": sum(loss[-10:]) / len(loss[-10:]), "seconds": res["train_seconds"]}), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="smollm2")
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--eps", type=float, default=1e-3)
    p.add_argument("--rank", type=int, default=8)
    p.add_argument("--refresh", type=int, default=50)
    p.add_argument("--seeds", type=int, nargs="+", default=[13, 42])
    p.add_argument("--methods", nargs="+", default=["mezo", "subzero", "lozo"])
    p.add_argument("--test-size", type=int, default=200)
    p.add_argument("--dev-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out", default=None)
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker is not None:
        worker(args, None if args.worker == "zero" else int(args.worker))
        return
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    passthrough = [a for a in sys.argv[1:]]
    if "--out" in passthrough:
        i = passthrough.index("--out")
        del passthrough[i : i + 2]
    tasks = ["zero"] + [str(s) for s in args.seeds]
    results, running = [], []
    while tasks or running:
        while tasks and len(running) < args.jobs:
            t = tasks.pop(0)
            running.append(subprocess.Popen([sys.executable, __file__, *passthrough, "--worker", t],
                                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env))
        proc = running.pop(0)
        out, err = proc.communicate()
        got = [json.loads(ln[7:]) for ln in out.splitlines() if ln.startswith("RESULT ")]
        if proc.returncode != 0:
            raise RuntimeError(f"worker failed:\n{err[-3000:]}")
        for r in got:
            print(r, file=sys.stderr, flush=True)
        results += got
    zero = next(r for r in results if r["method"] == "zero-shot")
    lines = [
        f"model={args.model} k={args.k} steps={args.steps} batch={args.batch} lr={args.lr} eps={args.eps} "
        f"rank={args.rank} refresh={args.refresh} test subset={args.test_size} of 872, dev={args.dev_size}",
        "",
        "| method | forward passes | " + " | ".join(f"test acc (seed {s})" for s in args.seeds)
        + " | mean test acc | train loss first 10 -> last 10 steps (mean over seeds) |",
        "|---|---|" + "---|" * len(args.seeds) + "---|---|",
        f"| zero-shot | 0 | " + " | ".join(f"{zero['test']:.3f}" for _ in args.seeds) + f" | {zero['test']:.3f} | - |",
    ]
    for method in args.methods:
        rows = {r["seed"]: r for r in results if r["method"] == method}
        accs = [rows[s]["test"] for s in args.seeds]
        lf = statistics.mean(rows[s]["loss_first"] for s in args.seeds)
        ll = statistics.mean(rows[s]["loss_last"] for s in args.seeds)
        lines.append(f"| {method} | {rows[args.seeds[0]]['fwd']} | " + " | ".join(f"{a:.3f}" for a in accs)
                     + f" | {statistics.mean(accs):.3f} | {lf:.3f} -> {ll:.3f} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "a") as fh:
            fh.write(f"\n`python {' '.join(sys.argv)}`\n\n{table}\n")


if __name__ == "__main__":
    main()
