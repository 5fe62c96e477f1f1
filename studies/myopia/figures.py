"""Figures, drawn from the summary tables alone: one function per figure."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from studies.myopia import figures_wu_band
from studies.myopia.presets import ARMS, FAMILIES, WU_FREQ, WU_LENGTH
from studies.myopia.tables import chosen_factors, factor_of
from toymodels import plotting
from toymodels.results import read_rows
from toymodels.tables import select

MARK = dict(marker="o", ms=3)   # every curve: a line through marked points
TITLE = {"wu": "D_1 (Wu et al.)", "mult": "multiplication", "pairs": "adjacent_pair (positive control)",
         "text": "stdlib text", "markov": "Markov (negative control)"}


def figures(table_dir: Path) -> list[Path]:
    """Every figure whose part's tables are in ``table_dir``."""
    out = convergence(table_dir) if (table_dir / "convergence_curves.csv").exists() else []
    out += figures_wu_band.figures(table_dir) if (table_dir / "wu_band.csv").exists() else []
    if not (table_dir / "final.csv").exists():
        return out
    final = read_rows(table_dir / "final.csv")
    chosen = chosen_factors(read_rows(table_dir / "lr_choice.csv"))
    return (lr_grid(table_dir) + band_vs_k(table_dir) + gap_vs_size(table_dir) + curves(table_dir)
            + mult_exact_vs_fillers(table_dir, final, chosen) + wu_loss_vs_p(table_dir, final, chosen)
            + per_position(table_dir) + grad_diagnostics(table_dir) + probe_r2(table_dir) + out)


def convergence(table_dir: Path) -> list[Path]:
    """Part "convergence": text held-out loss over characters seen per size and arm (each at its
    rate); the text gap, local bonus and context benefit vs size next to the main budget's;
    vanilla's change over the last doubling of steps; multiplication exact match over steps
    (vanilla's longer budget dash-dotted)."""
    curves_ = read_rows(table_dir / "convergence_curves.csv")
    rates = {(c["task"], c["arm"]): c["lr_factor"] for c in read_rows(table_dir / "convergence_lr.csv")}
    gaps = select(read_rows(table_dir / "convergence_gaps.csv"), family="text_long")
    late = read_rows(table_dir / "convergence_late.csv")
    fig, axes = plotting.grid(4, ncols=4, width=3.0, height=2.6)
    style = {"vanilla": "-", "myopic": "--", "bigram": ":"}

    def rate(fam, arm):
        return rates[(fam, "myopic" if arm == "myopic" else "vanilla")]

    text = select(curves_, family="text_long", task="text", metric="loss")
    for point in sorted({r["point"] for r in text}, key=lambda p: select(text, point=p)[0]["params"]):
        color = None
        for arm in ("vanilla", "myopic", "bigram"):
            cur = select(text, point=point, arm=arm, lr_factor=rate("text_long", arm))
            line = plotting.band_rows(axes[0], cur, "tokens", point if arm == "vanilla" else None, color=color,
                                      ls=style[arm], marker="o", ms=2)
            color = color or (line.get_color() if line else None)
    plotting.log_x(axes[0])
    axes[0].set_xlabel("characters seen")
    axes[0].set_ylabel("held-out loss (nats per character)")
    axes[0].set_title("text (solid vanilla, dashed myopic, dotted no context)", fontsize=6)
    main = select(read_rows(table_dir / "gaps.csv"), family="text") if (table_dir / "gaps.csv").exists() else []
    for q, name in (("gap", "myopia gap"), ("local_bonus", "local bonus"), ("context_benefit", "no-context - vanilla")):
        line = plotting.band_rows(axes[1], select(gaps, quantity=q), "params", name, **MARK)
        if main and line is not None:
            plotting.band_rows(axes[1], select(main, quantity=q), "params", None, color=line.get_color(),
                               ls=":", marker="x", ms=3, alpha=0.6)
    plotting.log_x(axes[1])
    axes[1].set_xlabel("parameters")
    axes[1].set_ylabel("nats per character")
    axes[1].set_title("text at the long budget (dotted, x: main budget)", fontsize=6)
    for q, name in (("late_loss", "held-out loss, last doubling"), ("heldout_minus_train", "held-out - train")):
        sel = select(late, family="text_long", quantity=q, lr_factor=rate("text_long", "vanilla"))
        plotting.band_rows(axes[2], sel, "params", name, **MARK)
    plotting.log_x(axes[2])
    axes[2].set_xlabel("parameters")
    axes[2].set_ylabel("nats per character")
    axes[2].set_title("text vanilla: still improving?", fontsize=6)
    mult = select(curves_, family="mult_long", metric="exact")
    plateau = select(curves_, family="mult_plateau", metric="exact", arm="vanilla")
    for f in sorted({r["fillers"] for r in mult + plateau}):
        color = None
        for arm in ("vanilla", "myopic"):
            line = plotting.band_rows(axes[3], select(mult, fillers=f, arm=arm, lr_factor=rate("mult_long", arm)),
                                      "step", f"F = {f} {arm}", shift=1, color=color, ls=style[arm], marker="o", ms=2)
            color = color or (line.get_color() if line else None)
        longer = select(plateau, fillers=f, lr_factor=rate("mult_plateau", "vanilla")) if plateau else []
        if longer:
            steps = max(r["step"] for r in longer)
            plotting.band_rows(axes[3], longer, "step", f"F = {f} vanilla, {steps:,} steps", shift=1, color=color,
                               ls="-.", marker="s", ms=2)
    if not mult:
        plotting.empty(axes[3], "multiplication")
    plotting.log_x(axes[3])
    axes[3].set_xlabel("step + 1")
    axes[3].set_ylabel("held-out exact match")
    axes[3].set_title("multiplication", fontsize=6)
    for ax in axes[1:3]:
        ax.axhline(0.0, color="0.6", lw=0.6)
    for ax in axes:
        plotting.legend(ax, fontsize=5)
    n = min((r["n"] for r in curves_ if r["task"] != "train"), default=0)
    fig.suptitle(f"long budgets; mean, 95% interval, >= {n} seeds", fontsize=8)
    return plotting.save(fig, table_dir / "convergence")


