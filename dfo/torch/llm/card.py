"""A model card (``README.md``) written beside a fine-tuned model saved by ``dfo finetune``.

Hugging Face's convention: a ``README.md`` in the model folder with a YAML header the Hub reads
(``library_name``, ``tags``, ``base_model``, ``datasets``, ``metrics``) and prose for people. The
card states what produced the weights — method, optimizer settings, steps and forward passes,
the k-shot split — and what they score, with the numbers of ``results.json``; nothing is guessed.

Example:
    >>> text = model_card({"config": {"model": "smollm2", "method": "mezo", "lr": 2e-5, "steps": 10,
    ...                    "k": 16, "data_seed": 13, "task": "sst2"}, "task": "sst2", "template": "review",
    ...                    "steps": 10, "forward_passes": 20, "accuracy": {"dev": 0.8, "test": 0.79,
    ...                    "calibrated": False}, "test": {"n": 872}, "dev": {"n": 32}})
    >>> "| test | 0.790 |" in text
    True
"""

from __future__ import annotations

import json
from typing import Any

#: the GLUE data set of each built-in task (the card's ``datasets`` entry)
DATASETS = {"sst2": "glue/sst2", "rte": "glue/rte"}
#: the zeroth-order settings the card lists (from the config's ``zo``)
ZO_KEYS = ("eps", "n_directions", "rank", "refresh", "momentum")


def _yaml_str(value: Any) -> str:
    return json.dumps(str(value))  # a JSON string is a valid YAML scalar


def model_card(result: dict[str, Any]) -> str:
    """The card's text for one run's ``results.json`` dictionary."""
    cfg = result.get("config", {})
    task = result.get("task", cfg.get("task", "?"))
    acc = result.get("accuracy", {})
    kind = "calibrated" if acc.get("calibrated") else "raw"
    method = cfg.get("method", "?")
    zeroth = method != "adam"
    header = ["---", "library_name: transformers", "tags:", "- dfo", "- zeroth-order" if zeroth else "- backprop",
              f"- {method}", f"base_model: {_yaml_str(cfg.get('model', '?'))}"]
    if task in DATASETS:
        header += ["datasets:", f"- {DATASETS[task]}"]
    header += ["metrics:", "- accuracy", "---", ""]
    zo = cfg.get("zo") if isinstance(cfg.get("zo"), dict) else cfg  # runs before zo was nested: flat
    settings = {k: (zo if k in ZO_KEYS else cfg).get(k) for k in ("lr", *ZO_KEYS, "weight_decay", "batch_size",
                                                                   "lora", "seed")}
    settings = {k: v for k, v in settings.items() if v is not None}
    lines = [
        f"# {cfg.get('model', 'model')} fine-tuned on {task} with {method}",
        "",
        f"Made by `dfo finetune` ({'zeroth order: forward passes only' if zeroth else 'backprop (Adam) reference'}).",
        "",
        "## Training",
        "",
        f"- method: `{method}`; settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()),
        f"- steps: {result.get('steps')}; training forward passes: {result.get('forward_passes')}",
        f"- data: {task}, k = {cfg.get('k')} examples per class, split seed {cfg.get('data_seed')} "
        "(LM-BFF k-shot splits of GLUE; `dfo data build-kshot`)",
        f"- prompt template: `{result.get('template')}`"
        + (f", label words {result.get('label_words')}" if result.get("label_words") else ""),
        "",
        "## Evaluation",
        "",
        f"Accuracy ({kind}) of the prompt classifier, label word read at the prompt's end:",
        "",
        "| split | accuracy | examples |",
        "|---|---|---|",
    ]
    for split in ("dev", "test"):
        if isinstance(acc.get(split), (int, float)):
            n = (result.get(split) or {}).get("n", "")
            lines.append(f"| {split} | {acc[split]:.3f} | {n} |")
    lines += ["", "The full record (settings, loss history, both accuracies) is the run's `results.json`.", ""]
    return "\n".join(header + lines)


__all__ = ["model_card"]
