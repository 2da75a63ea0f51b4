"""Hyperparameters of a training run: one keyword-only frozen dataclass.

Fields left at ``None`` take the task preset's value (``dfo.envs.get_preset``: the method,
budget and hyperparameters measured per task by ``bench/tune_presets.py``), so ``TrainConfig(env_id="Swimmer-v5")`` is a
complete, sensible run.

Example:
    >>> cfg = TrainConfig(env_id="Hopper-v5").resolved()
    >>> cfg.n_directions, cfg.top_b, cfg.step_size, cfg.noise, cfg.survival_shift
    (8, 4, 0.01, 0.025, 1.0)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from dfo.policies.methods import get_method

BACKEND_CHOICES = ("serial", "loky", "dask", "local-dask", "ray")
POLICY_KINDS = ("linear", "mlp")
#: step rules of ``TrainConfig.step`` (``dfo.Minimizer``'s ``step``) and search directions
STEP_CHOICES = ("sgd", "momentum", "adam", "armijo", "rollback", "trust", "decay")
#: the ARS (SGD) step with step control (``dfo.policies.methods.StepControl``)
STEP_CONTROL_CHOICES = ("rollback", "trust", "decay")
DIRECTION_CHOICES = ("gradient", "lbfgs")

#: default ``episodes`` budget of ``dfo train`` when none is given
DEFAULT_EPISODES = 2000


@dataclasses.dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """A training run.

    Attributes:
        env_id: gymnasium id (a MuJoCo -v5 preset or any Box-action env).
        method: a name in ``dfo.policies.methods.METHODS`` (``None`` = task preset).
        episodes: training-episode budget (``None`` = task preset) (evaluation episodes are not counted, as in
            ARS); the run stops once it is reached (the last iteration may pass it by
            less than one iteration's episodes).
        n_directions, top_b, step_size, noise: ARS N, b, α, ν (``None`` = task preset).
        horizon: episode length cap (``None`` = task preset).
        survival_shift: subtracted from training rewards (``None`` = task preset).
        seed: seeds everything (directions, episode seeds, evaluation seeds).
        n_eval_episodes: episodes per evaluation of the unperturbed policy (true reward).
        eval_every: iterations between evaluations (``None``: about every 16 training episodes).
        checkpoint_every: iterations between checkpoints (a final one is always written).
        policy: ``"linear"`` (ARS) or ``"mlp"`` (``None`` = task preset).
        hidden: MLP hidden widths (``None`` = task preset; unused by a linear policy).
        backend: ``"serial"``, ``"loky"``, ``"dask"``, ``"local-dask"`` or ``"ray"``.
        n_jobs: workers (``-1`` = all cores; ``1`` with loky runs serially).
        scheduler: ``tcp://host:port`` of a Dask scheduler (backend ``"dask"``).
        max_iterations: stop after this many iterations in total (``None`` = budget only).
        lean: lean ``mj_step`` rollouts (``None`` = when the task has one: an unwrapped
            registered task without ``env_kwargs``).
        env_kwargs: keyword arguments for ``gymnasium.make(env_id, ...)`` (JSON values).
        imports: modules imported (in this process and in every worker) before the env
            is built, e.g. one that registers a custom env with ``gymnasium.register``.
        step: the step rule of :class:`dfo.Minimizer` (``None`` = the method's own: ``"sgd"``
            for the ARS-style methods, ``"armijo"`` for ``interpolation``). ``"sgd"``:
            θ ← θ − lr g with lr = 2να (the ARS step); ``"momentum"``: heavy ball
            m ← β m + g, θ ← θ − lr m with lr = 2να(1 − β), β = 0.9, so a steady gradient
            moves θ as far per iteration as an ARS step; ``"adam"``: Adam (Kingma & Ba 2015,
            β = (0.9, 0.999)) with lr = α: Adam divides out the gradient's scale, so α is the
            most a coordinate moves per iteration (early on, each coordinate moves by about α);
            ``"armijo"``: the noise-tolerant line search (needs a method without return
            shaping, i.e. ``interpolation``, since the Armijo test compares the decrease of f
            with α‖g‖² on f's own scale); ``"rollback"``, ``"trust"``, ``"decay"``: the SGD
            (ARS) step with step control (:class:`dfo.policies.methods.StepControl`: back to the
            best policy when the measured return drops, a step that shrinks on failures, or
            one that decays on plateaus).
        direction: ``"gradient"`` (d = −g) or ``"lbfgs"`` (L-BFGS two-loop direction; only
            with ``step="armijo"``).
        track: experiment trackers that receive the run's metrics and settings besides
            TensorBoard: ``wandb`` and/or ``mlflow`` (the ``track`` extra; configured by their own
            environment variables, see :mod:`dfo.run.track`).
        starts: independent starts that race for ``start_episodes`` episodes each; the one with the
            best recent evaluations continues for the rest of the budget, and every episode of every
            start counts against it (:mod:`dfo.policies.training.starts`; ``None`` = task preset,
            or 1 when the preset's race would take more than half of ``episodes``; ``1`` = a plain run).
        start_episodes: episodes each start gets before the race is decided (``None`` = task preset).
    """

    env_id: str = "Swimmer-v5"
    method: str | None = None
    episodes: int | None = None
    n_directions: int | None = None
    top_b: int | None = None
    step_size: float | None = None
    noise: float | None = None
    horizon: int | None = None
    survival_shift: float | None = None
    seed: int = 0
    n_eval_episodes: int = 5
    eval_every: int | None = None
    checkpoint_every: int = 10
    policy: str | None = None
    hidden: tuple[int, ...] | None = None
    backend: str = "loky"
    n_jobs: int = -1
    scheduler: str | None = None
    max_iterations: int | None = None
    lean: bool | None = None
    env_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    imports: tuple[str, ...] = ()
    step: str | None = None
    direction: str = "gradient"
    track: tuple[str, ...] = ()
    starts: int | None = None
    start_episodes: int | None = None

    def __post_init__(self) -> None:
        if self.method is not None:
            get_method(self.method)  # raises on an unknown name
        if self.episodes is not None and self.episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {self.episodes}")
        for name in ("n_directions", "top_b", "horizon", "eval_every", "max_iterations", "starts"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        if self.start_episodes is not None and self.start_episodes < 0:
            raise ValueError(f"start_episodes must be >= 0, got {self.start_episodes}")
        for name in ("step_size", "noise"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a positive number, got {v}")
        if self.n_eval_episodes < 0 or self.checkpoint_every < 1:
            raise ValueError("n_eval_episodes must be >= 0 and checkpoint_every >= 1")
        if self.policy is not None and self.policy not in POLICY_KINDS:
            raise ValueError(f"policy must be one of {POLICY_KINDS}, got {self.policy!r}")
        if self.hidden is not None:
            if isinstance(self.hidden, (str, int)) or not all(isinstance(h, int) and h >= 1 for h in self.hidden):
                raise ValueError(f"hidden must be a list of positive layer widths, got {self.hidden!r}")
            object.__setattr__(self, "hidden", tuple(self.hidden))
        if self.backend not in BACKEND_CHOICES:
            raise ValueError(f"backend must be one of {BACKEND_CHOICES}, got {self.backend!r}")
        if self.backend == "dask" and not self.scheduler:
            raise ValueError("backend 'dask' needs a scheduler address, e.g. scheduler='tcp://host:8786' "
                             "(or use backend 'local-dask' to start a cluster on this machine)")
        if self.scheduler is not None:
            if self.backend != "dask":
                raise ValueError(f"a scheduler address is only used with backend 'dask' (--backend dask), "
                                 f"not {self.backend!r}")
            from dfo.parallel import check_scheduler_address

            check_scheduler_address(self.scheduler)
        if self.top_b is not None and self.n_directions is not None and self.top_b > self.n_directions:
            raise ValueError(f"top_b={self.top_b} exceeds n_directions={self.n_directions}")
        _check_env_kwargs(self.env_kwargs)
        if isinstance(self.imports, str) or not all(isinstance(m, str) and m for m in self.imports):
            raise ValueError(f"imports must be a list of module names, got {self.imports!r}")
        object.__setattr__(self, "imports", tuple(self.imports))
        if self.step is not None and self.step not in STEP_CHOICES:
            raise ValueError(f"step must be one of {STEP_CHOICES} (or None = the method's own), got {self.step!r}")
        if self.direction not in DIRECTION_CHOICES:
            raise ValueError(f"direction must be one of {DIRECTION_CHOICES}, got {self.direction!r}")
        _check_step(None if self.method is None else get_method(self.method), self.step, self.direction)
        if isinstance(self.track, str):
            raise ValueError(f"track must be a list of tracker names, got {self.track!r}")
        from dfo.run.track import check_trackers

        object.__setattr__(self, "track", check_trackers(self.track))

    def resolved(self) -> TrainConfig:
        """A copy with every ``None`` hyperparameter filled from the task preset."""
        from dfo.envs.make import import_modules
        from dfo.envs.presets import get_preset

        import_modules(self.imports)  # a custom env must be registered before its preset is read

        p = get_preset(self.env_id)
        n_dir = self.n_directions if self.n_directions is not None else p.n_directions
        top_b = self.top_b if self.top_b is not None else min(p.top_b, n_dir)
        if top_b > n_dir:
            raise ValueError(f"top_b={top_b} exceeds n_directions={n_dir}")
        eval_every = self.eval_every if self.eval_every is not None else max(1, 16 // (2 * n_dir))
        episodes = self.episodes if self.episodes is not None else p.episodes
        starts = self.starts if self.starts is not None else p.starts
        start_episodes = self.start_episodes if self.start_episodes is not None else p.start_episodes
        if self.starts is None and starts * start_episodes > episodes // 2:
            starts = 1  # the preset's race is for the preset's budget: a short run is a plain run
        if starts > 1 and not 1 <= start_episodes * starts < episodes:
            raise ValueError(f"{starts} starts of {start_episodes} episodes leave nothing of the {episodes}-episode "
                             f"budget for the winner (need 1 <= starts x start_episodes < episodes)")
        return dataclasses.replace(
            self,
            method=self.method if self.method is not None else p.method,
            episodes=episodes,
            starts=starts,
            start_episodes=start_episodes if starts > 1 else 0,
            n_directions=n_dir,
            top_b=top_b,
            step_size=self.step_size if self.step_size is not None else p.step_size,
            noise=self.noise if self.noise is not None else p.noise,
            horizon=self.horizon if self.horizon is not None else p.horizon,
            survival_shift=self.survival_shift if self.survival_shift is not None else p.survival_shift,
            eval_every=eval_every,
            policy=self.policy if self.policy is not None else p.policy,
            hidden=tuple(self.hidden) if self.hidden is not None else p.hidden,
            step=_check_step(get_method(self.method if self.method is not None else p.method), self.step,
                             self.direction),
        )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["hidden"] = None if self.hidden is None else list(self.hidden)
        d["imports"] = list(self.imports)
        d["track"] = list(self.track)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields {unknown}")
        d = dict(d)
        d.setdefault("starts", 1)  # a run saved before multi-start had one start, whatever the preset says now
        if d.get("hidden") is not None:
            d["hidden"] = tuple(d["hidden"])
        if "imports" in d:
            d["imports"] = tuple(d["imports"])
        if "track" in d:
            d["track"] = tuple(d["track"])
        return cls(**d)


def _check_step(method, step: str | None, direction: str) -> str | None:
    """The step rule of ``method`` with ``step``/``direction`` (``None`` = the method's own;
    a ``None`` method checks what it can); raises ``ValueError`` on a combination that cannot work."""
    rule = step if step is not None or method is None else method.step
    if rule is None:
        return None
    if direction == "lbfgs" and rule != "armijo":
        raise ValueError(f"direction 'lbfgs' needs step 'armijo' (the L-BFGS direction is searched by the line "
                         f"search; method 'interpolation' steps with armijo), got step {rule!r}"
                         + (f" (method {method.name!r})" if step is None else ""))
    if rule == "armijo" and method is not None and (method.std_normalize or method.top):
        raise ValueError(f"step 'armijo' needs a method without return shaping (e.g. 'interpolation'): method "
                         f"{method.name!r} divides the returns by their std / keeps the top-b directions, so "
                         f"its estimate is not on f's scale, which the Armijo test needs")
    return rule


def _check_env_kwargs(kwargs: Any) -> None:
    """``env_kwargs`` must be a JSON object (str keys, JSON values): it is saved in config.json."""
    import json

    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise ValueError(f"env_kwargs must be a dict with string keys, got {kwargs!r}")
    try:
        json.dumps(kwargs, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"env_kwargs must hold JSON values only: {exc}") from None
