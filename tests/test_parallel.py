"""Tests for dfo.parallel: ordering, backend-independent results, traffic, worker death."""

from __future__ import annotations

import logging
import os
import pickle
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dfo.parallel import (
    BACKENDS,
    Evaluator,
    JoblibEvaluator,
    SerialEvaluator,
    chunk_bounds,
    make_evaluator,
    payload_bytes,
)

# ---------------------------------------------------------------- worker functions
# Module-level so that loky and dask workers import them by reference.


def seeded_value(shared, item):
    """f(x + sigma u) with u regenerated from (seed, index): a pure function of its inputs."""
    seed, index = item
    u = np.random.default_rng([seed, index]).standard_normal(shared["x"].size)
    z = shared["x"] + shared["sigma"] * u
    return float(np.sum(z**2) + np.sin(z).prod()), u[:3].copy()


def identity(shared, item):
    return item


def square_unless_first_visit(marker_dir, item):
    """Kill this worker process the first time item 5 is evaluated (marker file makes it once)."""
    if item == 5:
        marker = Path(marker_dir) / "died"
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            os._exit(1)
    return item * item


def always_die(shared, item):
    os._exit(1)


def raise_value_error(shared, item):
    raise ValueError(f"bad item {item}")


_CACHE: dict[str, int] = {}


def cached_env(shared, item):
    """Build an expensive per-process object once; report whether this call built it."""
    time.sleep(0.05)
    created = "env" not in _CACHE
    if created:
        _CACHE["env"] = os.getpid()
    return os.getpid(), created


def _unpickle_counting(path: str, payload: bytes) -> CountingShared:
    with open(path, "a") as f:
        f.write(f"{os.getpid()}\n")
    return CountingShared(path, payload)


class CountingShared:
    """A shared object that appends a line to a file each time it is unpickled."""

    def __init__(self, path: str, payload: bytes) -> None:
        self.path, self.payload = path, payload

    def __reduce__(self):
        return _unpickle_counting, (self.path, self.payload)


def payload_length(shared, item):
    return len(shared.payload) + item


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def loky_ev():
    with make_evaluator(2) as ev:
        yield ev


@pytest.fixture(scope="module")
def dask_ev():
    pytest.importorskip("distributed")
    with make_evaluator("local-dask", n_jobs=2) as ev:
        yield ev


ITEMS = [(seed, index) for seed in (3, 11) for index in range(9)]
SHARED = {"x": np.linspace(-1.0, 2.0, 40), "sigma": 0.1}


def _as_array(results):
    return np.array([[v, *u] for v, u in results])


# ---------------------------------------------------------------- chunking and ordering


def test_chunk_bounds_contiguous_and_balanced():
    for n in range(0, 30):
        for k in range(1, 9):
            b = chunk_bounds(n, k)
            assert [i for lo, hi in b for i in range(lo, hi)] == list(range(n))
            sizes = [hi - lo for lo, hi in b]
            assert all(s >= 1 for s in sizes)
            if n:
                assert len(b) == min(n, k) and max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("batch", ["auto", 1, 4, 100])
