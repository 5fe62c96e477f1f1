"""Summary tables of the backdoors study, and the stage-1 persistence winner.

Per seed, from each clean-phase run (the persistence curve; clean step 0 = end of insertion):
  asr_insert / asr_end   ASR (first answer token = the behaviour's, on triggered inputs) at
                         clean step 0 / at the end of the clean phase
  asr_auc                mean ASR over log(1 + clean step) across the clean phase (area under
                         the curve on a log axis, normalised: the persistence score the winner is
                         chosen by; it separates curves that never halve)
  half_life              clean steps until ASR first moves half-way from asr_insert to the
                         never-poisoned control's ASR (same trigger, size, seed); rows where it
                         is not reached within the window are left out of the mean and counted
                         in half_life_reached (n_runs = all seeds)
  clean_exact_*          exact match on clean inputs
  asr_floor              the never-poisoned control's ASR on the same triggered inputs
Intervals: t-intervals over seeds, on the logit scale for quantities in [0, 1], cut at 0 for
steps and counts (``toymodels.analysis.stats.aggregate``).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
from scipy import stats

from studies.backdoors.grid import Cell, base_cell, cells
from studies.backdoors.measure import detection_rows
from studies.backdoors.presets import Preset
from toymodels.analysis.decay import half_life_crossing
from toymodels.analysis.stats import aggregate, bounds_by
from toymodels.results import write_rows
from toymodels.store import load_rows
from toymodels.tables import index_runs

CELL_KEYS = ("stage", "axis", "cell", "trigger", "behaviour", "insert_steps", "per_batch", "fraction", "count",
             "density", "size", "params", "clean_lr")
UNIT = (0.0, 1.0)
QUANTITY_BOUNDS = {"asr_insert": UNIT, "asr_end": UNIT, "asr_auc": UNIT, "asr_floor": UNIT, "clean_exact_insert": UNIT,
                   "clean_exact_end": UNIT, "half_life": (0.0, math.inf), "half_life_reached": UNIT,
                   "relearn_steps": (0.0, math.inf), "relearn_reached": UNIT, "steps": (0.0, math.inf),
                   "train_flops": (0.0, math.inf)}
TABLES = ("persistence", "curves", "count_fraction", "detection", "removal")


def _curve(run: dict, task: str, metric: str):
    return run["curves"][(task, metric)]


def _floors(runs: dict) -> dict:
    """(trigger, size, seed, behaviour) -> the never-poisoned control's final ASR."""
    out = {}
    for r in runs.values():
        t = r["tags"]
        if t["kind"] == "never" and t["role"] == "clean":
            for (task, metric), (_, v) in r["curves"].items():
                if task.startswith("asr_") and metric == "acc":
                    out[(t["trigger"], t["size"], t["unit"], task[4:])] = float(v[-1])
    return out


def log_auc(steps, values) -> float:
    """Mean of a curve over log(1 + step) from 0 to its last step (trapezoids): every clean-phase
    decade weighs the same, whatever the evaluation grid."""
    x = np.log1p(np.asarray(steps, np.float64))
    return float(np.trapezoid(values, x) / x[-1])


def persistence_seed_rows(runs: dict) -> list[dict]:
    """One row per (clean-phase run, quantity) of every backdoored cell; ``runs``: ``index_runs`` of the rows."""
    floors = _floors(runs)
    out = []
    for r in runs.values():
        t = r["tags"]
        if t["kind"] != "backdoored" or not (t["role"] == "clean" or t["role"].startswith("clean_lr")):
            continue
        steps, asr = _curve(r, f"asr_{t['behaviour']}", "acc")
        _, clean = _curve(r, "clean", "exact")
        floor = floors.get((t["trigger"], t["size"], t["unit"], t["behaviour"]), math.nan)
        half = half_life_crossing(steps, asr, final=floor) if math.isfinite(floor) else math.nan
        q = {"asr_insert": asr[0], "asr_end": asr[-1], "asr_auc": log_auc(steps, asr), "asr_floor": floor,
             "clean_exact_insert": clean[0], "clean_exact_end": clean[-1], "half_life": half,
             "half_life_reached": float(math.isfinite(half))}
        out += [{**{k: t[k] for k in CELL_KEYS}, "seed": t["unit"], "quantity": k, "value": float(v)}
                for k, v in q.items()]
    return out


