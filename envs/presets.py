"""Task presets for the gymnasium MuJoCo -v5 tasks: horizon, survival-bonus shift, ARS defaults.

Each preset carries the default training ``method``, its hyperparameters ``n_directions``
N, ``top_b`` b (directions kept), ``step_size`` alpha, ``noise`` nu, the default ``policy``
(``"linear"`` as in ARS, or ``"mlp"`` with tanh ``hidden`` layers) and the default
episode budget of ``dfo train ENV``. ``source`` says where they come from: measured by
``bench/tune_presets.py`` (successive halving on tuning seeds, then checked on separate
evaluation seeds; ``bench/results/tune_presets.md``), measured by ``bench/ars_episodes.py``,
or the ARS V2-t hyperparameters of Mania, Guy, Recht (2018), "Simple random search
provides a competitive approach to reinforcement learning" (their -v1 tables).

Tasks without a preset get a rule instead of a table entry. With normalized
observations a linear policy perturbed by ν·u moves each action by about ν·√d_obs, so
α and ν are set relative to ``task_scale = a_max / √d_obs``: ``α = ν = 0.3·task_scale``
(what won on InvertedPendulum, InvertedDoublePendulum and Swimmer; Reacher and Pusher
preferred 0.1), with ``orthogonal`` and N = b = 8, and a linear policy.

Reacher and Pusher get a one-hidden-layer tanh MLP (16 and 32 units). On Pusher a linear
policy stalled short of the threshold (best -33.9 and -34.9 in 4000 episodes on the tuning
seeds; the 32-unit MLP reached -32 by ~1800). On Reacher a linear policy does reach -3.75
given more than 2000 episodes, but the MLP got there sooner on six tuning seeds (median
episodes: linear 2200, 16 units 1416, 32 units 1664, 64 units 1672; 8 units missed on 2
of 6 seeds; slowest 4480 linear, 1968 for 16 units): the task wants roughly Jacobian-transpose control,
products of the fingertip-target vector with the joint angles' cos/sin, which a linear map
of the observation can only approximate. An MLP's output layer starts at zero and reads ``h_last`` tanh
features, so ``h_last`` takes the place of ``d_obs`` in the scale:
``s = a_max / √h_last`` (``task_scale(env_id, hidden)``), and both tasks' tuning picked
α = ν = 0.1·s (Reacher 0.025 = 0.1·1/√16, Pusher 0.035 = 0.1·2/√32).

``survival_shift`` is subtracted from every step's reward during training only
(ARS removes the survival bonus to avoid policies that just stand still);
evaluation always reports the true reward.

Example:
    >>> get_preset("Hopper-v5").survival_shift
    1.0
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from dfo.envs.actions import ActionMap
from dfo.envs.ids import UnknownEnvError
from dfo.envs.make import make_env

ARS_PAPER = "ARS V2-t (Mania, Guy, Recht 2018)"
OURS = "dfo default (task not in the ARS paper; not tuned)"
#: the budget of the big tasks: 1.5 x the paper's V2-t episodes to its threshold (Walker2d 24,000,
#: Ant 20,800, Humanoid 142,600); what it buys per seed is in bench/results/big_tasks.md
PAPER_BUDGET = "budget 1.5 x the paper's V2-t episode count (runs: bench/results/big_tasks.md)"
ARS_BENCH = "bench/ars_episodes.py (bench/results/ars_episodes.md)"
TUNED = "tuned by bench/tune_presets.py (bench/results/tune_presets.md)"
#: Hopper's race of starts: chosen on tuning seeds, confirmed on the sweep's seeds (bench/results/seed_sweep.md)
RACE = "3 starts of 512 episodes, the best continues (bench/seed_sweep.py, bench/results/seed_sweep.md)"
#: α = ν = GENERIC_REL · task_scale for tasks without a preset: the relative size that won the
#: tuning on InvertedPendulum, InvertedDoublePendulum and Swimmer (bench/results/tune_presets.md)
GENERIC_REL = 0.3
GENERIC_RULE = "generic rule: orthogonal, N = b = 8, alpha = nu = 0.3 a_max / sqrt(d_obs) (not tuned for this task)"


@dataclasses.dataclass(frozen=True, kw_only=True)
class TaskPreset:
    """Per-task settings.

    Attributes:
        env_id: gymnasium id.
        horizon: episode length cap (gymnasium ``max_episode_steps``).
        survival_shift: subtracted from each step's reward in training (0 in evaluation).
        n_directions: ARS N, directions per iteration.
        top_b: ARS b, best directions used in the update (b <= N).
        step_size: ARS alpha.
        noise: ARS nu, perturbation scale.
        method: default training method (a name in ``dfo.policies.methods.METHODS``).
        policy: default policy class, ``"linear"`` (ARS) or ``"mlp"`` (tanh hidden layers).
        hidden: the MLP's hidden widths (used when ``policy == "mlp"``).
        episodes: default training-episode budget of ``dfo train ENV``.
        starts, start_episodes: multi-start race (``TrainConfig.starts``; 1 = a plain run).
        source: where the defaults come from.
    """

    env_id: str
    horizon: int = 1000
    survival_shift: float = 0.0
    n_directions: int = 8
    top_b: int = 8
    step_size: float = 0.02
    noise: float = 0.03
    method: str = "ars-v2t"
    policy: str = "linear"
    hidden: tuple[int, ...] = (32, 32)
    episodes: int = 2000
    starts: int = 1
    start_episodes: int = 0
    source: str = OURS

    def __post_init__(self) -> None:
        if self.horizon < 1:
            raise ValueError(f"{self.env_id}: horizon must be >= 1, got {self.horizon}")
        if not 1 <= self.top_b <= self.n_directions:
            raise ValueError(f"{self.env_id}: need 1 <= top_b <= n_directions, got {self.top_b}, {self.n_directions}")
        if self.episodes < 1:
            raise ValueError(f"{self.env_id}: episodes must be >= 1, got {self.episodes}")
        if self.step_size <= 0 or self.noise <= 0:
            raise ValueError(f"{self.env_id}: step_size and noise must be > 0")
        if self.policy not in ("linear", "mlp"):
            raise ValueError(f"{self.env_id}: policy must be 'linear' or 'mlp', got {self.policy!r}")
        if not self.hidden or any(int(h) < 1 for h in self.hidden):
            raise ValueError(f"{self.env_id}: hidden widths must be >= 1, got {self.hidden}")


def _p(env_id: str, **kw) -> tuple[str, TaskPreset]:
    return env_id, TaskPreset(env_id=env_id, **kw)


PRESETS: dict[str, TaskPreset] = dict(
    [
        _p("Swimmer-v5", n_directions=4, top_b=4, step_size=0.11, noise=0.11, method="orthogonal", episodes=1000,
           source=TUNED),
        _p("Hopper-v5", survival_shift=1.0, n_directions=8, top_b=4, step_size=0.01, noise=0.025, episodes=6000,
           starts=3, start_episodes=512,
           source=f"{ARS_PAPER}; method and budget measured by {ARS_BENCH}; {RACE}"),
        _p("HalfCheetah-v5", n_directions=32, top_b=4, step_size=0.02, noise=0.03, method="orthogonal",
           episodes=2500, source=f"{ARS_PAPER}; method and budget measured by {ARS_BENCH}"),
        _p("Walker2d-v5", survival_shift=1.0, n_directions=40, top_b=30, step_size=0.03, noise=0.025, episodes=36_000,
           source=f"{ARS_PAPER}; {PAPER_BUDGET}"),
        _p("Ant-v5", survival_shift=1.0, n_directions=60, top_b=20, step_size=0.015, noise=0.025, episodes=31_200,
           source=f"{ARS_PAPER}; {PAPER_BUDGET}"),
        _p("Humanoid-v5", survival_shift=5.0, n_directions=230, top_b=230, step_size=0.02, noise=0.0075,
           episodes=214_000, source=f"{ARS_PAPER}; {PAPER_BUDGET}"),
        _p("HumanoidStandup-v5", n_directions=230, top_b=230, step_size=0.02, noise=0.0075, episodes=214_000,
           source=f"{OURS}: Humanoid's ARS settings and budget"),
        _p("InvertedPendulum-v5", n_directions=8, top_b=4, step_size=0.45, noise=0.45, episodes=400, source=TUNED),
        _p("InvertedDoublePendulum-v5", n_directions=8, top_b=8, step_size=0.1, noise=0.1, method="orthogonal",
           episodes=1500, source=TUNED),
        _p("Reacher-v5", horizon=50, policy="mlp", hidden=(16,), n_directions=8, top_b=8, step_size=0.025,
           noise=0.025, episodes=6000, source=TUNED),
        _p("Pusher-v5", horizon=100, policy="mlp", hidden=(32,), n_directions=8, top_b=8, step_size=0.035,
           noise=0.035, episodes=5000, source=TUNED),
    ]
)


def task_scale(env_id: str, hidden: tuple[int, ...] | None = None) -> float:
    """The task's scale ``s = a_max / √d_in`` for the α, ν rule of untuned tasks.

    ``a_max`` is the largest finite action bound (1 when unbounded, and for a discrete
    space, whose policy outputs are scores compared by ``argmax``), ``d_in`` what the
    policy's last (output) layer reads: the observation dimension for a linear policy, the
    last hidden width ``hidden[-1]`` for an MLP. With normalized observations (unit variance
    per coordinate) a linear policy perturbed by ν u moves each action by about ν √d_obs, so
    ν / s is the exploration noise as a fraction of the action range (and the ARS step, about
    α √n long, scales alike). An MLP's output layer starts at zero and reads tanh features
    of rms ≈ 0.6, so a perturbation moves each action by about 0.6 ν √h_last: the same rule
    with ``h_last`` for ``d_obs``. ``bench/tune_presets.py`` searches α and ν in units of s.

    Example:
        >>> round(task_scale("InvertedPendulum-v5"), 3)
        1.5
    """
    env = make_env(env_id)
    try:
        return _scale_of(env, hidden)
    finally:
        env.close()


def _scale_of(env, hidden: tuple[int, ...] | None = None) -> float:
    import gymnasium as gym

    d_obs = int(hidden[-1]) if hidden else int(gym.spaces.flatdim(env.observation_space))
    actions = ActionMap.of(env.action_space)
    high = np.abs(np.concatenate([actions.high, actions.low]))
    high = high[np.isfinite(high)]
    a_max = float(high.max()) if high.size else 1.0
    return a_max / math.sqrt(max(d_obs, 1))


def known_presets() -> list[str]:
    """Sorted ids of the built-in presets."""
    return sorted(PRESETS)


def get_preset(env_id: str) -> TaskPreset:
    """The preset for ``env_id``.

    Any registered gymnasium env with a ``Box`` or ``Discrete`` action space that has no built-in preset
    gets a generic one: horizon from ``max_episode_steps`` (or 1000), no shift, and the
    rule measured on the tuned tasks (``GENERIC_RULE``): ``orthogonal`` with N = b = 8
    and α = ν = 0.3 · :func:`task_scale`.

    Raises:
        ValueError: unknown id (the message lists the presets) or an unsupported action space.
    """
    if env_id in PRESETS:
        return PRESETS[env_id]
    try:
        env = make_env(env_id)  # validates the id and the action space
    except UnknownEnvError as exc:
        raise UnknownEnvError(f"{exc}. Known presets: {', '.join(known_presets())}") from None
    try:
        spec = env.spec
        horizon = int(spec.max_episode_steps) if spec is not None and spec.max_episode_steps else 1000
        rel = float(f"{GENERIC_REL * _scale_of(env):.2g}")
    finally:
        env.close()
    return TaskPreset(env_id=env_id, horizon=horizon, method="orthogonal", n_directions=8, top_b=8, step_size=rel,
                      noise=rel, source=GENERIC_RULE)
