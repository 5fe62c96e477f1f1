"""Figures, drawn from the summary tables alone: one function per figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from toymodels import plotting
from toymodels.results import read_rows
from toymodels.tables import select

MARK = dict(marker="o", ms=3)
ARMS = {"per_block": "C0", "shared": "C1", "crosscoder": "C2"}
METRIC_LABEL = {"explained_variance": "explained variance", "mmcs": "mean max |cos| to true features"}


def figures(table_dir: Path) -> list[Path]:
    return layouts(table_dir) + joint(table_dir) + meanings(table_dir) + attribution(table_dir) + training(table_dir)


def _sources(rows: list[dict]) -> list[tuple[str, object]]:
    return sorted({(r["source"], r["drift"]) for r in rows}, key=lambda s: (s[0] != "synthetic", str(s[1])))


def layouts(table_dir: Path) -> list[Path]:
    """Per source (synthetic at each drift, the model): explained variance and recovery vs total
    latents; per-block dictionaries (one point), the shared one at each size (line), crosscoders."""
    rows = read_rows(table_dir / "layouts.csv")
    sources = _sources(rows)
    fig, axes = plotting.figure(ncols=len(sources), nrows=2, width=2.6, height=2.2)
    for j, (source, drift) in enumerate(sources):
        for i, metric in enumerate(("explained_variance", "mmcs")):
            ax = axes[i, j]
            got = select(rows, source=source, drift=drift, metric=metric)
            if not got:
                ax.set_axis_off()
                ax.text(0.5, 0.5, "no ground truth\nfor a trained model", ha="center", va="center",
                        transform=ax.transAxes)
                continue
            for arm, color in ARMS.items():
                r = sorted(select(got, arm=arm), key=lambda r: r["total_latents"])
                if r:
                    x = np.asarray([q["total_latents"] for q in r], float)
                    plotting.errorbar_rows(ax, x, r, color=color, label=arm, ls="-" if arm == "shared" else "none",
                                           **MARK)
            ax.set_xscale("log", base=2)
            ax.set_xlabel("total latents")
            ax.set_ylabel(METRIC_LABEL[metric])
            ax.set_title(f"synthetic, drift {drift}" if source == "synthetic" else "trained model (resid_post)",
                         fontsize=8)
    plotting.legend(axes[0, 0], fontsize=6)
    return plotting.save(fig, table_dir / "layouts")


def joint(table_dir: Path) -> list[Path]:
    """Joint training: the model's eval loss along training per coeff (mean line, per-seed
    points); at the end, the fresh post-hoc dictionaries' explained variance and explained-latent
    share vs coeff (random-init model of the same shape: dotted reference)."""
    curves, rows = read_rows(table_dir / "joint_curves.csv"), read_rows(table_dir / "joint.csv")
    layouts_ = sorted({r["layout"] for r in curves})
    fig, axes = plotting.figure(ncols=3 + len(layouts_) - 1, width=2.6, height=2.3)
    axes = list(np.ravel(axes))
    for ax, layout in zip(axes, layouts_):
        for coeff in sorted({r["coeff"] for r in curves}):
            # log scale: the mean with every seed's points (n = 3), not a band cut at 0
            r = sorted(select(curves, layout=layout, coeff=coeff, metric="loss"), key=lambda q: q["step"])
            x = [q["step"] for q in r]
            (line,) = ax.plot(x, [q["mean"] for q in r], label=f"coeff {coeff:g} (n={min(q['n'] for q in r)})")
            plotting.seed_points(ax, x, r, color=line.get_color())
        ax.set_xscale("symlog", linthresh=10)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("model eval loss")
        ax.set_title(f"joint, {layout}", fontsize=8)
        plotting.legend(ax, fontsize=6)
    for ax, metric, label in zip(axes[len(layouts_):], ("posthoc_ev", "explained"),
                                 ("post-hoc explained variance", "latents explained by the data")):
        for k, layout in enumerate(layouts_):
            r = sorted(select(rows, layout=layout, metric=metric), key=lambda q: q["coeff"])
            plotting.errorbar_rows(ax, np.arange(len(r)) + 0.08 * k, r, label=layout, ls="-", **MARK)
            ax.set_xticks(range(len(r)), [f"{q['coeff']:g}" for q in r])
        floor = select(rows, layout="random_init", metric=metric)
        if floor:
            ax.axhline(floor[0]["mean"], color="0.5", ls=":", lw=1, label=f"random init (n={floor[0]['n']})")
        ax.set_xlabel("coeff (FVU weight)")
        ax.set_ylabel(label)
        plotting.legend(ax, fontsize=6)
    return plotting.save(fig, table_dir / "joint")


def meanings(table_dir: Path) -> list[Path]:
    """Latents of the shared dictionary used by two blocks: co-firing and output-effect cosine
    against the random-latent nulls, per block pair; and each block's latent usage."""
    rows, usage = read_rows(table_dir / "meanings.csv"), read_rows(table_dir / "usage.csv")
    fig, axes = plotting.figure(ncols=3, width=2.6, height=2.3)
    axes = axes[0]
    pairs = sorted({r["pair"] for r in rows}, key=str)
    for ax, metric, label in zip(axes, ("cofire", "effect_cos"), ("activation correlation", "effect cosine")):
        arms = ((metric, "same latent", "C0"), (f"null_{metric}", "random latent", "0.5"))
        for k, (m, name, color) in enumerate(arms):
            r = [select(rows, pair=p, metric=m) for p in pairs]
            keep = [i for i, q in enumerate(r) if q]
            if keep:
                plotting.errorbar_rows(ax, np.asarray(keep) + 0.15 * k, [r[i][0] for i in keep], color=color,
                                       label=name, ls="none", **MARK)
        ax.set_xticks(range(len(pairs)), [str(p) for p in pairs])
        ax.axhline(0, color="0.8", lw=0.8)
        ax.set_xlabel("block pair")
        ax.set_ylabel(label)
        plotting.legend(ax, fontsize=6)
    ax = axes[2]
    for k, m in enumerate(("used", "new", "only_here")):
        r = sorted(select(usage, metric=m), key=lambda q: q["block"])
        if r:
            plotting.errorbar_rows(ax, np.asarray([q["block"] for q in r]) + 0.1 * k, r, label=m, ls="-", **MARK)
    ax.set_xticks(sorted({int(q["block"]) for q in usage}))
    ax.set_xlabel("block")
    ax.set_ylabel("latents")
    plotting.legend(ax, fontsize=6)
    return plotting.save(fig, table_dir / "meanings")


