"""Hugging Face ``Trainer`` integration: zeroth-order steps with forward passes only.

A plain ``Trainer(optimizers=(ZerothOrder(...), None))`` cannot work: the Trainer
runs ``loss.backward()`` and then calls ``optimizer.step()`` without a closure.
:class:`ZOTrainer` replaces the training step: it builds a closure from the
Trainer's own ``compute_loss`` on the current batch, runs one
:meth:`ZerothOrder.step` with it (``2 * n_directions`` forward passes, no backward,
model in eval mode so dropout is off) and returns the loss. The Trainer's later
``optimizer.step()`` call is a no-op (:class:`TrainerZerothOrder`), so logging, lr
schedulers, evaluation, checkpoints and ``save_pretrained`` keep working
(``state_dict`` of the model folds pending side-path updates first).

Example:
    >>> from dfo.torch.hf import ZOTrainer                                    # doctest: +SKIP
    >>> trainer = ZOTrainer(model=model, args=TrainingArguments("out", learning_rate=1e-6),
    ...                     train_dataset=ds, zo=dict(method="subzero", eps=1e-3, rank=8))  # doctest: +SKIP
    >>> trainer.train()                                                       # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import torch
import transformers

from dfo.torch.optimizer import ZerothOrder


class TrainerZerothOrder(ZerothOrder):
    """A :class:`ZerothOrder` whose closure-free ``step()`` does nothing.

    :class:`ZOTrainer` steps it with a closure inside ``training_step``; the call
    the Trainer makes afterwards (``optimizer.step()``) must not step again.
    """

    def step(self, closure=None):  # type: ignore[override]
        if closure is None:
            return None
        return super().step(closure)


class ZOTrainer(transformers.Trainer):
    """``transformers.Trainer`` that trains with :class:`ZerothOrder` (forward passes only).

    Args:
        zo: keyword arguments for :class:`ZerothOrder` (``method``, ``eps``, ``rank``,
            ``refresh``, ``momentum``, ``n_directions``, ``seed``, ``eval_mode``).
            ``lr`` and ``weight_decay`` come from ``TrainingArguments``
            (``learning_rate``, ``weight_decay``), the seed defaults to ``args.seed``.
        *args, **kwargs: as for ``transformers.Trainer``. ``optimizers=(opt, sched)``
            may pass a ready :class:`ZerothOrder`.

    Raises:
        ValueError: ``gradient_accumulation_steps > 1`` (put the micro-batches in one
            closure instead: a ZO step needs the whole batch under one perturbation),
            or a passed optimizer that is not a :class:`ZerothOrder`.
    """

    def __init__(self, *args: Any, zo: dict[str, Any] | None = None, **kwargs: Any) -> None:
        opt = (kwargs.get("optimizers") or (None, None))[0]
        if opt is not None:
            if not isinstance(opt, ZerothOrder):
                raise ValueError(f"ZOTrainer trains with dfo.torch.ZerothOrder, got {type(opt).__name__}")
            if zo:
                raise ValueError("give either zo=... or a ready ZerothOrder in optimizers=, not both")
            opt.__class__ = TrainerZerothOrder  # same object and state; only the closure-free step changes
        super().__init__(*args, **kwargs)
        if self.args.gradient_accumulation_steps != 1:
            raise ValueError("ZOTrainer needs gradient_accumulation_steps=1: one ZO step perturbs the weights once "
                             "for the whole batch (use a larger per_device_train_batch_size instead)")
        self.zo_kwargs = dict(zo or {})

    def create_optimizer(self, model: torch.nn.Module | None = None):  # noqa: D102 (Trainer API)
        if self.optimizer is None:
            model = self.model if model is None else model
            kw = dict(self.zo_kwargs)
            kw.setdefault("seed", int(self.args.seed))
            self.optimizer = TrainerZerothOrder(
                [p for p in model.parameters() if p.requires_grad],
                lr=self.args.learning_rate, weight_decay=self.args.weight_decay, model=model, **kw,
            )
        return self.optimizer

    def train(self, *args: Any, **kwargs: Any):  # noqa: D102 (Trainer API)
        out = super().train(*args, **kwargs)
        if self.optimizer is not None:
            self._zeroth_order().flush()  # pending side-path updates into the weights: parameters read directly are final
        return out

    def _zeroth_order(self) -> ZerothOrder:
        opt = self.optimizer
        while not isinstance(opt, ZerothOrder):  # accelerate wraps it
            opt = opt.optimizer
        return opt

    def training_step(self, model: torch.nn.Module, inputs: dict[str, Any],
                      num_items_in_batch: Any = None) -> torch.Tensor:
        """One ZO step on ``inputs``: two forward passes per direction, no backward."""
        inputs = self._prepare_inputs(inputs)

        def closure() -> torch.Tensor:
            with self.compute_loss_context_manager():
                return self.compute_loss(model, inputs)

        loss = self._zeroth_order().step(closure)
        return torch.tensor(loss, device=self.args.device)
