"""The run harness's metrics stream: ``progress.csv``, namespaced ``metrics.jsonl``, TensorBoard, trackers.

A job describes its rows once (:class:`Schema`: the CSV columns, the first being the row index;
the column -> namespaced key table of ``metrics.jsonl``; the column that is the x axis) and a
:class:`MetricsLog` writes each row to

* ``progress.csv``: one row per iteration/step, the schema's columns in order;
* ``metrics.jsonl``: the same row under namespaced keys (``charts/episodic_return``,
  ``grad/norm``, ``train/loss`` ...) plus the schema's plain counters;
* ``tb/``: TensorBoard scalars of the namespaced keys (when the ``tensorboard`` package is
  installed; :mod:`dfo.run.tblog`, imported only then) and the run's settings once;
* the experiment trackers asked for (:mod:`dfo.run.track`).

Floats are written with ``repr`` so a CSV value reads back bit for bit. Every row is flushed
whole, so only the last line of a file can be torn (a killed process, a full disk); on resume
:meth:`MetricsLog.truncate` drops a torn last line and the rows after the checkpoint's index,
so the files continue exactly as an uninterrupted run would have written them. Anything else
malformed is a one-line :class:`LogError` naming the file and line. Files are opened with
``O_NOFOLLOW``: a symbolic link is never written through.

Example:
    >>> import tempfile
    >>> schema = Schema(columns=("step", "loss"), keys={"loss": "train/loss"}, plain=("step",), x="step")
    >>> log = MetricsLog(tempfile.mkdtemp(), schema, tensorboard=False)
    >>> log.write({"step": 1, "loss": 0.5}); log.close()
    >>> read_progress(log.csv_path)
    [{'step': 1.0, 'loss': 0.5}]
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from dfo.fileio import atomic_write_bytes

PROGRESS = "progress.csv"
METRICS = "metrics.jsonl"
TB_DIR = "tb"


class LogError(ValueError):
    """A run log (progress.csv or metrics.jsonl) is malformed in a way a resume cannot repair."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class Schema:
    """What one job's rows hold.

    Attributes:
        columns: the ``progress.csv`` columns in order; the first is the row index (an integer:
            the iteration or step), which :meth:`MetricsLog.truncate` cuts back by.
        keys: column -> namespaced key (``"grad_norm": "grad/norm"``) in ``metrics.jsonl``,
            TensorBoard and the trackers.
        plain: columns copied under their own name into every ``metrics.jsonl`` record (counters).
        x: the column that is the x axis of TensorBoard and the trackers.
        headline: the namespaced key shown against the settings on TensorBoard's HParams tab.
    """

    columns: tuple[str, ...]
    keys: Mapping[str, str]
    plain: tuple[str, ...]
    x: str
    headline: str | None = None

    @property
    def index(self) -> str:
        """The row index column."""
        return self.columns[0]


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _missing(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _lines(path: Path) -> tuple[list[str], bool]:
    """The complete lines of a file and whether a torn (unterminated) last line was dropped."""
    if path.is_symlink():
        raise LogError(f"{path} is a symbolic link; a run directory must hold real files only")
    with open(path, newline="") as f:
        raw = f.read().splitlines(keepends=True)
    torn = bool(raw) and not raw[-1].endswith("\n")
    return [ln.rstrip("\r\n") for ln in (raw[:-1] if torn else raw)], torn


def _csv_rows(path: Path) -> tuple[list[str], list[list[str]], bool]:
    """Header, data rows (each checked: one cell per column, numbers or empty) and torn flag."""
    lines, torn = _lines(path)
    if not lines:
        return [], [], torn
    header = next(csv.reader([lines[0]]))
    rows = []
    for k, line in enumerate(lines[1:], start=2):
        row = next(csv.reader([line]), [])
        try:
            if len(row) != len(header):
                raise ValueError(f"{len(row)} cells, the header has {len(header)}")
            for v in row:
                if v != "":
                    float(v)
            int(row[0])
        except ValueError as e:
            raise LogError(f"{path}, line {k}: malformed row ({e}); the file was edited or damaged") from None
        rows.append(row)
    return header, rows, torn


def read_progress(path: str | os.PathLike) -> list[dict[str, float]]:
    """Rows of a ``progress.csv`` as floats (``nan`` for empty cells).

    A torn last line (a run writing it right now, or a killed one) is left out.

    Raises:
        LogError: a malformed row other than the last one (the message names the file and line).
    """
    header, rows, _ = _csv_rows(Path(path))
    return [{k: (float(v) if v != "" else math.nan) for k, v in zip(header, row)} for row in rows]


def last_values(rows: list[Mapping[str, Any]], schema: Schema) -> dict[str, float]:
    """The last measured value of each metric of ``rows``, by namespaced key (NaN where never measured).

    Example:
        >>> s = Schema(columns=("step", "loss"), keys={"loss": "train/loss"}, plain=("step",), x="step")
        >>> last_values([{"step": 1, "loss": 0.5}, {"step": 2, "loss": math.nan}], s)
        {'train/loss': 0.5}
    """
    out = {key: math.nan for key in schema.keys.values()}
    for row in rows:
        out.update({key: row[col] for col, key in schema.keys.items() if not _missing(row.get(col))})
    return out


def _jsonl_records(path: Path, index: str) -> tuple[list[str], list[int], bool]:
    lines, torn = _lines(path)
    its = []
    for k, line in enumerate(lines, start=1):
        try:
            rec = json.loads(line)
            its.append(int(rec[index]))
        except (ValueError, KeyError, TypeError) as e:
            raise LogError(f"{path}, line {k}: malformed record ({type(e).__name__}: {e}); "
                           "the file was edited or damaged") from None
    return lines, its, torn


def _check_sequence(path: Path, its: list[int], index: int, name: str) -> None:
    want = list(range(its[0] if its else index + 1, index + 1))
    if its != want:
        missing = sorted(set(want) - set(its))
        dup = sorted({i for i in its if its.count(i) > 1})
        what = (f"{name}s {missing} missing" if missing else "") + (" and " if missing and dup else "") + \
               (f"{name}s {dup} repeated" if dup else "")
        raise LogError(f"{path}: {what or 'rows out of order'} before the checkpoint at {name} {index}; "
                       f"the log cannot be continued exactly (move {path.name} away to start a new one)")


def _open_append(path: Path) -> TextIO:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    return os.fdopen(fd, "a", newline="")


class MetricsLog:
    """Appends rows to ``progress.csv`` / ``metrics.jsonl`` (and TensorBoard, trackers) in ``run_dir``.

    Args:
        run_dir: the run folder (created if needed).
        schema: what the rows hold.
        tensorboard: write ``tb/`` event files when the ``tensorboard`` package is installed.
        hparams: the run's settings, logged once to TensorBoard's HParams tab and to the trackers.
        purge_step: on resume, the x value from which TensorBoard drops points written by the
            interrupted process (the checkpoint's x + 1).
        track: experiment trackers that mirror the namespaced metrics (``"wandb"``, ``"mlflow"``).
        run_id: the run's own id (a resumed run continues the same W&B run).
    """

    def __init__(self, run_dir: str | os.PathLike, schema: Schema, *, tensorboard: bool = True,
                 hparams: dict[str, Any] | None = None, purge_step: int | None = None,
                 track: tuple[str, ...] = (), run_id: str | None = None) -> None:
        self.dir = Path(run_dir)
        self.schema = schema
        self.dir.mkdir(parents=True, exist_ok=True)
        self.csv_path = self.dir / PROGRESS
        self.jsonl_path = self.dir / METRICS
        new = not self.csv_path.exists() or self.csv_path.stat().st_size == 0
        self._csv = _open_append(self.csv_path)
        self._writer = csv.writer(self._csv)
        if new:
            self._writer.writerow(schema.columns)
            self._csv.flush()
        self._jsonl = _open_append(self.jsonl_path)
        self._tb = None
        if tensorboard:
            from dfo.run.tblog import open_writer

            tb_dir = self.dir / TB_DIR
            if tb_dir.is_symlink():
                raise LogError(f"{tb_dir} is a symbolic link; a run directory must hold real files only")
            self._tb = open_writer(tb_dir)
            if self._tb is not None:
                if purge_step is not None:
                    self._tb.purge_from(purge_step)
                elif hparams:
                    self._tb.hparams(hparams, metrics=[schema.headline] if schema.headline else [])
        from dfo.run.track import open_trackers

        self._trackers = open_trackers(track, run_id=run_id or self.dir.name, name=self.dir.name,
                                       config=hparams or {})

    @staticmethod
    def truncate(run_dir: str | os.PathLike, schema: Schema, index: int) -> list[int]:
        """Cut both logs back to row ``index`` (a checkpoint's): drop a torn last line and later rows.

        Returns:
            The indices left in ``progress.csv``.

        Raises:
            LogError: a malformed line before the last, or rows up to ``index`` missing or
                repeated (the message names the file).
        """
        d = Path(run_dir)
        csv_path, jsonl_path = d / PROGRESS, d / METRICS
        kept: list[int] = []
        if csv_path.exists() or csv_path.is_symlink():
            header, rows, torn = _csv_rows(csv_path)
            keep = [r for r in rows if int(r[0]) <= index]
            kept = [int(r[0]) for r in keep]
            _check_sequence(csv_path, kept, index, schema.index)
            if torn or len(keep) != len(rows):
                lines = [header or list(schema.columns)] + keep
                atomic_write_bytes(csv_path, "".join(",".join(r) + "\r\n" for r in lines).encode())
        if jsonl_path.exists() or jsonl_path.is_symlink():
            lines, its, torn = _jsonl_records(jsonl_path, schema.index)
            keep_l = [ln for ln, it in zip(lines, its) if it <= index]
            _check_sequence(jsonl_path, [it for it in its if it <= index], index, schema.index)
            if torn or len(keep_l) != len(lines):
                atomic_write_bytes(jsonl_path, "".join(ln + "\n" for ln in keep_l).encode())
        return kept

    def write(self, row: dict[str, Any]) -> None:
        """Append one row (missing columns are left empty; missing or NaN metrics are left out of the record)."""
        self._writer.writerow([_fmt(row.get(c)) for c in self.schema.columns])
        self._csv.flush()
        rec: dict[str, Any] = {c: row.get(c) for c in self.schema.plain}
        metrics = {key: row[col] for col, key in self.schema.keys.items() if not _missing(row.get(col))}
        self._jsonl.write(json.dumps({**rec, **metrics}) + "\n")
        self._jsonl.flush()
        x = int(row[self.schema.x])
        if self._tb is not None:
            self._tb.scalars(metrics, step=x)
        self._trackers.log(metrics, step=x)

    def close(self) -> None:
        """Close the files, the TensorBoard writer and the trackers."""
        for f in (self._csv, self._jsonl):
            if not f.closed:
                f.close()
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        self._trackers.close()
