"""Figures, drawn from the summary tables alone: one function per figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from toymodels import plotting
from toymodels.results import read_rows
from toymodels.tables import select

MARK = dict(marker="o", ms=3)


def figures(table_dir: Path) -> list[Path]:
    return (persistence(table_dir) + count_fraction(table_dir) + detection(table_dir)
            + detection_over_time(table_dir) + removal(table_dir))


def _asr_curves(ax, curves, persist, cells_rows, label_of, title):
    """ASR along the clean phase for the given cells (stage-1 base lr unless the rows say otherwise)."""
    drawn = False
    for cell_row in cells_rows:
        rows = select(curves, cell=cell_row["cell"], stage=cell_row["stage"], clean_lr=cell_row["clean_lr"],
                      metric="asr")
        if rows:
            line = plotting.band_rows(ax, rows, "step", label_of(cell_row), x=None, **MARK)
            floor = select(persist, cell=cell_row["cell"], stage=cell_row["stage"], clean_lr=cell_row["clean_lr"],
                           quantity="asr_floor")
            if floor:   # the never-poisoned control's ASR for this cell's trigger and behaviour
                ax.axhline(floor[0]["mean"], color=line.get_color(), lw=0.6, ls=":")
            drawn = True
    if not drawn:
        plotting.empty(ax, title)
    ax.set_xscale("symlog", linthresh=10)
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("clean-phase step")
    ax.set_ylabel("attack success rate")
    ax.set_title(title, fontsize=8)
    plotting.legend(ax, fontsize=5)


def _cells(persist, **eq):
    """One row per cell (its asr_auc row) matching ``eq``."""
    return select(persist, quantity="asr_auc", **eq)


def persistence(table_dir: Path) -> list[Path]:
    """ASR during clean training after insertion: each axis, the clean lr, and stage 2 on fresh seeds."""
    persist, curves = read_rows(table_dir / "persistence.csv"), read_rows(table_dir / "curves.csv")
    base_lr = _base_lr(persist)
    base = _cells(persist, axis="base", stage=1, clean_lr=base_lr)
    fig, axes = plotting.figure(ncols=3, nrows=2, width=3.0)
    panels = [
        ("count x fraction", _cells(persist, stage=1, clean_lr=base_lr, axis="count_fraction") + base,
         lambda r: f"count {r['count']}, frac {r['fraction']:.3g}"),
        ("response density", _cells(persist, stage=1, clean_lr=base_lr, axis="density") + base,
         lambda r: f"density {r['density']}"),
        ("trigger", _cells(persist, stage=1, clean_lr=base_lr, axis="trigger") + base, lambda r: r["trigger"]),
        ("behaviour, size", _cells(persist, stage=1, clean_lr=base_lr, axis="behaviour")
         + _cells(persist, stage=1, clean_lr=base_lr, axis="size") + base, lambda r: f"{r['behaviour']} {r['size']}"),
        ("clean-phase lr", [r for r in _cells(persist, stage=1, axis="base")], lambda r: f"lr {r['clean_lr']:g}"),
        ("stage 2: fresh seeds", _cells(persist, stage=2), lambda r: f"{r['axis']}: {r['cell']}"),
    ]
    for ax, (title, rows, label_of) in zip(axes.flat, panels):
        _asr_curves(ax, curves, persist, rows, label_of, title)
    fig.suptitle("ASR during clean training, mean and 95% interval over seeds (dotted: the never-poisoned "
                 "control's ASR, same trigger and behaviour)", fontsize=8)
    return plotting.save(fig, table_dir / "persistence")


def count_fraction(table_dir: Path) -> list[Path]:
    """ASR after insertion and persistence (asr_auc) vs poison count, one line per fraction."""
    persist = read_rows(table_dir / "persistence.csv")
    fig, axes = plotting.figure(ncols=2)
    for ax, q in zip(axes[0], ("asr_insert", "asr_auc")):
        rows = [r for r in select(persist, quantity=q, stage=1, clean_lr=_base_lr(persist))
                if r["axis"] in ("base", "count_fraction")]
        for frac in sorted({r["fraction"] for r in rows}):
            plotting.band_rows(ax, select(rows, fraction=frac), "count", f"fraction {frac:.3g}", **MARK)
        ax.set_xscale("log")
        counts = sorted({r["count"] for r in rows})
        ax.set_xticks(counts, [str(c) for c in counts], fontsize=6)
        ax.minorticks_off()
        ax.set_xlabel("poisoned samples seen (count); 5 seeds each")
        ax.set_ylabel({"asr_insert": "ASR after insertion", "asr_auc": "mean ASR over clean phase"}[q])
        ax.set_ylim(-0.03, 1.03)
        plotting.legend(ax, fontsize=6)
    return plotting.save(fig, table_dir / "count_fraction")


def _base_lr(persist):
    """The clean-phase lr every cell uses (the base cell also runs the others): the most common one."""
    lrs = [r["clean_lr"] for r in persist if r["quantity"] == "asr_auc" and r["stage"] == 1]
    return max(set(lrs), key=lrs.count) if lrs else None


def _layer_index(layer: str) -> float:
    """blocks.0.resid_pre -> 0, blocks.i.resid_mid -> i + 0.5, blocks.i.resid_post -> i + 1."""
    parts = layer.split(".")
    i = int(parts[1])
    return {"resid_pre": i, "resid_mid": i + 0.5, "resid_post": i + 1.0}[parts[2]]


def detection(table_dir: Path) -> list[Path]:
    """AUROC per layer right after insertion: backdoored model vs the never-poisoned control."""
    det = select(read_rows(table_dir / "detection.csv"), metric="auroc", clean_step=0)
    triggers = sorted({r["trigger"] for r in det})
    detectors = ("mahalanobis", "contrast", "supervised")
    fig, axes = plotting.figure(ncols=max(len(triggers), 1), nrows=len(detectors), width=2.4, height=1.9)
    for i, d in enumerate(detectors):
        for j, trig in enumerate(triggers):
            ax = axes[i, j]
            for kind, color in (("backdoored", "C3"), ("never", "C0")):
                rows = sorted(select(det, trigger=trig, detector=d, kind=kind), key=lambda r: _layer_index(r["layer"]))
                if rows:
                    plotting.band_rows(ax, rows, "layer", kind, x=np.array([_layer_index(r["layer"]) for r in rows]),
                                       color=color, **MARK)
            ax.set_ylim(0.3, 1.02)
            ax.axhline(0.5, color="grey", lw=0.5, ls=":")
            ax.set_title(f"{d}, trigger {trig}", fontsize=7)
            ax.set_xlabel("layer (0 = embedding)", fontsize=7)
            ax.set_ylabel("AUROC", fontsize=7)
            plotting.legend(ax, fontsize=5)
    if not triggers:
        plotting.empty(axes[0, 0], "detection results")
    return plotting.save(fig, table_dir / "detection")


def detection_over_time(table_dir: Path) -> list[Path]:
    """Final-layer AUROC of each detector along the persistence curve, next to ASR (base trigger settings)."""
    det = select(read_rows(table_dir / "detection.csv"), metric="auroc")
    curves = read_rows(table_dir / "curves.csv")
    persist = read_rows(table_dir / "persistence.csv")
    triggers = sorted({r["trigger"] for r in det})
    fig, axes = plotting.figure(ncols=max(len(triggers), 1), width=2.6, height=2.2)
    last = max((r["layer"] for r in det), key=_layer_index, default="")
    for j, trig in enumerate(triggers):
        ax = axes[0, j]
        for d, color in (("mahalanobis", "C0"), ("contrast", "C1"), ("supervised", "C2")):
            for kind, ls in (("backdoored", "-"), ("never", "--")):
                rows = select(det, trigger=trig, detector=d, kind=kind, layer=last)
                if rows:
                    plotting.band_rows(ax, rows, "clean_step", f"{d} ({kind})", color=color, ls=ls, **MARK)
        cell = [r for r in persist if r["trigger"] == trig and r["axis"] in ("base", "trigger")
                and r["stage"] == 1 and r["quantity"] == "asr_auc" and r["clean_lr"] == _base_lr(persist)]
        if cell:
            asr = select(curves, cell=cell[0]["cell"], stage=1, clean_lr=_base_lr(persist), metric="asr")
            plotting.band_rows(ax, asr, "step", "ASR", color="k", lw=0.8)
        ax.set_xscale("symlog", linthresh=10)
        ax.set_ylim(0.0, 1.02)
        ax.set_xlabel("clean-phase step")
        ax.set_title(f"trigger {trig}, {last}", fontsize=7)
        plotting.legend(ax, fontsize=4)
    if not triggers:
        plotting.empty(axes[0, 0], "detection results")
    return plotting.save(fig, table_dir / "detection_over_time")


def removal(table_dir: Path) -> list[Path]:
    """ASR and clean exact match after each removal method, and the relearning attack's steps."""
    rem = read_rows(table_dir / "removal.csv")
    methods = sorted({r["method"] for r in rem}, key=lambda m: (not m.startswith("none"), m))
    fig, axes = plotting.figure(ncols=2, width=3.6)
    x = np.arange(len(methods))
    for q, shift, color in (("asr_end", -0.15, "C3"), ("clean_exact_end", 0.15, "C0")):
        rows = [select(rem, method=m, quantity=q) for m in methods]
        keep = [i for i, r in enumerate(rows) if r]
        if keep:
            plotting.errorbar_rows(axes[0, 0], x[keep] + shift, [rows[i][0] for i in keep], fmt="o", ms=3,
                                   color=color, label=q.replace("_end", ""))
    rel = [select(rem, method=m, quantity="relearn_steps") for m in methods]
    keep = [i for i, r in enumerate(rel) if r]
    if keep:
        plotting.errorbar_rows(axes[0, 1], x[keep], [rel[i][0] for i in keep], fmt="o", ms=3, color="C2")
    for ax in axes[0]:
        ax.set_xticks(x, methods, rotation=60, ha="right", fontsize=6)
    axes[0, 0].set_ylim(-0.03, 1.03)
    axes[0, 0].set_ylabel("after removal")
    axes[0, 1].set_ylabel("relearning attack: steps to ASR 0.5")
    plotting.legend(axes[0, 0], fontsize=6)
    return plotting.save(fig, table_dir / "removal")
