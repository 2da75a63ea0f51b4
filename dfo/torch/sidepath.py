"""Low-rank side paths on ``nn.Linear`` layers.

A linear layer computes ``y = x W^T + b``. A low-rank change of the weight,
``W -> W + L R^T`` with ``L`` (m x r) and ``R`` (n x r), never needs the m x n
matrix: ``x (W + L R^T)^T = x W^T + (x R) L^T``. A forward hook adds the
``(x R) L^T`` term, which costs ``r (m + n)`` multiply-adds per token against the
layer's ``m n``. Zeroth-order optimizers use it to carry both the perturbation
(``eps U Z V^T``) and the updates accumulated inside one subspace, leaving the
weight untouched until the subspace is refreshed (see :mod:`dfo.torch.optimizer`).

Example:
    >>> import torch
    >>> lin = torch.nn.Linear(4, 3)
    >>> side = SidePath(lin)
    >>> side.set(torch.ones(3, 1), torch.ones(4, 1))
    >>> x = torch.randn(2, 4)
    >>> w = lin.weight + torch.ones(3, 1) @ torch.ones(1, 4)
    >>> bool(torch.allclose(lin(x), x @ w.T + lin.bias, atol=1e-6))
    True
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn


class SidePath:
    """A forward hook adding ``(x R) L^T`` to the output of one ``nn.Linear``.

    Args:
        module: the linear layer.
        on_state_dict: called before the layer's ``state_dict`` is taken (the
            optimizer folds pending updates into the weight there).
    """

    def __init__(self, module: nn.Linear, on_state_dict: Callable[[], None] | None = None) -> None:
        self.module = module
        self.left: torch.Tensor | None = None
        self.right: torch.Tensor | None = None
        self._handle = module.register_forward_hook(self._hook)
        self._sd_handle = None
        if on_state_dict is not None:
            self._sd_handle = module.register_state_dict_pre_hook(lambda *a, **k: on_state_dict())

    def set(self, left: torch.Tensor | None, right: torch.Tensor | None) -> None:
        """Use ``W + left right^T`` from now on (``None`` switches the side path off).

        The factors are cast once here to the weight's dtype.
        """
        if left is None or right is None:
            self.left = self.right = None
            return
        dtype = self.module.weight.dtype
        self.left = left.to(dtype)
        self.right = right.to(dtype)

    def remove(self) -> None:
        """Detach the hooks from the module."""
        self._handle.remove()
        if self._sd_handle is not None:
            self._sd_handle.remove()

    def _hook(self, module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor | None:
        if self.left is None:
            return None
        x = args[0]
        xr = x.reshape(-1, x.shape[-1]).to(self.right.dtype) @ self.right  # (tokens, r)
        if torch.is_grad_enabled() or not output.is_contiguous() or output.dtype != xr.dtype:
            return output + (xr @ self.left.T).view(output.shape).to(output.dtype)
        output.view(-1, output.shape[-1]).addmm_(xr, self.left.T)  # fused: no side-sized temporary
        return output


def linear_owners(model: nn.Module) -> dict[int, nn.Linear]:
    """Parameters (by ``id``) that are the weight of exactly one ``nn.Linear`` and used nowhere else.

    Tied weights (an LM head sharing the embedding matrix) are left out: a side
    path on the head alone would not perturb the embedding lookup.
    """
    uses: dict[int, list[tuple[nn.Module, str]]] = {}
    for module in _all_modules(model):
        for name, p in module._parameters.items():
            if p is not None:
                uses.setdefault(id(p), []).append((module, name))
    owners: dict[int, nn.Linear] = {}
    for pid, where in uses.items():
        if len(where) == 1:
            module, name = where[0]
            if type(module) is nn.Linear and name == "weight":
                owners[pid] = module
    return owners


def _all_modules(model: nn.Module) -> list[nn.Module]:
    """Every module object once, including ones registered under several names."""
    seen: dict[int, nn.Module] = {}
    for _, m in model.named_modules(remove_duplicate=False):
        seen.setdefault(id(m), m)
    return list(seen.values())
