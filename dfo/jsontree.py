"""Nested state as a JSON tree plus a dict of arrays: the one encoder of every dfo checkpoint.

State to checkpoint is a tree of dicts, lists, tuples, ``None``, numbers, strings
and *leaves* (numpy arrays, torch tensors). :class:`TreeCodec` turns it into a
JSON-serializable tree in which each leaf is replaced by ``{leaf_tag: key}`` and
stored in a separate dict under ``key`` (the caller writes that dict as an npz or
a safetensors file); decoding is the exact inverse. Nothing is ever executed or
unpickled: the tree is plain JSON and the tags are a closed set.

Two layouts share the walker, each fixed by the checkpoints already on disk:

* ``compact=False`` (the version-1 RL checkpoints older runs hold, read by :mod:`dfo.policies.checkpoint`): every
  container is tagged, ``{"__dict__": {str(key): ...}}``, ``{"__list__": [...]}``,
  ``{"__tuple__": [...]}``; a leaf's key is its path (``s.a.0``).
* ``compact=True`` (the checkpoint format, :mod:`dfo.run.checkpoint`): lists
  and dicts with plain string keys stay JSON, tuples are ``{"__tuple__": [...]}``
  and other dicts ``{"__dict__": [[key, value], ...]}`` (integer keys survive);
  a leaf's key is its path and a counter (``s.state.0.V#3``).

numpy scalars become Python numbers; floats may be NaN or infinite (Python's
``json`` writes them).

Example:
    >>> import numpy as np
    >>> codec = TreeCodec(leaf_tag="__array__", is_leaf=lambda v: isinstance(v, np.ndarray),
    ...                   store=lambda v: v, root="s", compact=False)
    >>> arrays = {}
    >>> tree = codec.encode({"a": (np.arange(2), None), "b": 3}, arrays)
    >>> tree["__dict__"]["a"], sorted(arrays)
    ({'__tuple__': [{'__array__': 's.a.0'}, None]}, ['s.a.0'])
    >>> codec.decode(tree, arrays)["a"][0].tolist()
    [0, 1]
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

#: :func:`load_json` reads at most this many bytes unless told otherwise
MAX_JSON_BYTES = 64 * 1024 * 1024
#: :func:`load_json` refuses containers nested deeper than this unless told otherwise
MAX_JSON_DEPTH = 200


class TreeError(ValueError):
    """A tree that does not decode: an unknown tag, or a reference to a leaf that is not stored."""


def json_depth(obj: Any) -> int:
    """Nesting depth of a decoded JSON value (0 for a scalar), computed without recursion."""
    deepest, stack = 0, [(obj, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            node = list(node.values())
        if isinstance(node, list):
            deepest = max(deepest, depth + 1)
            stack.extend((v, depth + 1) for v in node)
    return deepest


def read_regular_file(path: str | os.PathLike[str], *, what: str, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most ``max_bytes``, read without blocking on a FIFO or
    reading a device (``/dev/zero``) to the end.

    Raises:
        OSError: it cannot be opened.
        ValueError: not a regular file, or larger than ``max_bytes``.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"{what} {str(path)!r} is not a regular file")
        if st.st_size > max_bytes:
            raise ValueError(f"{what} {str(path)!r} is {st.st_size} bytes, more than the {max_bytes} bytes allowed")
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(f"{what} {str(path)!r} is more than the {max_bytes} bytes allowed")
    return data


def load_json(source: str | os.PathLike[str] | bytes, *, what: str = "JSON file", max_bytes: int = MAX_JSON_BYTES,
              max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse JSON from a regular file (a path) or from bytes, with size and nesting limits.

    Python's parser recurses once per nesting level: a deep document raises ``RecursionError``
    (a traceback) and a huge one, or ``/dev/zero``, exhausts memory. Here each is one
    ``ValueError`` naming ``what``.

    Raises:
        OSError: the file cannot be opened.
        ValueError: not a regular file, too large, not JSON / not UTF-8, or nested deeper than ``max_depth``.
    """
    if isinstance(source, (bytes, bytearray)):
        if len(source) > max_bytes:
            raise ValueError(f"{what} is {len(source)} bytes, more than the {max_bytes} bytes allowed")
        data = bytes(source)
    else:
        data = read_regular_file(source, what=what, max_bytes=max_bytes)
    try:
        value = json.loads(data)
    except RecursionError:
        raise ValueError(f"{what} is nested too deeply (more than {max_depth} levels)") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{what} is not valid JSON: {exc}") from None
    if json_depth(value) > max_depth:
        raise ValueError(f"{what} is nested too deeply (more than {max_depth} levels)")
    return value


