"""Figures, drawn from the summary tables alone: one function per figure."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from studies.elicitation.grid import NULLS, PROMPTED, TARGETS, VARIANT_PAIRS
from studies.elicitation.presets import FRAGILITY_SCALE, THRESHOLD
from toymodels import plotting
from toymodels.results import read_rows
from toymodels.tables import select

MARK = dict(marker="o", ms=3)
GREY = {"random": "0.45", "shuffled": "0.72"}   # the nulls


def _kinds(target: str) -> list[str]:
    return [k for k, ts in PROMPTED.items() if target in ts and k not in NULLS] + list(NULLS)


def _pairs() -> list[tuple[str, str]]:
    return [(k, t) for t in TARGETS for k in _kinds(t)]
TITLES = {"cue": "reverse, cue removed", "reverse": "reverse (dropped / never seen)",
          "resp": "backdoor behaviour, no trigger", "exec": "execution fine-tuning target",
          "wrong": "uncued behaviour (metatokens)"}


def figures(table_dir: Path) -> list[Path]:
    return information_curves(table_dir) + fragility(table_dir) + training(table_dir)


def _symlog(ax, ticks=()):
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xlabel("prompt tokens")
    if ticks:
        ax.set_xticks(sorted(ticks), [f"{t:g}" for t in sorted(ticks)])


def information_curves(table_dir: Path) -> list[Path]:
    """Acc vs prompt length per target: each model's best soft prompt (solid), the hard-prompt
    search (dashed), the nulls (grey: random-init dark, shuffled light), the threshold (dotted)."""
    curves = read_rows(table_dir / "curves.csv")
    ticks = {r["n_tokens"] for r in curves}
    fig, axes = plotting.grid(len(TARGETS), ncols=3, width=3.0, height=2.4)
    for ax, t in zip(axes, TARGETS):
        drawn = False
        for k in _kinds(t):
            soft = select(curves, kind=k, target=t, method="soft")
            if not soft:
                continue
            color = GREY.get(k)
            line = plotting.band_rows(ax, soft, "n_tokens", k, color=color, **MARK)
            hard = select(curves, kind=k, target=t, method="hard")
            if hard:
                hard = sorted(hard, key=lambda r: r["n_tokens"])
                ax.plot([r["n_tokens"] for r in hard], [r["mean"] for r in hard], ls="--", marker="x", ms=3,
                        lw=0.8, color=line.get_color())
            drawn = True
        if not drawn:
            plotting.empty(ax, t)
        ax.axhline(THRESHOLD, color="k", lw=0.5, ls=":")
        _symlog(ax, ticks)
        ax.set_ylim(-0.03, 1.03)
        ax.set_ylabel("acc (best soft prompt)")
        ax.set_title(TITLES[t] + "  (--x hard prompt)", fontsize=7)
        plotting.legend(ax, fontsize=5)
    return plotting.save(fig, table_dir / "information_curves.png")


def _need_x(row) -> float:
    return float(row["median"])


def fragility(table_dir: Path) -> list[Path]:
    """(a) acc drop under perturbation vs prompt length; (b) drop vs tokens needed per pair;
    (c) the norm bound and training noise on the two variant pairs."""
    frag = read_rows(table_dir / "fragility.csv")
    need = read_rows(table_dir / "tokens_needed.csv")
    q = f"drop_{FRAGILITY_SCALE:g}"
    fig, axes = plotting.figure(ncols=3, width=3.0, height=2.5)
    ax = axes[0, 0]
    for k, t in _pairs():
        rows = select(frag, kind=k, target=t, quantity=q, norm_bound=0.0, noise=0.0)
        rows = [r for r in rows if r["n_tokens"] > 0]
        if rows:
            plotting.band_rows(ax, rows, "n_tokens", f"{k}/{t}", color=GREY.get(k), lw=0.8, **MARK)
    _symlog(ax, {r["n_tokens"] for r in frag if r["n_tokens"] > 0})
    ax.set_ylabel(f"acc drop at perturbation {FRAGILITY_SCALE:g} x norm")
    ax.set_title("(a) fragility vs prompt length", fontsize=8)
    plotting.legend(ax, fontsize=4, ncol=2)
    ax = axes[0, 1]
    longest = max((r["n_tokens"] for r in frag), default=0)
    xs, ys, labels = [], [], []
    for r in need:
        f = select(frag, kind=r["kind"], target=r["target"], quantity=q, norm_bound=0.0, noise=0.0,
                   n_tokens=longest)
        if f:
            xs.append(_need_x(r))
            ys.append(f[0]["mean"])
            labels.append(f"{r['kind']}/{r['target']}")
    top = max([x for x in xs if math.isfinite(x)], default=1) * 2
    xs = [x if math.isfinite(x) else top for x in xs]
    for x, y, lab in zip(xs, ys, labels):
        ax.scatter([x], [y], s=12, color=GREY.get(lab.split("/")[0]))
        ax.annotate(lab, (x, y), fontsize=4)
    _symlog(ax)
    ax.set_xlabel(f"tokens to acc >= {THRESHOLD:g} (median; right edge: not reached)")
    ax.set_ylabel(f"acc drop ({longest}-token prompt)")
    ax.set_title("(b) fragility vs information needed", fontsize=8)
    ax = axes[0, 2]
    variants = sorted({(r["norm_bound"], r["noise"]) for r in frag})
    width = 0.8 / max(len(variants), 1)
    for i, (b, z) in enumerate(variants):
        rows = [select(frag, kind=k, target=t, quantity=qq, norm_bound=b, noise=z, n_tokens=longest)
                for k, t in VARIANT_PAIRS for qq in ("acc", q)]
        if any(not r for r in rows):
            continue
        x = np.arange(len(rows)) + i * width
        plotting.errorbar_rows(ax, x, [r[0] for r in rows], fmt="o", ms=3, label=f"bound {b:g}, noise {z:g}")
    ax.set_xticks(np.arange(2 * len(VARIANT_PAIRS)) + 0.4 * (1 - 1 / max(len(variants), 1)))
    ax.set_xticklabels([f"{k}/{t}\n{'acc' if qq == 'acc' else 'drop'}" for k, t in VARIANT_PAIRS
                        for qq in ("acc", q)], fontsize=5)
    ax.set_title(f"(c) norm bound and noise ({longest} tokens)", fontsize=8)
    plotting.legend(ax, fontsize=5)
    return plotting.save(fig, table_dir / "fragility.png")


def training(table_dir: Path) -> list[Path]:
    """The models' training curves (their own data) and the prompts' training curves."""
    tr, pc = read_rows(table_dir / "training.csv"), read_rows(table_dir / "prompt_curves.csv")
    fig, axes = plotting.figure(ncols=2, width=3.4, height=2.5)
    ax = axes[0, 0]
    for k in sorted({r["kind"] for r in tr}):
        plotting.band_rows(ax, select(tr, kind=k, task="data"), "step", k, lw=0.8, **MARK)
    ax.set_xscale("symlog", linthresh=10)
    ax.set_xlabel("training step (of the model's last phase)")
    ax.set_ylabel("acc on its training data")
    ax.set_title("models", fontsize=8)
    plotting.legend(ax, fontsize=5)
    ax = axes[0, 1]
    longest = max((r["n_tokens"] for r in pc), default=0)
    for k, t in _pairs():
        rows = select(pc, kind=k, target=t, n_tokens=longest)
        if rows:
            plotting.band_rows(ax, rows, "step", f"{k}/{t}", lw=0.8, color=GREY.get(k))
    ax.set_xlabel("prompt training step")
    ax.set_ylabel("eval acc")
    ax.set_title(f"soft prompts ({longest} tokens)", fontsize=8)
    plotting.legend(ax, fontsize=4, ncol=2)
    return plotting.save(fig, table_dir / "training.png")
