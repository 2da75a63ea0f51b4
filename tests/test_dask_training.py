"""Policy search on a Dask cluster (and Ray): same numbers as loky, survives a lost worker,
ships seeds rather than perturbations.

The cluster is a real ``dask.distributed.LocalCluster`` of two single-threaded worker
*processes* on 127.0.0.1, reached through its ``tcp://`` address exactly as
``dfo train --backend dask --scheduler tcp://HOST:PORT`` reaches a remote one.

The lost-worker test uses the rollout worker's test-only fault hook
(``dfo.policies.objective.kill_hook_path``): creating that file arms it for the worker
processes whose parent is this process (a LocalCluster's nannies live in this process),
and the first rollout that then runs on a worker removes the file and ``os._exit``s its
process in the middle of an iteration.
"""

from __future__ import annotations

import logging
import math
import os

import numpy as np
import pytest

from dfo.parallel import SerialEvaluator, payload_bytes
from dfo.policies.objective import kill_hook_path
from dfo.policies.training import DETERMINISTIC_COLUMNS, TrainConfig, Trainer

distributed = pytest.importorskip("distributed")

#: tiny but real: 4 antithetic directions, 40-step episodes, ARS V2-t (normalizer on)
RUN = dict(env_id="InvertedPendulum-v5", episodes=10**6, max_iterations=3, horizon=40,
           n_directions=4, top_b=2, n_eval_episodes=2, eval_every=1, seed=3)


def _train(**overrides):
    """Run RUN (with overrides) to the end; return (result, final normalizer state)."""
    with Trainer(TrainConfig(**{**RUN, **overrides})) as tr:
        res = tr.run()
        return res, tr.normalizer.state


def _same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def _assert_same_run(got, want) -> None:
    """Bit-for-bit equal parameters, normalizer and every seed-determined progress column."""
    (res, norm), (ref, ref_norm) = got, want
    assert res.iteration == ref.iteration == RUN["max_iterations"]
    assert np.array_equal(res.params, ref.params)
    for key in ref_norm:
        assert np.array_equal(np.asarray(norm[key]), np.asarray(ref_norm[key])), key
    assert len(res.history) == len(ref.history)
    for row, ref_row in zip(res.history, ref.history):
        for col in DETERMINISTIC_COLUMNS:
            if col in ref_row:
                assert _same(row[col], ref_row[col]), (row["iteration"], col, row[col], ref_row[col])


@pytest.fixture(scope="module")
def loky_run():
    """The reference curve: loky, two worker processes."""
    return _train(backend="loky", n_jobs=2)


