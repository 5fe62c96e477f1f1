"""Quickstart study: learning curves of a small model on two tasks, over seeds.

The smallest complete study, and the template for new ones: presets, the grid,
the run, a summary table, figures drawn from that table alone.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from toymodels import plotting
from toymodels.analysis.stats import aggregate, bounds_by
from toymodels.model import TransformerConfig
from toymodels.results import read_rows, write_rows
from toymodels.store import load_rows
from toymodels.runspec import RunSpec
from toymodels.sweep import run_sweep
from toymodels.tables import held_out, select
from toymodels.tasks import make_task
from toymodels.trainconfig import TrainConfig

NAME = "quickstart"


@dataclasses.dataclass(frozen=True)
class Preset:
    steps: int
    seeds: int


PRESETS = {"smoke": Preset(steps=300, seeds=3), "paper": Preset(steps=3000, seeds=5)}


def specs(P: Preset) -> list[RunSpec]:
    tasks = (("markov", make_task("markov", vocab_size=16, length=16)),
             ("sort", make_task("sort", length=6, n_symbols=8)))
    model = TransformerConfig(n_layers=2, d_model=64, n_heads=4, vocab_size=16, max_seq_len=16)
    return [RunSpec(f"seed{s}", model,
                    TrainConfig(steps=P.steps, batch_size=64, lr=3e-3, weight_decay=0.01, seed=s,
                                warmup_steps=P.steps // 10, lr_schedule="cosine", n_evals=15,
                                eval_spacing="log"), tasks)
            for s in range(P.seeds)]


def run(P: Preset, out: Path, progress: bool = True) -> None:
    run_sweep(specs(P), out, progress=progress)


def summarize(out: Path, table_dir: Path) -> None:
    write_rows(table_dir / "curves.csv", aggregate(held_out(load_rows(out)), ("task", "metric", "step"),
                                                   bounds=bounds_by("metric"), points=True))


def figures(table_dir: Path) -> list[Path]:
    rows = read_rows(table_dir / "curves.csv")
    fig, axes = plotting.figure(ncols=2)
    for ax, metric in zip(axes[0], ("loss", "acc")):
        for task in sorted({r["task"] for r in rows}):
            sel = select(rows, task=task, metric=metric)
            x = np.asarray([r["step"] + 1 for r in sorted(sel, key=lambda r: r["step"])])   # log axis: 0 at 1
            plotting.band_rows(ax, sel, "step", label=task, x=x)
        ax.set_xscale("log")
        ax.set_xlabel("step + 1")
        ax.set_ylabel(f"held-out {metric}")
    axes[0, 0].legend()
    fig.suptitle("mean and 95% interval over seeds")
    return plotting.save(fig, table_dir / "curves")
