"""IQM with a percentile-bootstrap interval over runs, finished runs carried forward (dfo.policies.aggregate)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from dfo.policies.aggregate import bootstrap_iqm, carry_forward, iqm


def test_iqm_is_the_mean_of_the_middle_half():
    x = np.arange(8.0)                        # middle half: 2, 3, 4, 5
    assert iqm(x) == pytest.approx(3.5)
    assert iqm(np.array([1.0, 2.0, 3.0, 1e9])) == pytest.approx(2.5)   # one outlier cut
    assert iqm(np.array([4.0])) == 4.0


def test_carry_forward_keeps_a_finished_runs_last_value():
    a = (np.array([0.0, 10.0, 20.0]), np.array([0.0, 100.0, 300.0]))   # stopped at 20 (threshold)
    b = (np.array([5.0, 40.0]), np.array([0.0, 80.0]))
    grid, values = carry_forward([a, b])
    assert list(grid) == [0.0, 5.0, 10.0, 20.0, 40.0]
    assert values[0].tolist() == [0.0, 50.0, 100.0, 300.0, 300.0]     # carried past x = 20
    assert np.isnan(values[1, 0]) and values[1, -1] == 80.0             # nothing before its first x
    assert values[1, 2] == pytest.approx(80.0 * 5 / 35)


def test_bootstrap_interval_covers_the_iqm_and_shrinks_with_more_runs():
    rng = np.random.default_rng(3)
    few = rng.normal(10.0, 2.0, size=(5, 1))
    many = rng.normal(10.0, 2.0, size=(200, 1))
    p5, lo5, hi5 = bootstrap_iqm(few)
    p200, lo200, hi200 = bootstrap_iqm(many)
    assert lo5[0] <= p5[0] <= hi5[0] and lo200[0] <= p200[0] <= hi200[0]
    assert hi200[0] - lo200[0] < 0.5 * (hi5[0] - lo5[0])
    # the truth (10, the IQM of a symmetric distribution is its centre) lies in the 200-run interval
    assert lo200[0] <= 10.0 <= hi200[0]
    assert p200[0] == pytest.approx(stats.trim_mean(many[:, 0], 0.25))


def test_bootstrap_is_seeded_and_equal_columns_give_a_point_interval():
    v = np.tile(np.array([[1.0], [2.0], [3.0], [4.0]]), (1, 3))
    v[:, 2] = 7.0
    a, b = bootstrap_iqm(v, seed=1), bootstrap_iqm(v, seed=1)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert a[1][2] == a[2][2] == 7.0


def test_columns_with_missing_runs_use_the_runs_present():
    v = np.array([[np.nan, 1.0], [2.0, 2.0], [4.0, 3.0]])
    point, lo, hi = bootstrap_iqm(v)
    assert point[0] == pytest.approx(3.0) and 2.0 <= lo[0] <= hi[0] <= 4.0
    with pytest.raises(ValueError, match="runs x points"):
        bootstrap_iqm(np.ones(3))
