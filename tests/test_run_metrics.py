"""The run harness's metrics stream and progress printer (dfo.run.metrics, dfo.run.progress), for any job's rows."""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys

import pytest

from dfo.run.metrics import LogError, MetricsLog, Schema, read_progress
from dfo.run.progress import Progress

#: a fine-tuning-like job: rows indexed by step, x = step
SCHEMA = Schema(columns=("step", "forward_passes", "loss", "dev_accuracy"),
                keys={"loss": "train/loss", "dev_accuracy": "eval/accuracy"}, plain=("step", "forward_passes"),
                x="step", headline="eval/accuracy")


def _rows(n: int) -> list[dict]:
    return [{"step": i, "forward_passes": 2 * i, "loss": 1.0 / (i + 1), "dev_accuracy": 0.5 if i % 2 else math.nan}
            for i in range(n)]


def test_rows_go_to_csv_and_namespaced_jsonl_bit_for_bit(tmp_path):
    log = MetricsLog(tmp_path, SCHEMA, tensorboard=False)
    for row in _rows(3):
        log.write(row)
    log.close()
    assert (tmp_path / "progress.csv").read_text().splitlines()[0] == "step,forward_passes,loss,dev_accuracy"
    back = read_progress(tmp_path / "progress.csv")
    assert [r["loss"] for r in back] == [1.0, 0.5, 1.0 / 3]  # repr: exact
    recs = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert recs[0] == {"step": 0, "forward_passes": 0, "train/loss": 1.0}  # NaN metrics are left out
    assert recs[1] == {"step": 1, "forward_passes": 2, "train/loss": 0.5, "eval/accuracy": 0.5}


def test_truncate_cuts_back_to_the_checkpoint_and_drops_a_torn_line(tmp_path):
    log = MetricsLog(tmp_path, SCHEMA, tensorboard=False)
    for row in _rows(5):
        log.write(row)
    log.close()
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "trai')  # a kill while writing
    assert MetricsLog.truncate(tmp_path, SCHEMA, 2) == [0, 1, 2]
    assert [r["step"] for r in read_progress(tmp_path / "progress.csv")] == [0, 1, 2]
    assert [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()] == [0, 1, 2]
    lines = (tmp_path / "progress.csv").read_text().splitlines()
    (tmp_path / "progress.csv").write_text("\n".join([lines[0], lines[1], lines[3]]) + "\n")
    with pytest.raises(LogError, match=r"steps \[1\] missing before the checkpoint at step 2") as info:
        MetricsLog.truncate(tmp_path, SCHEMA, 2)
    assert "\n" not in str(info.value)


def test_tensorboard_gets_the_namespaced_scalars_at_x(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log = MetricsLog(tmp_path, SCHEMA, hparams={"lr": 1e-3, "method": "mezo"})
    for row in _rows(4):
        log.write(row)
    log.close()
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("eval/accuracy")] == [(1, 0.5), (3, 0.5)]
    assert [e.step for e in acc.Scalars("train/loss")] == [0, 1, 2, 3]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_prints_plain_lines_off_a_terminal_and_a_bar_on_one():
    out = io.StringIO()
    bar = Progress(total=10, desc="job", unit="steps", stream=out, every_s=0)
    for i in (1, 2):
        bar.update(i * 5, {"it": i, "loss": f"{1 / i:.2f}"})
    bar.close()
    assert out.getvalue().splitlines() == ["job: it 1  steps 5/10  loss 1.00", "job: it 2  steps 10/10  loss 0.50"]
    assert "\r" not in out.getvalue()
    slow = io.StringIO()
    bar = Progress(total=10, desc="job", stream=slow, every_s=3600)
    for i in range(1, 5):
        bar.update(i, {"it": i})
    bar.close()  # the first line at once, the others held back: the last one is printed at the end
    assert slow.getvalue().splitlines() == ["job: it 1  it 1/10", "job: it 4  it 4/10"]
    tty = _Terminal()
    bar = Progress(total=10, desc="job", unit="steps", stream=tty)
    bar.update(5, {"loss": "0.50"})
    bar.close()
    assert "\r" in tty.getvalue() and "5/10" in tty.getvalue() and "loss=0.50" in tty.getvalue()


def test_the_harness_imports_neither_torch_nor_tensorboard_nor_tqdm():
    code = ("import sys, dfo.run, dfo.run.checkpoint, dfo.run.metrics, dfo.run.progress\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'tensorboard', 'tqdm', 'safetensors'}))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"
