"""Few-shot classification tasks for prompt fine-tuning: data layout, prompts and verbalizers as data.

A task is one :class:`Task` entry in :data:`TASKS`: where its files live, which
TSV columns feed which prompt fields, its label values in class order, and a
tuple of :class:`Template` entries (prompt text + one label word per class).
Adding a task or a prompt is adding an entry; no code changes. A task can also live in a
JSON file (data, never code: :func:`task_from_json`), which ``get_task`` / ``--task`` accept
by path, so an installed package takes new tasks without editing it.

Data layout (LM-BFF / MeZO k-shot format, Gao et al. 2021): ``<data>/<folder>/K-SEED/train.tsv``,
``K-SEED/dev.tsv`` (K examples per class, drawn with seed SEED; the dev files are
sorted by label) and ``<data>/<folder>/test.tsv``. The data folder is never
guessed: it is the ``data_dir`` argument, else ``$DFO_DATA``.

Templates per task (the prompt ends just before the label word, whose first
token's logit is read at the last position of a causal LM, or at the mask appended to the
prompt for a masked LM):

* SST-2 ``it-was``: ``<sentence> It was`` + `` terrible`` / `` great`` — the manual
  prompt of LM-BFF (Gao et al. 2021) and MeZO (Malladi et al. 2023).
* SST-2 ``review``: ``Review: <sentence>\\nSentiment:`` + `` negative`` / `` positive`` (instruct style).
* SST-2 ``question``: ``<sentence>\\nQuestion: Is this review positive or negative?\\nAnswer:``
  + `` negative`` / `` positive`` (question answering style, as in GPT-3's few-shot prompts).
* RTE ``mezo``: ``<premise>\\nDoes this mean that "<hypothesis>" is true? Yes or No?\\n``
  + ``Yes`` / ``No`` — MeZO's prompt for autoregressive models.
* RTE ``gpt3``: ``<premise>\\nQuestion: <hypothesis> True or False?\\nAnswer:`` + `` True`` /
  `` False`` (Brown et al. 2020).
* RTE ``instruct``: ``Premise: ...\\nHypothesis: ...\\nDoes the premise entail the hypothesis?
  Answer yes or no.\\nAnswer:`` + `` yes`` / `` no``.

Example:
    >>> task = get_task("sst2")
    >>> task.template("review").label_words
    (' negative', ' positive')
    >>> task.template("it-was").format({"sentence": "a gem ."})
    'a gem . It was'
"""

from __future__ import annotations

import csv
import os
import re
import string
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from dfo.jsontree import load_json

DATA_ENV = "DFO_DATA"
#: earlier name of :data:`DATA_ENV`, still read
LEGACY_DATA_ENV = "DFO_SHARED_DATA"


class TaskError(ValueError):
    """A task, split, template or data folder that does not exist or does not fit."""


#: a task or template name: a plain identifier (it names run folders and appears in logs)
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
#: a format field's spec: at most fill/align, sign, width and precision, each bounded (no nested fields)
FORMAT_SPEC = re.compile(r"(?:[^{}]?[<>=^])?[+\- ]?(?P<width>\d*)(?:\.(?P<precision>\d+))?s?")
#: widest padding a format field may ask for (``{sentence:>3000000}`` took 76 s and 1.1 GB)
MAX_FORMAT_WIDTH = 1000
#: limits of a task file (a real one is a few KB)
MAX_TASK_FILE_BYTES = 1024 * 1024
MAX_TASK_FILE_DEPTH = 8
MAX_TEMPLATES = 100
MAX_TEXT_CHARS = 10_000


def check_name(what: str, name: str) -> str:
    """``name`` if it is a plain identifier (letters, digits, ``_``, ``-``; at most 64), else a TaskError."""
    if not isinstance(name, str) or NAME.fullmatch(name) is None:
        raise TaskError(f"{what} must be a plain name (letters, digits, _ and -, at most 64), got {ascii(name)}")
    return name


def check_text(what: str, text: str, *, allow: str = "") -> str:
    """``text`` if it holds no control characters (escape sequences would reach terminals and logs)
    other than those in ``allow``, else a TaskError."""
    bad = sorted({c for c in text if unicodedata.category(c) == "Cc" and c not in allow})
    if bad:
        raise TaskError(f"{what} holds control characters {[ascii(c) for c in bad][:3]}, got {ascii(text)[:80]}")
    return text


