"""Rounding drift of zeroth-order steps in half precision: how far the weights move at lr = 0.

A step perturbs the weights by ``+eps z``, ``-2 eps z`` and ``+eps z`` (restore). In
float32 the round trip returns the weights to within a few units in the last place of
float32; in bfloat16 (8 significant bits) and float16 (11) each of the three writes
rounds, and the rounding errors add up as a random walk that no later step undoes. This
bench measures it on the small pretrained Llama ``aidreams260K`` (data folder): the
relative change ``||theta_T - theta_0|| / ||theta_0||`` after ``--steps`` steps with the
learning rate at 0 (so any change is rounding), per dtype and method. Low-rank methods
with ``model=`` perturb ``nn.Linear`` weights on side paths (never written), so only
their other tensors can drift. The remedy rows keep float32 weights and run the forward
passes under ``torch.autocast`` to a half dtype (``dfo finetune --autocast``): the
optimizer's writes stay float32. One process, one thread, SST-2 prompt loss on 16
training sentences.

Example:
    $ python bench/torch_precision_drift.py --steps 200 --out bench/results/torch_precision_drift.md
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def drift(dtype_name: str, method: str, args: argparse.Namespace, autocast: str | None = None) -> tuple[float, float]:
    """(relative weight change, fraction of parameters written in place) after ``args.steps`` steps at lr 0,
    the forward passes under ``torch.autocast(dtype=autocast)`` when given."""
    import warnings

    import torch

    from dfo.torch import ZerothOrder
    from dfo.torch.llm.models import load_lm
    from dfo.torch.llm.prompt import PromptClassifier
    from dfo.torch.llm.tasks import load_split

    model, tok = load_lm(Path(args.data_dir) / "models" / "aidreams260K", dtype=getattr(torch, dtype_name))
    clf = PromptClassifier(model, tok, template="it-was")
    train = load_split("sst2", "train", k=16, data_seed=13, data_dir=args.data_dir)
    batch = clf.encode_batch(train[:8] + train[16:24])
    start = [p.detach().double().clone() for p in model.parameters()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the half-precision warning: what this bench measures
        opt = ZerothOrder(model.parameters(), method=method, lr=0.0, eps=args.eps, rank=4, model=model, seed=0)

    def closure() -> torch.Tensor:
        with torch.autocast("cpu", dtype=getattr(torch, autocast or "float32"), enabled=autocast is not None):
            return clf.loss(batch)

    for _ in range(args.steps):
        opt.step(closure)
    opt.flush()
    num = sum(float((p.detach().double() - q).pow(2).sum()) for p, q in zip(model.parameters(), start))
    den = sum(float(q.pow(2).sum()) for q in start)
    written = sum(s.p.numel() for s in opt._slots if s.placement != "side")
    return (num / den) ** 0.5, written / sum(q.numel() for q in start)


def main() -> None:
    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--eps", type=float, default=1e-3)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for method in ("mezo", "subzero", "lozo"):
        for dtype, autocast in (("float32", None), ("float16", None), ("bfloat16", None),
                                ("float32", "bfloat16")):
            t = time.perf_counter()
            rel, written = drift(dtype, method, args, autocast)
            label = dtype if autocast is None else f"{dtype} weights, {autocast} forward (autocast)"
            rows.append(f"| {method} | {label} | {rel:.2e} | {written:.3f} |")
            print(rows[-1], f"({time.perf_counter() - t:.0f} s)", flush=True)
    text = "\n".join([
        "# Rounding drift of ZO steps per dtype (lr = 0)",
        "",
        f"`python bench/torch_precision_drift.py --steps {args.steps} --out bench/results/torch_precision_drift.md`",
        "",
        f"aidreams260K (231K parameters), SST-2 `it-was` prompt loss, 16 sentences, eps {args.eps}, "
        f"rank 4, `model=` given, {args.steps} steps, 1 thread, {platform.machine()}, torch {torch.__version__}.",
        "Relative change = ||theta_T - theta_0|| / ||theta_0|| with the learning rate at 0: pure rounding.",
        "At lr 0 only the optimizer's writes move the weights, so the"
        " autocast rows equal float32: the half-precision forward enters a real run through the projected gradient only, as in any bfloat16-forward training.",
        "",
        "| method | dtype | relative weight change | fraction of parameters written in place |",
        "|---|---|---|---|",
        *rows,
        "",
    ])
    if args.out:
        Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
