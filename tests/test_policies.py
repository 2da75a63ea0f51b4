"""Tests for policies/: flat-parameter policies, mergeable normalizer, save/load."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from policies import (
    LinearPolicy,
    MLPPolicy,
    NormalizerSnapshot,
    ObsNormalizer,
    RunningStat,
    load_policy,
    policy_from_config,
    save_policy,
)

POLICIES = [
    LinearPolicy(5, 3),
    LinearPolicy(5, 3, bias=True),
    MLPPolicy(5, 3, hidden=(8, 4)),
]


def test_linear_act_is_matrix_product():
    rng = np.random.default_rng(0)
    pol = LinearPolicy(7, 3)
    params = rng.standard_normal(pol.n_params)
    x = rng.standard_normal(7)
    m = params.reshape(3, 7)
    np.testing.assert_array_equal(pol.act(params, x), m @ x)
    assert pol.param_blocks() == [("M", (3, 7))]
    np.testing.assert_array_equal(pol.init_params(1), np.zeros(21))


def test_linear_bias_layout():
    pol = LinearPolicy(2, 2, bias=True)
    params = np.array([1.0, 0.0, 0.0, 1.0, 10.0, 20.0])
    np.testing.assert_array_equal(pol.act(params, np.array([3.0, 4.0])), [13.0, 24.0])


@pytest.mark.parametrize("pol", POLICIES, ids=repr)
def test_batch_act_equals_per_row(pol):
    rng = np.random.default_rng(1)
    params = rng.standard_normal(pol.n_params)
    obs = rng.standard_normal((6, pol.obs_dim))
    batch = pol.act(params, obs)
    rows = np.stack([pol.act(params, o) for o in obs])
    assert batch.shape == (6, pol.act_dim)
    # gemm vs gemv may sum in a different order: equal up to rounding
    np.testing.assert_allclose(batch, rows, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(pol.bind(params)(obs[0]), pol.act(params, obs[0]))


@pytest.mark.parametrize("pol", POLICIES, ids=repr)
def test_param_blocks_cover_vector(pol):
    params = np.arange(pol.n_params, dtype=float)
    blocks = pol.unflatten(params)
    assert [n for n, _ in pol.param_blocks()] == list(blocks)
    assert sum(b.size for b in blocks.values()) == pol.n_params
    np.testing.assert_array_equal(pol.flatten(blocks), params)
    assert policy_from_config(json.loads(json.dumps(pol.config()))).config() == pol.config()


def test_mlp_blocks_and_init():
    pol = MLPPolicy(4, 2, hidden=(3,))
    assert pol.param_blocks() == [("W0", (3, 4)), ("b0", (3,)), ("W1", (2, 3)), ("b1", (2,))]
    p = pol.init_params(0)
    np.testing.assert_array_equal(p, pol.init_params(0))
    np.testing.assert_array_equal(pol.act(p, np.ones(4)), np.zeros(2))  # zero output layer
    assert np.any(pol.unflatten(p)["W0"] != 0)
    b = pol.unflatten(p)
    x = np.arange(4.0)
    np.testing.assert_allclose(pol.act(p + 0, x), b["W1"] @ np.tanh(b["W0"] @ x + b["b0"]) + b["b1"])


def test_bad_shapes_raise():
    pol = LinearPolicy(3, 2)
    with pytest.raises(ValueError, match="length 6"):
        pol.act(np.zeros(5), np.zeros(3))
    with pytest.raises(ValueError, match="obs of shape"):
        pol.act(np.zeros(6), np.zeros(4))
    with pytest.raises(ValueError, match="unknown policy class"):
        policy_from_config({"class": "Nope"})


def test_running_stat_merge_equals_concatenation():
    rng = np.random.default_rng(2)
    chunks = [rng.normal(loc=5.0, scale=s, size=(n, 4)) for n, s in [(1, 1.0), (17, 3.0), (250, 0.1), (3, 10.0)]]
    merged = RunningStat(4)
    for c in chunks:
        merged.merge(RunningStat.from_batch(c))
    merged.merge(RunningStat(4))  # empty merge is a no-op
    full = np.concatenate(chunks)
    assert merged.count == len(full)
    np.testing.assert_allclose(merged.mean, full.mean(axis=0), rtol=1e-12, atol=0)
    np.testing.assert_allclose(merged.m2, ((full - full.mean(axis=0)) ** 2).sum(axis=0), rtol=1e-12, atol=0)
    np.testing.assert_allclose(merged.var, full.var(axis=0, ddof=1), rtol=1e-12)
    # merging in a different grouping gives the same stats up to rounding
    other = RunningStat.from_batch(full[:100])
    other.push_batch(full[100:])
    np.testing.assert_allclose(other.m2, merged.m2, rtol=1e-12)


def test_normalizer_low_variance_zeroed_and_snapshot_frozen():
    x = np.column_stack([np.arange(10.0), np.full(10, 3.0), 3.0 + 1e-6 * np.arange(10.0)])
    norm = ObsNormalizer(3)
    np.testing.assert_array_equal(norm.normalize(np.array([1.0, 2.0, 3.0])), [1.0, 2.0, 3.0])  # identity before data
    norm.update(RunningStat.from_batch(x))
    np.testing.assert_array_equal(norm.normalize(np.array([1.0, 2.0, 3.0])), [1.0, 2.0, 3.0])  # frozen until refresh
    snap = norm.refresh()
    out = snap.normalize(np.array([4.5, 100.0, 7.0]))
    assert out[0] == 0.0 and out[1] == 0.0 and out[2] == 0.0  # mean 4.5; var 0 and var ~9e-12 < 1e-8 zeroed
    out = snap.normalize(np.array([4.5 + np.sqrt(x[:, 0].var(ddof=1)), 3.0, 3.0]))
    np.testing.assert_allclose(out[0], 1.0, rtol=1e-14)
    # one observation only: zero variance, every coordinate zeroed
    one = NormalizerSnapshot.from_stat(RunningStat.from_batch(np.ones((1, 3))))
    np.testing.assert_array_equal(one.normalize(np.array([5.0, -1.0, 2.0])), np.zeros(3))


def test_normalizer_state_round_trip():
    rng = np.random.default_rng(3)
    norm = ObsNormalizer(4)
    norm.update(RunningStat.from_batch(rng.standard_normal((20, 4))))
    norm.refresh()
    norm.update(RunningStat.from_batch(rng.standard_normal((5, 4))))  # accumulated, not yet frozen
    back = ObsNormalizer.from_state({k: np.array(v) for k, v in norm.state.items()})
    for k, v in norm.state.items():
        np.testing.assert_array_equal(back.state[k], v)
    x = rng.standard_normal(4)
    np.testing.assert_array_equal(back.normalize(x), norm.normalize(x))


@pytest.mark.parametrize("pol", POLICIES, ids=repr)
def test_save_load_round_trip_no_pickle(tmp_path, pol):
    rng = np.random.default_rng(4)
    params = rng.standard_normal(pol.n_params)
    norm = ObsNormalizer(pol.obs_dim)
    norm.update(RunningStat.from_batch(rng.standard_normal((30, pol.obs_dim))))
    norm.refresh()
    npz, js = save_policy(tmp_path / "ckpt" / "policy", pol, params, norm, {"env_id": "Swimmer-v5", "iteration": 7})
    assert {p.name for p in (tmp_path / "ckpt").iterdir()} == {"policy.npz", "policy.json"}  # no temp files left
    with np.load(npz, allow_pickle=False) as z:  # would raise if any array needed pickle
        assert all(z[k].dtype != object for k in z.files)
    loaded = load_policy(tmp_path / "ckpt" / "policy.npz")
    assert loaded.policy.config() == pol.config()
    np.testing.assert_array_equal(loaded.params, params)
    for k, v in norm.state.items():
        np.testing.assert_array_equal(loaded.normalizer.state[k], v)
    assert loaded.metadata["env_id"] == "Swimmer-v5" and loaded.metadata["iteration"] == 7
    x = rng.standard_normal(pol.obs_dim)
    np.testing.assert_array_equal(loaded.act(x), pol.act(params, norm.normalize(x)))


def test_load_detects_corruption(tmp_path):
    pol = LinearPolicy(3, 1)
    npz, js = save_policy(tmp_path / "p", pol, np.ones(3), None, {})
    assert load_policy(tmp_path / "p").normalizer is None
    data = npz.read_bytes()
    npz.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="checksum"):
        load_policy(tmp_path / "p")
    js.write_text("{not json")
    with pytest.raises(ValueError, match="corrupt policy metadata"):
        load_policy(tmp_path / "p")
    with pytest.raises(FileNotFoundError):
        load_policy(tmp_path / "missing")
    with pytest.raises(ValueError, match="reserved"):
        save_policy(tmp_path / "q", pol, np.ones(3), None, {"policy": 1})
    assert zipfile.is_zipfile(save_policy(tmp_path / "r", pol, np.ones(3))[0])
