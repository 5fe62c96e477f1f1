"""Figures, drawn from the summary tables alone: one function per figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from studies.compiled_vs_trained.fair import fair_figure
from studies.compiled_vs_trained.grid import short
from studies.compiled_vs_trained.interchange import interchange_figure
from studies.compiled_vs_trained.measure import WEIGHT_STATS
from studies.compiled_vs_trained.presets import ANCHORS, MATCH
from studies.compiled_vs_trained.tables import quantity_fields
from toymodels import plotting
from toymodels.analysis.stats import POINTS_MAX_N
from toymodels.results import read_rows
from toymodels.tables import select

COMPARISONS = (("compiled_vs_trained", "compiled vs trained"), ("trained_vs_trained", "trained vs trained"),
               ("compiled_vs_scrambled", "compiled vs scrambled"))
# the nulls (measure.NULLS), drawn in greys at the reference width
NULL_STYLE = (("compiled_vs_random_init", "null: random-init twin", "0.55", ":"),
              ("compiled_vs_other_program", "null: twin of another program", "#8B5A2B", "-."),
              ("compiled_vs_input_only", "null: token + position only", "0.2", "--"))
HEADLINE = (("cka", "linear CKA"), ("affine_r2_to_ref", "affine R^2 to compiled"),
            ("cka_partial", "CKA, token+position partialled"),
            ("affine_r2_to_ref_partial", "affine R^2, token+position partialled"))
WIDTH_STYLE = {0.5: ":", 1.0: "-", 2.0: "--"}
GRID_DPI = 90      # PNGs of the per-program grids (~50 panels): legible, a quarter of the bytes


def figures(table_dir: Path) -> list[Path]:
    """Every figure whose part's tables are in ``table_dir``."""
    fair = table_dir / "decompiler_fair_summary.csv"
    paths = fair_figure(read_rows(fair), table_dir / "decompiler_fair") if fair.exists() else []
    if (table_dir / "layers.csv").exists():
        paths += _main(table_dir)
    return paths


def _main(table_dir: Path) -> list[Path]:
    layers = read_rows(table_dir / "layers.csv")
    paths = twin_accuracy(read_rows(table_dir / "twin_accuracy.csv"), table_dir / "twin_accuracy")
    # Debiased CKA is in the tables only: at 512 x 5 rows it differs from linear CKA by
    # < 0.005 per layer (paper preset).
    for metric, ylabel in (("cka", "linear CKA"), ("procrustes", "Procrustes distance"),
                           ("affine_r2_to_ref", "affine R^2 to reference"),
                           ("cka_partial", "CKA, token+position partialled out")):
        paths += layer_figure(layers, metric, ylabel, table_dir / f"layers_{metric}")
    paths += against_nulls(read_rows(table_dir / "summary.csv"), table_dir / "nulls")
    paths += positions_cka(read_rows(table_dir / "positions.csv"), table_dir / "positions_cka")
    var = read_rows(table_dir / "variables.csv")
    for family in sorted({r["family"] for r in var}):   # one figure per family: ~25 panels at most
        paths += variables_r2(select(var, family=family), table_dir / f"variables_r2_{family}")
    paths += nonlinear_scatter(layers, table_dir / "nonlinear_scatter")
    paths += nonlinear_gap(layers, table_dir / "nonlinear_gap")
    paths += decompiler_by_size(read_rows(table_dir / "decompiler.csv"), table_dir / "decompiler_by_size")
    paths += decompiler_twins(read_rows(table_dir / "decompiler_twins.csv"), table_dir / "decompiler_twins")
    if (table_dir / "interchange.csv").exists():
        paths += interchange_figure(read_rows(table_dir / "interchange.csv"), table_dir / "interchange")
    paths += weight_stats(read_rows(table_dir / "weights.csv"), table_dir / "weight_stats")
    paths += spectra(read_rows(table_dir / "spectra.csv"), table_dir / "spectra")
    return paths


def _programs(rows) -> list[tuple[str, str]]:
    """(family, program) of the rows: library programs first, then by name."""
    return sorted({(r["family"], r["program"]) for r in rows}, key=lambda fp: (fp[0] != "library", fp[1]))


