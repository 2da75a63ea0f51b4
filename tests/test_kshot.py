"""dfo data build-kshot: LM-BFF k-shot splits built from GLUE-format TSV files (never downloaded)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")  # dfo.torch.llm imports the adapter package

from dfo.torch.llm import kshot  # noqa: E402
from dfo.torch.llm.tasks import get_task, load_split  # noqa: E402


def _glue_sst2(folder: Path, n_per_label=(40, 30)) -> Path:
    folder.mkdir(parents=True)
    rows = [f"sentence {lab} number {i} , with \"quotes\" \t{lab}" for lab in (0, 1) for i in range(n_per_label[lab])]
    (folder / "train.tsv").write_text("sentence\tlabel\n" + "\n".join(rows) + "\n")
    (folder / "dev.tsv").write_text("sentence\tlabel\nheld out one \t1\nheld out two \t0\n")
    return folder


def test_splits_have_k_per_label_disjoint_and_reproducible(tmp_path):
    glue = _glue_sst2(tmp_path / "SST-2")
    kshot.build("sst2", glue, tmp_path / "a", ks=(4, 8), seeds=(13, 21))
    kshot.build("sst2", glue, tmp_path / "b", ks=(4, 8), seeds=(13, 21))
    source = set((glue / "train.tsv").read_text().splitlines()[1:])
    for k in (4, 8):
        for seed in (13, 21):
            folder = tmp_path / "a" / "sst2" / f"{k}-{seed}"
            train = (folder / "train.tsv").read_text().splitlines()
            dev = (folder / "dev.tsv").read_text().splitlines()
            assert train[0] == dev[0] == "sentence\tlabel"
            for rows in (train[1:], dev[1:]):
                labels = [r.rsplit("\t", 1)[1] for r in rows]
                assert sorted(labels) == ["0"] * k + ["1"] * k
                assert set(rows) <= source                      # copied byte for byte
            assert not set(train[1:]) & set(dev[1:])             # disjoint
            again = tmp_path / "b" / "sst2" / f"{k}-{seed}"
            assert (again / "train.tsv").read_bytes() == (folder / "train.tsv").read_bytes()
    t13 = (tmp_path / "a" / "sst2" / "4-13" / "train.tsv").read_text()
    t21 = (tmp_path / "a" / "sst2" / "4-21" / "train.tsv").read_text()
    assert t13 != t21                                            # the seed matters
    assert (tmp_path / "a" / "sst2" / "test.tsv").read_text() == (glue / "dev.tsv").read_text()


def test_built_folder_is_read_by_the_task_loader(tmp_path):
    glue = _glue_sst2(tmp_path / "SST-2")
    kshot.build("sst2", glue, tmp_path / "data", ks=(4,), seeds=(13,))
    task = get_task("sst2")
    train = load_split(task, "train", k=4, data_seed=13, data_dir=tmp_path / "data")
    assert len(train) == 8


def test_bad_inputs_are_one_line_errors(tmp_path):
    glue = _glue_sst2(tmp_path / "SST-2", n_per_label=(5, 30))
    with pytest.raises(kshot.KShotError, match="needs 16 rows per label"):
        kshot.build("sst2", glue, tmp_path / "out", ks=(8,), seeds=(1,))
    with pytest.raises(kshot.KShotError, match="not a regular file"):
        kshot.build("sst2", tmp_path / "missing", tmp_path / "out")
    with pytest.raises(kshot.KShotError, match="unknown task"):
        kshot.build("mnli", glue, tmp_path / "out")
    (glue / "dev.tsv").write_text("sentence\tlabel\ntoo\tmany\tcolumns\n")
    with pytest.raises(kshot.KShotError, match="line 2 has 3 columns"):
        kshot.build("sst2", glue, tmp_path / "out", ks=(2,), seeds=(1,))
