"""The figures, one function each, drawn from the summary tables alone."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from studies.ood_decay import figures_persistence, figures_sharing
from studies.ood_decay.fits import HEADLINE
from toymodels import plotting
from toymodels.results import read_rows
from toymodels.tables import select


def figures(table_dir: Path) -> list[Path]:
    table_dir = Path(table_dir)
    tables = {p.stem: read_rows(p) for p in sorted(table_dir.glob("*.csv"))}
    part1 = ()
    if tables.get("decay_curves"):
        # the size and regularisation axes are optional (the paper preset runs the base cell only)
        axes = {r["axis"] for r in tables.get("fits", [])}
        part1 = (fig_decay, fig_forgetting, *((fig_half_life_params,) if "size" in axes else ()),
                 *((fig_wd_clock,) if "reg" in axes else ()), fig_savings, fig_zeroshot)
    return ([p for fig in part1 for p in fig(tables, table_dir)] + figures_sharing.figures(tables, table_dir)
            + figures_persistence.figure(tables, table_dir))


def _cases(rows):
    return sorted({r["case"] for r in rows}) or ["-"]


def _pow10(rows) -> list[dict]:
    """Rows of log10 values as values: mean, lo, hi and per-seed values to the power of 10."""
    m, lo, hi = (10 ** np.asarray([r[k] for r in rows]) for k in ("mean", "lo", "hi"))
    return [{**r, "mean": a, "lo": b, "hi": c, "values": " ".join(f"{10 ** v:.6g}" for v in plotting.seed_values(r))}
            for r, a, b, c in zip(rows, m, lo, hi)]


def fig_decay(tables, d) -> list[Path]:
    """X's held-out exact match (top) and loss (bottom) after the drop, base cell, per case."""
    rows = select(tables.get("decay_curves", []), axis="base")
    cases = _cases(rows)
    fig, axes = plotting.figure(ncols=len(cases), nrows=2)
    for j, case in enumerate(cases):
        for i, metric in enumerate((HEADLINE, "loss")):
            ax, sel = axes[i, j], select(rows, case=case, metric=metric)
            for p in sorted({r["p"] for r in sel if r["role"] == "drop"}):
                plotting.band_rows(ax, select(sel, role="drop", p=p), "step", f"p={p:g}", shift=1)
            plotting.band_rows(ax, select(sel, role="joint"), "step", "joint (kept X)", shift=1, color="0.5", ls="--")
            plotting.band_rows(ax, select(sel, role="never2"), "step", "never saw X", shift=1, color="k", ls=":")
            ax.set_xscale("log")
            ax.set_xlabel("steps since drop + 1")
            ax.set_ylabel(f"X held-out {'exact match' if metric == HEADLINE else metric}")
            if metric == HEADLINE:
                ax.set_ylim(-0.02, 1.02)
            ax.set_title(f"case {case}" if i == 0 else "")
    plotting.legend(axes[0, 0])
    fig.suptitle("decay of the dropped language X (replayed at fraction p); mean, 95% interval")
    return plotting.save(fig, d / "decay_curves")


def fig_forgetting(tables, d) -> list[Path]:
    """Forgetting vs replay fraction, one panel per convention (base cell)."""
    rows = select(tables.get("forgetting", []), axis="base")
    fig, axes = plotting.figure(ncols=2)
    titles = {"peak": "peak: best up to the drop - final", "first_last": "first_last: at the drop - final"}
    for ax, (conv, title) in zip(axes[0], titles.items()):
        ps = sorted({r["p"] for r in rows})
        for case in _cases(rows):
            sel = sorted(select(rows, case=case, convention=conv), key=lambda r: r["p"])
            plotting.band_rows(ax, sel, "p", f"case {case}", x=np.asarray([ps.index(r["p"]) for r in sel]),
                               marker="o")
        ax.set_xticks(range(len(ps)), [f"{p:g}" for p in ps])
        ax.set_ylim(-1.02, 1.02)
        ax.set_xlabel("replay fraction p of X")
        ax.set_ylabel("forgetting of X exact match")
        ax.set_title(title)
    plotting.legend(axes[0, 0])
    fig.suptitle("forgetting at the end of the decay window; mean, 95% interval")
    return plotting.save(fig, d / "forgetting")


