"""Figures of part "wu_band": D_1's gap vs band k at each rate, the long runs' curves, and
where each model's attention goes (self, the target's window, beyond it)."""

from __future__ import annotations

from pathlib import Path

from studies.myopia.presets import BASE_LR, NA
from toymodels import plotting
from toymodels.results import read_rows
from toymodels.tables import select

MARK = dict(marker="o", ms=3)


def figures(table_dir: Path) -> list[Path]:
    out = gap_vs_k(table_dir)
    out += long_curves(table_dir) if (table_dir / "wu_band_long.csv").exists() else []
    out += attention(table_dir) if (table_dir / "wu_band_attention.csv").exists() else []
    return out


def _rate(f: float) -> str:
    return f"lr {f * BASE_LR['wu']:.2g}"


def gap_vs_k(table_dir: Path) -> list[Path]:
    """D_1's gap L(band k) - L(vanilla) vs k at each learning rate (k = 0: myopic)."""
    rows = read_rows(table_dir / "wu_band.csv")
    fig, axes = plotting.figure(ncols=2)
    for ax, q, ylabel in ((axes[0, 0], "gap", "L(band k) - L(vanilla), Huber"),
                          (axes[0, 1], "L_band", "L(band k), Huber")):
        for f in sorted({r["lr_factor"] for r in rows}):
            plotting.band_rows(ax, select(rows, quantity=q, lr_factor=f), "k", _rate(f), **MARK)
        ax.axhline(0.0, color="0.6", lw=0.6)
        ax.set_xlabel("band k")
        ax.set_ylabel(ylabel)
        plotting.legend(ax, fontsize=6)
    n = min((r["n"] for r in rows), default=0)
    fig.suptitle(f"D_1: band gap at each learning rate; mean, 95% interval, {n} seeds", fontsize=8)
    return plotting.save(fig, table_dir / "wu_band")


def long_curves(table_dir: Path) -> list[Path]:
    """The long runs: held-out loss and gap against vanilla over training, per arm."""
    rows = read_rows(table_dir / "wu_band_long.csv")
    fig, axes = plotting.figure(ncols=2)
    plotting.band_rows(axes[0, 0], select(rows, quantity="L_vanilla"), "step", "vanilla", shift=1, **MARK)
    for k in sorted({r["k"] for r in rows if r["k"] != NA}):
        arm = "myopic (k = 0)" if k == 0 else f"band {k}"
        plotting.band_rows(axes[0, 0], select(rows, quantity="L_band", k=k), "step", arm, shift=1, **MARK)
        plotting.band_rows(axes[0, 1], select(rows, quantity="gap", k=k), "step", arm, shift=1, **MARK)
    for ax, ylabel in ((axes[0, 0], "held-out Huber loss"), (axes[0, 1], "L(arm) - L(vanilla), same seed")):
        plotting.log_x(ax)
        ax.set_xlabel("step + 1")
        ax.set_ylabel(ylabel)
        plotting.legend(ax, fontsize=6)
    axes[0, 1].axhline(0.0, color="0.6", lw=0.6)
    n = min((r["n"] for r in rows), default=0)
    fig.suptitle(f"D_1, long runs at {_rate(rows[0]['lr_factor'])}; mean, 95% interval, {n} seeds", fontsize=8)
    return plotting.save(fig, table_dir / "wu_band_long")


def attention(table_dir: Path) -> list[Path]:
    """Attention mass on the target's window and beyond it, per layer, vs band k (vanilla dashed)."""
    rows = select(read_rows(table_dir / "wu_band_attention.csv"), family="wu")
    layers = sorted({r["layer"] for r in rows})
    fig, axes = plotting.figure(ncols=len(layers), nrows=2, height=2.2)
    for col, layer in enumerate(layers):
        for row, q in enumerate(("window", "beyond")):
            ax = axes[row, col]
            for f in sorted({r["lr_factor"] for r in rows}):
                sel = select(rows, layer=layer, quantity=q, lr_factor=f)
                line = plotting.band_rows(ax, [r for r in sel if r["k"] != NA], "k", _rate(f), **MARK)
                for van in select(sel, k=NA):
                    ax.axhline(van["mean"], ls="--", lw=0.8, color=line.get_color() if line else None)
            ax.set_ylim(-0.02, 1.02)
            ax.set_xlabel("band k (dashed: vanilla)")
            ax.set_ylabel(f"mass {'on the window' if q == 'window' else 'beyond the window'}")
            ax.set_title(f"layer {layer}", fontsize=7)
            plotting.legend(ax, fontsize=5)
    n = min((r["n"] for r in rows), default=0)
    fig.suptitle(f"D_1: head-mean attention of queries t > window; mean, 95% interval, {n} seeds", fontsize=8)
    return plotting.save(fig, table_dir / "wu_band_attention")
