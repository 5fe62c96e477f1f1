"""Part 2, cross-model activation patching: where is X lost in the dropped model?

For every sharing cell (arm, sharing, seed), the residual stream at one point (after the
embedding, after attention, after the MLP: every position) is taken from one model and
put into another, which runs on from there; X's exact match on its trained pairs (and on
its held-out pairs) is read from the receiving model's output:
  pre_into_drop    the dropped model's later layers on the pre-drop model's stream: high
                   where everything after the point still computes X (the damage is before it)
  drop_into_pre    the pre-drop model's later layers on the dropped model's stream: low where
                   the dropped stream at that point has lost what X needs
  pre_into_never   the control: a model that never saw X, on the pre-drop stream
  pre_into_early,  the same two swaps with the drop run's checkpoint ``early_window`` steps
  early_into_pre   after the drop (when the preset has one): streams that have had little time
                   to drift apart, so a low score there locates a loss rather than drift
The last point (after the MLP) leaves only the final norm and unembedding to the receiver:
pre_into_drop there reads "is the dropped readout intact?". No training; each cell is an
AnalysisCache entry.
"""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from studies.ood_decay import sharing
from studies.ood_decay.presets import Sharing
from toymodels import plotting
from toymodels.analyses import AnalysisCache
from toymodels.analysis.activations import default_layers
from toymodels.analysis.stats import aggregate
from toymodels.hooks import patch, run_with_cache, run_with_interventions
from toymodels.runspec import RunSpec
from toymodels.store import load_model
from toymodels.tasks.base import metrics

CACHE = "patching"
DIRECTIONS = {"pre_into_drop": ("pre", "drop"), "drop_into_pre": ("drop", "pre"), "pre_into_never": ("pre", "never"),
              "pre_into_early": ("pre", "early"), "early_into_pre": ("early", "pre")}
SPLITS = {"train": "trained pairs", "eval": "held-out pairs"}


@functools.lru_cache(maxsize=16)
def _programs(graphdef, points: tuple[str, ...]):
    @jax.jit
    def cache(state, inputs):
        out, acts = run_with_cache(nnx.merge(graphdef, state), inputs, points)
        return out, acts

    @functools.partial(jax.jit, static_argnums=3)
    def patched(state, inputs, value, point):
        return run_with_interventions(nnx.merge(graphdef, state), inputs, {point: patch(value)})
    return cache, patched


def _exact(outputs, batch) -> float:
    return float(metrics(outputs, batch, "xent")["exact"])


def cell_rows(S: Sharing, out: Path, by_id: dict[str, RunSpec], arm: str, s: float, seed: int) -> list[dict]:
    tasks = sharing.arm_tasks(arm, s, S.n_languages)
    task = dict(tasks)[tasks[-2][0]]
    prefix = f"sharing_{arm}_s{s:g}_seed{seed}"
    models = {role: load_model(out, by_id[f"{prefix}_{role}"]) for role in _roles(by_id, prefix)}
    points = tuple(default_layers(models["pre"]))
    split = {role: nnx.split(m) for role, m in models.items()}
    rows = []
    for name in SPLITS:
        batch = task.full_batch(name)
        outs, acts = {}, {}
        for role, (graphdef, state) in split.items():
            outs[role], acts[role] = _programs(graphdef, points)[0](state, batch.inputs)
        base = {role: _exact(o, batch) for role, o in outs.items()}
        for direction, (src, dst) in DIRECTIONS.items():
            if src not in split or dst not in split:
                continue
            graphdef, state = split[dst]
            for i, point in enumerate(points):
                o = _programs(graphdef, points)[1](state, batch.inputs, acts[src][point], point)
                rows.append(dict(arm=arm, sharing=s, seed=seed, pairs=name, direction=direction, point=point,
                                 point_index=i, exact=_exact(o, batch), source_exact=base[src],
                                 receiver_exact=base[dst]))
    return rows


