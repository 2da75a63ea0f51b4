"""Policies for RL policy search: flat-parameter numpy policies and observation normalization.

The policies carry no parameters themselves: a policy object describes the shape
(``n_params``, ``param_blocks``) and maps ``(params, obs) -> action``. Optimizers
work on the flat vector ``params`` only, so perturbations travel as (seed, index)
and a worker regenerates them (Mania, Guy, Recht 2018, "Simple random search
provides a competitive approach to reinforcement learning", ARS).

Example:
    >>> import numpy as np
    >>> from dfo.policies import LinearPolicy
    >>> pol = LinearPolicy(3, 2)
    >>> params = pol.init_params(0)
    >>> pol.act(params, np.ones(3)).tolist()
    [0.0, 0.0]
"""

from dfo.policies.base import Policy, policy_from_config
from dfo.policies.linear import LinearPolicy
from dfo.policies.mlp import MLPPolicy
from dfo.policies.normalizer import NormalizerSnapshot, ObsNormalizer, RunningStat
from dfo.policies.rollout import EpisodeOutcome, rollout, run_episodes
from dfo.policies.serialization import LoadedPolicy, load_policy, save_policy

__all__ = [
    "Policy",
    "LinearPolicy",
    "MLPPolicy",
    "policy_from_config",
    "RunningStat",
    "ObsNormalizer",
    "NormalizerSnapshot",
    "save_policy",
    "load_policy",
    "LoadedPolicy",
    "EpisodeOutcome",
    "rollout",
    "run_episodes",
]