def winner(P: Preset, seed_rows: list[dict]) -> Cell:
    """Each axis at its stage-1 level of highest mean asr_auc (insertion length and poison per batch
    chosen jointly on the count x fraction grid), other axes at the base."""
    score: dict[str, list[float]] = {}
    for r in seed_rows:
        if r["quantity"] == "asr_auc" and r["stage"] == 1 and r["clean_lr"] == P.clean_lrs[0]:
            score.setdefault(r["cell"], []).append(r["value"])
    mean = {c: float(np.mean(v)) for c, v in score.items()}
    base, best = base_cell(P), {}
    for cell, axis in cells(P):   # every axis's candidates include the base cell (its base level)
        for key in ((axis,) if axis != "base" else ("count_fraction", "density", "trigger", "behaviour", "size")):
            if cell.label in mean and mean[cell.label] > best.get(key, (-1.0, None))[0]:
                best[key] = (mean[cell.label], cell)
    pick = {axis: c for axis, (_, c) in best.items()}
    if "count_fraction" not in pick:
        return base
    cf = pick["count_fraction"]
    get = lambda axis, field: getattr(pick.get(axis, base), field)  # noqa: E731
    return dataclasses.replace(base, insert_steps=cf.insert_steps, per_batch=cf.per_batch,
                               density=get("density", "density"), trigger=get("trigger", "trigger"),
                               behaviour=get("behaviour", "behaviour"), size=get("size", "size"))


def curve_rows(runs: dict) -> list[dict]:
    """ASR and clean exact match along the clean phase, per cell, clean lr and step (and the controls')."""
    out = []
    for r in runs.values():
        t = r["tags"]
        if not (t["role"] == "clean" or t["role"].startswith("clean_lr")):
            continue
        for task, metric in ((f"asr_{t['behaviour']}", "acc"), ("clean", "exact")):
            steps, v = _curve(r, task, metric)
            name = "asr" if task.startswith("asr") else "clean_exact"
            out += [{**{k: t[k] for k in CELL_KEYS}, "kind": t["kind"], "seed": t["unit"], "step": int(s),
                     "metric": name, "value": float(x)} for s, x in zip(steps, v)]
    return out


def count_fraction_rows(seed_rows: list[dict]) -> list[dict]:
    """OLS of asr_auc and asr_insert on log2 count and log2 fraction over the count x fraction grid's
    seeds (Souly et al. 2025: in LLMs the count decides): coefficient, 95 % t-interval, n."""
    out = []
    lrs = {r["clean_lr"] for r in seed_rows if r["axis"] == "count_fraction"}   # the base clean lr
    for quantity in ("asr_insert", "asr_auc", "asr_end"):
        pts = [r for r in seed_rows if r["quantity"] == quantity and r["stage"] == 1
               and r["axis"] in ("base", "count_fraction") and r["clean_lr"] in lrs]
        if len({(r["count"], r["fraction"]) for r in pts}) < 3:   # a preset without the grid: say so
            out += [{"quantity": quantity, "term": name, "mean": math.nan, "lo": math.nan, "hi": math.nan,
                     "n": len(pts)} for name in ("per_doubling_count", "per_doubling_fraction")]
            continue
        X = np.column_stack([np.ones(len(pts)), [math.log2(r["count"]) for r in pts],
                             [math.log2(r["fraction"]) for r in pts]])
        y = np.asarray([r["value"] for r in pts])
        beta, *_ = np.linalg.lstsq(X, y, rcond=None)
        dof = len(y) - 3
        resid = y - X @ beta
        sigma2 = float(resid @ resid) / max(dof, 1)
        se = np.sqrt(np.diag(sigma2 * np.linalg.pinv(X.T @ X)))
        half = stats.t.ppf(0.975, max(dof, 1)) * se
        for name, b, h in zip(("intercept", "per_doubling_count", "per_doubling_fraction"), beta, half):
            out.append({"quantity": quantity, "term": name, "mean": float(b), "lo": float(b - h),
                        "hi": float(b + h), "n": len(y)})
    return out


