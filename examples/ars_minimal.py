"""Augmented Random Search in one screen: the ARS V1-t iteration written out with numpy and gymnasium.

ARS (Mania, Guy, Recht 2018, "Simple random search provides a competitive approach to
reinforcement learning") searches the weights ``M`` of a linear policy ``a = clip(M obs)``.
One iteration:

1. draw ``N`` Gaussian directions ``u_i`` (each the shape of ``M``);
2. run one episode with ``M + ν u_i`` and one with ``M - ν u_i`` (returns ``r+_i``, ``r-_i``);
3. keep the ``b`` directions whose better side scored best, ``max(r+_i, r-_i)``;
4. step ``M ← M + α / (b σ_R) · Σ_kept (r+_i - r-_i) u_i``, where ``σ_R`` is the standard
   deviation of the ``2b`` returns kept.

This file is for reading. ``dfo train ENV --method ars-v1t`` runs the same iteration through
the library (``policies/methods.py`` explains how ARS maps onto the core's estimator, shaping
and SGD step; the library adds the V2 observation normalizer, parallel rollouts, checkpoints).
``tests/test_docs_examples.py`` feeds the library's directions and episode seeds to
:func:`ars_iteration` below and checks that both reach the same weights.

Run:
    python examples/ars_minimal.py                       # InvertedPendulum-v5, 20 iterations
    python examples/ars_minimal.py --env Swimmer-v5 --iterations 50 --step-size 0.02 --noise 0.03
"""

from __future__ import annotations

import argparse

import gymnasium as gym
import numpy as np


def episode_return(env: gym.Env, M: np.ndarray, seed: int, horizon: int) -> float:
    """The return of one episode of the linear policy ``a = clip(M obs)``, reset with ``seed``."""
    low, high = env.action_space.low, env.action_space.high
    obs, _ = env.reset(seed=seed)
    total = 0.0
    for _ in range(horizon):
        action = np.clip(M @ obs, low, high)
        obs, reward, terminated, truncated, _ = env.step(action)
        total += float(reward)
        if terminated or truncated:
            break
    return total


def ars_iteration(env: gym.Env, M: np.ndarray, directions: np.ndarray, seeds: np.ndarray, *,
                  step_size: float, noise: float, top_b: int, horizon: int) -> tuple[np.ndarray, dict]:
    """One ARS V1-t iteration from ``M``.

    Args:
        env: the task (one env, reset before every episode).
        M: policy weights, shape ``(act_dim, obs_dim)``.
        directions: ``N`` directions, shape ``(N, act_dim * obs_dim)`` (row i is ``u_i`` flattened).
        seeds: the episode seeds, shape ``(N, 2)``: column 0 for ``M + ν u_i``, column 1 for ``M - ν u_i``.
        step_size: α.
        noise: ν, the perturbation scale.
        top_b: b, directions kept.
        horizon: episode length cap.

    Returns:
        The new weights and the iteration's returns (``r_plus``, ``r_minus``, ``kept``).
    """
    U = directions.reshape(len(directions), *M.shape)
    r_plus = np.array([episode_return(env, M + noise * u, int(s), horizon) for u, s in zip(U, seeds[:, 0])])
    r_minus = np.array([episode_return(env, M - noise * u, int(s), horizon) for u, s in zip(U, seeds[:, 1])])

    best_side = np.maximum(r_plus, r_minus)
    kept = np.sort(np.argsort(-best_side, kind="stable")[:top_b])  # ties: the lower index first
    sigma_r = np.std(np.concatenate([r_plus[kept], r_minus[kept]]))
    if sigma_r == 0.0:  # every kept episode scored the same: nothing to learn from
        sigma_r = 1.0

    step = np.tensordot(r_plus[kept] - r_minus[kept], U[kept], axes=1)
    M_new = M + step_size / (top_b * sigma_r) * step
    return M_new, {"r_plus": r_plus, "r_minus": r_minus, "kept": kept}


def train(env_id: str, *, iterations: int, n_directions: int, top_b: int, step_size: float, noise: float,
          horizon: int, seed: int) -> np.ndarray:
    """ARS V1-t from ``M = 0``, printing the mean return of each iteration's episodes."""
    env = gym.make(env_id)
    obs_dim = env.observation_space.shape[0]
    act_dim = env.action_space.shape[0]
    rng = np.random.default_rng(seed)
    M = np.zeros((act_dim, obs_dim))
    for it in range(1, iterations + 1):
        directions = rng.standard_normal((n_directions, act_dim * obs_dim))
        seeds = rng.integers(0, 2**31 - 1, size=(n_directions, 1)).repeat(2, axis=1)  # same start for ±
        M, info = ars_iteration(env, M, directions, seeds, step_size=step_size, noise=noise, top_b=top_b,
                                horizon=horizon)
        mean = np.mean(np.concatenate([info["r_plus"], info["r_minus"]]))
        print(f"iteration {it:3d}  mean return of its {2 * n_directions} episodes {mean:9.2f}")
    final = episode_return(env, M, seed=seed + 10**6, horizon=horizon)
    print(f"return of the final policy: {final:.2f}")
    env.close()
    return M


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="InvertedPendulum-v5", help="gymnasium id with a Box action space")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--n-directions", type=int, default=8, help="N")
    parser.add_argument("--top-b", type=int, default=4, help="b <= N")
    parser.add_argument("--step-size", type=float, default=0.45, help="alpha")
    parser.add_argument("--noise", type=float, default=0.45, help="nu")
    parser.add_argument("--horizon", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    a = parser.parse_args(argv)
    train(a.env, iterations=a.iterations, n_directions=a.n_directions, top_b=a.top_b, step_size=a.step_size,
          noise=a.noise, horizon=a.horizon, seed=a.seed)


if __name__ == "__main__":
    main()