def lr_grid(table_dir: Path) -> list[Path]:
    """Validation loss vs learning rate per family and arm: every seed, the mean, the chosen rate."""
    runs = read_rows(table_dir / "lr_grid.csv")
    choice = {(c["task"], c["arm"]): c["lr"] for c in read_rows(table_dir / "lr_choice.csv")}
    fams = [f for f in FAMILIES if any(r["task"] == f for r in runs)]
    fig, axes = plotting.grid(len(fams), ncols=len(fams), width=2.6, height=2.4)
    for ax, fam in zip(axes, fams):
        for arm in ("vanilla", "myopic"):
            per = defaultdict(list)
            for r in select(runs, task=fam, arm=arm):
                per[r["lr"]].append(r["val_loss"])
            lrs = sorted(per)
            line, = ax.plot(lrs, [np.mean(per[lr]) for lr in lrs], label=arm, **MARK)
            for lr in lrs:
                ax.plot([lr] * len(per[lr]), per[lr], ".", color=line.get_color(), alpha=0.4, ms=3)
            best = choice[(fam, arm)]
            ax.plot([best], [np.mean(per[best])], "*", color=line.get_color(), ms=10, mec="k", mew=0.5)
        plotting.log_x(ax)
        ax.set_xlabel("learning rate")
        ax.set_title(TITLE[fam], fontsize=7)
    axes[0].set_ylabel("validation loss")
    plotting.legend(axes[0], fontsize=6)
    counts = defaultdict(int)
    for r in runs:
        counts[(r["task"], r["arm"], r["lr"])] += 1
    n = min(counts.values(), default=0)
    fig.suptitle(f"learning-rate grids: mean of {n} seeds (line), each seed (dots), chosen rate (star)", fontsize=8)
    return plotting.save(fig, table_dir / "lr_grid")


def band_vs_k(table_dir: Path) -> list[Path]:
    """How far ahead: the gap L(band k) - L(vanilla) vs k, per family (k = 0 is myopic)."""
    band = select(read_rows(table_dir / "band.csv"), quantity="gap")
    fams = [f for f in FAMILIES if any(r["family"] == f for r in band)]
    if not fams:
        return []
    fig, axes = plotting.grid(len(fams), ncols=len(fams), width=2.6, height=2.4)
    for ax, fam in zip(axes, fams):
        rows = select(band, family=fam)
        plotting.band_rows(ax, rows, "k", "gap", **MARK)
        ax.axhline(0.0, color="0.6", lw=0.6)
        ax.set_xlabel("band k")
        ax.set_title(f"{TITLE[fam]}, {rows[0]['point']}", fontsize=7)
        plotting.legend(ax, fontsize=6)
    axes[0].set_ylabel("L(band k) - L(vanilla)")
    fig.suptitle("gap when links up to k positions back keep their gradient (k = 0: myopic); mean, 95% interval, seeds",
                 fontsize=8)
    return plotting.save(fig, table_dir / "band_vs_k")


