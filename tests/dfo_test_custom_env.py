"""A user module that registers a custom env (imported by name: ``--import dfo_test_custom_env``).

Point mass in the plane: observation = position, action = velocity in [-1, 1]^2,
reward = -|position|^2, 20 steps from a random start. A linear policy a = -c x solves it.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

ENV_ID = "DfoTestPointMass-v0"


class PointMassEnv(gym.Env):
    observation_space = gym.spaces.Box(-np.inf, np.inf, (2,), np.float64)
    action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float64)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.x = self.np_random.uniform(-1, 1, size=2)
        return self.x.copy(), {}

    def step(self, action):
        self.x = self.x + 0.2 * np.asarray(action, dtype=np.float64)
        return self.x.copy(), -float(self.x @ self.x), False, False, {}


if ENV_ID not in gym.registry:
    gym.register(ENV_ID, entry_point=PointMassEnv, max_episode_steps=20)
