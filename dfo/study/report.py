"""Study outputs: a tidy CSV (one row per cell), a markdown table, PNG plots.

Plots use matplotlib's Agg backend (no display needed): relative error (median with
the q10–q90 band) against function evaluations per estimate, one line per
estimator, with the theory overlay √((n+1)/N) etc. dashed where one exists.

Example:
    >>> rows = [{"estimator": "gaussian", "n": 2, "n_directions": 4, "sigma": 1e-3, "noise": "none",
    ...          "nfev": 5, "rel_error_median": 0.5, "p_theta_0.5": 0.6, "cosine_mean": 0.8}]
    >>> print(markdown_table(rows, ["estimator", "nfev", "rel_error_median"]))
    | estimator | nfev | rel_error_median |
    |---|---|---|
    | gaussian | 5 | 0.5 |
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

#: columns every study CSV starts with (the issue's contract), in this order
REQUIRED_COLUMNS = ("estimator", "n", "n_directions", "sigma", "noise", "nfev", "rel_error_median",
                    "p_theta_0.5", "cosine_mean")

DEFAULT_TABLE = ("estimator", "n", "n_directions", "nfev", "sigma", "sigma_mode", "noise", "rel_error_median",
                 "rel_error_q10", "rel_error_q90", "p_theta_0.1", "p_theta_0.5", "cosine_mean",
                 "rel_bias", "rel_variance", "theory_rel_second_moment", "rel_second_moment")


def columns_of(rows: Sequence[dict]) -> list[str]:
    """Required columns first, then every other key in first-seen order (private ``_`` keys dropped)."""
    cols = list(REQUIRED_COLUMNS)
    for row in rows:
        for key in row:
            if key not in cols and not key.startswith("_"):
                cols.append(key)
    return cols


def _cell(text: str) -> Any:
    """One CSV cell read back: bool, int, float or the text (empty -> NaN, as written)."""
    if text in ("True", "False"):
        return text == "True"
    if text == "":
        return float("nan")
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def read_csv(path: str | Path) -> list[dict]:
    """Rows written by :func:`write_csv`, with numbers and flags parsed back."""
    with Path(path).open(newline="") as fh:
        return [{k: _cell(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def write_csv(rows: Sequence[dict], path: str | Path) -> Path:
    """Write ``rows`` as a tidy CSV; missing values are empty cells."""
    if not rows:
        raise ValueError("no study rows to write")
    missing = [c for c in REQUIRED_COLUMNS if c not in rows[0]]
    if missing:
        raise ValueError(f"study rows lack required columns: {', '.join(missing)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = columns_of(rows)
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        for row in rows:
            w.writerow({k: _fmt_csv(row.get(k, "")) for k in cols})
    return path


def read_csv(path: str | Path) -> list[dict]:
    """Read a study CSV back (numbers as floats/ints, ``True``/``False`` as bools)."""
    def conv(v: str):
        if v == "":
            return float("nan")
        if v in ("True", "False"):
            return v == "True"
        try:
            return int(v)
        except ValueError:
            try:
                return float(v)
            except ValueError:
                return v
    with Path(path).open() as fh:
        return [{k: conv(v) for k, v in row.items()} for row in csv.DictReader(fh)]


def _fmt_csv(v):
    if isinstance(v, float):
        return "" if np.isnan(v) else repr(v)
    return v


def _fmt(v) -> str:
    if isinstance(v, (float, np.floating)):
        if np.isnan(v):
            return "–"
        if v == 0 or 1e-3 <= abs(v) < 1e4:
            return f"{v:.3g}"
        return f"{v:.2e}"
    return str(v)


def markdown_table(rows: Sequence[dict], columns: Iterable[str] = DEFAULT_TABLE) -> str:
    """A GitHub markdown table of ``columns`` (those present in the rows)."""
    cols = [c for c in columns if any(c in r for r in rows)]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c, "")) for c in cols) + " |")
    return "\n".join(lines)


def estimator_colours(names: Sequence[str]) -> dict[str, Any]:
    """One colour per estimator, fixed by its place in ``dfo.ESTIMATORS`` (the same in every figure)."""
    import matplotlib

    from ..estimators import ESTIMATORS

    order = list(ESTIMATORS) + [n for n in names if n not in ESTIMATORS]
    cmap = matplotlib.colormaps["tab20"]  # its even entries are tab10's ten colours, the odd ones lighter twins

    def slot(i: int) -> int:
        return (2 * i) % 20 if i < 10 else (2 * (i - 10) + 1) % 20

    return {n: cmap(slot(order.index(n))) for n in names}


def _merge_close(bounds: list[tuple[float, str, Any]], rtol: float = 0.02) -> list[tuple[float, list]]:
    """Group (value, name, colour) entries whose values agree within ``rtol``: [(value, [(name, colour)])]."""
    groups: list[tuple[float, list]] = []
    for value, name, colour in sorted(bounds):
        if groups and abs(value - groups[-1][0]) <= rtol * groups[-1][0]:
            groups[-1][1].append((name, colour))
        else:
            groups.append((value, [(name, colour)]))
    return groups


def plot_error_vs_evaluations(rows: Sequence[dict], path: str | Path, *, title: str = "",
                              theory: bool = True, floors: dict | None = None) -> Path:
    """Median relative error (q10–q90 band) vs evaluations per estimate, one line per estimator.

    Args:
        rows: study rows of one function, one noise level and one σ choice.
        path: the PNG to write.
        theory: add √(second moment) from :mod:`dfo.study.theory` dashed where defined.
        floors: ``{label: value}`` horizontal dashed lines (e.g. Berahas et al. error floors).
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .theory import rms_curve

    fig, ax = plt.subplots(figsize=(8.2, 4.5))
    names = list(dict.fromkeys(r["estimator"] for r in rows))
    colours = estimator_colours(names)
    bounds: list[tuple[float, str, Any]] = []
    for name in names:
        sel = sorted((r for r in rows if r["estimator"] == name), key=lambda r: r["nfev"])
        x = np.array([r["nfev"] for r in sel], dtype=float)
        med = np.array([r["rel_error_median"] for r in sel])
        color = colours[name]
        marker = "o" if len(sel) == 1 else "."
        ax.plot(x, np.maximum(med, 1e-16), marker=marker, color=color, label=name)
        if "rel_error_q10" in sel[0]:
            ax.fill_between(x, np.maximum([r["rel_error_q10"] for r in sel], 1e-16),
                            np.maximum([r["rel_error_q90"] for r in sel], 1e-16), color=color, alpha=0.12)
        bound = sel[0].get("theory_rel_error_bound", float("nan"))
        if theory and isinstance(bound, float) and np.isfinite(bound) and bound > 0:
            bounds.append((bound, name, color))
        if theory and sel[0].get("noise", "none") == "none":
            curve = rms_curve(name, int(sel[0]["n"]), [r["n_directions"] for r in sel])
            curve = np.where(curve > 0, curve, np.nan)  # exact (0) points are off a log axis
            if np.any(np.isfinite(curve)):
                ax.plot(x, curve, "--", color=color, lw=1)
    for value, members in _merge_close(bounds):  # equal bounds share one line and one label
        ax.axhline(value, ls=(0, (5, 3)), color=members[0][1], lw=0.9)
        ax.annotate(", ".join(m[0] for m in members) + " bound", (1.0, value), xycoords=("axes fraction", "data"),
                    fontsize=7, color=members[0][1], va="bottom", ha="right")
    for j, (label, value) in enumerate((floors or {}).items()):
        if np.isfinite(value) and value > 0:
            ax.axhline(value, ls="--", color="gray", lw=0.8)
            ax.annotate(label, (ax.get_xlim()[0], value), fontsize=7, color="gray", va="bottom")
    ax.axhline(0.5, ls=":", color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("function evaluations per estimate")
    ax.set_ylabel("relative error ‖g − ∇f‖ / ‖∇f‖ (median)")
    ax.set_title((title + "\n" if title else "") + "dashed: theory (√E‖g−∇f‖²/‖∇f‖² on linear f; "
                 "horizontal: Berahas et al. error bound); dotted: θ = 1/2", fontsize=8)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0, frameon=False)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_study(rows: Sequence[dict], out: str | Path, *, stem: str = "study", title: str = "") -> list[Path]:
    """CSV + markdown + one plot per (problem, noise, σ-choice) group; returns the paths."""
    out = Path(out)
    paths = [write_csv(rows, out / f"{stem}.csv")]
    md = out / f"{stem}.md"
    md.write_text((f"# {title}\n\n" if title else "") + markdown_table(rows) + "\n")
    paths.append(md)
    return paths + plot_study(rows, out, stem=stem)


