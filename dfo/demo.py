"""``dfo demo``: the core on a noisy test problem, one line per estimator.

Minimizes the chained Rosenbrock function (n = 10 by default) observed with
additive uniform noise of level ε_f, with the noise-tolerant line search and every
estimator of :data:`dfo.ESTIMATORS` (or those named) at the same evaluation budget,
and prints a table of the final optimality gaps. A new registry entry shows up here
without an edit. The flags are generated from :class:`DemoConfig` (:mod:`dfo.configcli`).

Example:
    $ dfo demo --n 20 --estimators cfd,central-orthogonal --maxfev 5000
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import numpy as np

from dfo.configcli import add_config_arguments, add_config_file_argument, given_fields, read_config_file

DIRECTIONS = ("gradient", "lbfgs")


@dataclasses.dataclass(frozen=True, kw_only=True)
class DemoConfig:
    """Settings of ``dfo demo``.

    Attributes:
        n: dimension of the Rosenbrock problem.
        noise: additive uniform noise level eps_f (0: no noise).
        maxfev: evaluation budget per estimator.
        estimators: presets to run, in this order (``None`` = every estimator in dfo.ESTIMATORS).
        direction: search direction of the line search (lbfgs as in Berahas et al. 2022).
        seed: random seed of the noise and of every estimator.
    """

    n: int = 10
    noise: float = 1e-8
    maxfev: int = 20000
    estimators: tuple[str, ...] | None = None
    direction: str = "lbfgs"
    seed: int = 0

    def __post_init__(self) -> None:
        from dfo.estimators import ESTIMATORS

        if self.n < 2:
            raise ValueError(f"n must be >= 2 (the chained Rosenbrock function), got {self.n}")
        if not (np.isfinite(self.noise) and self.noise >= 0):
            raise ValueError(f"noise must be a finite number >= 0, got {self.noise}")
        if self.maxfev < 1:
            raise ValueError(f"maxfev must be >= 1, got {self.maxfev}")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {self.direction!r}")
        unknown = [name for name in self.estimators or () if name not in ESTIMATORS]
        if unknown:
            raise ValueError(f"unknown estimator(s) {', '.join(map(repr, unknown))}; known: {', '.join(ESTIMATORS)}")

    @property
    def names(self) -> list[str]:
        """The presets to run."""
        from dfo.estimators import ESTIMATORS

        return list(self.estimators) if self.estimators is not None else list(ESTIMATORS)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per :class:`DemoConfig` field, and ``--config FILE``."""
    add_config_file_argument(parser, "a JSON object of the settings below")
    add_config_arguments(parser, DemoConfig, choices={"direction": DIRECTIONS})


def run(args: argparse.Namespace) -> int:
    """Print the table; a bad setting is one line on stderr and status 2."""
    import dfo
    from dfo.problems import AdditiveUniform, rosenbrock

    try:
        settings = read_config_file(args.config, DemoConfig) if args.config is not None else {}
        cfg = DemoConfig(**{**settings, **given_fields(args, DemoConfig)})
    except (ValueError, TypeError) as exc:
        print(f"dfo demo: error: {exc}", file=sys.stderr)
        return 2
    problem = rosenbrock(cfg.n)
    print(f"Rosenbrock n={cfg.n}, additive uniform noise eps_f={cfg.noise:g}, budget {cfg.maxfev} evaluations, "
          f"line search on the {cfg.direction} direction\n")
    print("| estimator | f(x) final | ‖x − 1‖ | nfev | iterations | seconds |")
    print("|---|---|---|---|---|---|")
    for name in cfg.names:
        noisy = AdditiveUniform(problem.fun, cfg.noise, rng=cfg.seed) if cfg.noise > 0 else problem.fun
        t0 = time.perf_counter()
        res = dfo.minimize(noisy, problem.x0, estimator=name, direction=cfg.direction, eps_f=cfg.noise,
                           maxfev=cfg.maxfev, rng=cfg.seed)
        print(f"| {name} | {problem.fun(res.x):.3e} | {np.linalg.norm(res.x - 1):.2e} | {res.nfev} | {res.nit} | "
              f"{time.perf_counter() - t0:.1f} |")
    return 0
