"""Hugging Face ``Trainer`` integration: zeroth-order steps with forward passes only.

A plain ``Trainer(optimizers=(ZerothOrder(...), None))`` cannot work: the Trainer
runs ``loss.backward()`` and then calls ``optimizer.step()`` without a closure.
:class:`ZOTrainer` replaces the training step: it builds a closure from the
Trainer's own ``compute_loss`` on the current batch, runs one
:meth:`ZerothOrder.step` with it (``2 * n_directions`` forward passes, no backward,
model in eval mode so dropout is off) and returns the loss. The Trainer holds the
optimizer through :class:`StepWithClosureOnly`, so its later closure-free
``optimizer.step()`` is a no-op, while logging, lr schedulers, evaluation,
checkpoints and ``save_pretrained`` keep working (``state_dict`` of the model folds
pending side-path updates first).

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


class StepWithClosureOnly(torch.optim.Optimizer):
    """The optimizer a :class:`ZOTrainer` hands to the Trainer: a view of a :class:`ZerothOrder`.

    Everything (``param_groups``, ``state``, ``state_dict``, ``load_state_dict``, lr
    schedulers, ``flush``...) goes to the wrapped optimizer, except that a ``step()``
    without a closure does nothing: :meth:`ZOTrainer.training_step` has already
    stepped the optimizer with a closure, and the Trainer's own closure-free
    ``optimizer.step()`` that follows must not step again. The wrapped object is the
    caller's, unchanged (it is composed, not converted).

    Args:
        optimizer: the zeroth-order optimizer (``self.optimizer`` here).
    """

    def __init__(self, optimizer: ZerothOrder) -> None:  # no Optimizer.__init__: the state is the wrapped one's
        self.optimizer = optimizer

    @property
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return self.optimizer.param_groups

    @param_groups.setter
    def param_groups(self, groups: list[dict[str, Any]]) -> None:
        self.optimizer.param_groups = groups

    @property
    def state(self) -> Any:  # type: ignore[override]
        return self.optimizer.state

    @state.setter
    def state(self, state: Any) -> None:
        self.optimizer.state = state

    @property
    def defaults(self) -> dict[str, Any]:  # type: ignore[override]
        return self.optimizer.defaults

    @defaults.setter
    def defaults(self, defaults: dict[str, Any]) -> None:
        self.optimizer.defaults = defaults

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        return self.optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        self.optimizer.load_state_dict(state_dict)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        self.optimizer.add_param_group(param_group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.optimizer.zero_grad(set_to_none=set_to_none)

    def step(self, closure=None):  # type: ignore[override]
        """``ZerothOrder.step(closure)``; nothing without a closure."""
        if closure is None:
            return None
        return self.optimizer.step(closure)

    def __getattr__(self, name: str) -> Any:  # flush, close, config, last_step...
        if name == "optimizer":  # not set yet (e.g. during unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.optimizer, name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.optimizer!r})"


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
        if zo is not None and not isinstance(zo, dict):  # N-H9: zo="mezo" instead of zo={"method": "mezo"}
            raise ValueError(f"zo must be a dict of ZerothOrder keyword arguments, e.g. zo={{'method': 'mezo'}}, "
                             f"got {zo!r}")
        opt = (kwargs.get("optimizers") or (None, None))[0]
        if opt is not None:
            if not isinstance(opt, ZerothOrder):
                raise ValueError(f"ZOTrainer trains with dfo.torch.ZerothOrder, got {type(opt).__name__}")
            if zo:
                raise ValueError("give either zo=... or a ready ZerothOrder in optimizers=, not both")
            kwargs["optimizers"] = (StepWithClosureOnly(opt), kwargs["optimizers"][1])
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
            self.optimizer = StepWithClosureOnly(ZerothOrder(
                [p for p in model.parameters() if p.requires_grad],
                lr=self.args.learning_rate, weight_decay=self.args.weight_decay, model=model, **kw,
            ))
        return self.optimizer

    def train(self, *args: Any, **kwargs: Any):  # noqa: D102 (Trainer API)
        out = super().train(*args, **kwargs)
        if self.optimizer is not None:
            self._zeroth_order().flush()  # pending side-path updates into the weights: parameters read directly are final
        return out

    def _zeroth_order(self) -> ZerothOrder:
        opt = self.optimizer
        while not isinstance(opt, ZerothOrder):  # accelerate's wrapper, then StepWithClosureOnly
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