def _roles(by_id: dict[str, RunSpec], prefix: str) -> tuple[str, ...]:
    """The cell's models patching reads: pre, drop, never, and early where the preset has it."""
    return ("pre", "drop", "never") + (("early",) if f"{prefix}_early" in by_id else ())


def measure(S: Sharing, out: Path, specs: list[RunSpec]) -> None:
    """Every cell's rows, cached (valid for the three runs' configs)."""
    by_id = {s.run_id: s for s in specs}
    cache = AnalysisCache(out, CACHE)
    for arm in S.arms:
        for s in S.sharing:
            for seed in range(S.seeds):
                prefix = f"sharing_{arm}_s{s:g}_seed{seed}"
                config = [by_id[f"{prefix}_{r}"].config() for r in _roles(by_id, prefix)]
                cache.rows(f"{prefix}", config, lambda a=arm, v=s, k=seed: cell_rows(S, out, by_id, a, v, k))


def tables(out: Path) -> dict[str, list[dict]]:
    rows = AnalysisCache(out, CACHE).all_rows()
    if not rows:
        return {}
    long = [dict(arm=r["arm"], sharing=r["sharing"], pairs=r["pairs"], direction=r["direction"], point=r["point"],
                 point_index=r["point_index"], quantity=q, value=r[q]) for r in rows
            for q in ("exact", "source_exact", "receiver_exact")]
    summary = aggregate(long, ("arm", "sharing", "pairs", "direction", "point_index", "point", "quantity"),
                        bounds=(0.0, 1.0), points=True)
    return {"patching": rows, "patching_summary": summary}


FIGURE_SHARING = (0.5, 1.0)   # the figure's sharing values (every value is in the table)


def figure(summary: list[dict], d: Path) -> list[Path]:
    """X's exact match (trained pairs) after patching vs the point patched: one panel per
    (sharing, arm) at sharing 0.5 and 1, one line per direction (mean) and every seed."""

    arms = [a for a in sharing.ARMS if any(r["arm"] == a for r in summary)]
    values = [v for v in FIGURE_SHARING if any(r["sharing"] == v for r in summary)] or \
        sorted({r["sharing"] for r in summary})[-1:]
    fig, axes = plotting.figure(ncols=len(arms), nrows=len(values), width=2.8, height=2.2)
    colors = {"pre_into_drop": "C0", "drop_into_pre": "C3", "pre_into_never": "0.5", "pre_into_early": "C2",
              "early_into_pre": "C1"}
    for row, s in enumerate(values):
        for ax, arm in zip(axes[row], arms):
            for k, (direction, color) in enumerate(colors.items()):
                sel = sorted((r for r in summary if (r["arm"], r["sharing"], r["pairs"], r["direction"], r["quantity"])
                              == (arm, s, "train", direction, "exact")), key=lambda r: r["point_index"])
                if not sel:
                    continue
                x = np.array([r["point_index"] for r in sel]) + (k - 2) * 0.06
                ax.plot(x, [r["mean"] for r in sel], "-", color=color, label=f"{direction} (n={sel[0]['n']})")
                for xi, r in zip(x, sel):
                    pts = plotting.seed_values(r)
                    ax.plot([xi] * len(pts), pts, "o", ms=2, color=color, alpha=0.6)
            names = sorted({(r["point_index"], r["point"].split(".")[-1]) for r in summary if r["arm"] == arm})
            ax.set_xticks([i for i, _ in names], [n for _, n in names], fontsize=7)
            ax.set_ylim(-0.03, 1.03)
            ax.set_title(f"{arm}, sharing {s:g}", fontsize=8)
        axes[row, 0].set_ylabel("X exact (trained pairs)", fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("residual point patched")
    plotting.legend(axes[0, -1], fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1.0))   # beside, not on, data
    fig.suptitle("cross-model patching: line = mean, points = seeds", fontsize=8)
    return plotting.save(fig, d / "patching")
