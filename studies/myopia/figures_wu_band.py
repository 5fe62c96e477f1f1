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
    if (table_dir / "wu_band_gap_vs_attention.csv").exists():
        out += gap_vs_attention(table_dir)
    out += far_paths(table_dir) if (table_dir / "wu_band_far.csv").exists() else []
    out += masked(table_dir) if (table_dir / "wu_band_mask.csv").exists() else []
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


def gap_vs_attention(table_dir: Path) -> list[Path]:
    """Each run's gap against its attention mass beyond the window, per layer, coloured by k;
    Pearson's r over the band runs in the title."""
    rows = read_rows(table_dir / "wu_band_gap_vs_attention.csv")
    r_by_layer = {r["layer"]: r for r in read_rows(table_dir / "wu_band_gap_vs_attention_r.csv")}
    layers = sorted({r["layer"] for r in rows})
    ks = sorted({r["k"] for r in rows})
    fig, axes = plotting.figure(ncols=len(layers), width=3.8)
    for ax, layer in zip(axes[0], layers):
        for k, color in zip(ks, plotting.PALETTE * 3):
            sel = select(rows, layer=layer, k=k)
            ax.scatter([r["beyond"] for r in sel], [r["gap"] for r in sel], s=8, color=color,
                       marker="x" if k == 0 else "o", label="myopic" if k == 0 else f"k = {k}")
        c = r_by_layer.get(layer)
        if c:
            ax.set_title(f"layer {layer}: r = {c['r']:.2f} [{c['lo']:.2f}, {c['hi']:.2f}], {c['n']} band runs",
                         fontsize=7)
        ax.set_xlim(-0.02, 1.02)
        ax.set_xlabel("mass beyond the window (head mean)")
        ax.set_ylabel("L(band k) - L(vanilla), Huber")
        plotting.legend(ax, fontsize=5, ncol=2)
    fig.suptitle("D_1: each run's gap against where its attention goes (both rates, all seeds)", fontsize=8)
    return plotting.save(fig, table_dir / "wu_band_gap_vs_attention")


def far_paths(table_dir: Path) -> list[Path]:
    """The training check: gap vs k with nothing, the key path or the value path of the links
    beyond the band restored (k = 0: myopic), one row of panels per learning rate."""
    rows = read_rows(table_dir / "wu_band_far.csv")
    rates = sorted({r["lr_factor"] for r in rows}, reverse=True)
    fig, axes = plotting.figure(ncols=2, nrows=len(rates), height=2.4)
    names = {"none": "band k as trained", "key": "+ far key gradient", "value": "+ far value gradient"}
    for row, f in enumerate(rates):
        for i, (path, name) in enumerate(names.items()):
            kw = dict(shift=0.3 * (i - 1), color=plotting.PALETTE[i], **MARK)
            sel = select(rows, path=path, lr_factor=f)
            plotting.band_rows(axes[row, 0], select(sel, quantity="gap"), "k", name, **kw)
            if path != "none":
                plotting.band_rows(axes[row, 1], select(sel, quantity="vs_plain"), "k", name, **kw)
        for ax, ylabel in ((axes[row, 0], "L(arm) - L(vanilla)"), (axes[row, 1], "L(arm) - L(band k), same seed")):
            ax.axhline(0.0, color="0.6", lw=0.6)
            ax.set_xlabel("band k (0: myopic)")
            ax.set_ylabel(ylabel, fontsize=7)
            ax.set_title(_rate(f), fontsize=7)
            plotting.legend(ax, fontsize=5)
    n = min((r["n"] for r in rows), default=0)
    fig.suptitle(f"D_1: restoring one path of the links beyond the band; Huber, mean, 95% interval, {n} seeds",
                 fontsize=8)
    return plotting.save(fig, table_dir / "wu_band_far")


def masked(table_dir: Path) -> list[Path]:
    """The evaluation check: loss removed by masking the attention beyond the window, per layer,
    vs k (vanilla dashed), for the runs as trained."""
    rows = select(read_rows(table_dir / "wu_band_mask.csv"), family="wu", quantity="gain")
    variants = [m for m in sorted({r["masked"] for r in rows}) if m != "none"]
    fig, axes = plotting.figure(ncols=1, width=4.2)
    ax = axes[0, 0]
    for m in variants:
        sel = select(rows, masked=m)
        line = plotting.band_rows(ax, [r for r in sel if r["k"] != NA], "k",
                                  "every layer" if m == "all" else m.replace("layer", "layer "), **MARK)
        for van in select(sel, k=NA):
            ax.axhline(van["mean"], ls="--", lw=0.8, color=line.get_color() if line else None)
    ax.axhline(0.0, color="0.6", lw=0.6)
    ax.set_xlabel("band k (0: myopic; dashed: vanilla)")
    ax.set_ylabel("L(as trained) - L(far links masked), Huber")
    plotting.legend(ax, fontsize=6)
    n = min((r["n"] for r in rows), default=0)
    ax.set_title(f"D_1: loss the attention beyond the window costs; mean, 95% interval, {n} seeds", fontsize=7)
    return plotting.save(fig, table_dir / "wu_band_mask")
