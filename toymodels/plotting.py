"""One figure style for every study: readable fonts, a colour-blind-safe palette, CI bands,
per-seed points when there are few seeds, and helpers that draw straight from summary rows
(mean, lo, hi, n[, values]).

Importing this module leaves matplotlib's backend alone (a notebook keeps its inline
figures); command-line entry points that only write files call ``use_file_backend()``.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from toymodels.analysis.stats import POINTS_MAX_N, mean_ci
from toymodels.results import atomic_write_bytes

# Okabe & Ito (2008), distinguishable under the common colour-vision deficiencies.
MIN_BAND_N = 3   # no interval band from fewer seeds: two points make an interval wider than it says
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")

STYLE = {
    "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 8,
    "xtick.labelsize": 9, "ytick.labelsize": 9, "axes.spines.top": False, "axes.spines.right": False,
    "axes.prop_cycle": matplotlib.cycler(color=PALETTE), "figure.dpi": 100, "savefig.dpi": 150,
    "axes.grid": True, "grid.alpha": 0.25, "legend.frameon": False,
}


def use_file_backend() -> None:
    """Draw into files only (Agg): for command lines, where there may be no display."""
    matplotlib.use("Agg")


def figure(ncols: int = 1, nrows: int = 1, width: float = 3.4, height: float = 2.6, **kw):
    """A styled (fig, axes); ``width``/``height`` are per panel, in inches."""
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows),
                                 squeeze=False, layout="constrained", **kw)
    return fig, axes


def line_ci(ax, x, y_SX, label: str | None = None, color=None, level: float = 0.95, **kw):
    """Mean over seeds (axis 0 of ``y_SX``) with a t-interval band (n >= MIN_BAND_N); the label gets n."""
    y_SX = np.asarray(y_SX)
    mean, lo, hi = mean_ci(y_SX, axis=0, level=level)
    n = y_SX.shape[0]
    lab = None if label is None else f"{label} (n={n})"
    (line,) = ax.plot(x, mean, label=lab, color=color, **kw)
    if n >= MIN_BAND_N:
        ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
    return line


def band(ax, x, mean, lo, hi, n: int, label: str | None = None, color=None, **kw):
    """A precomputed mean with its interval (from a summary table) as a band when n >= MIN_BAND_N
    (fewer seeds show as the per-seed points ``band_rows`` adds); the label gets n."""
    (line,) = ax.plot(x, mean, label=None if label is None else f"{label} (n={n})", color=color, **kw)
    if n >= MIN_BAND_N:
        ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
    return line


def seed_values(row: dict) -> list[float]:
    """A summary row's per-seed values (its ``values`` column); [] where the table has none."""
    v = row.get("values", "")
    if isinstance(v, (int, float)):
        return [] if isinstance(v, float) and math.isnan(v) else [float(v)]
    return [float(x) for x in str(v).split()]


def seed_points(ax, x: Sequence[float], rows: Sequence[dict], color=None, scale=None) -> None:
    """Each row's per-seed values as small points at its x, when it has n <= POINTS_MAX_N of them."""
    xs, ys = [], []
    for xi, r in zip(x, rows):
        vals = seed_values(r)
        if 0 < len(vals) <= POINTS_MAX_N:
            s = 1.0 if scale is None else scale(r)
            xs += [xi] * len(vals)
            ys += [v * s for v in vals]
    if xs:
        ax.scatter(xs, ys, s=6, color=color, alpha=0.55, linewidths=0, zorder=3)


def band_rows(ax, rows: Sequence[dict], x_key: str, label: str | None = None, *, shift: float = 0.0,
              scale=None, x=None, color=None, **kw):
    """``band`` of summary rows sorted by ``x_key`` (n = the smallest n), with their per-seed
    points; ``scale(row)`` multiplies a row's values, ``x`` replaces the x values."""
    rows = sorted(rows, key=lambda r: r[x_key])
    if not rows:
        return None
    xs = (np.asarray([r[x_key] for r in rows], dtype=float) + shift) if x is None else x
    s = np.ones(len(rows)) if scale is None else np.asarray([scale(r) for r in rows])
    line = band(ax, xs, *(np.asarray([r[k] for r in rows], dtype=float) * s for k in ("mean", "lo", "hi")),
                n=min(r["n"] for r in rows), label=label, color=color, **kw)
    seed_points(ax, xs, rows, color=line.get_color(), scale=scale)
    return line