def template_fields(what: str, text: str) -> set[str]:
    """The fields a template pattern uses, each checked: a plain name (no attribute or index access),
    no nested field in its spec, a width and precision of at most :data:`MAX_FORMAT_WIDTH`.

    Raises:
        TaskError: an invalid pattern, or a field that is not plain and bounded.
    """
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise TaskError(f"{what} is not a valid pattern ({exc})") from None
    fields = set()
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        if not field.isidentifier() or field.startswith("_"):
            raise TaskError(f"{what}: field {{{field}}} must be a plain name (no attributes, indexes or "
                            "positional fields)")
        m = FORMAT_SPEC.fullmatch(spec or "")
        if m is None or "{" in (spec or "") or conversion not in (None, "s", "r"):
            raise TaskError(f"{what}: field {{{field}}} has a format spec {spec!r} that is not a plain "
                            "alignment/width (no nested fields)")
        for part in ("width", "precision"):
            if m.group(part) and int(m.group(part)) > MAX_FORMAT_WIDTH:
                raise TaskError(f"{what}: field {{{field}}} asks for a {part} of {int(m.group(part))}; "
                                f"at most {MAX_FORMAT_WIDTH}")
        fields.add(field)
    return fields


@dataclass(frozen=True, kw_only=True)
class Template:
    """A prompt and its verbalizer.

    Attributes:
        name: short identifier (``--template``).
        text: ``str.format`` pattern over the task's fields; the label word follows it.
        label_words: one word per class, in class order, exactly as appended to the prompt
            (usually with a leading space).
        source: where the prompt comes from.
    """

    name: str
    text: str
    label_words: tuple[str, ...]
    source: str = ""

    def format(self, fields: Mapping[str, str]) -> str:
        """The prompt for one example."""
        return self.text.format(**fields)


@dataclass(frozen=True, kw_only=True)
class Example:
    """One labelled example: the prompt fields (``sentence``, or ``premise``/``hypothesis``) and a class index."""

    fields: Mapping[str, str]
    label: int

    @property
    def sentence(self) -> str:
        """The first field (the sentence of a single-sentence task)."""
        return next(iter(self.fields.values()))


