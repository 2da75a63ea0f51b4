"""dfo.fileio (crash-safe writes, checksums) and dfo.jsontree (the checkpoint state encoder)."""

from __future__ import annotations

import json
import math
import os
import stat

import numpy as np
import pytest

from dfo import fileio
from dfo.fileio import TMP_MARK, atomic_write_bytes, bad_files, file_digests, staged_dir
from dfo.jsontree import TreeCodec, TreeError

TAGGED = TreeCodec(leaf_tag="__array__", is_leaf=lambda v: isinstance(v, np.ndarray), store=lambda v: v,
                   root="s", compact=False)
COMPACT = TreeCodec(leaf_tag="__array__", is_leaf=lambda v: isinstance(v, np.ndarray), store=np.copy,
                    root="t", compact=True)


def test_atomic_write_replaces_a_link_and_follows_the_umask(tmp_path):
    outside = tmp_path / "outside"
    outside.write_bytes(b"keep")
    (tmp_path / "a").symlink_to(outside)
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a", b"new")
    finally:
        os.umask(old)
    assert not (tmp_path / "a").is_symlink() and (tmp_path / "a").read_bytes() == b"new"
    assert outside.read_bytes() == b"keep"
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "outside"]


def test_a_failed_atomic_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "results.json"
    target.write_bytes(b"old")
    seen = []

    def fail(src, dst):
        seen.append(os.path.basename(src))
        raise OSError("disk full")

    monkeypatch.setattr(fileio.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(target, b"new")
    assert seen and seen[0].startswith(f"results.json{TMP_MARK}")  # the name run-folder cleanups look for
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_staged_dir_replaces_the_folder_whole_or_not_at_all(tmp_path):
    final = tmp_path / "ckpt"
    final.mkdir()
    (final / "old").write_bytes(b"1")
    with pytest.raises(RuntimeError):
        with staged_dir(final, prefix=".tmp-") as tmp:
            (tmp / "new").write_bytes(b"2")
            raise RuntimeError("killed mid-write")
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"] and os.listdir(final) == ["old"]
    with staged_dir(final, prefix=".tmp-") as tmp:
        assert tmp.parent == tmp_path and tmp.name.startswith(".tmp-")
        (tmp / "new").write_bytes(b"2")
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt"] and os.listdir(final) == ["new"]


def test_bad_files_names_missing_linked_and_changed_files(tmp_path):
    for name in ("a", "b", "c"):
        (tmp_path / name).write_bytes(name.encode())
    sums = file_digests(tmp_path, ["a", "b", "c"])
    assert bad_files(tmp_path, sums) == ([], [])
    (tmp_path / "a").write_bytes(b"A")
    (tmp_path / "b").unlink()
    (tmp_path / "b").symlink_to(tmp_path / "c")
    (tmp_path / "c").rename(tmp_path / "d")
    assert bad_files(tmp_path, sums) == (["b", "c"], ["a"])


STATE = {"it": 3, 1: (np.arange(2.0), None), "__x": [np.float32(1.5), np.int64(2), np.bool_(True), "s"],
         "nan": float("nan")}


def test_tagged_layout_is_the_trainer_checkpoint_format():
    arrays: dict = {}
    tree = TAGGED.encode({"a": (np.arange(2), None), "b": [3]}, arrays)
    assert tree == {"__dict__": {"a": {"__tuple__": [{"__array__": "s.a.0"}, None]}, "b": {"__list__": [3]}}}
    assert list(arrays) == ["s.a.0"]
    back = TAGGED.decode(json.loads(json.dumps(tree)), arrays)
    assert back["a"][0] is arrays["s.a.0"] and back["a"][1] is None and back["b"] == [3]


def test_compact_layout_is_the_finetune_checkpoint_format_and_keeps_int_keys():
    arrays: dict = {}
    tree = json.loads(json.dumps(COMPACT.encode(STATE, arrays)))
    assert tree["__dict__"][1] == [1, {"__tuple__": [{"__array__": "t.1.0#0"}, None]}]
    assert tree["__dict__"][2][1] == [1.5, 2, True, "s"]
    back = COMPACT.decode(tree, arrays)
    assert list(back) == ["it", 1, "__x", "nan"] and back["it"] == 3 and back["__x"] == [1.5, 2, True, "s"]
    assert np.array_equal(back[1][0], [0.0, 1.0]) and math.isnan(back["nan"])
    assert COMPACT.decode({"a": [{"b": 1}]}, {}) == {"a": [{"b": 1}]}


@pytest.mark.parametrize("codec", [TAGGED, COMPACT])
def test_unknown_tags_missing_leaves_and_other_types_are_refused(codec):
    with pytest.raises(TreeError, match="unknown entry"):
        codec.decode({"__code__": "print(1)"}, {})
    with pytest.raises(TreeError, match="not stored"):
        codec.decode({"__array__": "s#9"}, {})
    with pytest.raises(TypeError, match="cannot checkpoint a value of type object at .*x"):
        codec.encode({"x": object()}, {})
    if not codec.compact:
        with pytest.raises(TreeError, match="unknown entry"):
            codec.decode({"plain": 1}, {})  # the tagged layout never writes an untagged dict


def test_make_writable_dir_creates_parents_and_refuses_a_file(tmp_path):
    from dfo.fileio import make_writable_dir

    assert make_writable_dir(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert os.listdir(tmp_path / "a" / "b") == []  # the probe is gone
    (tmp_path / "f").write_bytes(b"")
    with pytest.raises(OSError):
        make_writable_dir(tmp_path / "f")