def shown_interval(rows: Sequence[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, lo, hi) of summary rows as a figure draws them: a row with n < MIN_BAND_N gets
    lo = hi = mean (no interval; its seeds' points show the spread)."""
    m = np.asarray([r["mean"] for r in rows], dtype=float)
    few = np.asarray([r.get("n", MIN_BAND_N) < MIN_BAND_N for r in rows], dtype=bool)
    lo = np.where(few, m, np.asarray([r["lo"] for r in rows], dtype=float))
    hi = np.where(few, m, np.asarray([r["hi"] for r in rows], dtype=float))
    return m, lo, hi


def errorbar_rows(ax, x, rows: Sequence[dict], **kw):
    """Summary rows as points with interval bars at ``x`` (one per row), plus their per-seed points;
    a row with n < MIN_BAND_N gets no bar (its seeds' points only)."""
    m, lo, hi = shown_interval(rows)
    bars = ax.errorbar(x, m, yerr=[m - lo, hi - m], **kw)
    seed_points(ax, x, rows, color=bars[0].get_color())
    return bars


def grid(n: int, ncols: int = 7, width: float = 2.3, height: float = 1.8):
    """(fig, flat list of axes) of a grid of ``ncols`` columns for n panels; the unused ones hidden."""
    ncols = min(ncols, n)
    fig, axes = figure(ncols=ncols, nrows=math.ceil(n / ncols), width=width, height=height)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat)


def log_x(ax) -> None:
    """A log-scale x axis labelled at its decades only: matplotlib labels minor ticks on an
    axis spanning less than about two decades, and on a narrow panel they overprint."""
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())


def legend(ax, **kw) -> None:
    """A legend only where something is labelled (an empty one warns and draws a box)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kw)


def empty(ax, what: str) -> None:
    """Say in the panel that the preset has no data for it."""
    ax.text(0.5, 0.5, f"no {what} in this preset", ha="center", va="center", transform=ax.transAxes)


def save(fig, path: str | os.PathLike, pdf: bool | None = None, dpi: float | None = None) -> list[Path]:
    """Save as PNG (and PDF) atomically; returns the written paths. ``pdf``: None writes the
    PDF unless the environment sets TOYMODELS_FIGURE_PDF=0 (PNG only: half the drawing
    time; the test suite sets it). ``dpi``: of the PNG (default STYLE's 150; lower for large
    grids of panels, whose PDF keeps full detail)."""
    if pdf is None:
        pdf = os.environ.get("TOYMODELS_FIGURE_PDF", "1") != "0"
    path = Path(path).with_suffix("")
    written = []
    with plt.rc_context(STYLE):
        for ext in ("png", "pdf") if pdf else ("png",):
            buf = io.BytesIO()
            # no creation date in the PDF: a redrawn figure is byte-identical (no git churn)
            meta = {"CreationDate": None} if ext == "pdf" else None
            fig.savefig(buf, format=ext, bbox_inches="tight", dpi=dpi, metadata=meta)   # dpi None: STYLE's
            atomic_write_bytes(path.with_suffix(f".{ext}"), buf.getvalue())
            written.append(path.with_suffix(f".{ext}"))
    plt.close(fig)
    return written


def attention_patterns(pattern_HTS, tokens: Sequence[str] | None = None, title: str | None = None,
                       ncols: int = 4):
    """One panel per head of one input's attention pattern (H, T, S) (rows: queries, columns:
    keys), on one 0..1 colour scale; ``tokens`` (length T = S) label both axes."""
    p_HTS = np.asarray(pattern_HTS, dtype=float)
    if p_HTS.ndim != 3:
        raise ValueError(f"pattern_HTS must be (heads, queries, keys), got shape {p_HTS.shape} "
                         "(for a cached (B, H, T, S) pattern pass one input's, e.g. pattern[0])")
    H, T, S = p_HTS.shape
    if tokens is not None and not len(tokens) == T == S:
        raise ValueError(f"tokens has {len(tokens)} labels for a {T} x {S} pattern: give one per position")
    fig, axes = grid(H, ncols=ncols, width=0.25 * S + 1.2, height=0.25 * T + 0.9)
    with plt.rc_context(STYLE):
        for h, ax in enumerate(axes[:H]):
            im = ax.imshow(p_HTS[h], vmin=0.0, vmax=1.0, cmap="Blues", aspect="equal")
            ax.grid(False)
            ax.set_title(f"head {h}")
            if tokens is not None:
                ax.set_xticks(range(S), [str(t) for t in tokens], rotation=90)
                ax.set_yticks(range(T), [str(t) for t in tokens])
            ax.set_xlabel("key")
            ax.set_ylabel("query")
        fig.colorbar(im, ax=axes[:H], shrink=0.8, label="attention")
        if title:
            fig.suptitle(title)
    return fig