@dataclass(frozen=True, kw_only=True)
class Task:
    """A classification task in the k-shot TSV layout.

    Attributes:
        name: identifier (``--task``).
        folder: sub-folder of the data folder.
        columns: prompt field -> TSV column.
        label_column: TSV column of the label.
        labels: label values as written in the files, in class order.
        templates: prompts; the first is the fallback when no dev measurement chose one.
        max_length: prompts are cut to their last ``max_length`` tokens.
        k_values, data_seeds: the k-shot splits the data set ships.
    """

    name: str
    folder: str
    columns: Mapping[str, str]
    label_column: str
    labels: tuple[str, ...]
    templates: tuple[Template, ...]
    max_length: int = 128
    k_values: tuple[int, ...] = (16, 512)
    data_seeds: tuple[int, ...] = (13, 21, 42, 87, 100)

    def __post_init__(self) -> None:
        where = f"task {self.name!r}"
        if len(self.labels) < 2 or len(set(self.labels)) != len(self.labels):
            raise TaskError(f"{where}: labels must be two or more distinct values, got {list(self.labels)}")
        if not self.columns:
            raise TaskError(f"{where}: columns must map at least one prompt field to a TSV column")
        if not self.templates or len({t.name for t in self.templates}) != len(self.templates):
            raise TaskError(f"{where}: needs one or more templates with distinct names")
        check_name("task name", self.name)
        for field in self.columns:
            if not (isinstance(field, str) and field.isidentifier() and not field.startswith("_")):
                raise TaskError(f"{where}: prompt field {ascii(field)} must be a plain name (a Python identifier)")
        for value in (*self.columns.values(), self.label_column, *self.labels):
            check_text(f"{where}: column or label", value)
        for t in self.templates:
            check_name(f"{where}: template name", t.name)
            check_text(f"{where}: template {t.name!r}", t.text, allow="\n\t")
            for w in (*t.label_words, t.source):
                check_text(f"{where}: template {t.name!r} label word or source", w)
            if len(t.label_words) != len(self.labels):
                raise TaskError(f"{where}: template {t.name!r} has {len(t.label_words)} label words "
                                f"for {len(self.labels)} labels")
            fields = template_fields(f"{where}: template {t.name!r}", t.text)
            if not fields:
                raise TaskError(f"{where}: template {t.name!r} uses no field, so every prompt would be the same; "
                                f"use one of {sorted(self.columns)}")
            unknown = sorted(fields - set(self.columns))
            if unknown:
                raise TaskError(f"{where}: template {t.name!r} uses field(s) {unknown}; "
                                f"the task's fields are {sorted(self.columns)}")

    @property
    def n_classes(self) -> int:
        return len(self.labels)

    @property
    def template_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.templates)

    def template(self, name: str) -> Template:
        """The template called ``name``.

        Raises:
            TaskError: no such template.
        """
        for t in self.templates:
            if t.name == name:
                return t
        raise TaskError(f"task {self.name!r} has no template {name!r}; available: {', '.join(self.template_names)}")

    def content_free(self) -> list[dict[str, str]]:
        """Content-free inputs for contextual calibration (Zhao et al. 2021): every field "N/A", "" or "[MASK]"."""
        return [{f: s for f in self.columns} for s in ("N/A", "", "[MASK]")]


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task(
            name="sst2",
            folder="sst2",
            columns={"sentence": "sentence"},
            label_column="label",
            labels=("0", "1"),
            templates=(
                Template(name="it-was", text="{sentence} It was", label_words=(" terrible", " great"),
                         source="LM-BFF (Gao et al. 2021) / MeZO (Malladi et al. 2023) manual SST-2 prompt"),
                Template(name="review", text="Review: {sentence}\nSentiment:", label_words=(" negative", " positive"),
                         source="instruct style"),
                Template(name="question",
                         text="{sentence}\nQuestion: Is this review positive or negative?\nAnswer:",
                         label_words=(" negative", " positive"), source="question answering style"),
            ),
        ),
        Task(
            name="rte",
            folder="rte",
            columns={"premise": "sentence1", "hypothesis": "sentence2"},
            label_column="label",
            labels=("entailment", "not_entailment"),
            max_length=256,
            templates=(
                Template(name="mezo", text='{premise}\nDoes this mean that "{hypothesis}" is true? Yes or No?\n',
                         label_words=("Yes", "No"), source="MeZO (Malladi et al. 2023) prompt for OPT"),
                Template(name="gpt3", text="{premise}\nQuestion: {hypothesis} True or False?\nAnswer:",
                         label_words=(" True", " False"), source="GPT-3 (Brown et al. 2020)"),
                Template(name="instruct",
                         text="Premise: {premise}\nHypothesis: {hypothesis}\n"
                              "Does the premise entail the hypothesis? Answer yes or no.\nAnswer:",
                         label_words=(" yes", " no"), source="instruct style"),
            ),
        ),
    )
}


_TASK_KEYS = {"name", "folder", "columns", "label_column", "labels", "templates", "max_length", "k_values",
              "data_seeds"}
_TEMPLATE_KEYS = {"name", "text", "label_words", "source"}


