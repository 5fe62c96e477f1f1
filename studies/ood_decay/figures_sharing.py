"""Part 2's figures, from the sharing tables alone (sharing_summary, sharing_survival, sharing_curves)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from studies.ood_decay import patching
from toymodels import plotting
from toymodels.tables import select

ARM_TITLES = {"same": "same: kept compute a+b", "interfere": "interfere: kept compute a+b+1",
              "two_task": "two_task: one kept task |a-b|"}


def figures(tables, d: Path) -> list[Path]:
    if not tables.get("sharing_summary"):
        return []
    return (fig_final(tables, d) + fig_survival(tables, d) + fig_curves(tables, d) + fig_ladder(tables, d)
            + (patching.figure(tables["patching_summary"], d) if tables.get("patching_summary") else []))


def _save(fig, axes, ylabel: str, title: str, path: Path) -> list[Path]:
    """The shared finish of every figure: y label, legend in the last panel, title, save."""
    axes[0, 0].set_ylabel(ylabel)
    plotting.legend(axes[0, -1], fontsize=6)
    fig.suptitle(title)
    return plotting.save(fig, path)


def _arms(rows):
    return [a for a in ARM_TITLES if any(r["arm"] == a for r in rows)]


def fig_final(tables, d) -> list[Path]:
    """X's exact match on its trained pairs vs sharing, per arm: at the drop, after the window,
    the run that kept X, and the floors (never saw X; template + best constant answer)."""
    rows = tables["sharing_summary"]
    arms = _arms(rows)
    fig, axes = plotting.figure(ncols=len(arms), width=3.2)
    lines = (("pre_exact", "at the drop (criterion)", "C0", "-"), ("final_exact", "end of window, dropped", "C3", "-"),
             ("joint_exact", "end of window, kept", "0.5", "--"), ("never_exact", "never saw X (floor)", "k", ":"))
    for ax, arm in zip(axes[0], arms):
        for q, label, color, ls in lines:
            plotting.band_rows(ax, select(rows, arm=arm, quantity=q), "sharing", label, color=color, ls=ls,
                               marker="o", ms=3)
        template = select(rows, arm=arm, quantity="template_exact")
        if template:
            ax.axhline(template[0]["mean"], color="k", lw=0.8, ls="-.", label="template + constant answer")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("sharing: X's tokens on kept ids")
        ax.set_title(ARM_TITLES[arm])
    return _save(fig, axes, "X exact match, trained pairs",
                 "X after the drop, by sharing; mean, 95% interval, per-seed points", d / "sharing_final")


def fig_survival(tables, d) -> list[Path]:
    """Kaplan-Meier fraction of seeds whose X keeps over half its exact match, vs steps since the
    drop; a curve that stays at 1 is censored by the window, not a measured half-life."""
    rows = tables["sharing_survival"]
    arms = _arms(rows)
    fig, axes = plotting.figure(ncols=len(arms), width=3.2)
    shares = sorted({r["sharing"] for r in rows})
    colors = plt.get_cmap("viridis")(np.linspace(0, 0.9, len(shares)))
    for ax, arm in zip(axes[0], arms):
        for s, c in zip(shares, colors):
            sel = sorted(select(rows, arm=arm, sharing=s), key=lambda r: r["step"])
            if sel:
                ax.step([r["step"] + 1 for r in sel], [r["surviving"] for r in sel], where="post", color=c,
                        label=f"sharing {s:g} (n={sel[0]['n']}, {sel[0]['n_censored']} censored)")
        ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("steps since drop + 1")
        ax.set_title(ARM_TITLES[arm])
        plotting.legend(ax, fontsize=5)
    axes[0, 0].set_ylabel("seeds with X above half")
    fig.suptitle("survival of X (Kaplan-Meier; censored at the end of the window)")
    return plotting.save(fig, d / "sharing_survival")


def fig_curves(tables, d) -> list[Path]:
    """X's exact match on its trained pairs vs steps since the drop, per arm and sharing value."""
    rows = tables.get("sharing_curves", [])
    arms = _arms(rows)
    if not arms:
        return []
    fig, axes = plotting.figure(ncols=len(arms), width=3.2)
    shares = sorted({r["sharing"] for r in rows})
    colors = plt.get_cmap("viridis")(np.linspace(0, 0.9, len(shares)))
    for ax, arm in zip(axes[0], arms):
        for s, c in zip(shares, colors):
            plotting.band_rows(ax, select(rows, arm=arm, sharing=s, role="drop"), "step", f"sharing {s:g}",
                               shift=1, color=c)
            plotting.band_rows(ax, select(rows, arm=arm, sharing=s, role="joint"), "step", None, shift=1,
                               color=c, ls="--", lw=0.7)
        ax.set_xscale("log")
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("steps since drop + 1")
        ax.set_title(ARM_TITLES[arm])
    return _save(fig, axes, "X exact match, trained pairs",
                 "decay of X after the drop (solid) and with X kept (dashed); mean, 95% interval", d / "sharing_curves")


def fig_ladder(tables, d) -> list[Path]:
    """X's exact match after retraining one rung alone (x: rungs by trainable parameters), from the
    dropped model (solid) and from the never-saw-X model (dotted), per arm and sharing value."""
    rows = [dict(r, arm=r["case_or_arm"]) for r in tables.get("ladder_summary", [])]
    arms = _arms(rows)
    if not arms:
        return []
    shares = sorted({r["sharing"] for r in rows})
    colors = plt.get_cmap("viridis")(np.linspace(0, 0.9, len(shares)))
    fig, axes = plotting.figure(ncols=len(arms), width=3.4)
    for ax, arm in zip(axes[0], arms):
        # the arm's rungs by trainable parameters (the two_task arm has a smaller vocabulary)
        rungs = sorted({(r["trainable_params"], r["rung"]) for r in rows if r["arm"] == arm})
        order = {rung: i for i, (_, rung) in enumerate(rungs)}
        for s, c in zip(shares, colors):
            for q, ls, label in (("recovered_exact", "-", f"dropped, sharing {s:g}"), ("never_exact", ":", None)):
                sel = select(rows, arm=arm, sharing=s, quantity=q)
                plotting.band_rows(ax, sel, "trainable_params", label, x=np.asarray(
                    [order[r["rung"]] for r in sorted(sel, key=lambda r: r["trainable_params"])], dtype=float),
                    color=c, ls=ls, marker="o", ms=3)
        ax.set_xticks(range(len(rungs)), [f"{rung}\n{n:,}" for n, rung in rungs], rotation=45, fontsize=6)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(ARM_TITLES[arm])
    return _save(fig, axes, "X exact match after the rung's budget",
                 "intervention ladder: retrain one rung on X alone; dotted: from never-saw-X", d / "ladder")
