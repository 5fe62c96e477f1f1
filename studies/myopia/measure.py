"""Post-training analyses, each cached per reference point (``AnalysisCache``: they resume
with the sweep and are recomputed when a run's config changes): the loss at every scored
position, and Wu et al.'s linear probe for the pre-cached feature."""

from __future__ import annotations

import functools
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from studies.myopia.grid import points, reference, run_id
from studies.myopia.presets import ARMS, Preset
from toymodels.analyses import AnalysisCache
from toymodels.analysis.losses import position_losses
from toymodels.analysis.similarity import linear_probe_r2
from toymodels.hooks import forward
from toymodels.runspec import RunSpec
from toymodels.store import load_models
from toymodels.train import Trainer

# what ``run`` writes of every analysis, as one table each, for the summary (out-relative)
POSITIONS = Path("analyses/positions.csv")
PROBES = Path("analyses/probes.csv")


def eval_batch(spec: RunSpec):
    """The run's held-out evaluation batch (the one its final metrics were measured on)."""
    return Trainer(spec.model, spec.train, dict(spec.tasks)).eval_sets()[spec.tasks[0][0]]


def position_points(P: Preset) -> list[tuple[str, str]]:
    """(family, point) where per-position losses are read: D_1, the reference text cell, Markov."""
    return [("wu", "p1"), ("text", reference(P, "text")), ("markov", points(P)[-1].point)]


def per_position_losses(P: Preset, out: Path, by_id: dict[str, RunSpec]) -> list[dict]:
    """Loss at every scored position of the eval set, per arm and seed, at the position points."""
    cache = AnalysisCache(out, "positions")
    rows = []
    for family, point in position_points(P):
        runs = [by_id[rid] for seed in range(P.seeds) for arm in ARMS
                if (rid := run_id(family, point, arm, 1.0, seed)) in by_id]
        rows += cache.rows(f"{family}-{point}", runs, functools.partial(_position_rows, out, runs))
    return rows


def _position_rows(out: Path, runs: list[RunSpec]) -> list[dict]:
    models = load_models(out, runs)
    batch = eval_batch(runs[0])
    loss_kind = runs[0].tasks[0][1].loss
    tags = [dict(s.tags) for s in runs]
    rows = []
    for seed in sorted({t["seed"] for t in tags}):
        arms = {t["arm"]: m for t, m in zip(tags, models) if t["seed"] == seed}
        # the frozen vanilla model's residual streams: the local arm's past; zeros: the bigram arm's
        names = tuple(f"blocks.{i}.resid_pre" for i in range(runs[0].model.n_layers))
        cache = forward(arms["vanilla"], batch.inputs, names)[1]
        teacher_past = jnp.stack([cache[n] for n in names])
        for arm, model in arms.items():
            past = {"bigram": jnp.zeros_like(teacher_past), "local": teacher_past}.get(arm)
            loss_T, w_T = position_losses(model, batch, loss_kind, past)
            rows += [dict(family=tags[0]["family"], point=tags[0]["point"], arm=arm, seed=seed, position=t,
                          value=float(loss_T[t])) for t in range(loss_T.shape[0]) if w_T[t] > 0]
    return rows


def wu_probes(P: Preset, out: Path, by_id: dict[str, RunSpec]) -> list[dict]:
    """Held-out R^2 of a linear probe for sin(freq x_n) at position n, per layer (Wu et al. 2024 Fig. 3)."""
    runs = [by_id[run_id("wu", "p1", arm, 1.0, seed)] for seed in range(P.seeds) for arm in ("vanilla", "myopic")]
    return AnalysisCache(out, "probes").rows("wu-p1", runs, functools.partial(_probe_rows, out, runs))


def _probe_rows(out: Path, runs: list[RunSpec]) -> list[dict]:
    batch = eval_batch(runs[0])
    target = np.asarray(runs[0].tasks[0][1].feature(batch.inputs)).reshape(-1)
    names = ("embed",) + tuple(f"blocks.{i}.resid_post" for i in range(runs[0].model.n_layers))
    rows = []
    for spec, model in zip(runs, load_models(out, runs)):
        tags = dict(spec.tags)
        cache = forward(model, batch.inputs, names)[1]
        for layer, name in enumerate(names):
            acts = np.asarray(cache[name]).reshape(target.shape[0], -1)
            rows.append(dict(arm=tags["arm"], seed=tags["seed"], layer=layer, name=name,
                             value=linear_probe_r2(acts, target)))
    return rows
