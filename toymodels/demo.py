"""Demo: train a small model on two tasks with 3 seeds as one vmapped program.

``python -m toymodels.demo [--out DIR] [--steps N]`` writes DIR/metrics.csv (tidy
rows), DIR/config.json (resolved configs + code version) and DIR/loss.png.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import sys

import numpy as np


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="results/demo")
    p.add_argument("--steps", type=int, default=600)
    a = p.parse_args(argv)

    from toymodels import enable_compilation_cache
    enable_compilation_cache()
    import jax

    from toymodels import plotting
    from toymodels.model import TransformerConfig
    from toymodels.results import code_version, train_rows, write_json, write_rows
    from toymodels.tasks import make_task
    from toymodels.train import TrainConfig, Trainer

    tasks = {"markov": make_task("markov", vocab_size=16, length=16),
             "sort": make_task("sort", length=6, n_symbols=8)}
    model = TransformerConfig(n_layers=2, d_model=64, n_heads=4, vocab_size=16, max_seq_len=16)
    train = TrainConfig(steps=a.steps, batch_size=64, lr=3e-3, weight_decay=0.01, warmup_steps=min(50, a.steps // 10),
                        lr_schedule="cosine", n_evals=12)
    trainer = Trainer(model, train, tasks)
    runs = trainer.runs(seeds=[0, 1, 2])
    res = trainer.train(runs)
    ids = [f"seed{s}" for s in np.asarray(runs.seed)]
    write_rows(f"{a.out}/metrics.csv", train_rows(res, runs, ids, train.batch_size * 16))
    write_json(f"{a.out}/config.json", {
        "model": dataclasses.asdict(model), "train": dataclasses.asdict(train),
        "tasks": {k: {"name": t.name, **dataclasses.asdict(t)} for k, t in tasks.items()},
        "seeds": [int(s) for s in np.asarray(runs.seed)], "command": " ".join(sys.argv),
        "code_version": code_version(), "jax": jax.__version__, "python": platform.python_version(),
        "device": jax.devices()[0].device_kind})

    fig, axes = plotting.figure(ncols=2)
    for ax, metric in zip(axes[0], ("loss", "acc")):
        for name in tasks:
            plotting.line_ci(ax, res.eval_steps, res.history[name][metric], label=name)
        ax.set_xlabel("step")
        ax.set_ylabel(f"eval {metric}")
    axes[0, 0].axhline(tasks["markov"].entropy_rate, color="0.5", ls=":", lw=1, label="markov floor")
    axes[0, 0].legend()
    fig.suptitle("held-out metrics: mean and 95% t-interval over seeds")
    paths = plotting.save(fig, f"{a.out}/loss")
    final = {n: res.history[n]["acc"][:, -1] for n in tasks}
    print(f"trained {runs.size} runs x {train.steps} steps in {res.seconds:.1f}s; final accuracy "
          + ", ".join(f"{n} {v.mean():.3f}" for n, v in final.items())
          + f"\nwrote {a.out}/metrics.csv, {a.out}/config.json, {', '.join(map(str, paths))}")


if __name__ == "__main__":
    main()
