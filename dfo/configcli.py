"""Command-line flags generated from a config dataclass: one home for each setting, its default and its doc.

A command's settings live in one frozen dataclass (``TrainConfig``, ``FinetuneConfig``,
``StudyConfig``). This module reads that class — field names, type annotations, defaults and
the per-field text of its docstring's ``Attributes:`` (or ``Args:``) section — and adds one
``--flag`` per field to an :mod:`argparse` parser, so the flags, their ``--help`` text and the
defaults shown there cannot drift from the class. ``--config FILE`` reads the fields from a
JSON object (a run's own ``config.json`` reruns that run); flags given on the command line
override the file. Nothing in the file is executed: it is parsed with :func:`json.loads` and
each value is checked by the dataclass's own ``__post_init__``.

A field whose type is itself a config dataclass (``FinetuneConfig.zo: ZOConfig``) is *nested*: its
fields get flat flags of their own (``--eps``, not ``--zo-eps``; a dotted name such as ``"zo.method"``
in ``skip``, ``flags``, ``choices`` or ``metavars`` addresses one of them), :func:`given_fields`
returns them as a dict under the field's name (``{"zo": {"eps": 0.01}}``), :func:`read_config_file`
checks the keys of the nested object, and :func:`merge_fields` lays flags over a file's settings
one nested object at a time.

Absent flags do not appear in the parsed namespace (``argparse.SUPPRESS``), so
:func:`given_fields` returns exactly what the user set, and the dataclass default (or a task
preset, where the field's doc says ``None`` = preset) applies to the rest.

Example:
    >>> import argparse, dataclasses
    >>> @dataclasses.dataclass(frozen=True, kw_only=True)
    ... class Cfg:
    ...     '''Demo.
    ...
    ...     Attributes:
    ...         steps: iterations to run.
    ...         widths: layer widths.
    ...     '''
    ...     steps: int = 10
    ...     widths: tuple[int, ...] = (8,)
    >>> p = argparse.ArgumentParser()
    >>> add_config_arguments(p, Cfg)
    >>> given_fields(p.parse_args(["--widths", "64,64"]), Cfg)
    {'widths': (64, 64)}
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

#: a config file larger than this is not a config file
MAX_CONFIG_BYTES = 1 << 20


def field_docs(cls: type) -> dict[str, str]:
    """Per-field text of the class docstring's ``Attributes:`` / ``Args:`` section.

    An entry ``name: text`` may continue on more-indented lines; ``a, b, c: text`` documents
    several fields at once. Returns one line of text per documented field.
    """
    doc = cls.__doc__ or ""
    lines = doc.expandtabs().splitlines()
    docs: dict[str, str] = {}
    in_section, entry_indent, names, text = False, None, [], []

    def flush() -> None:
        for name in names:
            docs[name] = " ".join(" ".join(text).split())

    for line in lines:
        stripped = line.strip()
        if stripped in ("Attributes:", "Args:", "Fields:"):
            in_section, entry_indent = True, None
            continue
        if not in_section:
            continue
        if not stripped:
            continue
        indent = len(line) - len(line.lstrip())
        if entry_indent is None:
            entry_indent = indent
        if indent < entry_indent:  # the section ended (a dedented line: next section or prose)
            flush()
            in_section, names, text = False, [], []
            continue
        match = re.match(r"^([A-Za-z_][\w]*(?:\s*,\s*[A-Za-z_][\w]*)*)\s*(?:\([^)]*\))?:\s*(.*)$", stripped)
        if indent == entry_indent and match:
            flush()
            names = [n.strip() for n in match.group(1).split(",")]
            text = [match.group(2)]
        else:
            text.append(stripped)
    flush()
    return docs


def _plain(text: str) -> str:
    """Docstring markup (``code``, :class:`X`) as plain terminal text."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", text)
    return text.replace("``", "")


def _strip_optional(tp: Any) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def nested_class(tp: Any) -> type | None:
    """The dataclass a field of type ``tp`` holds (``ZOConfig | None`` -> ``ZOConfig``), or None."""
    tp = _strip_optional(tp)
    return tp if isinstance(tp, type) and dataclasses.is_dataclass(tp) else None


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


#: nesting of a JSON flag value beyond this is refused (deeper input would exhaust Python's stack)
MAX_JSON_DEPTH = 64


def _depth(value: Any, limit: int) -> int:
    depth, level = 0, [value]
    while level:
        depth += 1
        if depth > limit:
            return depth
        level = [v for x in level if isinstance(x, (dict, list))
                 for v in (x.values() if isinstance(x, dict) else x)]
    return depth


