"""Typed run state: dataclasses whose ``state_dict`` is generated from their fields, and
an append-only :class:`Trace` whose copies share storage.

:func:`to_tree` turns a dataclass instance into a JSON tree with numpy arrays (the
format of every checkpoint in the package); :func:`from_tree` rebuilds it, reading
each field's declared type. Nothing is listed by hand: a field added to a state class
is saved and restored with no further code.

Example:
    >>> @dataclasses.dataclass
    ... class S:
    ...     x: np.ndarray
    ...     k: int = 0
    >>> s = from_tree(S, to_tree(S(np.ones(2), 3)))
    >>> s.x.tolist(), s.k
    ([1.0, 1.0], 3)
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections import deque
from typing import Any

import numpy as np


def _encode(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_tree(value)
    if isinstance(value, np.random.Generator):
        return json.dumps(value.bit_generator.state)
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple | list | deque):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    return value


def to_tree(state: Any) -> dict[str, Any]:
    """``{field: value}`` of a dataclass instance, recursively (arrays copied,
    generators as their JSON bit-generator state); fields with ``metadata={"save": False}``
    are left out."""
    return {f.name: _encode(getattr(state, f.name)) for f in dataclasses.fields(state)
            if f.metadata.get("save", True)}


def _decode(kind: Any, value: Any) -> Any:
    if value is None:
        return None
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if typing.get_origin(kind) in (typing.Union, types.UnionType) and args:
        kind = args[0]
    if dataclasses.is_dataclass(kind):
        return from_tree(kind, value)
    if kind is np.ndarray:
        return np.array(value)
    if kind is deque:  # L-BFGS pairs (s, y, 1/sᵀy)
        return deque(tuple(np.array(v) if isinstance(v, list | np.ndarray) else v for v in pair) for pair in value)
    if kind is np.random.Generator:
        gen = np.random.default_rng()
        gen.bit_generator.state = json.loads(value)
        return gen
    if kind is float:
        return float(value)
    if kind is int:
        return int(value)
    if kind is bool:
        return bool(value)
    if kind is dict or typing.get_origin(kind) is dict:
        return {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in value.items()}
    if typing.get_origin(kind) is tuple:
        return tuple(np.asarray(v) if isinstance(v, np.ndarray) else v for v in value)
    return value


def from_tree(cls: type, tree: dict[str, Any]) -> Any:
    """Rebuild ``cls`` from :func:`to_tree` output; a missing or unknown field is a
    ``ValueError`` naming it (a state of another layout)."""
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.metadata.get("save", True)]
    names = {f.name for f in fields}
    missing, unknown = sorted(names - set(tree)), sorted(set(tree) - names)
    if missing or unknown:
        raise ValueError(f"{cls.__name__} state: missing {missing}, unknown {unknown}")
    return cls(**{f.name: _decode(hints[f.name], tree[f.name]) for f in fields})


class Trace:
    """Append-only columns of numbers (the run history) whose copies share storage.

    ``copy.deepcopy`` of a Trace costs O(1): the copy and the original share the lists
    and each remembers its own length. The first append by one of them after the other
    has appended past the common length forks the lists (a copy of that length). So a
    caller that copies the optimizer every iteration (the RL trainer's atomic commit)
    pays for the history once, not once per iteration.
    """

    def __init__(self, keys: tuple[str, ...]):
        self._cols: dict[str, list] = {k: [] for k in keys}
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def append(self, **row: Any) -> None:
        cols = self._cols
        if any(len(v) != self._len for v in cols.values()):  # another copy appended: fork
            cols = self._cols = {k: v[:self._len] for k, v in cols.items()}
        for k, v in cols.items():
            v.append(row[k])
        self._len += 1

    def column(self, key: str) -> list:
        col = self._cols[key]
        return col if len(col) == self._len else col[:self._len]

    __getitem__ = column

    def as_dict(self) -> dict[str, list]:
        return {k: self.column(k) for k in self._cols}

    def load(self, columns: dict[str, Any]) -> None:
        self._cols = {k: list(np.asarray(columns[k]).tolist()) if isinstance(columns[k], np.ndarray)
                      else list(columns[k]) for k in self._cols}
        self._len = len(next(iter(self._cols.values()), []))

    def __deepcopy__(self, memo) -> Trace:
        new = Trace.__new__(Trace)
        new._cols, new._len = self._cols, self._len
        return new

    def __getstate__(self) -> dict:
        return {"_cols": self.as_dict(), "_len": self._len}

    def __setstate__(self, state: dict) -> None:
        self._cols, self._len = {k: list(v) for k, v in state["_cols"].items()}, state["_len"]
