"""The summary tables: every number a mean over seeds with its 95% interval and n.

Intervals are bounded (``stats.bounded_ci``) where a quantity is: accuracies in [0, 1],
accuracy differences (forgetting, backward transfer) in [-1, 1], steps and half-lives
>= 0, probe R^2 <= 1; savings, log10 half-lives, fitted floors and normalised scores are
unbounded. Values that are not finite (a fit that failed, a criterion never reached) are
left out of the mean, and n_runs says how many runs were measured.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from studies.ood_decay import ladder, patching, persistence, sharing
from studies.ood_decay.fits import HEADLINE, LABELS, cells, fit_rows, labels, scaling_rows, x_curve, x_metrics
from studies.ood_decay.grid import suite
from studies.ood_decay.measure import LABEL_KEYS, measured_rows
from studies.ood_decay.presets import CRITERION, MIN_RANGE
from toymodels.analysis import decay
from toymodels.analysis.similarity import normalized_score
from toymodels.analysis.stats import METRIC_BOUNDS, aggregate, bounds_by
from toymodels.results import write_rows
from toymodels.store import load_rows
from toymodels.tables import held_out, index_runs

ACC, NONNEG, DIFF = (0.0, 1.0), (0.0, math.inf), (-1.0, 1.0)
# per quantity; anything not listed is unbounded
FIT_BOUNDS = {"half_life": NONNEG, "half_life_exponential": NONNEG, "half_life_power_law": NONNEG,
              "half_life_crossing": NONNEG, "delta_aic": NONNEG, "half_life_reached": ACC, "prefers_power_law": ACC}
SAVINGS_BOUNDS = {"steps_fresh": NONNEG, "steps_never": NONNEG, "steps_relearn": NONNEG,
                  "fewshot_dropped": ACC, "fewshot_never": ACC, "fewshot_before_pre": ACC, "fewshot_before_drop": ACC}
PROBE_BOUNDS = {"r2": METRIC_BOUNDS["r2"]}


def readout_bounds(key: dict):
    """Accuracies through the native or a refit readout; the normalised recovery is unbounded."""
    return ACC if key["quantity"].startswith(("native_", "refit_")) and key["quantity"] != "refit_recovery" else None


# table name -> the bounds its summarize uses (also to rebound committed tables)
BOUNDS = {"decay_curves": bounds_by("metric"), "fits": bounds_by("quantity", FIT_BOUNDS),
          "forgetting": DIFF, "savings": bounds_by("quantity", SAVINGS_BOUNDS), "readout": readout_bounds,
          "probes": bounds_by("quantity", PROBE_BOUNDS), "zeroshot": bounds_by("metric")}


def summarize(out: Path, table_dir: Path) -> None:
    rows = load_rows(out)
    for name, table in {**sharing.tables(rows), **ladder.tables(rows), **patching.tables(out),
                        **persistence.tables(rows)}.items():
        write_rows(Path(table_dir) / f"{name}.csv", table)
    runs = {k: v for k, v in index_runs(held_out(rows)).items()
            if v["tags"].get("part") not in ("sharing", "ladder", "persistence")}
    if not runs:   # the sharing part alone: leave the cases' tables as they are
        return
    measures = measured_rows(out)
    fits = fit_rows(runs)
    tables = {
        "decay_curves": decay_curves(runs),
        "fits": aggregate(fits, LABELS + ("wd_clock", "metric", "quantity"), bounds=BOUNDS["fits"],
                          points=True, finite=True),
        "scaling": scaling_rows(fits),
        "forgetting": aggregate(forgetting_rows(runs), LABELS + ("convention", "quantity"),
                                bounds=BOUNDS["forgetting"], points=True, finite=True),
        "savings": aggregate(savings_rows(runs) + fewshot_rows(runs), LABELS + ("quantity",),
                             bounds=BOUNDS["savings"], points=True, finite=True),
        "readout": readout_table(measures),
        "probes": probe_table(measures),
        "zeroshot": zeroshot_curves(runs),
    }
    for name, table in tables.items():
        if table:   # e.g. no zero-shot table without case D
            write_rows(Path(table_dir) / f"{name}.csv", table)


def decay_curves(runs) -> list[dict]:
    """X's held-out accuracy and loss against steps since the drop (phase-2 runs)."""
    rows = []
    for rec in runs.values():
        if rec["tags"]["role"] in ("drop", "joint", "never2"):
            for metric in x_metrics(rec):
                t, v = x_curve(rec, metric)
                rows += [{**labels(rec), "role": rec["tags"]["role"], "metric": metric, "step": int(s), "value": y}
                         for s, y in zip(t, v)]
    return aggregate(rows, LABELS + ("role", "metric", "step"), bounds=BOUNDS["decay_curves"], points=True)