def _json_object(text: str) -> dict:
    short = text if len(text) <= 80 else text[:77] + "..."
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc}): {short!r}") from None
    except RecursionError:
        raise argparse.ArgumentTypeError(f"JSON nested deeper than Python can read: {short!r}") from None
    if _depth(value, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise argparse.ArgumentTypeError(f"JSON nested deeper than {MAX_JSON_DEPTH} levels: {short!r}")
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object like '{{\"key\": 1}}', got {short!r}")
    return value


def _tuple_of(item: Callable[[str], Any], what: str) -> Callable[[str], tuple]:
    def parse(text: str) -> tuple:
        parts = [t.strip() for t in text.split(",") if t.strip()]
        if not parts:
            raise argparse.ArgumentTypeError(f"expected comma-separated {what}, got {text!r}")
        try:
            return tuple(item(t) for t in parts)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {what}, got {text!r}") from None
    return parse


def parser_for(tp: Any) -> tuple[Callable[[str], Any], str]:
    """(argparse ``type``, metavar) for a field annotation; ``TypeError`` for one it cannot read."""
    tp = _strip_optional(tp)
    if tp is bool:
        return _bool, "BOOL"
    if tp in (int, float, str):
        return tp, tp.__name__.upper()
    origin = typing.get_origin(tp)
    if origin is tuple:
        args = typing.get_args(tp)
        item = args[0] if args else str
        if item in (int, float, str):
            return _tuple_of(item, f"{item.__name__}s"), f"{item.__name__.upper()},..."
    if origin is dict or tp is dict:
        return _json_object, "JSON"
    raise TypeError(f"no command-line form for a field of type {tp!r}")


def none_clause(doc: str) -> tuple[str, str | None]:
    """Split a field doc's ``(``None`` = meaning)`` clause off: (doc without it, meaning or None)."""
    match = re.search(r"\(\s*(?:``)?None(?:``)?\s*[=:]\s*", doc)
    if not match:
        return doc, None
    depth, i = 1, match.end()
    while i < len(doc) and depth:
        depth += {"(": 1, ")": -1}.get(doc[i], 0)
        i += 1
    meaning = doc[match.end():i - 1].strip().rstrip(".;")
    return (doc[:match.start()].rstrip() + doc[i:]).strip(), meaning


def _default_text(field: dataclasses.Field, meaning: str | None) -> str:
    if field.default is not dataclasses.MISSING:
        default = field.default
    elif field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        default = field.default_factory()  # type: ignore[misc]
    else:
        return "required"
    if default is None:
        return meaning or "none"
    if isinstance(default, tuple):
        return ",".join(str(v) for v in default) if default else "none"
    if isinstance(default, dict):
        return json.dumps(default) if default else "none"
    return str(default)


def add_config_arguments(
    parser: argparse.ArgumentParser,
    cls: type,
    *,
    skip: Iterable[str] = (),
    flags: Mapping[str, str] | None = None,
    choices: Mapping[str, Iterable[Any]] | None = None,
    repeatable: Iterable[str] = (),
    metavars: Mapping[str, str] | None = None,
    parsers: Mapping[str, Callable[[str], Any]] | None = None,
    group_title: str | None = None,
) -> None:
    """Add one flag per field of the dataclass ``cls`` (except ``skip``).

    Args:
        flags: field -> option name where it is not ``--field-name`` (e.g. a shorter one).
        choices: field -> allowed values (shown in ``--help``).
        repeatable: tuple fields given by repeating the flag (``--import a --import b``)
            instead of a comma-separated list.
        metavars: field -> the placeholder ``--help`` shows for its value.
        parsers: field -> the argparse ``type`` where the annotation alone does not say how to
            read the text (a tuple mixing numbers and words, say).

        group_title: put the flags in an argument group with this title.

    A ``bool`` field whose default is ``False`` is a switch: ``--flag`` sets it, and
    ``--flag false`` is accepted too. A field holding a config dataclass adds a flat flag for each
    of its fields (keys of ``skip``, ``flags``... name them dotted: ``"zo.method"``).
    """
    skip, repeatable = set(skip), set(repeatable)
    flags, choices, metavars, parsers = dict(flags or {}), dict(choices or {}), dict(metavars or {}), dict(parsers or {})
    target = parser.add_argument_group(group_title) if group_title else parser
    _add_fields(target, cls, "", skip=skip, flags=flags, choices=choices, repeatable=repeatable, metavars=metavars,
                parsers=parsers)


def _add_fields(target: Any, cls: type, prefix: str, *, skip: set[str], flags: dict[str, str],
                choices: dict[str, Iterable[Any]], repeatable: set[str], metavars: dict[str, str],
                parsers: dict[str, Callable[[str], Any]]) -> None:
    """The flags of ``cls``'s fields; a nested config's fields under ``prefix`` (``"zo."``), with flat flags."""
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    for field in dataclasses.fields(cls):
        name = prefix + field.name  # the dotted name: the dest, and the key of skip / flags / choices
        if name in skip or not field.init:
            continue
        inner = nested_class(hints[field.name])
        if inner is not None:
            _add_fields(target, inner, name + ".", skip=skip, flags=flags, choices=choices, repeatable=repeatable,
                        metavars=metavars, parsers=parsers)
            continue
        doc, meaning = none_clause(docs.get(field.name, ""))
        option = flags.get(name, "--" + field.name.replace("_", "-"))
        kwargs: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS}
        if name in repeatable:
            item = typing.get_args(_strip_optional(hints[field.name]))
            kwargs.update(action="append", type=item[0] if item else str, metavar=field.name.upper())
        elif name in parsers:
            kwargs.update(type=parsers[name], metavar=field.name.upper())
        else:
            kind, metavar = parser_for(hints[field.name])
            kwargs.update(type=kind, metavar=metavar)
            if kind is _bool and field.default in (False, None):  # a switch (None: the field's automatic choice)
                kwargs.update(nargs="?", const=True)
        if name in metavars:
            kwargs["metavar"] = metavars[name]
        if name in choices:
            kwargs["choices"] = list(choices[name])
            kwargs.pop("metavar")
        text = f"{_plain(doc) or field.name.replace('_', ' ')} (default: {_plain(_default_text(field, meaning))})"
        kwargs["help"] = text.replace("%", "%%")  # argparse reads '%' in help as a format directive
        target.add_argument(option, **kwargs)


