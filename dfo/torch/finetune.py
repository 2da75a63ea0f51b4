"""Zeroth-order prompt fine-tuning of a causal LM (the library layer of ``dfo finetune``).

A thin loop around :class:`dfo.torch.ZerothOrder` and
:class:`dfo.torch.sst2.PromptClassifier`: each step samples a batch from the
k-shot training set (indices drawn from ``default_rng([seed, step])``, so a
resumed run sees the same batches), takes one ZO step, and every ``eval_every``
steps measures dev accuracy. Checkpoints (model weights, optimizer state,
history) are written atomically to ``out_dir/checkpoint.pt``; ``resume=True``
continues from it and reproduces the uninterrupted run's losses. Models load
from local folders only (``HF_HUB_OFFLINE=1``).

Example:
    >>> cfg = FinetuneConfig(model="smollm2", method="subzero", steps=100, out_dir="runs/sst2")  # doctest: +SKIP
    >>> result = finetune(cfg)                                                                    # doctest: +SKIP
    >>> result["test_accuracy"]                                                                    # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from dfo.torch.models import load_causal_lm
from dfo.torch.sst2 import PromptClassifier, load_sst2

TASKS = ("sst2",)


@dataclass(frozen=True, kw_only=True)
class FinetuneConfig:
    """Everything a fine-tuning run depends on (saved with the results).

    Attributes:
        model: local Hugging Face folder, or ``"smollm2"``.
        task: only ``"sst2"`` for now.
        method, lr, eps, rank, refresh, momentum, weight_decay, n_directions:
            passed to :class:`dfo.torch.ZerothOrder`.
        steps: optimizer steps (0: evaluate the model zero-shot).
        batch_size: training examples per step (both forward passes share them).
        k, data_seed: which k-shot split.
        seed: optimizer and batch-sampling seed.
        eval_every: dev evaluation period in steps (0: only at the end).
        dev_size, test_size: evaluate on the first N dev/test examples (None: all).
        checkpoint_every: steps between checkpoints (0: only at the end).
        out_dir: where checkpoints and ``results.json`` go (None: nowhere).
        dtype: ``"float32"``, ``"bfloat16"`` or ``"float16"``.
        max_length: prompt truncation length in tokens.
    """

    model: str
    task: str = "sst2"
    method: str = "mezo"
    lr: float = 1e-6
    eps: float = 1e-3
    rank: int = 8
    refresh: int = 50
    momentum: float | None = None
    weight_decay: float = 0.0
    n_directions: int = 1
    steps: int = 1000
    batch_size: int = 16
    k: int = 16
    data_seed: int = 13
    seed: int = 0
    eval_every: int = 0
    dev_size: int | None = None
    test_size: int | None = None
    checkpoint_every: int = 0
    out_dir: str | None = None
    dtype: str = "float32"
    max_length: int = 128

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"unknown task {self.task!r}; available: {TASKS}")
        if self.steps < 0 or self.batch_size < 1:
            raise ValueError(f"steps must be >= 0 and batch_size >= 1, got {self.steps}, {self.batch_size}")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"dtype must be float32, bfloat16 or float16, got {self.dtype!r}")


def _atomic_save(obj: Any, path: Path) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def finetune(
    cfg: FinetuneConfig,
    *,
    resume: bool = False,
    progress: bool = True,
    callback: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run (or resume) a fine-tuning job; returns accuracies, loss history and timings.

    Args:
        cfg: the run.
        resume: continue from ``cfg.out_dir/checkpoint.pt`` if it exists.
        progress: show a tqdm progress bar.
        callback: called with a dict (``step``, ``loss``, ...) after every step.

    Raises:
        FileNotFoundError: ``resume`` without a checkpoint, or a missing model/data.
    """
    import torch
    from tqdm.auto import tqdm

    from dfo.torch.optimizer import ZerothOrder

    model, tokenizer = load_causal_lm(cfg.model, dtype=getattr(torch, cfg.dtype))
    clf = PromptClassifier(model, tokenizer, max_length=cfg.max_length)
    train = load_sst2("train", k=cfg.k, data_seed=cfg.data_seed)
    dev = load_sst2("dev", k=cfg.k, data_seed=cfg.data_seed)[: cfg.dev_size]
    test = load_sst2("test")[: cfg.test_size]
    opt = ZerothOrder(
        [p for p in model.parameters() if p.requires_grad],
        method=cfg.method, lr=cfg.lr, eps=cfg.eps, rank=cfg.rank, refresh=cfg.refresh,
        momentum=cfg.momentum, weight_decay=cfg.weight_decay, n_directions=cfg.n_directions,
        model=model, seed=cfg.seed,
    )
    out = Path(cfg.out_dir) if cfg.out_dir else None
    ckpt = out / "checkpoint.pt" if out else None
    history: dict[str, list] = {"loss": [], "dev": []}
    start = 0
    if resume:
        if ckpt is None or not ckpt.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {ckpt}")
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        if state["config"] != asdict(cfg) | {"steps": state["config"]["steps"]}:
            raise ValueError("--resume: the checkpoint was made with different settings")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        history, start = state["history"], state["step"]

    def save(step: int) -> None:
        if ckpt is not None:
            opt_state = opt.state_dict()  # folds side-path updates into the weights first
            _atomic_save(
                {"config": asdict(cfg), "step": step, "model": model.state_dict(), "optimizer": opt_state,
                 "history": history},
                ckpt,
            )

    t0 = time.perf_counter()
    bar = tqdm(range(start, cfg.steps), total=cfg.steps, initial=start, disable=not progress, desc=cfg.method)
    for step in bar:
        idx = np.random.default_rng([cfg.seed, step]).choice(len(train), size=min(cfg.batch_size, len(train)),
                                                             replace=False)
        batch = [train[i] for i in idx]
        loss = opt.step(lambda: clf.loss(batch))
        history["loss"].append(loss)
        info = {"step": step + 1, "loss": loss}
        if cfg.eval_every and (step + 1) % cfg.eval_every == 0:
            acc = clf.accuracy(dev)
            history["dev"].append((step + 1, acc))
            info["dev_accuracy"] = acc
        bar.set_postfix(loss=f"{np.mean(history['loss'][-20:]):.4f}",
                        **({"dev": f"{history['dev'][-1][1]:.3f}"} if history["dev"] else {}))
        if callback:
            callback(info)
        if cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0:
            save(step + 1)
    train_time = time.perf_counter() - t0
    opt.flush()
    result = {
        "config": asdict(cfg),
        "steps": cfg.steps,
        "forward_passes": 2 * cfg.n_directions * cfg.steps,
        "dev_accuracy": clf.accuracy(dev),
        "test_accuracy": clf.accuracy(test),
        "test_size": len(test),
        "final_train_loss": float(np.mean(history["loss"][-20:])) if history["loss"] else None,
        "history": history,
        "train_seconds": train_time,
    }
    if out is not None:
        if cfg.steps > start:
            save(cfg.steps)
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(result, indent=2))
    opt.close()
    return result