def task_from_json(path: str | os.PathLike[str]) -> Task:
    """A task read from a JSON file: the fields of :class:`Task`, templates as objects.

    Example file (``folder`` is relative to the JSON file; it holds ``K-SEED/train.tsv``,
    ``K-SEED/dev.tsv`` and ``test.tsv``; ``folder``, ``max_length``, ``k_values`` and
    ``data_seeds`` are optional)::

        {"name": "imdb", "folder": "imdb", "columns": {"sentence": "text"},
         "label_column": "label", "labels": ["neg", "pos"], "k_values": [16], "data_seeds": [13],
         "templates": [{"name": "it-was", "text": "{sentence} It was",
                        "label_words": [" terrible", " great"]}]}

    Raises:
        TaskError: unreadable file, invalid JSON, missing or unknown keys, wrong types,
            or an inconsistent task (see :class:`Task`).
    """
    path = Path(path).expanduser()
    try:  # a regular file of at most 1 MiB, nested at most 8 deep (not /dev/zero, a FIFO or a JSON bomb)
        spec = load_json(path, what="task file", max_bytes=MAX_TASK_FILE_BYTES, max_depth=MAX_TASK_FILE_DEPTH)
    except OSError as exc:
        raise TaskError(f"cannot read task file {str(path)!r}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise TaskError(str(exc)) from None
    if not isinstance(spec, dict):
        raise TaskError(f"task file {str(path)!r} must hold a JSON object")
    missing = sorted({"name", "columns", "label_column", "labels", "templates"} - set(spec))
    unknown = sorted(set(spec) - _TASK_KEYS)
    if missing or unknown:
        raise TaskError(f"task file {str(path)!r}: " + "; ".join(
            ([f"missing key(s) {missing}"] if missing else []) + ([f"unknown key(s) {unknown}"] if unknown else [])))

    def strings(key: str, value: Any, *, allow_empty: bool = False) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) and (allow_empty or v) for v in value):
            raise TaskError(f"task file {str(path)!r}: {key} must be a list of strings")
        return tuple(value)

    def ints(key: str, default: tuple[int, ...]) -> tuple[int, ...]:
        value = spec.get(key, list(default))
        if not isinstance(value, list) or not value or not all(type(v) is int and v >= 0 for v in value):
            raise TaskError(f"task file {str(path)!r}: {key} must be a non-empty list of integers >= 0")
        return tuple(value)

    columns = spec["columns"]
    if not isinstance(columns, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in columns.items()):
        raise TaskError(f"task file {str(path)!r}: columns must map prompt fields to TSV column names")
    templates = []
    if not isinstance(spec["templates"], list) or len(spec["templates"]) > MAX_TEMPLATES:
        raise TaskError(f"task file {str(path)!r}: templates must be a list of at most {MAX_TEMPLATES} objects")
    for t in spec["templates"]:
        if not isinstance(t, dict) or not {"name", "text", "label_words"} <= set(t) or set(t) - _TEMPLATE_KEYS:
            raise TaskError(f"task file {str(path)!r}: each template is an object with name, text, label_words "
                            f"(and optionally source), got {t!r}")
        if not all(isinstance(t.get(k, ""), str) and len(t.get(k, "")) <= MAX_TEXT_CHARS
                   for k in ("name", "text", "source")):
            raise TaskError(f"task file {str(path)!r}: template name, text and source must be strings "
                            f"of at most {MAX_TEXT_CHARS} characters")
        templates.append(Template(name=t["name"], text=t["text"], source=t.get("source", str(path)),
                                  label_words=strings("label_words", t["label_words"])))
    for key in ("name", "label_column", "folder"):
        if not isinstance(spec.get(key, "."), str) or not spec.get(key, "."):
            raise TaskError(f"task file {str(path)!r}: {key} must be a non-empty string")
    max_length = spec.get("max_length", 128)
    if type(max_length) is not int or max_length < 8:
        raise TaskError(f"task file {str(path)!r}: max_length must be an integer >= 8")
    return Task(
        name=spec["name"], folder=str((path.parent / spec.get("folder", ".")).resolve()),
        columns=dict(columns), label_column=spec["label_column"], labels=strings("labels", spec["labels"]),
        templates=tuple(templates), max_length=max_length,
        k_values=ints("k_values", Task.k_values), data_seeds=ints("data_seeds", Task.data_seeds),
    )


def get_task(name: str) -> Task:
    """The registry entry ``name``, or the task in the JSON file ``name`` (see :func:`task_from_json`).

    Raises:
        TaskError: unknown task, or an invalid task file.
    """
    if name in TASKS:
        return TASKS[name]
    if str(name).endswith(".json"):
        return task_from_json(name)
    raise TaskError(f"unknown task {name!r}; available: {', '.join(TASKS)}, or a task file ending in .json")


def parse_label_words(text: str, template: Template) -> tuple[str, ...]:
    """``"terrible,great"`` -> ``(" terrible", " great")`` for a template whose own words start with a space.

    Words are comma-separated in class order. When the template's own label words
    start with a space, a word given without leading whitespace gets one (the
    prompt ends right before it); otherwise words are used as given.

    Raises:
        TaskError: wrong number of words or an empty word.
    """
    parts = text.split(",")
    n = len(template.label_words)
    if len(parts) != n or any(not p.strip() for p in parts):
        raise TaskError(f"--label-words needs {n} non-empty comma-separated words (class order), got {text!r}")
    spaced = all(w[:1] == " " for w in template.label_words)
    return tuple(" " + p if spaced and not p[:1].isspace() else p for p in parts)


def resolve_data_dir(data_dir: str | os.PathLike[str] | None = None) -> Path:
    """The data folder: ``data_dir``, else ``$DFO_DATA`` (or the older ``$DFO_SHARED_DATA``).

    Raises:
        TaskError: none given, or it is not a folder.
    """
    chosen = data_dir if data_dir not in (None, "") else os.environ.get(DATA_ENV) or os.environ.get(LEGACY_DATA_ENV)
    if not chosen:
        raise TaskError(f"no data folder: pass --data-dir (data_dir=) or set ${DATA_ENV} "
                        "to the folder holding sst2/ and rte/")
    path = Path(chosen).expanduser()
    if not path.is_dir():
        raise TaskError(f"data folder {str(path)!r} does not exist (from --data-dir or ${DATA_ENV})")
    return path


