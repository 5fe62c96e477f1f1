"""Quickstart study: learning curves of a small model on two tasks, over seeds.

The smallest complete study, and the template for new ones: presets, the grid,
the run, a summary table, figures drawn from that table alone.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from studies.common import study_main
from toymodels import plotting
from toymodels.analysis.stats import aggregate
from toymodels.model import TransformerConfig
from toymodels.results import read_rows, write_rows
from toymodels.sweep import RunSpec, load_rows, run_sweep
from toymodels.tasks import make_task
from toymodels.train import TrainConfig

NAME = "quickstart"
PRESETS = {  # steps, seeds
    "smoke": dict(steps=300, seeds=3),
    "paper": dict(steps=3000, seeds=5),
}


def specs(preset: str) -> list[RunSpec]:
    p = PRESETS[preset]
    tasks = (("markov", make_task("markov", vocab_size=16, length=16)),
             ("sort", make_task("sort", length=6, n_symbols=8)))
    model = TransformerConfig(n_layers=2, d_model=64, n_heads=4, vocab_size=16, max_seq_len=16)
    return [RunSpec(f"seed{s}", model,
                    TrainConfig(steps=p["steps"], batch_size=64, lr=3e-3, weight_decay=0.01, seed=s,
                                warmup_steps=p["steps"] // 10, lr_schedule="cosine", n_evals=15,
                                eval_spacing="log"), tasks)
            for s in range(p["seeds"])]


def run(preset: str, out: Path, progress: bool = True) -> None:
    run_sweep(specs(preset), out, progress=progress)


def summarize(out: Path, table_dir: Path) -> None:
    rows = [r for r in load_rows(out) if r["task"] != "train"]
    write_rows(table_dir / "curves.csv", aggregate(rows, ("task", "metric", "step")))


def figures(table_dir: Path) -> list[Path]:
    rows = read_rows(table_dir / "curves.csv")
    fig, axes = plotting.figure(ncols=2)
    for ax, metric in zip(axes[0], ("loss", "acc")):
        for task in sorted({r["task"] for r in rows}):
            sel = sorted((r for r in rows if r["task"] == task and r["metric"] == metric), key=lambda r: r["step"])
            x = np.asarray([r["step"] + 1 for r in sel])   # log axis: step 0 sits at 1
            plotting.band(ax, x, *(np.asarray([r[k] for r in sel]) for k in ("mean", "lo", "hi")),
                          n=sel[0]["n"], label=task)
        ax.set_xscale("log")
        ax.set_xlabel("step + 1")
        ax.set_ylabel(f"held-out {metric}")
    axes[0, 0].legend()
    fig.suptitle("mean and 95% t-interval over seeds")
    return plotting.save(fig, table_dir / "curves")


if __name__ == "__main__":
    study_main(sys.modules[__name__])
