"""Post-training analyses, each cached (``AnalysisCache``: they resume with the sweep and are
recomputed when a run's config changes): the validation loss of every learning-rate grid
run and the rate each arm gets, the loss at every scored position, and Wu et al.'s linear
probe for the pre-cached feature."""

from __future__ import annotations

import dataclasses
import functools
from collections import defaultdict
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from studies.myopia.grid import reference, run_id
from studies.myopia.presets import ARMS, BASE_LR, LR_STEP, VAL_SEED, Preset
from toymodels.analyses import AnalysisCache
from toymodels.analysis.losses import position_losses
from toymodels.analysis.similarity import linear_probe_r2
from toymodels.hooks import forward
from toymodels.runspec import RunSpec
from toymodels.store import load_models
from toymodels.tasks.base import metrics
from toymodels.train import Trainer

# what ``run`` writes of every analysis, as one table each, for the summary (out-relative)
POSITIONS = Path("analyses/positions.csv")
PROBES = Path("analyses/probes.csv")
VAL = Path("analyses/lr_grid.csv")
CHOICE = Path("analyses/lr_choice.csv")


def eval_batch(spec: RunSpec, seed: int | None = None):
    """The run's held-out evaluation batch (the one its final metrics were measured on), or
    the batch of the same split drawn with another key (``seed``: the validation batch)."""
    train = spec.train if seed is None else dataclasses.replace(spec.train, eval_seed=seed)
    return Trainer(spec.model, train, dict(spec.tasks)).eval_sets()[spec.tasks[0][0]]


def validation_losses(out: Path, grid: list[RunSpec]) -> list[dict]:
    """One row per grid run: its final model's loss on the validation batch (the task's eval
    split, disjoint from training, drawn with VAL_SEED; the held-out metrics use another key)."""
    cache = AnalysisCache(out, "val")
    groups = defaultdict(list)
    for s in grid:
        t = dict(s.tags)
        groups[f"{t['family']}-lr{t['lr_factor']:.4g}"].append(s)
    return [r for key, runs in sorted(groups.items())
            for r in cache.rows(key, runs, functools.partial(_val_rows, out, runs))]


def _val_rows(out: Path, runs: list[RunSpec]) -> list[dict]:
    batch = eval_batch(runs[0], VAL_SEED)
    task = runs[0].tasks[0][1]
    rows = []
    for s, model in zip(runs, load_models(out, runs)):
        t = dict(s.tags)
        rows.append(dict(task=t["family"], point=t["point"], arm=t["arm"], lr=s.train.lr, lr_factor=t["lr_factor"],
                         seed=t["seed"], val_loss=float(metrics(model(batch.inputs), batch, task.loss)["loss"])))
    return rows


def choose(val: list[dict]) -> list[dict]:
    """Per (task, arm): the factor with the lowest mean validation loss over seeds, and whether it
    sits at an edge of the grid trained so far."""
    by = defaultdict(lambda: defaultdict(list))
    for r in val:
        by[(r["task"], r["arm"])][r["lr_factor"]].append(r["val_loss"])
    rows = []
    for (task, arm), per in sorted(by.items()):
        grid = sorted(per)
        best = min(grid, key=lambda f: float(np.mean(per[f])))
        rows.append(dict(task=task, arm=arm, lr_factor=best, lr=BASE_LR[task] * best,
                         val_loss=float(np.mean(per[best])), n=len(per[best]),
                         edge="low" if best == grid[0] else "high" if best == grid[-1] else "",
                         grid=" ".join(f"{f:.4g}" for f in grid)))
    return rows


def widen(factors: dict[tuple[str, str], tuple[float, ...]], choice: list[dict],
          start: dict[tuple[str, str], tuple[float, ...]], max_widen: int) -> dict[tuple[str, str], tuple[float, ...]]:
    """The grids with one more point beyond the edge where a (task, arm)'s best rate sits, up to
    ``max_widen`` points beyond that arm's starting grid (``start``) on each side."""
    out = dict(factors)
    for c in choice:
        key = (c["task"], c["arm"])
        grid, first = sorted(out[key]), start[key]
        if c["edge"] == "low" and grid[0] > min(first) / LR_STEP ** max_widen * 1.001:
            grid = [grid[0] / LR_STEP] + grid
        if c["edge"] == "high" and grid[-1] < max(first) * LR_STEP ** max_widen / 1.001:
            grid = grid + [grid[-1] * LR_STEP]
        out[key] = tuple(float(f"{f:.4g}") for f in grid)
    return out


def position_points(P: Preset) -> list[tuple[str, str]]:
    """(family, point) where per-position losses are read: D_1, the reference text cell, Markov."""
    return [(f, reference(P, f).point) for f in ("wu", "text", "markov")]


def arm_factor(chosen: dict[tuple[str, str], float], family: str, arm: str) -> float:
    """The lr factor a run of ``arm`` trained at: the myopic arm its own, every other vanilla's."""
    return chosen[(family, "myopic" if arm == "myopic" else "vanilla")]


def per_position_losses(P: Preset, out: Path, by_id: dict[str, RunSpec], chosen) -> list[dict]:
    """Loss at every scored position of the eval set, per arm and seed, at the position points."""
    cache = AnalysisCache(out, "positions")
    rows = []
    for family, point in position_points(P):
        runs = [by_id[rid] for seed in range(P.lr_seeds) for arm in ARMS
                if (rid := run_id(family, point, arm, arm_factor(chosen, family, arm), seed)) in by_id]
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


def wu_probes(P: Preset, out: Path, by_id: dict[str, RunSpec], chosen) -> list[dict]:
    """Held-out R^2 of a linear probe for sin(freq x_n) at position n, per layer (Wu et al. 2024 Fig. 3)."""
    point = reference(P, "wu").point
    runs = [by_id[run_id("wu", point, arm, arm_factor(chosen, "wu", arm), seed)]
            for seed in range(P.lr_seeds) for arm in ("vanilla", "myopic")]
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