def split_path(task: Task, split: str, *, k: int, data_seed: int, data_dir: str | os.PathLike[str] | None) -> Path:
    """Path of one split file (not checked)."""
    folder = Path(task.folder)
    base = folder if folder.is_absolute() else resolve_data_dir(data_dir) / folder  # task files give absolute ones
    if split == "test":
        return base / "test.tsv"
    if split in ("train", "dev"):
        return base / f"{k}-{data_seed}" / f"{split}.tsv"
    raise TaskError(f"split must be 'train', 'dev' or 'test', got {split!r}")


def load_split(
    task: str | Task, split: str, *, k: int = 16, data_seed: int = 13, data_dir: str | os.PathLike[str] | None = None
) -> list[Example]:
    """Read one split of a task.

    Args:
        task: registry name or entry.
        split: ``"train"``, ``"dev"`` (k-shot files) or ``"test"``.
        k: examples per class of the k-shot split.
        data_seed: seed of the k-shot split.
        data_dir: data folder (see :func:`resolve_data_dir`).

    Raises:
        TaskError: missing file, missing column or unknown label value.
    """
    task = get_task(task) if isinstance(task, str) else task
    path = split_path(task, split, k=k, data_seed=data_seed, data_dir=data_dir)
    if not path.is_file():
        raise TaskError(f"{task.name} {split} split not found: {path} (k={k}, data_seed={data_seed}; "
                        f"shipped: k in {task.k_values}, data seeds {task.data_seeds})")
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE))
    except UnicodeDecodeError as exc:
        raise TaskError(f"{path} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start})") from None
    except (OSError, csv.Error) as exc:
        raise TaskError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if not rows:
        raise TaskError(f"{path} is empty")
    header = rows[0]
    wanted = list(task.columns.values()) + [task.label_column]
    missing = [c for c in wanted if c not in header]
    if missing:
        raise TaskError(f"{path}: header {header} lacks column(s) {missing}")
    col = {c: header.index(c) for c in wanted}
    label_of = {v: i for i, v in enumerate(task.labels)}
    out = []
    for line, r in enumerate(rows[1:], start=2):
        if not r:
            continue
        if len(r) < len(header):
            raise TaskError(f"{path}:{line}: {len(r)} columns, expected {len(header)}")
        raw = r[col[task.label_column]].strip()
        if raw not in label_of:
            raise TaskError(f"{path}:{line}: label {raw!r} is not one of {list(task.labels)}")
        fields = {f: r[col[c]].strip() for f, c in task.columns.items()}
        out.append(Example(fields=fields, label=label_of[raw]))
    if not out:
        raise TaskError(f"{path} holds no examples (a header only)")
    absent = [lab for i, lab in enumerate(task.labels) if not any(e.label == i for e in out)]
    if absent:
        raise TaskError(f"{path}: no example has label {absent[0]!r}; the task's labels are {list(task.labels)} "
                        "(a label the data does not have?)")
    return out


def balanced_subset(examples: Sequence[Example], n: int | None, n_classes: int, *, seed: int = 0) -> list[Example]:
    """``n`` examples with the classes as equal as possible (the first classes get the remainder).

    Within a class the examples are a uniform draw with ``default_rng(seed)``; the
    result keeps the file order. ``n=None`` or ``n >= len(examples)`` returns all.

    Raises:
        TaskError: ``n < 1``, or a class has too few examples.
    """
    if n is None or n >= len(examples):
        return list(examples)
    if n < 1:
        raise TaskError(f"subset size must be >= 1, got {n}")
    rng = np.random.default_rng(seed)
    chosen: list[int] = []
    for c in range(n_classes):
        idx = [i for i, e in enumerate(examples) if e.label == c]
        want = n // n_classes + (1 if c < n % n_classes else 0)
        if want > len(idx):
            raise TaskError(f"cannot draw {want} examples of class {c}: only {len(idx)}")
        chosen += [idx[j] for j in rng.choice(len(idx), size=want, replace=False)]
    return [examples[i] for i in sorted(chosen)]
