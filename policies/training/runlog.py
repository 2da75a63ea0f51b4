"""Run outputs: ``progress.csv`` (one row per iteration), ``metrics.jsonl`` (namespaced keys),
TensorBoard event files in ``tb/`` (when the ``tensorboard`` package is installed; no
torch needed, see :mod:`dfo.policies.training.tblog`) and the progress display.

Floats are written with ``repr`` so a CSV value reads back bit for bit. Every row is
flushed whole, so only the last line of a file can be torn (a killed process or a full
disk); on resume :meth:`RunLog.truncate` drops a torn last line and the rows after the
checkpoint's iteration, so the files continue exactly as an uninterrupted run would
have written them. Anything else malformed is reported as a :class:`LogError` naming
the file and line. Files are opened with ``O_NOFOLLOW``: a symbolic link is never
written through.

Example:
    >>> import tempfile
    >>> log = RunLog(tempfile.mkdtemp(), tensorboard=False)
    >>> log.write({"iteration": 0, "episodes": 0, "env_steps": 0, "eval_return": 1.5})
    >>> log.close()
"""

from __future__ import annotations

import csv
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

#: progress.csv columns, in order
COLUMNS = (
    "iteration", "episodes", "env_steps", "eval_return", "eval_return_std", "train_return_mean",
    "train_return_max", "nonfinite_episodes", "grad_norm", "step_size", "time_s", "iter_time_s",
    "env_steps_per_s", "bytes_sent", "bytes_received", "retries",
)

#: columns that depend only on the seed (equal across backends, runs and resumes)
DETERMINISTIC_COLUMNS = COLUMNS[:10]

#: progress.csv column -> namespaced metric key (metrics.jsonl, TensorBoard)
METRIC_KEYS = {
    "eval_return": "charts/episodic_return",
    "eval_return_std": "charts/episodic_return_std",
    "train_return_mean": "charts/train_return_mean",
    "train_return_max": "charts/train_return_max",
    "nonfinite_episodes": "charts/nonfinite_episodes",
    "grad_norm": "grad/norm",
    "step_size": "ls/step_size",
    "env_steps_per_s": "time/env_steps_per_s",
    "iter_time_s": "time/iteration_s",
    "bytes_sent": "perf/bytes_sent",
    "bytes_received": "perf/bytes_received",
    "retries": "perf/retries",
}


class LogError(ValueError):
    """A run log (progress.csv or metrics.jsonl) is malformed in a way a resume cannot repair."""


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return repr(v)
    return str(v)


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


def evaluations(rows: list[dict[str, float]]) -> list[dict[str, float]]:
    """The rows of ``read_progress`` that carry an evaluation (``eval_return`` not ``nan``)."""
    return [r for r in rows if not math.isnan(r.get("eval_return", math.nan))]


def first_reaching(rows: list[dict[str, float]], threshold: float | None) -> dict[str, float] | None:
    """The first evaluated row whose ``eval_return`` is at or above ``threshold`` (None: never, or no threshold).

    This is the "episodes to threshold" rule of the benchmarks (ARS paper, Table 1): the training
    episodes counted at the first evaluation of the unperturbed policy that reaches the threshold.
    """
    if threshold is None:
        return None
    return next((r for r in evaluations(rows) if r["eval_return"] >= threshold), None)


def _jsonl_records(path: Path) -> tuple[list[str], list[int], bool]:
    lines, torn = _lines(path)
    its = []
    for k, line in enumerate(lines, start=1):
        try:
            rec = json.loads(line)
            its.append(int(rec["iteration"]))
        except (ValueError, KeyError, TypeError) as e:
            raise LogError(f"{path}, line {k}: malformed record ({type(e).__name__}: {e}); "
                           "the file was edited or damaged") from None
    return lines, its, torn


def _rewrite(path: Path, text: str) -> None:
    from dfo.fileio import atomic_write_bytes

    atomic_write_bytes(path, text.encode())


def _check_sequence(path: Path, its: list[int], iteration: int) -> None:
    want = list(range(its[0] if its else iteration + 1, iteration + 1))
    if its != want:
        missing = sorted(set(want) - set(its))
        dup = sorted({i for i in its if its.count(i) > 1})
        what = (f"iterations {missing} missing" if missing else "") + (" and " if missing and dup else "") + \
               (f"iterations {dup} repeated" if dup else "")
        raise LogError(f"{path}: {what or 'rows out of order'} before the checkpoint at iteration {iteration}; "
                       f"the log cannot be continued exactly (move {path.name} away to start a new one)")


def _open_append(path: Path) -> TextIO:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
    return os.fdopen(fd, "a", newline="")


