"""A learned verbalizer head: linear probing of the label-word logits before (or instead of) zeroth-order steps.

The prompt classifier of :mod:`dfo.torch.llm.prompt` scores class c by the logit of its label word,
``z_c = w_c . h + b_c``, where ``h`` is the final (normed) hidden state at the read position and
``w_c`` the label word's row of the output embedding. Linear probing (LP; the forward-only baseline
row of Malladi et al. 2023, "Fine-tuning language models with just forward passes", Table 1; LP
before fine-tuning: Kumar et al. 2022, "Fine-tuning can distort pretrained features and underperform
out-of-distribution", ICLR) fits ``W, b`` on the training examples' hidden states with the body frozen:

    min_{W, b}  (1/n) sum_i -log softmax(W h_i + b)[y_i]  +  (lam / 2) ||W - W_0||_F^2

with ``W_0`` the label-word rows, so ``lam -> inf`` is the zero-shot verbalizer and ``W = W_0, b = 0``
reproduces its logits exactly. The objective is convex; it is solved in float64 by L-BFGS (scipy) with
its exact gradient ``(1/n) sum_i (p_i - e_{y_i}) h_i^T + lam (W - W_0)``. ``lam`` is chosen by k-fold
cross-validation accuracy on the training examples alone (ties go to the larger ``lam``; the dev and
test sets are never read).

Cost: one forward pass per training batch to read the hidden states (``ceil(n / batch)``; these count
as training forward passes), then no more: the fit runs on the cached ``n x d`` features. Memory: the
features (``n d`` floats) beside an inference-time model. The zeroth-order steps that follow perturb
the body and keep the fitted head (LP-then-ZO); the head is part of the run's state and is saved
beside the model (``model/verbalizer_head.json``); a run on a model folder that holds one uses that head
with its template (``dfo finetune --model RUN/model --steps 0`` evaluates the fine-tuned classifier).

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> h = rng.normal(size=(200, 5)); y = (h[:, 0] > 0).astype(int)
    >>> fit = fit_probe(h, y, np.zeros((2, 5)), seed=0)
    >>> fit.train_accuracy > 0.9, fit.lam in LAMBDAS
    (True, True)
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

#: the ridge strengths tried by cross-validation, strongest first (ties keep the stronger)
LAMBDAS = (1.0, 0.3, 0.1, 0.03, 0.01)
#: cross-validation folds
FOLDS = 5


@dataclass(frozen=True)
class VerbalizerHead:
    """Class logits ``W h + b`` on the final hidden state (``W``: classes x hidden size, float64)."""

    weight: np.ndarray
    bias: np.ndarray

    def logits(self, hidden: Any) -> Any:
        """``(batch, classes)`` float32 logits of a ``(batch, hidden)`` tensor."""
        w, b = self._tensors(hidden.device)
        return hidden.float() @ w.T + b

    def _tensors(self, device: Any) -> tuple[Any, Any]:
        """``W`` and ``b`` as float32 tensors on ``device``, made once per device (every forward pass reads them)."""
        import torch

        cache = self.__dict__.setdefault("_on_device", {})  # not a field: equality and as_dict ignore it
        if device not in cache:
            cache[device] = (torch.as_tensor(self.weight, dtype=torch.float32, device=device),
                             torch.as_tensor(self.bias, dtype=torch.float32, device=device))
        return cache[device]

    def as_dict(self) -> dict[str, list]:
        return {"weight": self.weight.tolist(), "bias": self.bias.tolist()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> VerbalizerHead:
        """The head of :meth:`as_dict` (a checkpoint's or ``verbalizer_head.json``'s).

        Raises:
            ValueError: shapes that do not fit, or non-finite values (one line).
        """
        w, b = np.asarray(data["weight"], dtype=np.float64), np.asarray(data["bias"], dtype=np.float64)
        if w.ndim != 2 or b.shape != (w.shape[0],) or not (np.isfinite(w).all() and np.isfinite(b).all()):
            raise ValueError(f"verbalizer head: weight {w.shape} and bias {b.shape} do not fit, or are not finite")
        return cls(w, b)


@dataclass(frozen=True)
class ProbeFit:
    """A fitted head and how it was chosen: ``lam``, the cross-validation accuracy of every ``lam`` tried
    (in :data:`LAMBDAS` order), the training accuracy of the refit, and the examples it saw."""

    head: VerbalizerHead
    lam: float
    cv_accuracy: tuple[float, ...]
    train_accuracy: float
    n: int

    def report(self) -> dict[str, Any]:
        return {"lam": self.lam, "cv_accuracy": list(self.cv_accuracy), "lambdas": list(LAMBDAS),
                "train_accuracy": self.train_accuracy, "n": self.n}


def fit_ridge(h: np.ndarray, y: np.ndarray, w0: np.ndarray, b0: np.ndarray, lam: float) -> VerbalizerHead:
    """The head minimising the module docstring's objective at one ``lam`` (L-BFGS from ``W_0, b_0``)."""
    from scipy.optimize import minimize
    from scipy.special import log_softmax

    n, d = h.shape
    c = w0.shape[0]
    rows = np.arange(n)

    def objective(p: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = p[: c * d].reshape(c, d), p[c * d :]
        logp = log_softmax(h @ w.T + b, axis=1)
        g = np.exp(logp)
        g[rows, y] -= 1.0
        g /= n
        loss = -logp[rows, y].mean() + 0.5 * lam * float(((w - w0) ** 2).sum())
        return loss, np.concatenate([(g.T @ h + lam * (w - w0)).ravel(), g.sum(0)])

    res = minimize(objective, np.concatenate([w0.ravel(), b0]), jac=True, method="L-BFGS-B",
                   options={"maxiter": 1000})
    return VerbalizerHead(res.x[: c * d].reshape(c, d).copy(), res.x[c * d :].copy())


def _accuracy(head: VerbalizerHead, h: np.ndarray, y: np.ndarray) -> float:
    return float(((h @ head.weight.T + head.bias).argmax(1) == y).mean())


def fit_probe(hidden: np.ndarray, labels: Sequence[int] | np.ndarray, w0: np.ndarray, b0: np.ndarray | None = None,
              *, seed: int, lambdas: Sequence[float] = LAMBDAS, folds: int = FOLDS) -> ProbeFit:
    """Fit the head on ``hidden`` (n x d) and ``labels``, choosing ``lam`` by ``folds``-fold cross-validation;
    ``W`` starts at and is pulled toward ``w0``, ``b`` starts at ``b0`` (default 0).

    The folds are a permutation by ``default_rng(seed)``; with fewer than ``2 folds`` examples per fold the
    strongest ``lam`` is taken without cross-validation.

    Raises:
        ValueError: shapes that do not fit, or a class with no example.
    """
    h = np.asarray(hidden, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    w0 = np.asarray(w0, dtype=np.float64)
    b0 = np.zeros(w0.shape[0]) if b0 is None else np.asarray(b0, dtype=np.float64)
    if h.ndim != 2 or y.shape != (h.shape[0],) or w0.shape[1:] != (h.shape[1],):
        raise ValueError(f"probe: features {h.shape}, labels {y.shape} and rows {w0.shape} do not fit")
    if y.min(initial=0) < 0 or y.max(initial=0) >= w0.shape[0] or len(np.unique(y)) < 2:
        raise ValueError("probe: the training labels must cover at least two of the classes")
    fold = np.random.default_rng(seed).permutation(len(y)) % folds
    cv: list[float] = []
    if len(y) >= 2 * folds:
        for lam in lambdas:
            cv.append(float(np.mean([_accuracy(fit_ridge(h[fold != k], y[fold != k], w0, b0, lam), h[fold == k], y[fold == k])
                                     for k in range(folds)])))
        lam = lambdas[int(np.argmax(cv))]  # argmax takes the first: the strongest of tied lambdas
    else:
        cv = [math.nan] * len(lambdas)
        lam = lambdas[0]
    head = fit_ridge(h, y, w0, b0, lam)
    return ProbeFit(head, float(lam), tuple(cv), _accuracy(head, h, y), len(y))


#: the fitted head in a saved model folder: JSON ``weight``, ``bias``, ``template``, ``label_words``
HEAD_FILE = "verbalizer_head.json"


def write_head(folder: Path, head: VerbalizerHead, template: str, label_words: Sequence[str]) -> None:
    """Save ``head`` (and the prompt it was fitted for) as ``folder/verbalizer_head.json``."""
    (Path(folder) / HEAD_FILE).write_text(json.dumps({**head.as_dict(), "template": template,
                                                       "label_words": list(label_words)}))


def read_head(folder: str | Path) -> tuple[VerbalizerHead, str, tuple[str, ...]] | None:
    """The head saved in a model folder with its template and label words; None when the folder has none.

    Raises:
        ValueError: a head file that is not valid JSON or does not fit (one line).
    """
    path = Path(folder) / HEAD_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
        return VerbalizerHead.from_dict(data), str(data["template"]), tuple(data["label_words"])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"{path}: not a verbalizer head ({exc})") from None


def label_rows(model: Any, label_ids: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(W_0, b_0)``: the label words' rows of the output embedding and their output bias (0 without one)."""
    head = model.get_output_embeddings()
    w0 = head.weight.detach()[label_ids.to(head.weight.device)].double().cpu().numpy()
    bias = getattr(head, "bias", None)
    b0 = (bias.detach()[label_ids.to(bias.device)].double().cpu().numpy() if bias is not None
          else np.zeros(w0.shape[0]))
    return w0, b0


def final_hidden(model: Any, inputs: dict[str, Any]) -> Any:
    """The final (normed) hidden state at the last position of a causal LM, ``(batch, hidden)``: the input of
    its output embedding, read from the decoder alone (the vocabulary projection is not computed)."""
    decoder = model.get_decoder()
    return decoder(**inputs, use_cache=False).last_hidden_state[:, -1]


__all__ = ["HEAD_FILE", "read_head", "write_head", "FOLDS", "LAMBDAS", "ProbeFit", "VerbalizerHead", "final_hidden", "fit_probe", "fit_ridge", "label_rows"]
