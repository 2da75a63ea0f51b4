"""The lean path's shortcuts for throughput stay bit for bit gymnasium's.

* ``fast_reset``: the initial state row, observation and the env's generator after a lean reset
  equal those after gymnasium's own ``env.reset(seed=...)``, over many seeds.
* Humanoid (observation and reward computed for all slots at once) and the fast-reset tasks: batched
  training rollouts (many slots, episodes ending and moving between slots) equal the ``env.step`` path.
"""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from dfo.envs import get_stepper, make_env
from dfo.envs.lean import make_stepper
from dfo.envs.lean_tasks import _INTEGRATION
from dfo.policies import LinearPolicy
from dfo.policies.rollout import run_episodes

FAST = ["Hopper-v5", "Walker2d-v5", "HalfCheetah-v5", "Swimmer-v5", "Ant-v5", "Humanoid-v5"]


@pytest.mark.parametrize("env_id", FAST)
def test_fast_reset_equals_gymnasium_reset(env_id):
    lean = make_stepper(make_env(env_id))
    assert lean.task.qvel_noise is not None
    lean.ensure_width(2)
    ref = make_env(env_id).unwrapped
    row = np.empty(lean.task.X.shape[1])
    for seed in [0, 1, 7, 123, 2**31 + 5, 10**12]:
        obs, _ = ref.reset(seed=seed)
        mujoco.mj_getState(ref.model, ref.data, row, _INTEGRATION)
        slot = seed % 2
        lean.reset(slot, seed)
        np.testing.assert_array_equal(lean.task.X[slot], row)
        np.testing.assert_array_equal(lean.obs[slot], obs)
        assert lean.u.np_random.bit_generator.state == ref.np_random.bit_generator.state
        assert lean.u.np_random_seed == ref.np_random_seed
        # a later seed=None reset continues the same generator as gymnasium's would
        obs_none, _ = ref.reset()
        lean.reset(1 - slot, None)
        np.testing.assert_array_equal(lean.obs[1 - slot], obs_none)


def test_fast_reset_refuses_bad_seeds_like_gymnasium():
    lean = make_stepper(make_env("Hopper-v5"))
    with pytest.raises(Exception) as lean_err:
        lean.reset(0, -1)
    with pytest.raises(Exception) as gym_err:
        make_env("Hopper-v5").unwrapped.reset(seed=-1)
    assert type(lean_err.value) is type(gym_err.value)


@pytest.mark.parametrize("env_id", ["Humanoid-v5", "Hopper-v5", "Walker2d-v5"])
def test_batched_training_rollouts_equal_the_env_step_path(env_id):
    lean = get_stepper(env_id)
    gym_st = get_stepper(env_id, lean=False)
    assert lean.lean and not gym_st.lean
    pol = LinearPolicy(lean.obs_dim, lean.act_dim)
    P = 0.05 * np.random.default_rng(4).standard_normal((10, pol.n_params))
    seeds = list(range(40, 50))
    a = run_episodes(lean, pol, P, seeds, horizon=80, reward_shift=1.0, width=6)
    b = run_episodes(gym_st, pol, P, seeds, horizon=80, reward_shift=1.0, width=6)
    assert len({o.steps for o in a}) > 1  # episodes ended at different times: slots restarted and moved
    for x, y in zip(a, b):
        assert (x.ret, x.true_ret, x.steps, x.terminated, x.nonfinite) == (y.ret, y.true_ret, y.steps, y.terminated,
                                                                          y.nonfinite)
        np.testing.assert_array_equal(x.obs_stats.mean, y.obs_stats.mean)
        np.testing.assert_array_equal(x.obs_stats.m2, y.obs_stats.m2)


@pytest.mark.parametrize("env_id", ["Hopper-v5", "Humanoid-v5"])
def test_prefetched_resets_equal_gymnasium_resets(env_id):
    """States prepared by ``prefetch`` (duplicate seeds included, used in any order) start episodes
    exactly as gymnasium's reset, and leave the env's generator where that reset leaves it."""
    lean = make_stepper(make_env(env_id))
    lean.ensure_width(2)
    seeds = [5, 9, 5, 2**40, 3]
    lean.prefetch(seeds + [np.int64(4), None], 2)
    ref = make_env(env_id).unwrapped
    row = np.empty(lean.task.X.shape[1])
    for i, seed in enumerate([3, 5, 2**40, 5, 9]):
        obs, _ = ref.reset(seed=seed)
        mujoco.mj_getState(ref.model, ref.data, row, _INTEGRATION)
        lean.reset(i % 2, seed)
        np.testing.assert_array_equal(lean.task.X[i % 2], row)
        np.testing.assert_array_equal(lean.obs[i % 2], obs)
        assert lean.u.np_random.bit_generator.state == ref.np_random.bit_generator.state
    assert not any(lean._staged.values())  # every prepared state used once
    obs, _ = ref.reset(seed=5)  # not prepared any more: the ordinary reset
    lean.reset(0, 5)
    np.testing.assert_array_equal(lean.obs[0], obs)