def attribution(table_dir: Path) -> list[Path]:
    """Fine-tuning attribution per block: AUROC of the ranking for the targeted latents (0.5 =
    chance; altered and refit: reverse-selective latents; planted: the switched-off ones, a
    positive control) and precision among the top latents against each base rate (dotted); top
    row the signed score, bottom row the unsigned one."""
    rows = read_rows(table_dir / "attribution.csv")
    fig, axes = plotting.figure(ncols=2, nrows=2, width=2.8, height=2.3)
    metrics = ("auroc", "precision_top", "abs_auroc", "abs_precision_top")
    axes = list(axes.flat)
    for k, (ft, color) in enumerate((("altered", "C3"), ("refit", "0.5"), ("planted", "C2"))):
        for ax, metric in zip(axes, metrics):
            r = sorted(select(rows, ft=ft, metric=metric), key=lambda q: q["block"])
            if r:
                plotting.errorbar_rows(ax, np.asarray([q["block"] for q in r]) + 0.1 * k, r, color=color,
                                       label=f"{ft} vs normal", ls="none", **MARK)
        base = sorted(select(rows, ft=ft, metric="base_rate"), key=lambda q: q["block"])
        for ax in (axes[1], axes[3]) if base and ft != "refit" else ():   # refit shares altered's targets
            ax.plot([q["block"] for q in base], [q["mean"] for q in base], color=color, ls=":", lw=1,
                    label=f"base rate ({ft})")
    for ax in (axes[0], axes[2]):
        ax.axhline(0.5, color="0.3", ls=":", lw=1, label="chance")
    for ax, label in zip(axes, ("AUROC, signed score", "precision@top, signed", "AUROC, unsigned score",
                                "precision@top, unsigned")):
        ax.set_xticks(sorted({int(q["block"]) for q in rows}))
        ax.set_xlabel("block")
        ax.set_ylabel(label)
        ax.set_ylim(-0.02, 1.02)
        plotting.legend(ax, fontsize=6)
    return plotting.save(fig, table_dir / "attribution")


def training(table_dir: Path) -> list[Path]:
    """Answer accuracy along training of the engine runs (normal; altered and refit from it)."""
    rows = read_rows(table_dir / "training.csv")
    fig, axes = plotting.figure(width=3.2, height=2.4)
    ax = axes[0, 0]
    for kind in ("normal", "altered", "refit"):
        for t in sorted({r["task"] for r in select(rows, kind=kind)}):
            plotting.band_rows(ax, select(rows, kind=kind, task=t), "step", f"{kind}: {t}")
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xlabel("step (fine-tunes restart at 0)")
    ax.set_ylabel("answer accuracy")
    ax.set_ylim(-0.02, 1.02)
    plotting.legend(ax, fontsize=6)
    return plotting.save(fig, table_dir / "training")
