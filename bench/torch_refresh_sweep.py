"""Subspace refresh period of SubZero and LOZO: held-out loss after a fixed budget, per period.

The question (issue 11): dfo's default refresh is 50 steps, the SubZero reference
code uses 1000-2000 and LOZO's 50-100. This bench fine-tunes the small pretrained
Llama ``aidreams260K`` (260K parameters, shipped in the data folder) on next-token
prediction of SST-2 training sentences (random batches of 8 from the k = 512
split) and reports the next-token loss on 64 held-out dev sentences after
``--steps`` steps, for each method and refresh period, over several seeds (the
optimizer seed and the batch order). Same lr, eps and rank for every period of a
method; one process, one thread, so runs are deterministic.

It is a cheap proxy for the quality bench (``bench/torch_quality.py``), which
measures accuracy on SmolLM2: a small model, an LM loss, a few hundred steps.

Example:
    $ python bench/torch_refresh_sweep.py --steps 300 --seeds 13 21 42 \\
          --out bench/results/torch_refresh_sweep.md
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(method: str, refresh: int, seed: int, args: argparse.Namespace, data) -> float:
    import numpy as np
    import torch

    from dfo.torch import ZerothOrder
    from dfo.torch.llm.models import load_lm

    model, tok = load_lm(Path(args.data_dir) / "models" / "aidreams260K")
    model.eval()
    tok.pad_token = tok.eos_token
    train, held_out = data

    def encode(texts):
        enc = tok(texts, return_tensors="pt", padding=True, truncation=True, max_length=48)
        return enc, enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)

    dev_enc, dev_labels = encode(held_out)
    opt = ZerothOrder(model.parameters(), method=method, lr=args.lr[method], eps=1e-3, rank=args.rank,
                      refresh=refresh, model=model, seed=seed)
    rng = np.random.default_rng(seed)
    for _ in range(args.steps):
        enc, labels = encode([train[i] for i in rng.choice(len(train), size=8, replace=False)])
        opt.step(lambda: model(**enc, labels=labels).loss)
    opt.flush()
    with torch.no_grad():
        return float(model(**dev_enc, labels=dev_labels).loss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seeds", type=int, nargs="+", default=[13, 21, 42])
    parser.add_argument("--refresh", type=int, nargs="+", default=[10, 50, 200, 1000])
    parser.add_argument("--methods", nargs="+", default=["subzero", "lozo"])
    parser.add_argument("--rank", type=int, default=4)
    parser.add_argument("--data-dir", default=os.environ.get("DFO_DATA", str(ROOT.parent / "shared" / "data")))
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    args.lr = {"subzero": 1e-4, "lozo": 3e-4, "lozo-m": 3e-4, "mezo": 1e-4}

    import torch

    from dfo.torch import ZerothOrder  # noqa: F401 (fail early without torch)
    from dfo.torch.llm.tasks import load_split

    torch.set_num_threads(1)
    train = [e.sentence for e in load_split("sst2", "train", k=512, data_seed=13, data_dir=args.data_dir)]
    held_out = [e.sentence for e in load_split("sst2", "dev", k=512, data_seed=13, data_dir=args.data_dir)][:64]
    t0 = time.perf_counter()
    from dfo.torch.llm.models import load_lm

    model, tok = load_lm(Path(args.data_dir) / "models" / "aidreams260K")
    tok.pad_token = tok.eos_token
    enc = tok(held_out, return_tensors="pt", padding=True, truncation=True, max_length=48)
    with torch.no_grad():
        start = float(model(**enc, labels=enc["input_ids"].masked_fill(enc["attention_mask"] == 0, -100)).loss)
    rows = []
    for method in args.methods:
        for refresh in args.refresh:
            losses = [run(method, refresh, s, args, (train, held_out)) for s in args.seeds]
            rows.append((method, refresh, losses))
            print(method, refresh, losses, f"{time.perf_counter() - t0:.0f}s", file=sys.stderr, flush=True)
    lines = [f"aidreams260K, {args.steps} steps of batch 8, rank {args.rank}, eps 1e-3, lr {args.lr}, "
             f"seeds {args.seeds}; held-out next-token loss before training: {start:.4f}", "",
             "| method | refresh | held-out loss per seed | mean | std |", "|---|---|---|---|---|"]
    for method, refresh, losses in rows:
        sd = statistics.stdev(losses) if len(losses) > 1 else 0.0
        lines.append(f"| {method} | {refresh} | {', '.join(f'{x:.4f}' for x in losses)} | "
                     f"{statistics.mean(losses):.4f} | {sd:.4f} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "a") as fh:
            fh.write(f"\n`python {' '.join(sys.argv)}`\n\n{table}\n")


if __name__ == "__main__":
    main()
