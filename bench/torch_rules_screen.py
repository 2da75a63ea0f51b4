"""Screen ZO methods by forward passes on a small model: held-out (dev) loss and accuracy against training passes.

For picking which method deserves a full SmolLM2 cell of ``bench/torch_quality.py``: every method gets the
same budget of training forward passes on the same k-shot SST-2 batches (indices from
``default_rng([seed, step])`` as in ``dfo finetune``), and every ``--every`` passes the verbalizer loss and
accuracy on a fixed class-balanced dev sample are recorded (evaluation passes are not counted).
Prints one line per checkpoint and writes JSON (``--out``).

Example:
    $ python bench/torch_rules_screen.py --model ../shared/data/models/aidreams260K --budget 500 \\
          --methods mezo:1e-4 mezo-ls:1e-4 fzoo:1e-3 --out runs/screen.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True)
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--template", default="review")
    p.add_argument("--methods", nargs="+", required=True, help="METHOD:LR[:OPTION=VALUE...] entries "
                   "(options of ZerothOrder taking numbers, e.g. mezo-ls:1e-4:ls_batch_slack=0)")
    p.add_argument("--budget", type=int, default=500)
    p.add_argument("--every", type=int, default=100)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--dev-size", type=int, default=128)
    p.add_argument("--seeds", type=int, nargs="+", default=[13])
    p.add_argument("--lora", type=int, default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=None)
    args = p.parse_args()

    import numpy as np
    import torch

    from dfo.torch import ZerothOrder
    from dfo.torch.llm.finetune import per_example_loss, with_lora
    from dfo.torch.llm.models import load_lm
    from dfo.torch.llm.prompt import PromptClassifier
    from dfo.torch.llm.tasks import balanced_subset, get_task, load_split

    torch.set_num_threads(args.threads)
    task = get_task("sst2")
    rows = []
    for seed in args.seeds:
        train = load_split(task, "train", k=512, data_seed=seed, data_dir=args.data_dir)
        dev = balanced_subset(load_split(task, "dev", k=512, data_seed=seed, data_dir=args.data_dir),
                              args.dev_size, 2, seed=seed)
        for spec in args.methods:
            method, lr, *extra = spec.split(":")
            options = dict(kv.split("=") for kv in extra)  # e.g. mezo-ls:1e-4:ls_batch_slack=0
            model, tok = load_lm(args.model)
            if args.lora:
                model = with_lora(model, args.lora)
            model.eval()
            clf = PromptClassifier(model, tok, task=task, template=args.template)
            dev_batches = [clf.encode_batch(dev[i:i + 32]) for i in range(0, len(dev), 32)]

            def held_out() -> tuple[float, float]:
                opt.flush()
                with torch.no_grad():
                    loss = float(np.mean([float(clf.loss(b)) for b in dev_batches]))
                return loss, clf.accuracy(dev)

            opt = ZerothOrder([q for q in model.parameters() if q.requires_grad], method=method, lr=float(lr),
                              model=model, seed=seed, **{k: float(v) for k, v in options.items()})
            curve = [(0, *held_out())]
            t0, step, mark = time.perf_counter(), 0, args.every
            while opt.forward_passes + opt.config.max_forward_passes() <= args.budget:
                idx = np.random.default_rng([seed, step]).choice(len(train), size=args.batch, replace=False)
                enc = clf.encode_batch([train[i] for i in idx])
                if opt.config.entry.line_search:  # per-example losses: the batch noise of the line search
                    opt.step(lambda: per_example_loss(clf, enc))
                else:
                    opt.step(lambda: clf.loss(enc))
                step += 1
                if opt.forward_passes >= mark:
                    curve.append((opt.forward_passes, *held_out()))
                    mark += args.every
            if curve[-1][0] != opt.forward_passes:
                curve.append((opt.forward_passes, *held_out()))
            row = {"model": args.model, "method": method, "lr": float(lr), "options": options, "seed": seed, "steps": step,
                   "lora": args.lora, "seconds": time.perf_counter() - t0,
                   "curve": [{"forward_passes": f, "dev_loss": l, "dev_accuracy": a} for f, l, a in curve]}
            rows.append(row)
            print(f"{method:10s} lr {lr:>7s} seed {seed}: " + "  ".join(
                f"{f}:{l:.4f}/{a:.3f}" for f, l, a in curve) + f"  ({row['seconds']:.0f} s)", flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