def plot_study(rows: Sequence[dict], out: str | Path, *, stem: str = "study") -> list[Path]:
    """One plot per (problem, noise, σ-choice) group of study rows (also from :func:`read_csv`)."""
    out = Path(out)
    paths: list[Path] = []
    groups: dict = {}
    for r in rows:
        mode = r.get("sigma_mode")
        mode = mode if isinstance(mode, str) and mode else ("rule" if r.get("sigma_rule") is True else "fixed")
        key = (r.get("problem", "f"), r["noise"], mode)
        groups.setdefault(key, []).append(r)
    for (prob, noise, sig), sel in groups.items():
        if len({r["sigma"] for r in sel if not r.get("sigma_rule")}) > 1:
            by_sigma: dict = {}
            for r in sel:
                by_sigma.setdefault(r["sigma"], []).append(r)
            parts = [(f"{prob}_{noise}_sigma{s:g}", v) for s, v in by_sigma.items()]
        else:
            parts = [(f"{prob}_{noise}_{sig}", sel)]
        for name, part in parts:
            safe = name.replace(":", "").replace("/", "_")
            paths.append(plot_error_vs_evaluations(part, out / f"{stem}_{safe}.png",
                                                   title=f"{prob}, noise {noise}, σ {sig}"))
    return paths