class RunLog:
    """Appends rows to ``progress.csv`` / ``metrics.jsonl`` (and TensorBoard) in ``run_dir``.

    Args:
        run_dir: the run directory (must exist or be creatable).
        tensorboard: write ``tb/`` event files when the ``tensorboard`` package is installed.
        hparams: the run's settings, logged once to TensorBoard's HParams dashboard.
        purge_step: on resume, the env step from which TensorBoard drops points written
            by the interrupted process (the checkpoint's env steps + 1).
        track: experiment trackers that mirror the namespaced metrics (``"wandb"``,
            ``"mlflow"``; :mod:`dfo.run.track`), started with ``hparams`` as their config.
        run_id: the run's own id (a resumed run continues the same W&B run).
    """

    def __init__(self, run_dir: str | os.PathLike, *, tensorboard: bool = True,
                 hparams: dict[str, Any] | None = None, purge_step: int | None = None,
                 track: tuple[str, ...] = (), run_id: str | None = None) -> None:
        self.dir = Path(run_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.csv_path = self.dir / "progress.csv"
        self.jsonl_path = self.dir / "metrics.jsonl"
        new = not self.csv_path.exists() or self.csv_path.stat().st_size == 0
        self._csv = _open_append(self.csv_path)
        self._writer = csv.writer(self._csv)
        if new:
            self._writer.writerow(COLUMNS)
            self._csv.flush()
        self._jsonl = _open_append(self.jsonl_path)
        self._tb = None
        if tensorboard:
            from dfo.policies.training.tblog import open_writer

            tb_dir = self.dir / "tb"
            if tb_dir.is_symlink():
                raise LogError(f"{tb_dir} is a symbolic link; a run directory must hold real files only")
            self._tb = open_writer(tb_dir)
            if self._tb is not None:
                if purge_step is not None:
                    self._tb.purge_from(purge_step)
                elif hparams:
                    self._tb.hparams(hparams, metrics=["charts/episodic_return"])
        from dfo.run.track import open_trackers

        self._trackers = open_trackers(track, run_id=run_id or self.dir.name, name=self.dir.name,
                                       config=hparams or {})

    @staticmethod
    def truncate(run_dir: str | os.PathLike, iteration: int) -> list[int]:
        """Cut both logs back to ``iteration`` (a checkpoint's): drop a torn last line and later rows.

        Returns:
            The iterations left in ``progress.csv``.

        Raises:
            LogError: a malformed line before the last, or rows up to ``iteration`` missing
                or repeated (the message names the file).
        """
        d = Path(run_dir)
        csv_path, jsonl_path = d / "progress.csv", d / "metrics.jsonl"
        kept: list[int] = []
        if csv_path.exists() or csv_path.is_symlink():
            header, rows, torn = _csv_rows(csv_path)
            keep = [r for r in rows if int(r[0]) <= iteration]
            kept = [int(r[0]) for r in keep]
            _check_sequence(csv_path, kept, iteration)
            if torn or len(keep) != len(rows):
                lines = [header or list(COLUMNS)] + keep
                _rewrite(csv_path, "".join(",".join(r) + "\r\n" for r in lines))
        if jsonl_path.exists() or jsonl_path.is_symlink():
            lines, its, torn = _jsonl_records(jsonl_path)
            keep_l = [ln for ln, it in zip(lines, its) if it <= iteration]
            _check_sequence(jsonl_path, [it for it in its if it <= iteration], iteration)
            if torn or len(keep_l) != len(lines):
                _rewrite(jsonl_path, "".join(ln + "\n" for ln in keep_l))
        return kept

    def write(self, row: dict[str, Any]) -> None:
        """Append one iteration's row (missing columns are left empty)."""
        self._writer.writerow([_fmt(row.get(c)) for c in COLUMNS])
        self._csv.flush()
        rec: dict[str, Any] = {"iteration": row["iteration"], "episodes": row["episodes"],
                               "env_steps": row["env_steps"], "time_s": row.get("time_s")}
        for col, key in METRIC_KEYS.items():
            v = row.get(col)
            if v is not None and not (isinstance(v, float) and math.isnan(v)):
                rec[key] = v
        self._jsonl.write(json.dumps(rec) + "\n")
        self._jsonl.flush()
        metrics = {k: v for k, v in rec.items() if "/" in k}
        if self._tb is not None:
            self._tb.scalars(metrics, step=int(row["env_steps"]))
        self._trackers.log(metrics, step=int(row["env_steps"]))

    def close(self) -> None:
        for f in (self._csv, self._jsonl):
            if not f.closed:
                f.close()
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        self._trackers.close()


#: seconds between plain progress lines when stderr is not a terminal
PLAIN_PROGRESS_EVERY_S = 10.0


class Progress:
    """Training progress on stderr: a tqdm bar in a terminal, else a plain line every few seconds.

    In a log file or a pipe (``isatty()`` false) ``\\r``-redrawn frames are unreadable, so a
    line such as ``it 12  episodes 96/2000  env_steps 48000  eval 120.3  train 98.1  3400
    steps/s  41 s`` is printed at most every :data:`PLAIN_PROGRESS_EVERY_S` seconds
    (and at the end).
    """

    def __init__(self, *, total: int, initial: int, desc: str, stream: TextIO | None = None,
                 every_s: float = PLAIN_PROGRESS_EVERY_S) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.total, self.desc, self.every_s = int(total), desc, float(every_s)
        self._bar = None
        self._last_t = -math.inf
        self._pending = ""
        isatty = getattr(self.stream, "isatty", None)
        if isatty is not None and isatty():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.total, initial=min(initial, self.total), unit="ep", desc=desc,
                             file=self.stream, dynamic_ncols=True)

    def update(self, row: dict[str, Any], last_eval: float) -> None:
        ep = min(int(row["episodes"]), self.total)
        if self._bar is not None:
            self._bar.update(ep - self._bar.n)
            self._bar.set_postfix(it=row["iteration"], ret=f"{row.get('train_return_mean', math.nan):.1f}",
                                  eval=f"{last_eval:.1f}", sps=f"{row.get('env_steps_per_s', math.nan):.0f}",
                                  refresh=False)
            return
        self._pending = (f"{self.desc}: it {row['iteration']}  episodes {row['episodes']}/{self.total}  "
                         f"env_steps {row['env_steps']}  eval {last_eval:.2f}  "
                         f"train {row.get('train_return_mean', math.nan):.2f}  "
                         f"{row.get('env_steps_per_s', math.nan):.0f} steps/s  {row.get('time_s', 0.0):.0f} s")
        now = time.monotonic()
        if now - self._last_t >= self.every_s:
            self._flush(now)

    def _flush(self, now: float) -> None:
        if self._pending:
            print(self._pending, file=self.stream, flush=True)
            self._pending = ""
        self._last_t = now

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        else:
            self._flush(time.monotonic())
