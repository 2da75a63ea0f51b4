"""The Minimizer's phases on their own: the estimate's request (common random numbers),
the stop tests and the recovery rule (dfo.stopping), the checks of a state load (dfo.state_io)."""

from __future__ import annotations

import numpy as np
import pytest

import dfo
from dfo.estimate_request import centre_repeats, crn_seeds, estimate_points, estimate_values, rank_nonfinite
from dfo.estimators import get_estimator
from dfo.lbfgs import LBFGSMemory
from dfo.minimizer import Minimizer
from dfo.runstate import Pending, RunState, StallWindow
from dfo.stopping import after_iteration, error_bound


def _query(name: str, n: int = 4, seed: int = 0, fx=None):
    return get_estimator(name, sigma=1e-2).ask(np.ones(n), np.random.default_rng(seed), fx=fx)


def test_central_directions_share_one_seed_between_their_plus_and_minus_points():
    q = _query("central-gaussian")
    seeds, centre = crn_seeds(q, np.random.default_rng(1), repeats=3, extra=3, line_search=True)
    by_item = {}
    for (index, sign), seed in zip(q.items, seeds[:len(q.items)]):
        by_item.setdefault(index, set()).add(int(seed))
    assert all(len(s) == 1 for s in by_item.values())  # a direction's + and − points: one seed
    assert len({s.pop() for s in by_item.values()}) == q.directions.n_directions
    assert list(seeds[len(q.items):]) == list(centre) and len(centre) == 3


def test_forward_points_share_the_centre_seed_and_the_centre_repeats_follow():
    q = _query("gaussian")  # needs f(x): the centre is the first point
    extra = centre_repeats(q, repeats=3, seeded=True, line_search=True)
    seeds, centre = crn_seeds(q, np.random.default_rng(1), repeats=3, extra=extra, line_search=True)
    assert extra == 2 and len(seeds) == len(q.items) + extra
    assert set(seeds[:len(q.items)].tolist()) == {int(centre[0])} and list(seeds[len(q.items):]) == list(centre[1:])


def test_estimate_values_split_the_query_values_from_the_centre_repeats():
    q = _query("gaussian")
    extra = 2
    points, _, shape = estimate_points(q, q.x, extra=extra, seeds=None, box=None)
    assert len(points) == q.nfev + extra and shape["items"][-extra:] == [(-1, 0)] * extra
    req = Pending("estimate", points, items=shape["items"], extra=extra, query=q)
    values = np.arange(len(points), dtype=float)
    est, centre = estimate_values(req, values)
    assert est.tolist() == values[:q.nfev].tolist() and centre.tolist() == [0.0, values[-2], values[-1]]


def test_rank_nonfinite_raise_is_the_one_line_error():
    with pytest.raises(dfo.NonFiniteValueError):
        rank_nonfinite(np.array([1.0, np.nan]), "raise")
    values, bad = rank_nonfinite(np.array([np.nan, np.inf]), "worst")
    assert values.tolist() == [0.0, 0.0] and bad == 2


def _state(**kw) -> RunState:
    s = RunState(x=np.ones(3), rng=np.random.default_rng(0), window=StallWindow(5), fx=1.0, eps_f=1e-3,
                 sigma=1e-2, L=1.0, M=1.0, grad=np.full(3, 1e-6), memory=LBFGSMemory(size=3))
    for k, v in kw.items():
        setattr(s, k, v)
    return s


OPTS = dict(central=False, box=None, eps_mode="auto", sigma_fixed=False, max_recoveries=3, reestimate_every=10)


def test_noise_floor_stops_after_two_failed_searches_within_the_error_bound():
    s = _state()
    assert np.linalg.norm(s.grad) <= error_bound(s, central=False)
    assert after_iteration(s, failed=True, **OPTS) == "recovery" and s.stopped is None and s.floor_hits == 1
    assert after_iteration(s, failed=True, **OPTS) is None
    assert s.status == 0 and s.stopped.startswith("noise floor: the gradient estimate is within its error bound")


def test_a_recovery_clears_the_lbfgs_pairs_and_max_recoveries_ends_the_run():
    s = _state(grad=np.full(3, 10.0))  # far above the error bound: no noise floor
    s.memory.update(np.ones(3), np.ones(3))
    s.pair_s = np.ones(3)
    assert after_iteration(s, failed=True, **OPTS) == "recovery"
    assert not s.memory.pairs and s.pair_s is None and s.recoveries == 1
    for _ in range(2):
        after_iteration(s, failed=True, **OPTS)
    assert s.stopped is None
    assert after_iteration(s, failed=True, **OPTS) is None and s.status == 3 and s.failed_streak == 4


def test_periodic_reestimate_and_success_resets_the_failed_streak():
    s = _state(grad=np.full(3, 10.0), failed_streak=2, nit=10)
    assert after_iteration(s, failed=False, **OPTS) == "periodic" and s.failed_streak == 0
    s.nit = 11
    assert after_iteration(s, failed=False, **OPTS) is None


def test_a_state_of_another_size_or_step_rule_is_refused_in_one_line():
    m = Minimizer(np.ones(3), rng=0)
    state = m.state_dict()
    with pytest.raises(ValueError, match="size n=3"):
        Minimizer(np.ones(4), rng=0).load_state_dict(state)
    with pytest.raises(ValueError, match="step='armijo'"):
        Minimizer(np.ones(3), rng=0, step="sgd", lr=0.1).load_state_dict(state)