def kept_curve(rec) -> np.ndarray:
    """Mean headline metric over the kept tasks (the training mix without X's tasks) at every eval step."""
    tags = rec["tags"]
    train, _, x_tasks, _ = suite(tags["case"], int(tags["x_lang"][1:]) + 1)   # X is the last language
    return np.mean([rec["curves"][(name, HEADLINE)][1] for name, _ in train if name not in x_tasks], axis=0)


def forgetting_rows(runs) -> list[dict]:
    """Forgetting of X's exact match (HEADLINE) over the pre + drop curve, in both conventions:
    peak = best value up to the drop minus final (Chaudhry et al. 2018),
    first_last = value at the drop minus final (Avalanche); final = end of phase 2.
    Also backward transfer (Lopez-Paz & Ranzato 2017) with the two phases as the two tasks
    (X, then the kept mix): R[i, j] = exact match on j at the end of phase i, BWT = R[1, X] -
    R[0, X] = -first_last for X; ``quantity = kept_change`` is R[1, kept] - R[0, kept]."""
    rows = []
    for roles in cells(runs).values():
        pre = roles.get("pre")
        for role, rec in roles.items():
            if not role.startswith("drop_p") or pre is None:
                continue
            a_pre, a_drop = x_curve(pre)[1], x_curve(rec)[1]
            curve = np.concatenate([a_pre, a_drop[1:]])   # a_drop[0] re-measures pre's final model
            at = len(a_pre) - 1
            for conv, fn in (("peak", decay.forgetting_peak), ("first_last", decay.forgetting_first_last)):
                rows.append({**labels(rec), "convention": conv, "quantity": "forgetting", "value": fn(curve, at)})
            kept = kept_curve(rec)
            R = [[a_drop[0], kept[0]], [a_drop[-1], kept[-1]]]
            rows += [{**labels(rec), "convention": "bwt", "quantity": "bwt", "value": decay.backward_transfer(R)},
                     {**labels(rec), "convention": "bwt", "quantity": "kept_change",
                      "value": float(kept[-1] - kept[0])}]
    return rows


def savings_rows(runs, criterion: float = CRITERION) -> list[dict]:
    """Relearning X (full mix, from drop_p0) against first learning on the full mix from a random
    init (the pre run: same mix, share of X, schedule and horizon) and against the never-X
    control (never_relearn). Criterion: ``criterion`` x X's exact match at the end of phase 1."""
    rows = []
    for roles in cells(runs).values():
        if not {"pre", "relearn", "never_relearn"} <= set(roles):
            continue
        (t_f, a_f), (t_r, a_r), (t_n, a_n) = (x_curve(roles[k]) for k in ("pre", "relearn", "never_relearn"))
        level = criterion * a_f[-1]
        horizon = min(t_f[-1], t_r[-1], t_n[-1])
        q = {"steps_fresh": decay.steps_to_criterion(t_f, a_f, level),
             "steps_never": decay.steps_to_criterion(t_n, a_n, level),
             "steps_relearn": decay.steps_to_criterion(t_r, a_r, level),
             "savings_vs_fresh": decay.savings(t_f, a_f, t_r, a_r, level),
             "savings_vs_never": decay.savings(t_n, a_n, t_r, a_r, level),
             "area_savings_vs_fresh": decay.area_savings(t_f, a_f, t_r, a_r, level, horizon=horizon),
             "area_savings_vs_never": decay.area_savings(t_n, a_n, t_r, a_r, level, horizon=horizon)}
        rows += [{**labels(roles["relearn"]), "quantity": k, "value": v} for k, v in q.items()]
    return rows


def fewshot_rows(runs) -> list[dict]:
    """Recovery of X from a handful of examples (base cell): X's held-out exact match after training
    on X's fixed pool alone, from drop_p0 (``fewshot_dropped``) and from never2
    (``fewshot_never``), next to X's accuracy at the end of pre and of drop_p0;
    ``fewshot_recovery`` = (dropped - never) / (pre - never): 0 = the examples teach no more than
    to a model that never saw X, 1 = back to the pre-drop value; left out (NaN) where pre - never
    < MIN_RANGE, a ratio of noise (the positive controls B-D, where never-X already writes X)."""
    rows = []
    for roles in cells(runs).values():
        if not {"pre", "drop_p0", "fewshot", "never_fewshot"} <= set(roles):
            continue
        acc = {k: float(x_curve(roles[k])[1][-1]) for k in ("pre", "drop_p0", "fewshot", "never_fewshot")}
        q = {"fewshot_dropped": acc["fewshot"], "fewshot_never": acc["never_fewshot"],
             "fewshot_before_pre": acc["pre"], "fewshot_before_drop": acc["drop_p0"],
             "fewshot_recovery": recovery(acc["fewshot"], acc["never_fewshot"], acc["pre"])}
        rows += [{**labels(roles["fewshot"]), "quantity": k, "value": v} for k, v in q.items()]
    return rows


