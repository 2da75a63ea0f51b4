"""The two published studies of ``dfo study --preset``: ``berahas`` and ``profiles``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from .report import markdown_table, write_csv, write_study

SUMMARY_COLUMNS = ("n", "noise", "estimator", "repeats", "sigma", "measured_n_directions", "measured_nfev",
                   "p_at_measured", "theory_nfev", "theory_over_measured", "nfev_over_n")


def berahas_preset(out, *, quick: bool = False, progress: bool = True, seed: int = 0) -> int:
    """Run :func:`dfo.study.berahas.run_berahas` and write cells, summary and plots under ``out``."""
    from .berahas import BerahasConfig, run_berahas

    config = BerahasConfig(dims=(10,), repeats=50, noises=("none",), seed=seed) if quick else BerahasConfig(seed=seed)
    cells, summary = [], []
    for n in config.dims:  # write after each n, so a long n = 1000 run keeps the smaller ones
        c, s = run_berahas(dataclasses.replace(config, dims=(n,)), progress=progress)
        cells += c
        summary += s
        _write_berahas(out, config, cells, summary)
    print(markdown_table(summary, SUMMARY_COLUMNS))
    return 0


def _write_berahas(out, config, cells, summary) -> None:
    out = Path(out)
    write_study(cells, out, stem="cells", title="Berahas et al. comparison: all cells")
    write_csv([{**{"estimator": s["estimator"], "n_directions": s["measured_n_directions"],
                   "nfev": s["measured_nfev"], "rel_error_median": float("nan"), "p_theta_0.5": s["p_at_measured"],
                   "cosine_mean": float("nan")}, **s} for s in summary], out / "summary.csv")
    text = ["# Evaluations to meet ‖g − ∇φ‖ ≤ ½‖∇φ‖ with probability ≥ 0.9", "",
            f"Chained Rosenbrock at x0; repeats {config.repeats} (n ≤ 100) / {config.repeats_large} (n > 100, "
            f"noise {', '.join(config.noises_large)} only, coarser N grid, grid stops at the first N meeting the target); "
            "radius by the Berahas et al. rules; `measured_nfev` is the smallest grid N meeting the target "
            "(∞: none on the grid); `theory_nfev` from dfo.study.theory.", "",
            markdown_table(summary, SUMMARY_COLUMNS)]
    (out / "summary.md").write_text("\n".join(text) + "\n")


def profiles_preset(out, *, quick: bool = False, progress: bool = True, seed: int = 0) -> int:
    """Run the Moré–Wild data/performance profiles and write them under ``out``."""
    from .profiles import ProfileConfig, run_profiles, write_profiles

    config = ProfileConfig.quick(seed=seed) if quick else ProfileConfig(seed=seed)
    runs = run_profiles(config, progress=progress)
    write_profiles(runs, config, out)
    return 0
