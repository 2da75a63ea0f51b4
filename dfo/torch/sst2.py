"""SST-2 in the k-shot format of LM-BFF / MeZO, and its prompt-based classifier.

Data (``../shared/data/sst2``, or ``$DFO_SHARED_DATA/sst2``): ``K-SEED/train.tsv``,
``K-SEED/dev.tsv`` with K sentences per class, and ``test.tsv`` (872 sentences,
the GLUE validation set). The prompt follows MeZO's SST-2 template: the sentence
followed by `` It was`` and a verbalizer token per class (`` terrible`` = 0,
`` great`` = 1). The loss is the cross-entropy over the verbalizer-token logits at
the last position; the prediction is their argmax.

Example:
    >>> train = load_sst2("train", k=16, data_seed=13)     # doctest: +SKIP
    >>> len(train), train[0].label in (0, 1)               # doctest: +SKIP
    (32, True)
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

TEMPLATE = "{sentence} It was"
VERBALIZER = (" terrible", " great")


@dataclass(frozen=True, kw_only=True)
class Example:
    """One labelled sentence."""

    sentence: str
    label: int


def shared_data_dir() -> Path:
    """``$DFO_SHARED_DATA`` or ``<repo>/../shared/data``."""
    env = os.environ.get("DFO_SHARED_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def load_sst2(split: str, *, k: int = 16, data_seed: int = 13, root: Path | None = None) -> list[Example]:
    """Read one split.

    Args:
        split: ``"train"``, ``"dev"`` (the k-shot files) or ``"test"``.
        k: examples per class of the k-shot split (16 or 512).
        data_seed: seed of the k-shot split (13, 21, 42, 87 or 100).
        root: data folder (default :func:`shared_data_dir`).

    Raises:
        FileNotFoundError: the split is not in the data folder.
    """
    base = (root or shared_data_dir()) / "sst2"
    if split == "test":
        path = base / "test.tsv"
    elif split in ("train", "dev"):
        path = base / f"{k}-{data_seed}" / f"{split}.tsv"
    else:
        raise ValueError(f"split must be 'train', 'dev' or 'test', got {split!r}")
    if not path.is_file():
        raise FileNotFoundError(f"SST-2 split not found: {path} (k={k}, data_seed={data_seed})")
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    header, body = rows[0], rows[1:]
    if header[:2] != ["sentence", "label"]:
        raise ValueError(f"{path}: expected header 'sentence<TAB>label', got {header}")
    return [Example(sentence=r[0].strip(), label=int(r[1])) for r in body if r]


class PromptClassifier:
    """Prompt + verbalizer classification with a causal LM.

    Args:
        model: a transformers causal LM (``model(input_ids, attention_mask,
            position_ids, logits_to_keep=1).logits``).
        tokenizer: its tokenizer.
        template: format string with ``{sentence}``.
        verbalizer: one word per class; the first token of each is used.
        max_length: prompts are truncated (from the left) to this many tokens.

    Raises:
        ValueError: two verbalizer words start with the same token.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        template: str = TEMPLATE,
        verbalizer: Sequence[str] = VERBALIZER,
        max_length: int = 128,
    ) -> None:
        import torch

        self.model, self.tokenizer, self.template, self.max_length = model, tokenizer, template, max_length
        ids = [tokenizer.encode(w, add_special_tokens=False)[0] for w in verbalizer]
        if len(set(ids)) != len(ids):
            raise ValueError(f"verbalizer words {list(verbalizer)} share a first token ({ids})")
        self.label_ids = torch.tensor(ids)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)

    def encode(self, sentences: Sequence[str]) -> dict[str, Any]:
        """Left-padded ``input_ids``, ``attention_mask`` and matching ``position_ids``."""
        import torch

        seqs = [
            self.tokenizer.encode(self.template.format(sentence=s))[-self.max_length :] for s in sentences
        ]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, width - len(s) :] = torch.tensor(s)
            mask[i, width - len(s) :] = 1
        pos = (mask.cumsum(1) - 1).clamp(min=0)
        return {"input_ids": ids, "attention_mask": mask, "position_ids": pos}

    def logits(self, sentences: Sequence[str]) -> Any:
        """Verbalizer logits at the last position, shape ``(batch, n_classes)``."""
        device = next(self.model.parameters()).device
        batch = {k: v.to(device) for k, v in self.encode(sentences).items()}
        out = self.model(**batch, logits_to_keep=1, use_cache=False)
        return out.logits[:, -1, :].index_select(-1, self.label_ids.to(device)).float()

    def loss(self, examples: Sequence[Example]) -> Any:
        """Mean cross-entropy over the verbalizer logits."""
        import torch
        import torch.nn.functional as F

        logits = self.logits([e.sentence for e in examples])
        labels = torch.tensor([e.label for e in examples], device=logits.device)
        return F.cross_entropy(logits, labels)

    def accuracy(self, examples: Sequence[Example], batch_size: int = 32) -> float:
        """Fraction of ``examples`` whose verbalizer argmax is the label."""
        import torch

        correct = 0
        with torch.no_grad():
            for i in range(0, len(examples), batch_size):
                chunk = examples[i : i + batch_size]
                pred = self.logits([e.sentence for e in chunk]).argmax(-1).cpu()
                correct += int((pred == torch.tensor([e.label for e in chunk])).sum())
        return correct / max(1, len(examples))