def recovery(score: float, floor: float, ceiling: float) -> float:
    """(score - floor) / (ceiling - floor), or NaN where ceiling - floor < MIN_RANGE."""
    return float(normalized_score(score, floor, ceiling)) if ceiling - floor >= MIN_RANGE else math.nan


def readout_table(measures) -> list[dict]:
    """Is X gone or only gated? X's accuracy through each model's own unembedding (native) and
    through a refit one (refit), and the refit recovery of the dropped model, normalised
    between the never-X model (0) and the pre-drop model (1), each refit the same way (left out
    where the two are closer than MIN_RANGE). These measures are per answer token (measure.py)."""
    by_cell: dict[tuple, dict] = {}
    for r in measures:
        if r["measure"] in ("native_acc", "refit_acc"):
            role = f"drop_p{r['p']:g}" if r["role"] == "drop" else r["role"]
            by_cell.setdefault((r["case"], r["size"], r["seed"]), {})[(role, r["measure"], r["reg"])] = r
    rows = []
    for (case, size, _seed), got in by_cell.items():
        base = [k for k in got if k[1] == "refit_acc" and k[0] == "drop_p0"]
        if not base:
            continue
        reg = base[0][2]
        label = {"case": case, "axis": "base", "size": size, "reg": reg}
        q = {f"{m.split('_')[0]}_{role}": got[(role, m, rg)]["value"] for role, m, rg in got if rg in (reg, "")}
        if {"refit_drop_p0", "refit_never2", "refit_pre"} <= set(q):
            q["refit_recovery"] = recovery(q["refit_drop_p0"], q["refit_never2"], q["refit_pre"])
        rows += [{**label, "quantity": k, "value": v} for k, v in q.items()]
    return aggregate(rows, ("case", "axis", "size", "reg", "quantity"), bounds=BOUNDS["readout"],
                     points=True, finite=True)


def probe_table(measures) -> list[dict]:
    """Per-layer probe R^2, raw and normalised: random init of the same seed = 0, pre = 1."""
    probes = [r for r in measures if r["measure"] == "probe_r2"]
    random = {(r["case"], r["size"], r["seed"], r["layer"]): r["value"] for r in probes if r["role"] == "random"}
    pre = {(r["case"], r["size"], r["reg"], r["seed"], r["layer"]): r["value"] for r in probes if r["role"] == "pre"}
    rows = []
    for r in probes:
        if r["role"] == "random":
            continue
        lo = random.get((r["case"], r["size"], r["seed"], r["layer"]), math.nan)
        hi = pre.get((r["case"], r["size"], r["reg"], r["seed"], r["layer"]), math.nan)
        key = {k: r[k] for k in LABEL_KEYS + ("layer",)}
        rows += [{**key, "quantity": "r2", "value": r["value"]},
                 {**key, "quantity": "normalized", "value": float(normalized_score(r["value"], lo, hi))}]
    return aggregate(rows, LABEL_KEYS + ("layer", "quantity"), bounds=BOUNDS["probes"], points=True, finite=True)


def zeroshot_curves(runs) -> list[dict]:
    """Case D: exact match and per-token accuracy on the held-out translation pair (and on X
    itself) over the whole training history, phase offsets added: pre -> drop_p0 -> relearn,
    and pre -> joint."""
    rows = []
    for roles in cells(runs).values():
        if not {"pre", "drop_p0", "relearn", "joint"} <= set(roles) or not roles["pre"]["tags"]["zeroshot"]:
            continue
        s1 = x_curve(roles["pre"])[0][-1]
        s2 = x_curve(roles["drop_p0"])[0][-1]
        tasks = roles["pre"]["tags"]["zeroshot"].split() + [roles["pre"]["tags"]["x_lang"]]
        for role, offset in (("pre", 0), ("drop_p0", s1), ("relearn", s1 + s2), ("joint", s1)):
            rec = roles[role]
            for task, metric in [(k, m) for k in tasks for m in (HEADLINE, "acc")]:
                if (task, metric) not in rec["curves"]:
                    continue
                t, v = rec["curves"][(task, metric)]
                rows += [{**labels(roles["pre"]), "role": role, "task": task, "metric": metric,
                          "step": int(offset + s), "value": y} for s, y in zip(t, v)]
    return aggregate(rows, ("case", "axis", "size", "reg", "role", "task", "metric", "step"),
                     bounds=BOUNDS["zeroshot"], points=True)
