"""Low-rank side paths on ``nn.Linear`` layers.

A linear layer computes ``y = x W^T + b``. A low-rank change of the weight,
``W -> W + L R^T`` with ``L`` (m x r) and ``R`` (n x r), never needs the m x n
matrix: ``x (W + L R^T)^T = x W^T + (x R) L^T``. A forward hook adds the
``(x R) L^T`` term, which costs ``r (m + n)`` multiply-adds per token against the
layer's ``m n``. Zeroth-order optimizers use it to carry both the perturbation
(``eps U Z V^T``) and the updates accumulated inside one subspace, leaving the
weight untouched until the subspace is refreshed (see :mod:`dfo.torch.placements`).

A weight tied between an ``nn.Embedding`` (m rows of width n) and an ``nn.Linear``
(a language model's input embedding and output head) gets both hooks with the same
factors: the lookup becomes ``(W + L R^T)[ids] = W[ids] + L[ids] R^T`` (a gather of
r numbers per token), the head as above.

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
import torch.nn.functional as F
from torch import nn


class SidePath:
    """Forward hooks that make one ``nn.Linear`` (and a tied ``nn.Embedding``) use ``W + L R^T``.

    Args:
        module: the linear layer.
        on_state_dict: called before the ``state_dict`` of a hooked module is taken
            (the optimizer folds pending updates into the weight there).
        embedding: an ``nn.Embedding`` sharing the linear layer's weight.
    """

    def __init__(self, module: nn.Linear, on_state_dict: Callable[[], None] | None = None,
                 embedding: nn.Embedding | None = None) -> None:
        self.module = module
        self.left: torch.Tensor | None = None
        self.right: torch.Tensor | None = None
        self._right_t: torch.Tensor | None = None  # right^T, contiguous (r x n)
        self._handles = [module.register_forward_hook(self._hook)]
        if embedding is not None:
            self._handles.append(embedding.register_forward_hook(self._embedding_hook))
        if on_state_dict is not None:
            for m in (module, embedding):
                if m is not None:
                    self._handles.append(m.register_state_dict_pre_hook(lambda *a, **k: on_state_dict()))

    def set(self, left: torch.Tensor | None, right: torch.Tensor | None) -> None:
        """Use ``W + left right^T`` from now on (``None`` switches the side path off).

        The factors are cast once here to the weight's dtype.
        """
        if left is None or right is None:
            self.left = self.right = self._right_t = None
            return
        dtype = self.module.weight.dtype
        self.left = left.to(dtype)
        self.right = right.to(dtype)
        self._right_t = self.right.T.contiguous()

    def remove(self) -> None:
        """Detach the hooks from the modules."""
        for h in self._handles:
            h.remove()
        self._handles.clear()

    def _hook(self, module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor | None:
        if self.left is None:
            return None
        x = args[0]
        # (tokens, r); F.linear with a contiguous r x n weight is ~3x faster on CPU than x @ right (n x r)
        xr = F.linear(x.reshape(-1, x.shape[-1]).to(self.right.dtype), self._right_t)
        if torch.is_grad_enabled() or not output.is_contiguous() or not output.dtype == xr.dtype == self.left.dtype:
            # under torch.autocast the layer's output and xr are in the autocast dtype, the factors are not
            return output + (xr @ self.left.T).view(output.shape).to(output.dtype)
        output.view(-1, output.shape[-1]).addmm_(xr, self.left.T)  # fused: no side-sized temporary
        return output

    def _embedding_hook(self, module: nn.Module, args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor | None:
        if self.left is None:
            return None
        extra = F.linear(F.embedding(args[0], self.left), self.right)  # (..., r) @ (r, n)
        if torch.is_grad_enabled() or output.dtype != extra.dtype:
            return output + extra.to(output.dtype)
        output.add_(extra)
        return output


def linear_owners(model: nn.Module) -> dict[int, tuple[nn.Linear, nn.Embedding | None]]:
    """Weights (by ``id``) that can take a side path: ``(linear, tied embedding or None)``.

    A weight qualifies when it is the weight of exactly one ``nn.Linear`` and used
    nowhere else, or of exactly one ``nn.Linear`` and one ``nn.Embedding`` (without
    ``max_norm``, which rewrites the weight during the lookup) and nothing else.
    """
    uses: dict[int, list[tuple[nn.Module, str]]] = {}
    for module in _all_modules(model):
        for name, p in module._parameters.items():
            if p is not None:
                uses.setdefault(id(p), []).append((module, name))
    owners: dict[int, tuple[nn.Linear, nn.Embedding | None]] = {}
    for pid, where in uses.items():
        if any(name != "weight" for _, name in where):
            continue
        linears = [m for m, _ in where if type(m) is nn.Linear]
        embeds = [m for m, _ in where if type(m) is nn.Embedding and m.max_norm is None]
        if len(linears) == 1 and len(where) == 1:
            owners[pid] = (linears[0], None)
        elif len(linears) == 1 and len(embeds) == 1 and len(where) == 2:
            owners[pid] = (linears[0], embeds[0])
    return owners


def _all_modules(model: nn.Module) -> list[nn.Module]:
    """Every module object once, including ones registered under several names."""
    seen: dict[int, nn.Module] = {}
    for _, m in model.named_modules(remove_duplicate=False):
        seen.setdefault(id(m), m)
    return list(seen.values())