def twin_accuracy(acc, path: Path) -> list[Path]:
    """Twins: held-out accuracy reached after the step budget, every run counted."""
    trained = select(acc, source="trained", metric="acc")
    progs = _programs(trained)
    fig, axes = plotting.figure(width=max(3.4, 0.22 * len(progs)), height=2.8)
    ax = axes[0, 0]
    widths = sorted({r["width"] for r in trained})
    for k, width in enumerate(widths):
        xs = np.arange(len(progs)) + 0.2 * (k - (len(widths) - 1) / 2)
        rows = [select(trained, program=p, width=width)[0] for _, p in progs]
        plotting.errorbar_rows(ax, xs, rows, fmt="o", ms=3, lw=0.8, label=f"{width:g}x width (n={rows[0]['n']})")
    ax.axhline(MATCH, color="0.5", lw=0.6, ls="--")
    ceiling = {r["program"]: r["mean"] for r in select(acc, source="ceiling", metric="acc")}
    below = [(i, ceiling[p]) for i, (_, p) in enumerate(progs) if ceiling.get(p, 1.0) < 1.0]
    if below:
        ax.plot(*zip(*below), "k_", ms=9, label="held-out ceiling (classes seen in training)")
    ax.set_xticks(np.arange(len(progs)), [short(p) for _, p in progs], rotation=70, fontsize=6)
    ax.set_ylabel("held-out token accuracy")
    ax.set_ylim(min(0.0, ax.get_ylim()[0]), 1.02)   # accuracy: room for points at 1
    ax.legend(fontsize=7, loc="lower left")
    fig.suptitle(f"trained twins after the step budget (dashed: match threshold {MATCH})", fontsize=9)
    return plotting.save(fig, path)


def layer_figure(layers, metric: str, ylabel: str, path: Path) -> list[Path]:
    """Per program, one representation comparison per residual layer, for the three comparisons."""
    progs = _programs(layers)
    fig, axes = plotting.grid(len(progs))
    for ax, (_family, program) in zip(axes, progs):
        rows = select(layers, program=program, metric=metric)
        for (comp, label), color in zip(COMPARISONS, plotting.PALETTE):
            for width in sorted({r["width"] for r in rows if r["comparison"] == comp}):
                plotting.band_rows(ax, select(rows, comparison=comp, width=width), "layer_index", color=color,
                                   ls=WIDTH_STYLE.get(width, "-"), label=f"{label}, {width:g}x", marker="o", ms=2.5)
        for comp, label, color, ls in NULL_STYLE:
            plotting.band_rows(ax, select(rows, comparison=comp), "layer_index", color=color, ls=ls, label=label,
                               marker="x", ms=2.5)
        labels = {r["layer_index"]: r["layer_label"] for r in rows}
        ax.set_xticks(sorted(labels), [labels[i] for i in sorted(labels)], rotation=60, fontsize=6)
        ax.set_title(short(program), fontsize=8)
        ax.tick_params(axis="y", labelsize=6)
    axes[0].set_ylabel(ylabel, fontsize=8)
    handles, names = axes[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside lower center", ncols=4, fontsize=7)
    fig.suptitle(f"{ylabel} per residual layer; mean and 95% interval over seeds (pairs, scrambles)", fontsize=9)
    return plotting.save(fig, path, dpi=GRID_DPI)


def against_nulls(summary, path: Path) -> list[Path]:
    """Final layer, every comparison and null on the programs that have an other-program null:
    mean over programs within a seed, 95% interval over seeds, one panel per measure."""
    section = "final layer, programs with an other-program null"
    rows = [dict(r, **quantity_fields(r)) for r in select(summary, section=section)]
    comps = [(c, lab, plotting.PALETTE[i]) for i, (c, lab) in enumerate(COMPARISONS)] + \
        [(c, lab, color) for c, lab, color, _ in NULL_STYLE]
    fig, axes = plotting.figure(ncols=len(HEADLINE), width=2.6, height=3.2)
    for ax, (metric, title) in zip(axes[0], HEADLINE):
        have = [(k, c, lab, color) for k, (c, lab, color) in enumerate(comps)
                if select(rows, metric=metric, comparison=c)]
        for k, c, _, color in have:
            sel = sorted(select(rows, metric=metric, comparison=c), key=lambda r: float(r["width"]))
            ref = [r for r in sel if float(r["width"]) == 1.0] or sel[:1]
            plotting.errorbar_rows(ax, [k], ref, fmt="o", ms=4, lw=1, color=color)
        ax.set_xticks([k for k, *_ in have], [lab for _, _, lab, _ in have], rotation=75, fontsize=6)
        ax.set_title(title, fontsize=8)
        ax.set_ylim(min(-0.05, ax.get_ylim()[0]), 1.05)
        ax.axhline(0, color="0.8", lw=0.5)
    n = max((r["n"] for r in rows), default=0)
    fig.suptitle(f"final layer against the nulls (reference width; mean over programs, 95% interval over "
                 f"n={n} seeds)", fontsize=9)
    return plotting.save(fig, path)


def positions_cka(positions, path: Path) -> list[Path]:
    """Per program, CKA compiled vs trained (reference width) per position, one line per layer."""
    pos = select(positions, comparison="compiled_vs_trained", metric="cka")
    progs = sorted({r["program"] for r in pos})
    fig, axes = plotting.grid(len(progs))
    for ax, program in zip(axes, progs):
        rows = select(pos, program=program)
        for i in sorted({r["layer_index"] for r in rows}):
            sel = select(rows, layer_index=i)
            plotting.band_rows(ax, sel, "position", label=sel[0]["layer_label"], ls="-", marker="o", ms=2.5)
        ax.set_title(short(program), fontsize=8)
        plotting.legend(ax, fontsize=5)
        ax.set_xlabel("position", fontsize=7)
    axes[0].set_ylabel("CKA compiled vs trained", fontsize=8)
    return plotting.save(fig, path, dpi=GRID_DPI)


def variables_r2(var, path: Path) -> list[Path]:
    """Per program, can the twin's final layer linearly hold each compiled RASP variable?"""
    progs = _programs(var)
    fig, axes = plotting.grid(len(progs), ncols=4, width=3.6, height=3.0)
    for ax, (_, program) in zip(axes, progs):
        rows = select(var, program=program, quantity="r2_to_sop_final")
        sops = sorted({(r["birth_layer"], r["sop"]) for r in rows})
        for width in sorted({r["width"] for r in rows}):
            sel = {r["sop"]: r for r in select(rows, width=width)}
            plotting.errorbar_rows(ax, np.arange(len(sops)), [sel[s] for _, s in sops], fmt="o", ms=3, lw=0.8,
                                   ls="none", label=f"{width:g}x")
        ax.set_xticks(np.arange(len(sops)), [s for _, s in sops], rotation=60, ha="right", fontsize=7)
        ax.set_ylim(min(-0.05, ax.get_ylim()[0]), 1.05)
        ax.set_title(short(program), fontsize=9)
        ax.tick_params(axis="y", labelsize=7)
    axes[0].set_ylabel("affine R^2, twin -> variable", fontsize=8)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"each compiled RASP variable read from the twin's final layer (held-out ridge R^2), "
                 f"{progs[0][0]} programs", fontsize=10)
    return plotting.save(fig, path, dpi=110)


