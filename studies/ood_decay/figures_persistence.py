"""Part 3's figure, from persistence.csv and persistence_summary.csv alone: one column per
factor, the base cell as each column's first level."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from studies.ood_decay.persistence import FACTORS
from toymodels import plotting
from toymodels.tables import select

# what the base cell is in each factor's own terms (the first tick of its column)
TITLES = {"size": "model size (lr tuned)", "extra": "phase-1 steps past criterion", "lr2": "phase-2 lr (AdamW)",
          "sgd": "phase 2: SGD lr", "replay": "replay fraction of X", "wd_data": "weight decay, with data",
          "wd_only": "weight decay, no data"}


def base_label(factor: str, base: dict) -> str:
    return {"size": base["size"], "extra": "0", "lr2": f"{base['lr2']:g}", "sgd": f"AdamW {base['lr2']:g}",
            "replay": "0", "wd_data": "0", "wd_only": "0 (with data)"}[factor]


def _levels(per_seed, factor, base: dict):
    """The factor's levels with the base cell in its place (sizes by parameter count, numbers
    ascending; SGD's column starts with the base's AdamW)."""
    rows = [r for r in per_seed if r["factor"] == factor]
    if factor == "sgd":
        return ["base"] + sorted({r["level"] for r in rows}, key=float)
    if factor == "size":
        params = {r["level"]: r["params"] for r in rows} | {"base": base["params"]}
        return sorted(params, key=params.get)
    at = {"lr2": base["lr2"]}.get(factor, 0.0)
    return sorted({r["level"] for r in rows} | {"base"}, key=lambda lv: at if lv == "base" else float(lv))


def figure(tables, d: Path) -> list[Path]:
    per_seed, summary = tables.get("persistence", []), tables.get("persistence_summary", [])
    base = [r for r in per_seed if r["factor"] == "base"]
    factors = [f for f in FACTORS if any(r["factor"] == f for r in per_seed)]
    if not base or not factors:
        return []
    fig, axes = plotting.figure(ncols=len(factors), nrows=3, width=2.3, height=2.1)
    window = max(r["window"] for r in per_seed)
    rng = np.random.default_rng(0)
    for j, factor in enumerate(factors):
        levels = _levels(per_seed, factor, base[0])
        for i, level in enumerate(levels):
            rows = base if level == "base" else [r for r in per_seed if r["factor"] == factor and r["level"] == level]
            factor_of = "base" if level == "base" else factor
            jitter = i + rng.uniform(-0.15, 0.15, len(rows))
            for ax, q in ((axes[0, j], "half_life_steps"), (axes[1, j], "half_life_displacement")):
                for x, r in zip(jitter, rows):
                    ax.plot(x, max(r[q], 0.5) if q == "half_life_steps" else r[q], "^" if r["censored"] else "o",
                            mfc="none" if r["censored"] else "C0", mec="C0", ms=3.5)
            km = select(summary, factor=factor_of, level=level, quantity="km_median_half_life_steps")
            if km and np.isfinite(km[0]["mean"]):
                axes[0, j].plot([i - 0.3, i + 0.3], [max(km[0]["mean"], 0.5)] * 2, color="k", lw=1.2)
            for q, color, label in (("final_exact", "C3", "X (trained pairs), end"),
                                     ("kept_exact", "0.4", "kept languages (held-out pairs), end")):
                sel = select(summary, factor=factor_of, level=level, quantity=q)
                if sel:
                    plotting.errorbar_rows(axes[2, j], [i + (0.12 if q == "kept_exact" else -0.12)], sel,
                                           color=color, fmt="o", ms=3, label=label if i == 0 else None)
        ticks = [base_label(factor, base[0]) if lv == "base" else lv for lv in levels]
        for ax in axes[:, j]:
            ax.set_xticks(range(len(levels)), ticks, rotation=45, fontsize=6)
            ax.set_xlim(-0.5, len(levels) - 0.5)
        axes[0, j].set_yscale("log")
        axes[0, j].axhline(window, color="0.6", lw=0.6, ls=":")
        axes[0, j].set_title(TITLES[factor], fontsize=7)
        axes[2, j].set_ylim(-0.02, 1.02)
        for q, ls, label in (("never_exact", ":", "never saw X (part 2)"),
                             ("template_exact", "-.", "template + constant")):
            floor = select(tables.get("sharing_summary", []), arm=base[0].get("arm"), sharing=base[0].get("sharing"),
                           quantity=q)
            if floor:   # the base cell's floors, measured by part 2 in the same arm and sharing value
                axes[2, j].axhline(floor[0]["mean"], color="k", lw=0.7, ls=ls, label=label if j == 0 else None)
    axes[0, 0].set_ylabel("half-life (steps)\nopen ^: censored")
    axes[1, 0].set_ylabel("half-life\n(||theta - theta_drop||)")
    axes[2, 0].set_ylabel("exact match\nmean, 95% interval")
    plotting.legend(axes[2, 0], fontsize=5)
    fig.suptitle("what makes a dropped X persist: one factor at a time (points: seeds; bar: Kaplan-Meier median)")
    return plotting.save(fig, d / "persistence")