def given_fields(args: argparse.Namespace, cls: type, *, skip: Iterable[str] = ()) -> dict[str, Any]:
    """The fields of ``cls`` that the command line set (repeatable flags as tuples; a nested config's
    flags as a dict under its field name).

    ``skip``: fields the command reads another way (a positional argument of the same name).
    """
    names = {f.name for f in dataclasses.fields(cls) if f.init} - set(skip)
    out: dict[str, Any] = {}
    for dest, value in vars(args).items():
        head, _, rest = dest.partition(".")
        if head not in names:
            continue
        value = tuple(value) if isinstance(value, list) else value
        if rest:
            out.setdefault(head, {})[rest] = value
        else:
            out[dest] = value
    return out


def merge_fields(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` laid on top; a nested config's dicts are merged key by key (a flag given on
    the command line overrides that one setting of a ``--config`` file, not the whole nested object)."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = {**out[key], **value}
        else:
            out[key] = value
    return out


def add_config_file_argument(parser: argparse.ArgumentParser, what: str = "a run's config.json") -> None:
    """``--config FILE``: settings from a JSON object (e.g. ``RUN/config.json``); flags override it."""
    parser.add_argument("--config", type=Path, default=None, metavar="FILE",
                        help=f"read settings from a JSON file ({what}); flags given here override it")


def read_config_file(path: str | Path, cls: type, *, ignore: Iterable[str] = (),
                     upgrade: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> dict[str, Any]:
    """The fields of ``cls`` in the JSON object at ``path``.

    ``ignore``: keys a run writes beside the fields (a run id, versions) that are skipped.
    ``upgrade``: rewrites the object of an older layout into the current one before its keys are
    checked (``FinetuneConfig``'s flat optimizer settings into its nested ``zo``).
    A ``"config"`` member holding the object is accepted too (``{"config": {...}, ...}``).
    A nested config's object (or null) is read the same way, its keys checked against its class.

    Raises:
        ValueError: not a regular file, too large, not a JSON object, or unknown keys (named).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--config {path}: not a regular file")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ValueError(f"--config {path}: larger than {MAX_CONFIG_BYTES >> 10} KiB; not a config file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"--config {path}: not a JSON file ({exc})") from None
    except RecursionError:
        raise ValueError(f"--config {path}: JSON nested deeper than Python can read") from None
    if _depth(data, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise ValueError(f"--config {path}: JSON nested deeper than {MAX_JSON_DEPTH} levels")
    if isinstance(data, dict) and isinstance(data.get("config"), dict):
        data = data["config"]
    if not isinstance(data, dict):
        raise ValueError(f"--config {path}: expected a JSON object of settings")
    if upgrade is not None:
        data = upgrade(dict(data))
    return _fields_of(data, cls, set(ignore), f"--config {path}")


def _fields_of(data: dict[str, Any], cls: type, ignore: set[str], where: str) -> dict[str, Any]:
    """``data``'s fields of ``cls`` (lists as tuples where the field is a tuple), nested objects likewise."""
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names - ignore)
    if unknown:
        raise ValueError(f"{where}: unknown settings {unknown} (known: {sorted(names)})")
    hints = typing.get_type_hints(cls)
    out = {}
    for name, value in data.items():
        if name in ignore:
            continue
        inner = nested_class(hints[name])
        if inner is not None and value is not None:
            if not isinstance(value, dict):
                raise ValueError(f"{where}: {name} must be a JSON object of settings (or null)")
            out[name] = _fields_of(value, inner, set(), f"{where} {name}")
            continue
        tp = typing.get_origin(_strip_optional(hints[name]))
        out[name] = tuple(value) if tp is tuple and isinstance(value, list) else value
    return out


__all__ = [
    "add_config_arguments",
    "add_config_file_argument",
    "field_docs",
    "given_fields",
    "merge_fields",
    "nested_class",
    "parser_for",
    "read_config_file",
]
