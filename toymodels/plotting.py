"""One figure style for every study: readable fonts, a colour-blind-safe palette, CI bands."""

from __future__ import annotations

import io
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are files; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from toymodels.analysis.stats import mean_ci  # noqa: E402
from toymodels.results import atomic_write_bytes  # noqa: E402

# Okabe & Ito (2008), distinguishable under the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")

STYLE = {
    "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 8,
    "xtick.labelsize": 9, "ytick.labelsize": 9, "axes.spines.top": False, "axes.spines.right": False,
    "axes.prop_cycle": matplotlib.cycler(color=PALETTE), "figure.dpi": 100, "savefig.dpi": 150,
    "axes.grid": True, "grid.alpha": 0.25, "legend.frameon": False,
}


def figure(ncols: int = 1, nrows: int = 1, width: float = 3.4, height: float = 2.6, **kw):
    """A styled (fig, axes); ``width``/``height`` are per panel, in inches."""
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows),
                                 squeeze=False, layout="constrained", **kw)
    return fig, axes


def line_ci(ax, x, y_SX, label: str | None = None, color=None, level: float = 0.95, **kw):
    """Mean over seeds (axis 0 of ``y_SX``) with a t-interval band; the label gets n."""
    y_SX = np.asarray(y_SX)
    mean, lo, hi = mean_ci(y_SX, axis=0, level=level)
    n = y_SX.shape[0]
    lab = None if label is None else f"{label} (n={n})"
    (line,) = ax.plot(x, mean, label=lab, color=color, **kw)
    if n > 1:
        ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
    return line


def band(ax, x, mean, lo, hi, n: int, label: str | None = None, color=None, **kw):
    """A precomputed mean with its interval (from a summary table); the label gets n."""
    (line,) = ax.plot(x, mean, label=None if label is None else f"{label} (n={n})", color=color, **kw)
    if n > 1:
        ax.fill_between(x, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
    return line


def save(fig, path: str | os.PathLike, pdf: bool = True, dpi: float | None = None) -> list[Path]:
    """Save as PNG (and PDF) atomically; returns the written paths. ``dpi``: of the PNG
    (default STYLE's 150; lower for large grids of panels, whose PDF keeps full detail)."""
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