@pytest.fixture(scope="module")
def cluster():
    """LocalCluster: 2 worker processes x 1 thread on 127.0.0.1."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None, silence_logs=logging.ERROR) as lc:
        yield lc


@pytest.fixture
def kill_one_worker():
    """Arm the fault hook (the next rollout on a worker of this process kills that worker)."""
    hook = kill_hook_path()
    hook.touch()
    yield hook
    hook.unlink(missing_ok=True)


def _worker_pids(address: str) -> set[int]:
    with distributed.Client(address, set_as_default=False) as client:
        return set(client.run(os.getpid).values())


def test_dask_cluster_equals_loky(loky_run, cluster):
    lc = cluster
    assert len(_worker_pids(lc.scheduler_address)) == 2  # two real processes
    got = _train(backend="dask", scheduler=lc.scheduler_address)
    _assert_same_run(got, loky_run)
    # the dask backend really shipped work: bytes went out every iteration
    assert all(row["bytes_sent"] > 0 and row["bytes_received"] > 0 for row in got[0].history[1:])


def test_dask_worker_killed_mid_run(loky_run, cluster, kill_one_worker):
    lc = cluster
    before = _worker_pids(lc.scheduler_address)
    got = _train(backend="dask", scheduler=lc.scheduler_address)
    assert not kill_one_worker.exists(), "no worker died: the fault hook never fired"
    # the killed process is gone (its nanny may have started a new one)
    after = _worker_pids(lc.scheduler_address)
    assert before - after, f"worker pids unchanged: {before} -> {after}"
    # the lost rollouts were re-run, none counted twice: same episodes, steps, curve
    _assert_same_run(got, loky_run)
    assert [r["episodes"] for r in got[0].history] == [r["episodes"] for r in loky_run[0].history]


def test_resume_runs_where_the_caller_says_not_where_the_run_dir_says(loky_run, cluster, tmp_path):
    """A Dask run resumed without naming a backend continues on loky: the scheduler address in
    its checkpoint is never used (issue 10), and the numbers are those of an uninterrupted run."""
    from dfo.policies.training import read_progress

    cfg = TrainConfig(**{**RUN, "max_iterations": 1, "backend": "dask", "scheduler": cluster.scheduler_address})
    with Trainer(cfg, out_dir=tmp_path / "run") as tr:
        tr.run()
    with Trainer.resume(tmp_path / "run", overrides={"max_iterations": RUN["max_iterations"], "n_jobs": 2}) as tr:
        assert (tr.config.backend, tr.config.scheduler) == ("loky", None)
        res = tr.run()
        norm = tr.normalizer.state
    ref, ref_norm = loky_run
    assert np.array_equal(res.params, ref.params)
    assert all(np.array_equal(np.asarray(norm[k]), np.asarray(ref_norm[k])) for k in ref_norm)
    rows = read_progress(tmp_path / "run" / "progress.csv")
    assert len(rows) == len(ref.history)
    for row, ref_row in zip(rows, ref.history):
        for col in DETERMINISTIC_COLUMNS:
            if col in ref_row:
                assert _same(row[col], ref_row[col]), (row["iteration"], col)


def test_local_dask_backend_equals_loky(loky_run):
    """``backend="local-dask"``: the trainer starts (and closes) its own LocalCluster."""
    _assert_same_run(_train(backend="local-dask", n_jobs=2), loky_run)


def test_ray_equals_loky(loky_run):
    """Ray's joblib backend on a local Ray runtime (skipped when Ray is not installed)."""
    pytest.importorskip("ray")
    _assert_same_run(_train(backend="ray", n_jobs=2), loky_run)


# ----------------------------------------------------------------------- traffic


class RecordingEvaluator(SerialEvaluator):
    """Serial evaluator that records pickled sizes of ``shared``, each item and each result."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[int, list[int], list[int]]] = []

    def map(self, fn, items, shared=None):
        items = list(items)
        out = super().map(fn, items, shared)
        self.calls.append((payload_bytes((fn, shared)), [payload_bytes(i) for i in items],
                           [payload_bytes(o) for o in out]))
        return out


def _one_iteration_payloads(**policy) -> tuple[int, int, list[int], list[int]]:
    cfg = TrainConfig(env_id="Swimmer-v5", episodes=10**6, max_iterations=1, horizon=20, n_directions=4, top_b=2,
                      n_eval_episodes=0, seed=0, backend="serial", **policy)
    rec = RecordingEvaluator()
    with Trainer(cfg, evaluator=rec) as tr:
        tr.step()
        n_params = tr.policy.n_params
    (shared, sent, received), = rec.calls  # one map call: the training rollouts
    return n_params, shared, sent, received


def test_item_payload_independent_of_policy_size():
    """Per rollout only (index, sign, seed) goes out and scalars + obs statistics come back;
    the parameters travel once per chunk, inside ``shared``."""
    small = _one_iteration_payloads(policy="linear")
    big = _one_iteration_payloads(policy="mlp", hidden=(128, 128))
    (n_s, shared_s, sent_s, recv_s), (n_b, shared_b, sent_b, recv_b) = small, big
    assert n_b > 100 * n_s  # ~18k vs 16-18 parameters
    # once per chunk: the centre (8 bytes per parameter) is in shared, so shared grows with n
    assert shared_b - shared_s >= 8 * (n_b - n_s)
    # per episode: same episode seeds in both runs (the random stream does not depend on n),
    # so the pickled items (one list of (index, sign, seed) per lockstep group) are
    # byte-identical and tiny
    episodes = 8  # N = 4 directions, + and -
    assert sent_s == sent_b and sum(sent_b) < 64 * episodes
    # per episode result: three scalars, flags and the (obs_dim = 8) statistics; ints pickle
    # in 1-4 bytes depending on their value, so allow a few bytes for different step counts
    assert len(recv_s) == len(recv_b)
    assert abs(sum(recv_s) - sum(recv_b)) <= 8 * episodes
    assert sum(recv_b) < 1024 * episodes < 8 * n_b