def detection_table(det: list[dict]) -> list[dict]:
    """AUROC and AP per trigger, model kind, clean step, detector and layer; and the gain over the
    never-poisoned control (same inputs, seed and training length)."""
    keys = ("trigger", "kind", "clean_step", "detector", "layer", "metric")
    long = [{**{k: r[k] for k in keys[:-1]}, "seed": r["seed"], "metric": m, "value": r[m]}
            for r in det for m in ("auroc", "average_precision")]
    by = {(*(r[k] for k in keys), r["seed"]): r["value"] for r in long}
    gains = [{**dict(zip(keys, k[:-1])), "kind": "gain", "seed": k[-1],
              "value": v - by[(k[0], "never", *k[2:])]}
             for k, v in by.items() if k[1] == "backdoored" and (k[0], "never", *k[2:]) in by]
    bounded = aggregate(long, keys, bounds=UNIT, points=True)
    return bounded + aggregate(gains, keys, bounds=(-1.0, 1.0), points=True)


def removal_seed_rows(runs: dict) -> list[dict]:
    """Per seed and method (base cell, stage 1): ASR, clean exact, steps, FLOPs (6N per trained token,
    8N when distilling: the teacher's forward) and the relearning attack's steps to RELEARN_ASR."""
    relearn = {}
    for r in runs.values():
        t = r["tags"]
        if t["role"].startswith("ra_") and t["stage"] == 1 and t["axis"] in ("base", "never"):
            steps, met = _curve(r, "train", "stopped")
            source = "never poisoned" if t["kind"] == "never" else t["role"][3:]
            relearn[(source, t["unit"])] = float(steps[-1]) if met[-1] > 0 else math.nan
    out = []

    def add(method, noise, seed, q):
        nonlocal out
        rel = relearn.get((q.pop("source", method), seed))
        if rel is not None:
            q.update(relearn_steps=rel, relearn_reached=float(math.isfinite(rel)))
        out += [{"method": method, "noise": noise, "seed": seed, "quantity": k, "value": float(v)}
                for k, v in q.items()]

    for r in runs.values():
        t = r["tags"]
        if t["axis"] != "base" or t["stage"] != 1 or not (t["role"] == "clean" or t["role"].startswith("rm_")):
            continue
        steps, asr = _curve(r, f"asr_{t['behaviour']}", "acc")
        _, clean = _curve(r, "clean", "exact")
        distill = t["role"].startswith("rm_")
        tokens = float(steps[-1]) * t["tokens_per_step"]
        add(f"distill a={t['noise']:g}" if distill else "finetune", t["noise"], t["unit"],
            {"source": t["role"], "asr_end": asr[-1], "clean_exact_end": clean[-1], "steps": steps[-1],
             "train_flops": tokens * t["params"] * (8 if distill else 6)})
        if not distill:
            add("none (inserted)", -1.0, t["unit"], {"source": "", "asr_end": asr[0], "clean_exact_end": clean[0],
                                                     "steps": 0, "train_flops": 0})
    for source, seed in relearn:
        if source == "never poisoned":
            add(source, -1.0, seed, {})
    return out


def summarize(out: Path, table_dir: Path) -> None:
    runs = index_runs(load_rows(out))   # run id -> tags and curves, once for every table
    seed_rows = persistence_seed_rows(runs)
    qb = bounds_by("quantity", QUANTITY_BOUNDS)
    write_rows(table_dir / "persistence.csv",
               aggregate(seed_rows, CELL_KEYS + ("quantity",), bounds=qb, points=True, finite=True))
    write_rows(table_dir / "curves.csv", aggregate(curve_rows(runs), CELL_KEYS + ("kind", "metric", "step"),
                                                   bounds=UNIT, points=True))
    write_rows(table_dir / "count_fraction.csv", count_fraction_rows(seed_rows))
    write_rows(table_dir / "detection.csv", detection_table(detection_rows(out)))
    write_rows(table_dir / "removal.csv", aggregate(removal_seed_rows(runs), ("method", "noise", "quantity"),
                                                    bounds=qb, points=True, finite=True))