def fig_half_life_params(tables, d) -> list[Path]:
    """Half-life of X's accuracy vs parameter count (drop p=0, base regularisation), log-log."""
    rows = [r for r in select(tables.get("fits", []), metric="acc", quantity="log10_half_life", p=0)
            if r["axis"] in ("base", "size")]
    scaling = {(r["case"], r["series"]): r for r in tables.get("scaling", [])}
    cases = _cases(rows)
    fig, axes = plotting.figure(ncols=len(cases))
    for j, case in enumerate(cases):
        ax = axes[0, j]
        sel = sorted(select(rows, case=case), key=lambda r: r["params"])
        for nl, marker in sorted({(r["n_layers"], "os^D"[(r["n_layers"] - 1) % 4]) for r in sel}):
            pts = select(sel, n_layers=nl)
            plotting.errorbar_rows(ax, np.asarray([r["params"] for r in pts], dtype=float), _pow10(pts),
                                   fmt=marker, capsize=3, label=f"{nl} layer(s) (n={min(r['n'] for r in pts)})")
        fit = scaling.get((case, "all sizes"))
        if fit and sel and math.isfinite(fit["slope"]):
            x = np.geomspace(sel[0]["params"], sel[-1]["params"], 20)
            ax.plot(x, np.exp(fit["intercept"]) * x ** fit["slope"], color="0.4",
                    label=f"slope {fit['slope']:.2f} [{fit['lo']:.2f}, {fit['hi']:.2f}]")
        if sel:   # two-seed intervals on a log scale can span decades: frame the means
            means = [10 ** r["mean"] for r in sel]
            ax.set_ylim(min(means) / 10, max(means) * 10)
        else:
            plotting.empty(ax, "size axis")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("parameters")
        ax.set_ylabel("half-life of X accuracy (steps)")
        ax.set_title(f"case {case}")
        plotting.legend(ax, fontsize=6)
    fig.suptitle("half-life vs size (AIC-preferred fit; geometric mean, 95% t-interval)")
    return plotting.save(fig, d / "half_life_vs_params")


def fig_wd_clock(tables, d) -> list[Path]:
    """Measured half-life vs the weight-decay clock ln2/(lr wd); wd = 0 sits at the right edge."""
    rows = [r for r in select(tables.get("fits", []), metric="acc", quantity="log10_half_life", p=0)
            if r["axis"] in ("base", "reg")]
    fig, axes = plotting.figure(width=4.2)
    ax = axes[0, 0]
    finite = [r["wd_clock"] for r in rows if math.isfinite(r["wd_clock"])]
    right = 4 * max(finite + [10 ** r["mean"] for r in rows] + [1.0])   # where wd = 0 is drawn
    for k, case in enumerate(_cases(rows)):
        sel = select(rows, case=case)
        color = plotting.PALETTE[k % len(plotting.PALETTE)]
        for r in sel:
            x = r["wd_clock"] if math.isfinite(r["wd_clock"]) else right
            plotting.errorbar_rows(ax, [x], _pow10([r]), fmt="s" if r["dropout"] else "o", color=color,
                                   capsize=3, label=f"{case}" if r is sel[0] else None)
    lim = np.geomspace(1, right, 10)
    ax.plot(lim, lim, color="0.6", ls="--", label="half-life = clock")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(1, right)
    ax.set_xlabel("weight-decay clock ln2/(lr wd) (steps; right edge: wd = 0)")
    ax.set_ylabel("half-life of X accuracy (steps)")
    ax.set_title("squares: with dropout")
    plotting.legend(ax)
    return plotting.save(fig, d / "half_life_vs_wd_clock")


def _bars(ax, rows, cases, quantities):
    """One bar group per case, one bar per quantity, with interval bars (n >= 3) and per-seed points."""
    w = 0.8 / len(quantities)
    for i, q in enumerate(quantities):
        sel = [next(iter(select(rows, case=c, quantity=q)), None) for c in cases]
        x = np.arange(len(cases)) + (i - (len(quantities) - 1) / 2) * w
        m, lo, hi = (np.full(len(sel), np.nan) for _ in range(3))
        present = [j for j, r in enumerate(sel) if r]
        if present:   # no interval from fewer than 3 seeds (plotting.shown_interval)
            m[present], lo[present], hi[present] = plotting.shown_interval([sel[j] for j in present])
        err = [np.nan_to_num(m - lo), np.nan_to_num(hi - m)]
        n = min([r["n"] for r in sel if r] or [0])
        bars = ax.bar(x, m, w, yerr=err, capsize=2, label=f"{q} (n={n})")
        plotting.seed_points(ax, [xi for xi, r in zip(x, sel) if r], [r for r in sel if r],
                             color=bars.patches[0].get_facecolor() if bars.patches else None)
    ax.set_xticks(np.arange(len(cases)), [f"case {c}" for c in cases])
    ax.axhline(0, color="k", lw=0.5)
    plotting.legend(ax, fontsize=6)


