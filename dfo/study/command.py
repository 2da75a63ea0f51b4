"""``dfo study``: estimator accuracy studies from the command line.

Examples:
    $ dfo study --problem rosenbrock --dim 100 --estimators gaussian,orthogonal,interpolation \\
          --n-directions 100,200,400 --repeats 100 --noise none,uniform:1e-3 --out runs/study
    $ dfo study --problem mw04_rosenbrock_n2_m2_s0 --estimators ffd,cfd --repeats 100
    $ dfo study --problem rl:Swimmer-v5 --horizon 100 --estimators gaussian,orthogonal --n-directions 8,16
    $ dfo study --preset berahas --out results/berahas
    $ dfo study --preset profiles --out results/profiles
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from dfo.configcli import add_config_arguments, add_config_file_argument, given_fields, read_config_file
from dfo.fileio import atomic_write_bytes, make_writable_dir


PRESETS = ("berahas", "profiles")


def _sigmas(text: str) -> tuple:
    out = []
    for t in text.split(","):
        t = t.strip()
        if t in ("rule", "auto"):
            out.append(t)
            continue
        try:
            out.append(float(t))
        except ValueError:
            raise argparse.ArgumentTypeError(f"sigma must be numbers, 'auto' or 'rule', got {t!r}") from None
    return tuple(out)


@dataclass(frozen=True, kw_only=True)
class StudyConfig:
    """Settings of ``dfo study`` (its flags are generated from this class by :mod:`dfo.configcli`).

    Attributes:
        preset: run a published study, ``berahas`` or ``profiles`` (``None`` = the study set by the flags below).
        problem: linear | quadratic | rosenbrock | a Moré–Wild name | rl:ENV_ID.
        dim: dimension of linear/quadratic/rosenbrock (``None`` = the problem's own).
        estimators: presets of ``dfo.ESTIMATORS`` to compare.
        n_directions: N values (``None`` = the dimension n).
        sigma: radii: numbers, ``auto`` (measured noise and curvature, as ``dfo.minimize``) or ``rule``
            (Berahas et al. at the known noise level, L, M).
        noise: noise models: none, uniform:EPS, gaussian:EPS, relative:EPS, wild3:EPS.
        repeats: estimates per cell (>= 2).
        seed: seeds the noise, the directions and the presets.
        out: output folder (CSV, markdown, PNG, and this config as config.json).
        horizon: episode length (rl problems).
        ref_seeds: common seeds of the reference gradient (rl problems).
        ref_bases: orthonormal bases of the reference gradient (rl problems).
        jobs: parallel rollout workers, -1 = all cores (rl problems).
        crn: one common episode seed for all points of one estimate (rl problems).
        quick: a small, fast version of a preset (smoke test).
        replot: redraw the figures of a finished study in ``out`` from its CSV (``cells.csv`` of
            the berahas preset, ``runs.csv`` of the profiles preset, ``study.csv`` otherwise)
            without computing anything.
    """

    preset: str | None = None
    problem: str = "rosenbrock"
    dim: int | None = None
    estimators: tuple[str, ...] = ("gaussian", "sphere", "orthogonal", "interpolation", "ffd", "cfd")
    n_directions: tuple[int, ...] | None = None
    sigma: tuple[float | str, ...] = ("auto",)
    noise: tuple[str, ...] = ("none",)
    repeats: int = 100
    seed: int = 0
    out: str = "study_out"
    horizon: int = 100
    ref_seeds: int = 16
    ref_bases: int = 4
    jobs: int = 1
    crn: bool = False
    quick: bool = False
    replot: bool = False

    def __post_init__(self) -> None:
        if self.preset is not None and self.preset not in PRESETS:
            raise ValueError(f"--preset must be one of {PRESETS}, got {self.preset!r}")
        if self.dim is not None and self.dim < 1:
            raise ValueError(f"--dim must be >= 1, got {self.dim}")
        if self.jobs < 1 and self.jobs != -1:
            raise ValueError(f"--jobs must be >= 1 or -1 (all cores), got {self.jobs}")
        if self.preset is None and self.repeats < 2:
            raise ValueError(f"--repeats must be >= 2, got {self.repeats}")
        if not self.estimators:
            raise ValueError("--estimators must name at least one preset of dfo.ESTIMATORS")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_file_argument(parser, "a study's own OUT/config.json reruns that study")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_arguments(parser, StudyConfig, choices={"preset": PRESETS}, parsers={"sigma": _sigmas},
                         group_title="study settings (StudyConfig)")


def _rl_function(args, progress: bool):
    import numpy as np

    from ..parallel import make_evaluator
    from .reference import reference_gradient, rl_objective, seeded_study_function

    env_id = args.problem.split(":", 1)[1]
    fun, x0 = rl_objective(env_id, horizon=args.horizon)
    rng = np.random.default_rng(args.seed)
    x = x0 + 0.1 * rng.standard_normal(x0.size)  # away from the all-zero ARS start (a flat point)
    ev = make_evaluator(args.jobs if args.jobs > 1 else None)
    sigma = 0.02
    if progress:
        print(f"reference gradient: {args.ref_seeds} common seeds x {2 * x.size * args.ref_bases + 1} points", file=sys.stderr)
    ref = reference_gradient(fun, x, n_seeds=args.ref_seeds, n_bases=args.ref_bases, sigma=sigma, rng=rng, evaluator=ev)
    name = f"rl_{env_id}_h{args.horizon}" + ("_crn" if args.crn else "")
    func = seeded_study_function(fun, x, ref, name=name, rng=rng, evaluator=ev, crn=args.crn)
    info = {"reference_nfev": ref.nfev, "reference_grad_norm": float(np.linalg.norm(ref.grad)),
            "reference_stderr": ref.stderr, "eps_f": ref.eps_f, "f_crn": ref.fx, "sigma_ref": sigma,
            "crn": bool(args.crn)}
    return func, info


def run_generic(args: StudyConfig, progress: bool) -> int:
    from .functions import make_function
    from .report import write_study
    from .runner import StudySpec, run_study

    extra = {}
    ests, noises = args.estimators, args.noise
    # every input is checked before any work (the RL reference gradient alone takes minutes)
    StudySpec(estimators=ests, n_directions=args.n_directions or (1,), sigmas=args.sigma, noises=noises,
              repeats=args.repeats, seed=args.seed)
    if args.problem.startswith("rl:"):
        func, extra = _rl_function(args, progress)
    else:
        func = make_function(args.problem, args.dim)
    spec = StudySpec(estimators=ests, n_directions=args.n_directions or (func.n,), sigmas=args.sigma,
                     noises=noises, repeats=args.repeats, seed=args.seed)
    rows = run_study(func, spec, progress=progress)
    for r in rows:
        r.update(extra)
    paths = write_study(rows, args.out, stem="study", title=f"dfo study on {func.name}")
    _write_command(args)
    for r in rows:  # the radius each cell used, and how it was chosen
        how = r.get("sigma_mode", "")
        if how == "auto":
            how += f": measured eps_f={r['auto_eps_f']:.3g} ({r['auto_noise_kind']}), {r['auto_nfev']} evaluations"
        print(f"sigma {r['sigma']:.4g} for {r['estimator']} N={r['n_directions']} noise={r['noise']} ({how})")
    for p in paths:
        print(p)
    if extra:
        print(json.dumps(extra, indent=1))
    return 0


def _write_command(cfg: StudyConfig) -> None:
    """OUT/command.txt (the command as typed) and OUT/config.json (``dfo study --config`` reruns it)."""
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    cmd = "dfo study " + " ".join(sys.argv[2:] if len(sys.argv) > 1 and sys.argv[1] == "study" else sys.argv[1:])
    (Path(cfg.out) / "command.txt").write_text(cmd.strip() + "\n")
    atomic_write_bytes(Path(cfg.out) / "config.json", json.dumps(asdict(cfg), indent=1).encode())


def check_out(out) -> None:
    """Create the output folder and prove it is writable, before any computing.

    Raises:
        ValueError: ``out`` is a file, or cannot be created or written.
    """
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise ValueError(f"--out {p} exists and is not a folder")
    try:
        make_writable_dir(p)
    except OSError as e:
        raise ValueError(f"cannot write to --out {p}: {e.strerror or e}") from None


def replot(cfg: StudyConfig) -> int:
    """Redraw a finished study's figures from its CSV (``--replot``)."""
    from .report import plot_study, read_csv

    if cfg.preset == "profiles":
        from .profiles import replot_profiles

        if not (Path(cfg.out) / "runs.csv").is_file():
            raise ValueError(f"--replot: {Path(cfg.out) / 'runs.csv'} not found (run the study first)")
        for p in replot_profiles(cfg.out):
            print(p)
        return 0
    stem = "cells" if cfg.preset == "berahas" else "study"
    path = Path(cfg.out) / f"{stem}.csv"
    if not path.is_file():
        raise ValueError(f"--replot: {path} not found (run the study first)")
    for p in plot_study(read_csv(path), cfg.out, stem=stem):
        print(p)
    return 0


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # effective only if numpy's BLAS is not yet started
    t0 = time.perf_counter()
    progress = not args.no_progress
    try:
        given = read_config_file(args.config, StudyConfig) if args.config else {}
        given.update(given_fields(args, StudyConfig))
        cfg = StudyConfig(**given)
        check_out(cfg.out)
        if cfg.replot:
            code = replot(cfg)
        elif cfg.preset == "berahas":
            from .presets import berahas_preset
            code = berahas_preset(cfg.out, quick=cfg.quick, progress=progress, seed=cfg.seed)
        elif cfg.preset == "profiles":
            from .presets import profiles_preset
            code = profiles_preset(cfg.out, quick=cfg.quick, progress=progress, seed=cfg.seed)
        else:
            code = run_generic(cfg, progress)
    except (ValueError, KeyError, OSError, TypeError) as exc:  # input errors (unknown names, bad specs, --out)
        print(f"dfo study: error: {exc}", file=sys.stderr)
        return 2
    print(f"done in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return code
