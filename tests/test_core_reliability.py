"""Round-3 reliability cases of the core API (docs/reliability.md), named by case id."""

from __future__ import annotations

import numpy as np
import pytest

import dfo
from dfo.estimate_request import rank_nonfinite
from dfo.minimizer import Minimizer


def sq(x):
    return float(x @ x)


def _run_a_little(m: Minimizer, iterations: int = 3) -> Minimizer:
    while m.nit < iterations:
        req = m.ask()
        m.tell(np.array([sq(p) for p in req]))
    return m


def test_N_O3_a_budget_given_as_keyword_and_in_options_must_agree():
    with pytest.raises(ValueError, match="maxfev given twice with different values: 50 as a keyword and 300"):
        dfo.minimize(sq, np.zeros(3), maxfev=50, options={"maxfev": 300})
    with pytest.raises(ValueError, match="lr given twice"):
        dfo.minimize(sq, np.zeros(3), step="sgd", lr=0.1, options={"lr": 0.2})
    same = dfo.minimize(sq, np.ones(3), maxfev=200, options={"maxfev": 200}, rng=0)
    assert same.nfev <= 200


@pytest.mark.parametrize("other, key", [({"estimator": "gaussian"}, "estimator"), ({"step": "sgd"}, "step")])
def test_N_M2_N_M3_a_state_of_other_options_is_refused_with_one_line(other, key):
    saved = _run_a_little(Minimizer(np.ones(3), estimator="cfd", rng=0)).state_dict()
    with pytest.raises(ValueError, match=f"saved by a Minimizer with {key}="):
        Minimizer(np.ones(3), **{"estimator": "cfd", **other}, rng=0).load_state_dict(saved)
    Minimizer(np.ones(3), estimator="cfd", rng=0).load_state_dict(saved)   # the same options still load


def test_N_M6_a_state_with_a_non_finite_x_is_refused():
    saved = _run_a_little(Minimizer(np.ones(3), estimator="cfd", rng=0)).state_dict()
    saved["state"]["x"] = np.array([np.nan, 0.0, 0.0])
    with pytest.raises(ValueError, match="x is not finite"):
        Minimizer(np.ones(3), estimator="cfd", rng=0).load_state_dict(saved)


@pytest.mark.parametrize("fx", [float("nan"), float("inf"), "a", [1.0], True])
def test_N_E1_N_E2_a_given_fx_must_be_a_finite_number(fx):
    with pytest.raises(ValueError, match="fx must be a finite number"):
        dfo.estimate_gradient(sq, np.zeros(3), estimator="ffd", sigma=1e-3, fx=fx)


def test_N_E_a_finite_fx_is_used_and_saves_the_evaluation():
    a = dfo.estimate_gradient(sq, np.ones(3), estimator="ffd", sigma=1e-6, fx=3.0)
    b = dfo.estimate_gradient(sq, np.ones(3), estimator="ffd", sigma=1e-6)
    assert a.nfev == b.nfev - 1 and np.allclose(a.grad, b.grad)


def test_E8_non_finite_values_rank_last_without_overflow_near_the_float_limit():
    ranked, bad = rank_nonfinite(np.array([1e308, -1e308, np.inf, 1.0]), "worst")
    assert np.all(np.isfinite(ranked)) and ranked[2] > 1e308 and ranked[2] == ranked.max() and bad == 1
    ranked, bad = rank_nonfinite(np.array([1.0, 2.0, np.nan]), "worst")
    assert ranked[2] > 2.0 and np.isfinite(ranked[2])


@pytest.mark.parametrize("state", [{}, None, [], {"foo": 1}])
def test_N_M4_N_M5_an_empty_or_foreign_state_is_a_one_line_error(state):
    with pytest.raises(ValueError, match="not a Minimizer state_dict"):
        Minimizer(np.ones(3), rng=0).load_state_dict(state)