def fig_savings(tables, d) -> list[Path]:
    """Relearning savings, readout-only recovery, per-layer probes and few-example recovery of X, base cell."""
    sav, ro, pr = (tables.get(k, []) for k in ("savings", "readout", "probes"))
    fig, axes = plotting.figure(ncols=4, width=3.8)
    cases = _cases(sav + ro + pr)
    _bars(axes[0, 0], select(sav, axis="base"), cases, ("savings_vs_fresh", "savings_vs_never",
                                                        "area_savings_vs_fresh", "area_savings_vs_never"))
    axes[0, 0].set_title("relearning savings\n(criterion: 90% of pre-drop exact match)")
    _bars(axes[0, 1], ro, cases, ("native_pre", "native_drop_p0", "refit_drop_p0", "refit_never2", "refit_pre",
                                  "refit_random"))
    axes[0, 1].set_title("X per-token accuracy,\nown vs refit unembedding")
    _bars(axes[0, 3], select(sav, axis="base"), cases, ("fewshot_before_pre", "fewshot_before_drop",
                                                        "fewshot_dropped", "fewshot_never"))
    axes[0, 3].set_title("X exact match: before, and after\ntraining on a few examples of X")
    ax = axes[0, 2]
    base = [r for r in select(pr, quantity="normalized", axis="base") if r["role"] in ("drop", "never2")
            and r["p"] in (0, "")]
    names = {"drop": "drop p=0", "never2": "never saw X"}
    layers = sorted({r["layer"] for r in base})
    bars = [{**r, "quantity": names[r["role"]] + (f" layer {r['layer']}" if len(layers) > 1 else "")} for r in base]
    if base:
        _bars(ax, bars, cases, [names[role] + (f" layer {k}" if len(layers) > 1 else "")
                                for role in ("drop", "never2") for k in layers])
    else:
        plotting.empty(ax, "probes")
    ax.axhline(1, color="0.6", lw=0.5)
    ax.set_ylabel("probe R^2 (0 random init, 1 pre-drop)")
    where = f"after block {layers[0]}" if len(layers) == 1 else "after each block"
    ax.set_title(f"linear probe of X's next answer token\n(residual stream {where})")
    return plotting.save(fig, d / "savings_readout_probes")


def fig_zeroshot(tables, d) -> list[Path]:
    """Case D: held-out translation accuracy over all of training, dropped vs kept X."""
    rows = select(tables.get("zeroshot", []), axis="base")
    fig, axes = plotting.figure(width=5.0)
    ax = axes[0, 0]
    tasks = sorted({r["task"] for r in rows})
    for k, task in enumerate(tasks):
        color = plotting.PALETTE[k % len(plotting.PALETTE)]
        sel = select(rows, task=task, metric=HEADLINE)
        for role, ls in (("pre", "-"), ("drop_p0", "-"), ("relearn", "-"), ("joint", "--")):
            label = {"pre": f"{task}: X dropped, then relearned", "joint": f"{task}: X kept"}.get(role)
            plotting.band_rows(ax, select(sel, role=role), "step", label, color=color, ls=ls)
    for role in ("drop_p0", "relearn"):
        starts = [r["step"] for r in rows if r["role"] == role]
        if starts:
            ax.axvline(min(starts), color="0.6", lw=0.8)
    if not rows:
        plotting.empty(ax, "case D")
    ax.set_xlabel("training step (vertical lines: X dropped, X back in the mix)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("held-out exact match")
    ax.set_title("case D: zero-shot translation of the held-out pair")
    plotting.legend(ax, fontsize=6)
    return plotting.save(fig, d / "zeroshot_translation")
