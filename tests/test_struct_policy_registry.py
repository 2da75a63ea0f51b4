"""Policy classes register themselves, so policies/base.py needs no import of the classes it rebuilds."""

from __future__ import annotations

import abc

import numpy as np
import pytest

from dfo.policies import LinearPolicy, MLPPolicy, policy_from_config
from dfo.policies.base import POLICY_CLASSES, Policy


class ConstantPolicy(Policy):
    """A user's policy: a constant action ``b`` (one block)."""

    def __init__(self, obs_dim: int, act_dim: int) -> None:
        self.obs_dim, self.act_dim = obs_dim, act_dim

    def param_blocks(self):
        return [("b", (self.act_dim,))]

    def init_params(self, rng=None):
        return np.zeros(self.n_params)

    def act(self, params, obs):
        obs = self._check_obs(obs)
        return np.broadcast_to(params, (*obs.shape[:-1], self.act_dim)).copy()

    def config(self):
        return {"class": "ConstantPolicy", "obs_dim": self.obs_dim, "act_dim": self.act_dim}


def test_built_in_and_user_classes_are_in_the_table():
    assert POLICY_CLASSES["LinearPolicy"] is LinearPolicy and POLICY_CLASSES["MLPPolicy"] is MLPPolicy
    pol = policy_from_config(ConstantPolicy(3, 2).config())
    assert type(pol) is ConstantPolicy and pol.act(np.array([1.0, -1.0]), np.zeros(3)).tolist() == [1.0, -1.0]


def test_abstract_subclasses_are_not_registered():
    class Partial(Policy):
        def param_blocks(self):
            return []

    class NewAbstract(LinearPolicy):
        @abc.abstractmethod
        def extra(self): ...

    assert "Partial" not in POLICY_CLASSES and "NewAbstract" not in POLICY_CLASSES


def test_a_second_class_with_a_registered_name_is_refused():
    with pytest.raises(TypeError, match="two policy classes named 'LinearPolicy'"):
        type("LinearPolicy", (LinearPolicy,), {"__module__": "somewhere_else"})
    assert POLICY_CLASSES["LinearPolicy"] is LinearPolicy


def test_an_unknown_class_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown policy class 'Nope'; known: \[.*'LinearPolicy'"):
        policy_from_config({"class": "Nope"})