def nonlinear_scatter(layers, path: Path) -> list[Path]:
    """MLP vs affine R^2, twin -> compiled, at every program and layer (seed means)."""
    gap = select(layers, comparison="compiled_vs_trained")
    fig, axes = plotting.figure(width=3.8, height=3.6)
    ax = axes[0, 0]
    for width in sorted({r["width"] for r in gap if r["metric"] == "mlp_r2_to_ref"}):
        aff = {(r["program"], r["layer_index"]): r["mean"] for r in select(gap, width=width, metric="affine_r2_to_ref")}
        mlp = {(r["program"], r["layer_index"]): r["mean"] for r in select(gap, width=width, metric="mlp_r2_to_ref")}
        keys = sorted(set(aff) & set(mlp))
        ax.scatter([aff[k] for k in keys], [mlp[k] for k in keys], s=8, label=f"{width:g}x twins")
    ax.plot([0, 1], [0, 1], color="0.5", lw=0.6)
    ax.set_xlabel("affine R^2 (twin -> compiled)")
    ax.set_ylabel("MLP R^2 (twin -> compiled)")
    plotting.legend(ax, fontsize=7)
    ax.set_title("every program and layer, seed means", fontsize=9)
    return plotting.save(fig, path)


def nonlinear_gap(layers, path: Path) -> list[Path]:
    """The final-layer MLP-minus-affine gap per program, one row per program."""
    g = sorted(select(layers, comparison="compiled_vs_trained", metric="mlp_minus_affine", final=1),
               key=lambda r: (r["family"] != "library", r["program"]), reverse=True)
    fig, axes = plotting.figure(width=4.2, height=max(2.4, 0.17 * len(g) + 0.8))
    ax = axes[0, 0]
    m = np.asarray([r["mean"] for r in g], dtype=float)
    ys = np.arange(len(g))
    ax.errorbar(m, ys, xerr=[m - [r["lo"] for r in g], [r["hi"] for r in g] - m], fmt="o", ms=3, lw=0.8)
    pts = [(v, y) for r, y in zip(g, ys) for v in plotting.seed_values(r)]
    if pts and max(r["n"] for r in g) <= POINTS_MAX_N:
        ax.scatter(*zip(*pts), s=6, alpha=0.55, linewidths=0, zorder=3)
    ax.set_yticks(ys, [short(r["program"]) for r in g], fontsize=7)
    ax.axvline(0, color="0.5", lw=0.6)
    ax.set_xlabel("MLP - affine R^2, final layer (twin -> compiled)")
    n = max((r["n"] for r in g), default=0)
    ax.set_title(f"nonlinear-minus-affine gap, 1x twins; 95% interval over n={n} seeds", fontsize=9)
    return plotting.save(fig, path)