def gap_vs_size(table_dir: Path) -> list[Path]:
    """The gap, the local bonus and the context benefit vs parameters (adjacent_pair, text)."""
    gaps = read_rows(table_dir / "gaps.csv")
    fig, axes = plotting.figure(ncols=2)
    for ax, fam in zip(axes[0], ("pairs", "text")):
        for q, name in (("gap", "myopia gap"), ("local_bonus", "local myopia bonus"),
                        ("context_benefit", "no-context - vanilla")):
            rows = select(gaps, family=fam, quantity=q)
            if len({r["params"] for r in rows}) > 1 or q == "gap":
                plotting.band_rows(ax, rows, "params", name, **MARK)
        ax.axhline(0.0, color="0.6", lw=0.6)
        plotting.log_x(ax)
        ax.set_xlabel("parameters")
        ax.set_ylabel("nats per scored token")
        ax.set_title(TITLE[fam], fontsize=7)
        plotting.legend(ax, fontsize=6)
    n = min((r["n"] for r in gaps if r["family"] in ("pairs", "text")), default=0)
    fig.suptitle(f"myopia gap vs size, each arm at its chosen rate; mean, 95% interval, >= {n} seeds", fontsize=8)
    return plotting.save(fig, table_dir / "gap_vs_size")


def curves(table_dir: Path) -> list[Path]:
    """Held-out loss over training: text (every size and arm), D_1; exact match: multiplication."""
    rows = read_rows(table_dir / "curves.csv")
    panels = [("text", "loss", "tokens"), ("wu", "loss", "step"), ("mult", "exact", "step")]
    panels = [p for p in panels if select(rows, family=p[0], metric=p[1])]
    fig, axes = plotting.grid(len(panels), ncols=len(panels), width=3.2, height=2.6)
    style = {"vanilla": "-", "myopic": "--", "bigram": ":", "local": "-."}
    for ax, (fam, metric, x) in zip(axes, panels):
        sel = select(rows, family=fam, metric=metric)
        for point in sorted({r["point"] for r in sel}, key=lambda p: select(sel, point=p)[0]["params"]):
            for arm in ARMS:
                cur = select(sel, point=point, arm=arm)
                if cur and (fam != "mult" or arm in ("vanilla", "myopic")):
                    plotting.band_rows(ax, cur, x, f"{point} {arm}" if arm in ("vanilla", "myopic") else None,
                                       shift=1 if x == "step" else 0, ls=style[arm], marker="o", ms=2)
        plotting.log_x(ax)
        ax.set_xlabel("tokens seen" if x == "tokens" else "step + 1")
        ax.set_ylabel(f"held-out {metric}")
        ax.set_title(TITLE[fam], fontsize=7)
        plotting.legend(ax, fontsize=4)
    fig.suptitle("training curves (dotted: no context, dash-dot: local); mean and 95% interval", fontsize=8)
    return plotting.save(fig, table_dir / "curves")


def mult_exact_vs_fillers(table_dir: Path, final: list[dict], chosen) -> list[Path]:
    """Exact match vs filler tokens, each arm at its chosen rate."""
    fig, axes = plotting.figure()
    for arm in ("vanilla", "myopic"):
        rows = [r for r in select(final, family="mult", arm=arm, metric="exact")
                if r["lr_factor"] == factor_of(chosen, "mult", arm)]
        plotting.band_rows(axes[0, 0], rows, "fillers", arm, **MARK)
    axes[0, 0].set_xlabel("filler tokens F")
    axes[0, 0].set_ylabel("held-out exact match")
    plotting.legend(axes[0, 0])
    mult = select(final, family="mult")
    setting = mult[0]["point"].split("-F")[0] if mult else "?b?"   # "3x3b4"
    size, base = setting.split("b")
    n = min((r["n"] for r in mult), default=0)
    fig.suptitle(f"reversed {size}-digit multiplication in base {base}, main budget (longer: convergence.png); "
                 f"mean, 95% interval, {n} seeds", fontsize=7)
    return plotting.save(fig, table_dir / "mult_exact_vs_fillers")