def test_loky_keeps_order(batch):
    items = list(range(23))
    ev = JoblibEvaluator(n_jobs=2, batch=batch)
    with ev:
        assert ev.map(identity, items) == items
        assert ev.map(identity, []) == []
        expected_chunks = 4 if batch == "auto" else -(-23 // batch)
        assert ev.map(identity, items) and ev.last_traffic["chunks"] == expected_chunks


def test_serial_map_and_protocol():
    ev = SerialEvaluator()
    assert isinstance(ev, Evaluator)
    assert ev.map(lambda s, i: s - i, [1, 2, 3], shared=10) == [9, 8, 7]
    assert ev.last_traffic["sent"] == 0 and ev.last_traffic["items"] == 3


# ---------------------------------------------------------------- determinism across backends


def test_identical_results_serial_loky_dask(loky_ev, dask_ev):
    serial = _as_array(SerialEvaluator().map(seeded_value, ITEMS, SHARED))
    loky = _as_array(loky_ev.map(seeded_value, ITEMS, SHARED))
    dask = _as_array(dask_ev.map(seeded_value, ITEMS, SHARED))
    with JoblibEvaluator(n_jobs=2, batch=1) as fine:
        loky_fine = _as_array(fine.map(seeded_value, ITEMS, SHARED))
    assert serial.shape == (len(ITEMS), 4)
    assert len(np.unique(serial[:, 0])) == len(ITEMS)  # every item really differs
    for other in (loky, dask, loky_fine):
        np.testing.assert_array_equal(other, serial)  # bit for bit


def test_dask_backend_with_existing_client_and_address(dask_ev):
    serial = SerialEvaluator().map(identity, list(range(11)))
    with make_evaluator("dask", scheduler=dask_ev.client) as ev:
        assert ev.n_workers == 2
        assert ev.map(identity, list(range(11))) == serial
    assert dask_ev.client.status == "running"  # a client we did not create is left open
    with make_evaluator("dask", scheduler=dask_ev.client.scheduler.address) as ev:
        assert ev.map(identity, list(range(11))) == serial
        own = ev.client
    assert own.status == "closed"


def test_ray_backend_identical():
    pytest.importorskip("ray")
    from ray import cloudpickle  # Ray workers cannot import this test module: send it by value

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        serial = _as_array(SerialEvaluator().map(seeded_value, ITEMS, SHARED))
        with make_evaluator("ray", n_jobs=2) as ev:
            np.testing.assert_array_equal(_as_array(ev.map(seeded_value, ITEMS, SHARED)), serial)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


# ---------------------------------------------------------------- shared sent once per chunk


def test_shared_unpickled_once_per_chunk_not_per_item(loky_ev, tmp_path):
    counter = tmp_path / "unpickled.txt"
    shared = CountingShared(str(counter), b"x" * 1000)
    items = list(range(12))
    out = loky_ev.map(payload_length, items, shared)
    assert out == [1000 + i for i in items]
    n_chunks = loky_ev.last_traffic["chunks"]
    assert n_chunks == 4 < len(items)
    assert len(counter.read_text().split()) == n_chunks
    counter.unlink()
    SerialEvaluator().map(payload_length, items, shared)
    assert not counter.exists()  # serial: nothing pickled


def test_last_traffic_scales_with_chunks_not_items(loky_ev):
    shared = np.zeros(50_000)  # 400 kB
    size = payload_bytes(shared)
    items = [(0, i) for i in range(16)]
    loky_ev.map(identity, items, shared)
    t = loky_ev.last_traffic
    assert t["chunks"] == 4 and t["items"] == 16 and t["retries"] == 0
    assert 4 * size < t["sent"] < 4 * size + 4000
    assert t["received"] == sum(payload_bytes(items[i : i + 4]) for i in range(0, 16, 4))
    with JoblibEvaluator(n_jobs=2, batch=1) as per_item:
        per_item.map(identity, items, shared)
        assert per_item.last_traffic["sent"] > 16 * size


def test_workers_and_their_caches_persist_across_maps(loky_ev):
    first = loky_ev.map(cached_env, list(range(8)))
    second = loky_ev.map(cached_env, list(range(8)))
    assert {pid for pid, _ in second} <= {pid for pid, _ in first}
    assert not any(created for _, created in second)


# ---------------------------------------------------------------- faults


def test_loky_worker_death_reruns_lost_chunks(tmp_path, caplog):
    items = list(range(12))
    with caplog.at_level(logging.WARNING, logger="dfo.parallel"):
        with JoblibEvaluator(n_jobs=2, max_retries=2) as ev:
            out = ev.map(square_unless_first_visit, items, str(tmp_path))
            assert ev.last_traffic["retries"] == 1
            assert ev.map(identity, items) == items  # the pool works again afterwards
    assert out == [i * i for i in items]
    assert (tmp_path / "died").exists()
    assert any("worker died" in r.getMessage() for r in caplog.records)


def test_loky_gives_up_after_max_retries(caplog):
    from joblib.externals.loky.process_executor import TerminatedWorkerError

    with JoblibEvaluator(n_jobs=2, max_retries=1) as ev, caplog.at_level(logging.WARNING, "dfo.parallel"):
        with pytest.raises(TerminatedWorkerError):
            ev.map(always_die, [1, 2])
    assert sum("worker died" in r.getMessage() for r in caplog.records) == 1


def test_errors_from_fn_are_not_retried(loky_ev, caplog):
    assert loky_ev.map(identity, [1, 2, 3]) == [1, 2, 3]  # pool healthy before we look at the log
    caplog.clear()
    with caplog.at_level(logging.WARNING, "dfo.parallel"), pytest.raises(ValueError, match="bad item"):
        loky_ev.map(raise_value_error, [1, 2, 3])
    assert not any("worker died" in r.getMessage() for r in caplog.records)


def test_dask_worker_death_mid_map_completes(dask_ev, tmp_path):
    items = list(range(12))
    pids_before = set(dask_ev.client.run(os.getpid).values())
    out = dask_ev.map(square_unless_first_visit, items, str(tmp_path))
    assert out == [i * i for i in items]
    dead = int((tmp_path / "died").read_text())
    assert dead in pids_before  # a real worker process of the cluster died
    deadline = time.time() + 20  # the nanny restarts it
    while len(dask_ev.client.nthreads()) < 2 and time.time() < deadline:
        time.sleep(0.1)
    assert dask_ev.n_workers == 2
    assert dask_ev.map(identity, items) == items


# ---------------------------------------------------------------- make_evaluator


def test_make_evaluator_specs():
    assert isinstance(make_evaluator(), SerialEvaluator)
    assert isinstance(make_evaluator(1), SerialEvaluator)
    assert isinstance(make_evaluator("serial"), SerialEvaluator)
    ser = SerialEvaluator()
    assert make_evaluator(ser) is ser
    with make_evaluator(2) as ev:
        assert isinstance(ev, JoblibEvaluator) and ev.backend == "loky" and ev.n_workers == 2
    with make_evaluator("loky", n_jobs=-1) as ev:
        assert ev.n_workers == os.cpu_count()
    assert set(BACKENDS) == {"serial", "loky", "dask", "local-dask", "ray"}


def test_make_evaluator_errors(monkeypatch):
    with pytest.raises(ValueError, match="'serial', 'loky', 'dask', 'local-dask', 'ray'"):
        make_evaluator("multiprocessing")
    with pytest.raises(ValueError, match="scheduler="):
        make_evaluator("dask")
    with pytest.raises(ValueError, match="only used by backend 'dask'"):
        make_evaluator("loky", scheduler="tcp://127.0.0.1:1")
    with pytest.raises(ValueError, match="n_jobs"):
        make_evaluator(0)
    with pytest.raises(ValueError, match="batch"):
        make_evaluator(2, batch=0)
    with pytest.raises(ValueError, match="max_retries"):
        make_evaluator(2, max_retries=-1)
    with pytest.raises(TypeError, match="bool"):
        make_evaluator(True)
    with pytest.raises(TypeError, match="float"):
        make_evaluator(3.5)
    with pytest.raises(TypeError, match="no options"):
        make_evaluator("serial", n_jobs=4)
    monkeypatch.setitem(sys.modules, "ray", None)  # as if ray were not installed
    with pytest.raises(ImportError, match="pip install ray"):
        make_evaluator("ray")


def test_closed_evaluator_refuses_work():
    ev = make_evaluator(2)
    ev.close()
    ev.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        ev.map(identity, [1])


def test_payload_bytes_matches_pickle_and_handles_lambdas():
    obj = {"a": np.arange(10)}
    assert payload_bytes(obj) == len(pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))
    assert payload_bytes(lambda s, i: i) > 0


def pid_of_worker(shared, item):
    return os.getpid()


def test_single_worker_dask_cluster_still_runs_on_the_cluster():
    pytest.importorskip("distributed")
    with make_evaluator("local-dask", n_jobs=1) as ev:
        assert ev.n_workers == 1
        worker_pids = set(ev.client.run(os.getpid).values())
        assert set(ev.map(pid_of_worker, list(range(4)))) == worker_pids != {os.getpid()}
