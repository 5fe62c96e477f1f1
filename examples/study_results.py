"""Load a study's results and trained models from its folder, and draw one figure.

    python examples/study_results.py [OUT_DIR]

Trains a shortened quickstart study into OUT_DIR (default results/examples/quickstart;
a rerun finds the runs complete and trains nothing), then reads it back as any study's
folder is read: tidy metric rows, a bounded 95 % interval over seeds, and the trained
models themselves, whose held-out accuracy is recomputed from the weights. Under a
minute on a laptop CPU.
"""

import dataclasses
import sys
from pathlib import Path

import jax
import numpy as np

from studies import quickstart
from toymodels import plotting, store
from toymodels.analysis.stats import aggregate, bounds_by
from toymodels.tables import final_rows, held_out, select

out = Path(sys.argv[1] if len(sys.argv) > 1 else "results/examples/quickstart")
plotting.use_file_backend()

# 1. The study: a preset shortened for the example, trained (or resumed) into `out`.
P = dataclasses.replace(quickstart.PRESETS["smoke"], steps=200, seeds=3)
specs = quickstart.specs(P)
quickstart.run(P, out, progress=False)

# 2. Rows: one per (run, step, task, metric), as every study writes them.
rows = held_out(store.load_rows(out))
final = aggregate(final_rows(rows), ("task", "metric"), bounds=bounds_by("metric"), points=True)
for r in select(final, metric="acc"):
    print(f"{r['task']}: final held-out accuracy {r['mean']:.3f} [{r['lo']:.3f}, {r['hi']:.3f}], n={r['n']}")

# 3. Models: the trained weights of every run, as ordinary toymodels Transformers.
models = store.load_models(out, specs)
sort_task = dict(specs[0].tasks)["sort"]
batch = sort_task.sample(jax.random.key(123), 256, split="eval")
for spec, model in zip(specs, models):
    pred = np.asarray(model(batch.inputs)).argmax(-1)
    mask = np.asarray(batch.mask) > 0
    acc = (pred == np.asarray(batch.targets))[mask].mean()
    print(f"{spec.run_id}: sort accuracy recomputed from the weights {acc:.3f}")

# 4. One figure from the rows: held-out sort accuracy per seed, with the mean over seeds.
fig, axes = plotting.figure()
ax = axes[0, 0]
curves = select(rows, task="sort", metric="acc")
for run_id in sorted({r["run"] for r in curves}):
    pts = sorted((r["step"], r["value"]) for r in curves if r["run"] == run_id)
    ax.plot(*zip(*pts), color="0.7", lw=1)
agg = aggregate(curves, ("metric", "step"), bounds=bounds_by("metric"))   # accuracy stays in [0, 1]
plotting.band_rows(ax, agg, "step", label="mean, 95% interval")
ax.set_xlabel("step")
ax.set_ylabel("held-out sort accuracy")
ax.legend()
print("wrote", plotting.save(fig, out / "figures" / "sort_accuracy"))