def decompiler_by_size(dec, path: Path) -> list[Path]:
    """Decompiler accuracy vs program size: clean vs scrambled weights, with published anchors."""
    fig, axes = plotting.figure(ncols=2)
    for ax, metric in zip(axes[0], ("exact", "equivalent")):
        for train, test in (("clean", "clean"), ("scrambled", "scrambled"), ("clean", "scrambled")):
            rows = [r for r in select(dec, train_weights=train, test_weights=test, metric=metric)
                    if r["n_lines"] != "all"]
            plotting.band_rows(ax, rows, "n_lines", label=f"trained on {train}, tested on {test}", ls="-",
                               marker="o", ms=2.5)
        for label, m, theirs, _ in ANCHORS:
            if m == metric:
                ax.axhline(theirs, color="0.5", lw=0.6, ls=":")
                ax.annotate(label, (ax.get_xlim()[0], theirs), fontsize=6, va="bottom", color="0.4")
        ax.set_xlabel("program size (SOp lines)")
        ax.set_ylabel(f"held-out {metric}")
        ax.set_ylim(-0.03, 1.03)
    axes[0, 0].legend(fontsize=6)
    fig.suptitle("decompiler on held-out fountain programs (dotted: published anchors, other program sets)",
                 fontsize=9)
    return plotting.save(fig, path)


def decompiler_twins(tw, path: Path) -> list[Path]:
    """The decompilers on the fountain programs' compiled nets, scrambles and twins."""
    fig, axes = plotting.figure(ncols=2)
    for ax, metric in zip(axes[0], ("exact", "equivalent")):
        for k, train in enumerate(("clean", "scrambled")):
            rows = sorted(select(tw, train_weights=train, metric=metric), key=lambda r: (r["source"], r["width"]))
            xs = np.arange(len(rows)) + 0.15 * (2 * k - 1)
            plotting.errorbar_rows(ax, xs, rows, fmt="o", ms=3, lw=0.8, label=f"decompiler trained on {train}")
            ax.set_xticks(np.arange(len(rows)), [f"{r['source']}\n{r['width']:g}x ({r['applicable']}/{r['nets']})"
                                                 if r["source"] == "trained" else r["source"] for r in rows],
                          fontsize=6)
        ax.set_ylabel(metric)
        ax.set_ylim(-0.03, 1.03)
    axes[0, 0].legend(fontsize=6)
    fig.suptitle("decompiler applied to fountain programs' nets (twins: applicable nets / all)", fontsize=9)
    return plotting.save(fig, path)


def weight_stats(w, path: Path) -> list[Path]:
    """Weight statistics per matrix kind, by source (compiled, scrambled, trained per width)."""
    kinds = sorted({r["matrix_kind"] for r in w})
    sources = sorted({(r["source"], r["width"]) for r in w})
    fig, axes = plotting.figure(ncols=len(WEIGHT_STATS), width=3.0, height=2.8)
    for ax, metric in zip(axes[0], WEIGHT_STATS):
        for k, (source, width) in enumerate(sources):
            rows = {r["matrix_kind"]: r for r in select(w, source=source, width=width, metric=metric)}
            xs = np.arange(len(kinds)) + 0.12 * (k - (len(sources) - 1) / 2)
            have = [i for i, kd in enumerate(kinds) if kd in rows]
            plotting.errorbar_rows(ax, xs[have], [rows[kinds[i]] for i in have], fmt="o", ms=3, lw=0.8,
                                   label=source if source != "trained" else f"trained {width:g}x")
        ax.set_xticks(np.arange(len(kinds)), kinds, rotation=70, fontsize=6)
        ax.set_title(metric, fontsize=8)
        if metric == "frobenius":
            ax.set_yscale("log")
    axes[0, 0].legend(fontsize=6)
    fig.suptitle("weight statistics, mean over programs within a seed; 95% interval over seeds", fontsize=9)
    return plotting.save(fig, path)


def spectra(spec, path: Path) -> list[Path]:
    """Singular values s_i / s_0 of the showcase program's weight matrices, by source."""
    mats = sorted({r["matrix"] for r in spec})
    fig, axes = plotting.grid(len(mats), ncols=6, width=2.3, height=1.9)
    for ax, mat in zip(axes, mats):
        for source, width in sorted({(r["source"], r["width"]) for r in spec}):
            plotting.band_rows(ax, select(spec, matrix=mat, source=source, width=width), "index",
                               label=source if source != "trained" else f"trained {width:g}x", ls="-",
                               marker="o", ms=2.5)
        ax.set_title(mat, fontsize=7)
        ax.set_yscale("symlog", linthresh=1e-3)
        ax.set_ylim(bottom=0)   # s_i / s_0 >= 0
    axes[0].set_ylabel("s_i / s_0", fontsize=8)
    axes[0].legend(fontsize=5)
    fig.suptitle(f"singular values of {short(spec[0]['program'])}'s weight matrices", fontsize=9)
    return plotting.save(fig, path, dpi=GRID_DPI)
