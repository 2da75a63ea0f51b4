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
from pathlib import Path

from dfo.fileio import make_writable_dir


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preset", choices=("berahas", "profiles"), help="run a published study")
    parser.add_argument("--problem", default="rosenbrock",
                        help="linear | quadratic | rosenbrock | a Moré–Wild name | rl:ENV_ID")
    parser.add_argument("--dim", type=int, default=None, help="dimension for linear/quadratic/rosenbrock")
    parser.add_argument("--estimators", default="gaussian,sphere,orthogonal,interpolation,ffd,cfd",
                        help="comma-separated presets (see dfo.ESTIMATORS)")
    parser.add_argument("--n-directions", type=_ints, default=None, help="comma-separated N values (default n)")
    parser.add_argument("--sigma", type=_sigmas, default=("auto",),
                        help="comma-separated radii, 'auto' (default: measured noise and curvature, as "
                             "dfo.minimize) or 'rule' (Berahas et al. at the known noise level, L, M)")
    parser.add_argument("--noise", default="none", help="comma-separated: none, uniform:EPS, gaussian:EPS, relative:EPS, wild3:EPS")
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="study_out", help="output folder (CSV, markdown, PNG)")
    parser.add_argument("--horizon", type=int, default=100, help="rl: episode length")
    parser.add_argument("--ref-seeds", type=int, default=16, help="rl: common seeds of the reference gradient")
    parser.add_argument("--ref-bases", type=int, default=4, help="rl: orthonormal bases of the reference gradient")
    parser.add_argument("--jobs", type=int, default=1, help="rl: parallel rollout workers (joblib)")
    parser.add_argument("--crn", action="store_true",
                        help="rl: one common episode seed for all points of one estimate")
    parser.add_argument("--quick", action="store_true", help="presets: a small, fast version (smoke test)")
    parser.add_argument("--no-progress", action="store_true")


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


def run_generic(args) -> int:
    from .functions import make_function
    from .report import write_study
    from .runner import StudySpec, run_study

    progress = not args.no_progress
    extra = {}
    ests = tuple(e.strip() for e in args.estimators.split(",") if e.strip())
    noises = tuple(t.strip() for t in args.noise.split(","))
    if args.dim is not None and args.dim < 1:
        raise ValueError(f"--dim must be >= 1, got {args.dim}")
    if args.jobs < 1 and args.jobs != -1:
        raise ValueError(f"--jobs must be >= 1 or -1 (all cores), got {args.jobs}")
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
    _write_command(args.out)
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


def _write_command(out) -> None:
    Path(out).mkdir(parents=True, exist_ok=True)
    cmd = "dfo study " + " ".join(sys.argv[2:] if len(sys.argv) > 1 and sys.argv[1] == "study" else sys.argv[1:])
    (Path(out) / "command.txt").write_text(cmd.strip() + "\n")


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


def run(args) -> int:
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # effective only if numpy's BLAS is not yet started
    t0 = time.perf_counter()
    try:
        check_out(args.out)
        if args.preset == "berahas":
            from .presets import berahas_preset
            code = berahas_preset(args.out, quick=args.quick, progress=not args.no_progress, seed=args.seed)
        elif args.preset == "profiles":
            from .presets import profiles_preset
            code = profiles_preset(args.out, quick=args.quick, progress=not args.no_progress, seed=args.seed)
        else:
            if args.repeats < 2:
                raise ValueError(f"--repeats must be >= 2, got {args.repeats}")
            code = run_generic(args)
    except (ValueError, KeyError, OSError) as exc:  # input errors (unknown names, bad specs, --out)
        print(f"dfo study: error: {exc}", file=sys.stderr)
        return 2
    print(f"done in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return code