def wu_loss_vs_p(table_dir: Path, final: list[dict], chosen) -> list[Path]:
    """D_p: loss vs p and the beta blend at p = 1 (only when the preset sweeps them)."""
    wu = select(final, family="wu", metric="loss")
    ps = {r["p"] for r in wu}
    beta = select(wu, arm="beta")
    if len(ps) < 2 and not beta:
        return []
    fig, axes = plotting.figure(ncols=2)
    for arm in ("vanilla", "myopic"):
        rows = [r for r in select(wu, arm=arm) if r["lr_factor"] == factor_of(chosen, "wu", arm)]
        plotting.band_rows(axes[0, 0], rows, "p", arm, **MARK)
    plotting.band_rows(axes[0, 1], beta, "beta", "myopic, beta blend", **MARK)
    axes[0, 0].set_xscale("log")
    axes[0, 0].set_xlabel("p (fraction of sum targets)")
    axes[0, 1].set_xlabel("beta (0 = myopic, 1 = vanilla)")
    for ax in axes[0]:
        ax.set_ylabel("held-out Huber loss")
    plotting.legend(axes[0, 0])
    fig.suptitle(f"D_p (freq {WU_FREQ:g}, T={WU_LENGTH})", fontsize=8)
    return plotting.save(fig, table_dir / "wu_loss_vs_p")


def per_position(table_dir: Path) -> list[Path]:
    """Held-out loss at every position, per arm, at the reference points; one legend for all panels."""
    pos = read_rows(table_dir / "positions.csv")
    families = [f for f in FAMILIES if any(r["family"] == f for r in pos)]
    fig, axes = plotting.figure(ncols=len(families))
    lines = {}
    for ax, family in zip(axes[0], families):
        for arm in ARMS:
            line = plotting.band_rows(ax, select(pos, family=family, arm=arm), "position", arm, **MARK)
            if line is not None:
                lines.setdefault(arm, line)
        ax.set_title(TITLE[family], fontsize=7)
        ax.set_xlabel("position")
    axes[0, 0].set_ylabel("held-out loss")
    fig.legend(list(lines.values()), list(lines), fontsize=6, loc="upper right", ncol=len(lines))
    n = min((r["n"] for r in pos), default=0)
    fig.suptitle(f"loss per position; mean, 95% interval, {n} seeds", fontsize=8, x=0.3)
    return plotting.save(fig, table_dir / "per_position")


def grad_diagnostics(table_dir: Path) -> list[Path]:
    """Off-diagonal vs myopic gradient over training (vanilla runs), one point per family."""
    diag = read_rows(table_dir / "grad_diagnostics.csv")
    fig, axes = plotting.figure(ncols=2)
    shown = {}   # one point per family: Wu's p = 1, the most fillers, the widest pairs/text model
    for r in diag:
        key = {"wu": r["p"], "mult": r["fillers"]}.get(r["family"], r["params"])
        if r["family"] not in shown or key > shown[r["family"]][0]:
            shown[r["family"]] = (key, r["point"])
    for family, (_, point) in sorted(shown.items()):
        for ax, metric in zip(axes[0], ("offdiag_ratio", "offdiag_cos")):
            rows = select(diag, family=family, point=point, metric=metric)
            plotting.band_rows(ax, rows, "step", f"{family} {point}", shift=1, **MARK)
    for ax, ylab in zip(axes[0], ("|g_offdiag| / |g_myopic|", "cos(g_offdiag, g_myopic)")):
        plotting.log_x(ax)
        ax.set_xlabel("step + 1")
        ax.set_ylabel(ylab)
    axes[0, 0].set_yscale("log")
    axes[0, 1].set_ylim(-1.05, 1.05)
    plotting.legend(axes[0, 0], fontsize=5)
    return plotting.save(fig, table_dir / "grad_diagnostics")


def probe_r2(table_dir: Path) -> list[Path]:
    """Probe R^2 of Wu's pre-cached feature by layer."""
    probes = read_rows(table_dir / "probes.csv")
    fig, axes = plotting.figure()
    for arm in ("vanilla", "myopic"):
        plotting.band_rows(axes[0, 0], select(probes, arm=arm), "layer", arm, **MARK)
    axes[0, 0].set_xlabel("layer (0 = embedding, i = after block i)")
    axes[0, 0].set_ylabel("probe R^2 of sin(freq x_n)")
    plotting.legend(axes[0, 0])
    n = min((r["n"] for r in probes), default=0)
    fig.suptitle(f"D_1 probe; mean, 95% interval, {n} seeds", fontsize=8)
    return plotting.save(fig, table_dir / "probe_r2")
