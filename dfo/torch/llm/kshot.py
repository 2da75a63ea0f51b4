"""Build k-shot splits (LM-BFF layout) from GLUE TSV files a user has downloaded: ``dfo data build-kshot``.

The tasks of :mod:`dfo.torch.llm.tasks` read ``<data>/<folder>/K-SEED/{train,dev}.tsv`` and
``<data>/<folder>/test.tsv``. Those files come from GLUE (Wang et al. 2019,
https://gluebenchmark.com): SST-2 (Socher et al. 2013) and RTE. The few-shot literature (LM-BFF,
Gao et al. 2021; MeZO, Malladi et al. 2023; SubZero; LOZO) draws them like this, per seed:

1. the GLUE *train* file's rows are shuffled with NumPy's legacy generator seeded with SEED
   (``numpy.random.RandomState(SEED).shuffle``);
2. the shuffled rows are grouped by label (labels in order of first appearance);
3. the first K rows of each label form ``train.tsv``, the next K rows ``dev.tsv``;
4. the GLUE *dev* file (labels public, unlike GLUE's test file) becomes ``test.tsv``.

Rows are copied byte for byte (the label is the last tab-separated column in both SST-2's
``sentence<TAB>label`` and RTE's ``index<TAB>sentence1<TAB>sentence2<TAB>label``), so the
files keep GLUE's quoting and spacing. Nothing is downloaded: the user names the folder that
holds GLUE's ``train.tsv`` and ``dev.tsv``.

Whether the result is byte-identical to the splits distributed with LM-BFF depends on the
GLUE release the user has; this module follows the procedure above and is tested on its
properties (K per label, train and dev disjoint, same seed same files), not against those
files, which are not on the machines this project is tested on.

Example:
    $ dfo data build-kshot --task sst2 --glue-dir ~/glue/SST-2 --out ~/dfo-data
    $ dfo finetune --task sst2 --data-dir ~/dfo-data ...
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: task name -> folder under the data directory (the folders :mod:`dfo.torch.llm.tasks` reads)
FOLDERS = {"sst2": "sst2", "rte": "rte"}
#: the seeds of LM-BFF's splits
DEFAULT_SEEDS = (13, 21, 42, 87, 100)
#: the K values used by the benches (16 per class: LM-BFF; 512 per class: MeZO's "k = 512")
DEFAULT_KS = (16, 512)
#: refuse GLUE files larger than this (SST-2 train is ~5 MB, RTE ~1 MB)
MAX_BYTES = 256 * 2**20


class KShotError(ValueError):
    """A GLUE folder or an argument that cannot give the requested splits."""


@dataclass(frozen=True)
class Table:
    """A TSV file as its header line and its data lines (each without the newline)."""

    header: str
    rows: tuple[str, ...]

    def label(self, row: str) -> str:
        return row.rsplit("\t", 1)[-1].strip()


def read_tsv(path: Path) -> Table:
    """Read a GLUE TSV file as lines; one-line :class:`KShotError` for what does not fit."""
    path = Path(path)
    if not path.is_file():
        raise KShotError(f"{path}: not a regular file (expected GLUE's {path.name})")
    if path.stat().st_size > MAX_BYTES:
        raise KShotError(f"{path}: larger than {MAX_BYTES // 2**20} MiB; not a GLUE task file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise KShotError(f"{path}: not UTF-8 text ({exc.reason})") from None
    lines = [line for line in text.split("\n") if line.strip()]
    if len(lines) < 2 or "\t" not in lines[0]:
        raise KShotError(f"{path}: expected a tab-separated header line and data lines")
    width = lines[0].count("\t")
    bad = next((i for i, line in enumerate(lines[1:], 2) if line.count("\t") != width), None)
    if bad is not None:
        raise KShotError(f"{path}: line {bad} has {lines[bad - 1].count(chr(9)) + 1} columns, the header {width + 1}")
    return Table(header=lines[0], rows=tuple(lines[1:]))


def draw_split(table: Table, k: int, seed: int) -> tuple[list[str], list[str]]:
    """The (train, dev) rows of one k-shot split: K per label each, disjoint (steps 1-3 above)."""
    if k < 1:
        raise KShotError(f"k must be >= 1, got {k}")
    rows = list(table.rows)
    np.random.RandomState(seed).shuffle(rows)
    by_label: dict[str, list[str]] = {}
    for row in rows:
        by_label.setdefault(table.label(row), []).append(row)
    short = {lab: len(rs) for lab, rs in by_label.items() if len(rs) < 2 * k}
    if short:
        raise KShotError(f"k = {k} needs {2 * k} rows per label; the train file has {short}")
    train = [row for rs in by_label.values() for row in rs[:k]]
    dev = [row for rs in by_label.values() for row in rs[k:2 * k]]
    return train, dev


def _write(path: Path, header: str, rows: list[str] | tuple[str, ...]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def build(task: str, glue_dir: Path, out: Path, ks=DEFAULT_KS, seeds=DEFAULT_SEEDS) -> list[Path]:
    """Write ``out/<folder>/K-SEED/{train,dev}.tsv`` and ``out/<folder>/test.tsv``; returns the paths."""
    if task not in FOLDERS:
        raise KShotError(f"unknown task {task!r}; known: {', '.join(FOLDERS)}")
    glue_dir = Path(glue_dir).expanduser()
    train, dev = read_tsv(glue_dir / "train.tsv"), read_tsv(glue_dir / "dev.tsv")
    if train.header != dev.header:
        raise KShotError(f"{glue_dir}: train.tsv and dev.tsv have different headers")
    root = Path(out).expanduser() / FOLDERS[task]
    written = []
    for k in ks:
        for seed in seeds:
            tr, dv = draw_split(train, int(k), int(seed))
            folder = root / f"{int(k)}-{int(seed)}"
            folder.mkdir(parents=True, exist_ok=True)
            for name, rows in (("train.tsv", tr), ("dev.tsv", dv)):
                _write(folder / name, train.header, rows)
                written.append(folder / name)
    _write(root / "test.tsv", dev.header, dev.rows)
    written.append(root / "test.tsv")
    return written


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one integer")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    p = sub.add_parser("build-kshot", help="build LM-BFF k-shot splits from GLUE TSV files you downloaded",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--task", required=True, choices=sorted(FOLDERS), help="GLUE task")
    p.add_argument("--glue-dir", required=True, type=Path, help="folder holding GLUE's train.tsv and dev.tsv")
    p.add_argument("--out", required=True, type=Path, help="data directory (pass it to --data-dir or $DFO_DATA)")
    p.add_argument("--k", type=_ints, default=DEFAULT_KS, help="examples per label (default: %(default)s)")
    p.add_argument("--seeds", type=_ints, default=DEFAULT_SEEDS, help="split seeds (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    try:
        written = build(args.task, args.glue_dir, args.out, ks=args.k, seeds=args.seeds)
    except (KShotError, OSError) as exc:
        print(f"dfo data: {exc}")
        return 2
    print(f"wrote {len(written)} files under {Path(args.out) / FOLDERS[args.task]}")
    return 0