@dataclass(frozen=True, kw_only=True)
class TreeCodec:
    """Encoder/decoder of one checkpoint layout (see the module docstring).

    Attributes:
        leaf_tag: the tag of a leaf reference, e.g. ``"__array__"``.
        is_leaf: whether a value is a leaf.
        store: the copy of a leaf that goes into the leaf dict.
        root: the path of the root (first part of every leaf key).
        compact: the compact layout (plain JSON lists/dicts, numbered leaf keys).
    """

    leaf_tag: str
    is_leaf: Callable[[Any], bool]
    store: Callable[[Any], Any]
    root: str
    compact: bool

    def encode(self, obj: Any, leaves: dict[str, Any], path: str | None = None) -> Any:
        """JSON tree of ``obj``; its leaves are added to ``leaves``.

        Raises:
            TypeError: a value of another type; the message names its path.
        """
        path = self.root if path is None else path
        if self.is_leaf(obj):
            key = f"{path}#{len(leaves)}" if self.compact else path
            leaves[key] = self.store(obj)
            return {self.leaf_tag: key}
        if isinstance(obj, (np.integer, np.floating, np.bool_)):
            return obj.item()
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return obj
        if isinstance(obj, tuple):
            return {"__tuple__": [self.encode(v, leaves, f"{path}.{i}") for i, v in enumerate(obj)]}
        if isinstance(obj, list):
            items = [self.encode(v, leaves, f"{path}.{i}") for i, v in enumerate(obj)]
            return items if self.compact else {"__list__": items}
        if isinstance(obj, dict):
            if not self.compact:
                return {"__dict__": {str(k): self.encode(v, leaves, f"{path}.{k}") for k, v in obj.items()}}
            if all(isinstance(k, str) and not k.startswith("__") for k in obj):
                return {k: self.encode(v, leaves, f"{path}.{k}") for k, v in obj.items()}
            return {"__dict__": [[self.encode(k, leaves, path), self.encode(v, leaves, f"{path}.{i}")]
                                 for i, (k, v) in enumerate(obj.items())]}
        raise TypeError(f"cannot checkpoint a value of type {type(obj).__name__} at {path}")

    def decode(self, tree: Any, leaves: dict[str, Any]) -> Any:
        """Inverse of :meth:`encode`.

        Raises:
            TreeError: an unknown tag, or a leaf reference missing from ``leaves``.
        """
        if isinstance(tree, list):
            return [self.decode(v, leaves) for v in tree]
        if not isinstance(tree, dict):
            return tree
        if len(tree) == 1:
            (tag, val), = tree.items()
            if tag == self.leaf_tag:
                if val not in leaves:
                    raise TreeError(f"the state refers to {val!r}, which is not stored")
                return leaves[val]
            if tag == "__tuple__":
                return tuple(self.decode(v, leaves) for v in val)
            if tag == "__list__" and not self.compact:
                return [self.decode(v, leaves) for v in val]
            if tag == "__dict__" and not self.compact:
                return {k: self.decode(v, leaves) for k, v in val.items()}
            if tag == "__dict__":
                return {_key(self.decode(k, leaves)): self.decode(v, leaves) for k, v in val}
        if self.compact and not any(k.startswith("__") for k in tree):
            return {k: self.decode(v, leaves) for k, v in tree.items()}
        raise TreeError(f"unknown entry in the state: {sorted(tree)[:3]}")


def _key(key: Any) -> Any:
    if isinstance(key, list):
        raise TreeError("the state has a list as a dict key")
    return key
