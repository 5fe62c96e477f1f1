"""Figures, drawn from the summary tables alone: one function per figure."""

from __future__ import annotations

from pathlib import Path

from studies.myopia.presets import ARMS, WU_FREQ, WU_LENGTH
from toymodels import plotting
from toymodels.results import read_rows
from toymodels.tables import select

MARK = dict(marker="o", ms=3)   # every curve: a line through marked points


def figures(table_dir: Path) -> list[Path]:
    final = read_rows(table_dir / "final.csv")
    seeds = f"mean and 95% interval over {min(r['n'] for r in final)} seeds"
    return (wu_loss_vs_p(table_dir, final, seeds) + mult_exact_vs_fillers(table_dir, final, seeds)
            + gap_vs_size_and_length(table_dir, seeds) + per_position(table_dir) + grad_diagnostics(table_dir)
            + probe_r2(table_dir))


def wu_loss_vs_p(table_dir: Path, final: list[dict], seeds: str) -> list[Path]:
    """Task 1: loss vs p, loss / p, and the beta blend at p = 1."""
    fig, axes = plotting.figure(ncols=3)
    for arm in ("vanilla", "myopic"):
        rows = select(final, family="wu", arm=arm, lr_factor=1.0, metric="loss")
        plotting.band_rows(axes[0, 0], rows, "p", arm, **MARK)
        plotting.band_rows(axes[0, 1], rows, "p", arm, scale=lambda r: 1.0 / r["p"], **MARK)
    p1 = dict(family="wu", point="p1", lr_factor=1.0, metric="loss")
    beta = ([dict(r, beta=0.0) for r in select(final, arm="myopic", **p1)]
            + select(final, family="wu", arm="beta", metric="loss")
            + [dict(r, beta=1.0) for r in select(final, arm="vanilla", **p1)])   # vanilla is beta = 1
    plotting.band_rows(axes[0, 2], beta, "beta", "myopic, beta blend", **MARK)
    for ax, ylab in zip(axes[0], ("held-out Huber loss", "loss / p", "held-out Huber loss")):
        ax.set_ylabel(ylab)
    for ax in axes[0, :2]:
        ax.set_xscale("log")
        ax.set_xlabel("p (fraction of sum targets)")
    axes[0, 2].set_xlabel("beta (0 = myopic, 1 = vanilla)")
    plotting.legend(axes[0, 0])
    fig.suptitle(f"Wu et al.'s task D_p (freq {WU_FREQ:g}, T={WU_LENGTH}); {seeds}")
    return plotting.save(fig, table_dir / "wu_loss_vs_p")


def mult_exact_vs_fillers(table_dir: Path, final: list[dict], seeds: str) -> list[Path]:
    """Task 2: exact match vs filler tokens."""
    fig, axes = plotting.figure()
    for arm in ("vanilla", "myopic"):
        plotting.band_rows(axes[0, 0], select(final, family="mult", arm=arm, lr_factor=1.0, metric="exact"),
                           "fillers", arm, **MARK)
    axes[0, 0].set_xlabel("filler tokens F")
    axes[0, 0].set_ylabel("held-out exact match")
    plotting.legend(axes[0, 0])
    setting = next((r["point"].split("-F")[0] for r in final if r["family"] == "mult"), "?b?")  # "3x3b4"
    size, base = setting.split("b")
    fig.suptitle(f"reversed {size}-digit multiplication in base {base}; {seeds}", fontsize=8)
    return plotting.save(fig, table_dir / "mult_exact_vs_fillers")


def gap_vs_size_and_length(table_dir: Path, seeds: str) -> list[Path]:
    """Tasks 3-4: the gap (and the local bonus) vs parameters and vs context length."""
    gaps = read_rows(table_dir / "gaps.csv")
    fig, axes = plotting.figure(ncols=2, nrows=2)
    for row, family in enumerate(("pairs", "text")):
        g = select(gaps, family=family, quantity="gap")
        if not g:
            continue
        ref_len = min(r["length"] for r in g)
        by_size = [r for r in g if r["length"] == ref_len]
        plotting.band_rows(axes[row, 0], by_size, "params", "myopia gap", **MARK)
        plotting.band_rows(axes[row, 0], select(gaps, family=family, quantity="local_bonus", length=ref_len),
                           "params", "local myopia bonus", **MARK)
        axes[row, 0].set_xscale("log")
        axes[row, 0].set_xlabel("parameters")
        ref = {(r["n_layers"], r["d_model"]) for r in g if r["length"] != ref_len}
        by_len = [r for r in g if (r["n_layers"], r["d_model"]) in ref]
        plotting.band_rows(axes[row, 1], by_len, "length", "myopia gap", **MARK)
        axes[row, 1].set_xlabel("context length (tokens)")
        for ax in axes[row]:
            ax.axhline(0.0, color="0.6", lw=0.6)
            ax.set_ylabel(f"{family}: nats/token")
    plotting.legend(axes[0, 0], fontsize=6)
    fig.suptitle(f"myopia gap L_myopic - L_vanilla (adjacent_pair, stdlib text); {seeds}", fontsize=8)
    return plotting.save(fig, table_dir / "gap_vs_size_and_length")


def per_position(table_dir: Path) -> list[Path]:
    """Held-out loss at every position, per arm, at the reference points."""
    pos = read_rows(table_dir / "positions.csv")
    families = sorted({r["family"] for r in pos})
    fig, axes = plotting.figure(ncols=len(families))
    for ax, family in zip(axes[0], families):
        for arm in ARMS:
            plotting.band_rows(ax, select(pos, family=family, arm=arm), "position", arm, **MARK)
        ax.set_title(family, fontsize=8)
        ax.set_xlabel("position")
    axes[0, 0].set_ylabel("held-out loss")
    plotting.legend(axes[0, 0], fontsize=6)
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
        ax.set_xscale("log")
        ax.set_xlabel("step + 1")
        ax.set_ylabel(ylab)
    axes[0, 0].set_yscale("log")
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
    return plotting.save(fig, table_dir / "probe_r2")
