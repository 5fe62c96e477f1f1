"""Summary tables of the elicitation study (one CSV each under the table folder).

  training.csv      the models' training curves: acc on each target with no prompt, per kind
  unprompted.csv    every model on every target with no prompt (n_tokens = 0; the random null too)
  curves.csv        information curves: acc vs prompt length per (kind, target, method); soft =
                    the best of ``prompt_seeds`` prompts per model seed (elicitation asks what a
                    prompt *can* do), hard = the greedy token search; plain prompts only
  tokens_needed.csv per (kind, target): the fewest soft-prompt tokens whose acc >= threshold,
                    per model seed (inf: not reached at the longest length); mean over the seeds
                    that reached it with n_runs = all seeds, the median and the per-seed values
  fragility.csv     per (kind, target, variant, n_tokens): acc, the acc drop under perturbations
                    of relative norm FRAGILITY_SCALE (drop_{scale} for every scale), the gradient
                    norm and the prompt vectors' mean norm; per model seed the mean over prompt seeds
  fragility_vs_information.csv  Spearman correlation over (kind, target, seed) of tokens needed
                    (inf ranked last) with the drop and the gradient norm of the longest plain
                    prompt, for trained models and for all (the nulls included); percentile-bootstrap
                    interval over the pairs
  prompt_curves.csv prompt training curves: eval acc along training per (kind, target, n_tokens)
Intervals: t over model seeds, logit scale for accuracies, cut at 0 for norms and counts.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from scipy import stats

from studies.elicitation.grid import NULLS
from studies.elicitation.measure import cached_rows
from studies.elicitation.presets import FRAGILITY_SCALE, THRESHOLD
from toymodels.analysis.stats import aggregate, bootstrap_ci
from toymodels.results import write_rows
from toymodels.store import load_rows
from toymodels.tables import index_runs

UNIT = (0.0, 1.0)
POS = (0.0, math.inf)
TABLES = ("training", "unprompted", "curves", "tokens_needed", "fragility", "fragility_vs_information",
          "prompt_curves")


def _f(r: dict, k: str) -> float:
    return float(r[k])


def _plain(rows: list[dict]) -> list[dict]:
    return [r for r in rows if _f(r, "norm_bound") == 0 and _f(r, "noise") == 0]


def training_table(out: Path) -> list[dict]:
    rows = []
    for r in index_runs(load_rows(out)).values():
        for (task, metric), (steps, vals) in r["curves"].items():
            if metric == "acc":
                rows += [{"kind": r["tags"]["kind"], "task": task, "seed": r["tags"]["unit"], "step": int(s),
                          "value": float(v)} for s, v in zip(steps, vals)]
    return aggregate(rows, ("kind", "task", "step"), bounds=UNIT, points=True)


def best_rows(prompts: list[dict]) -> list[dict]:
    """Per (kind, target, seed, n_tokens): the best acc over prompt seeds (plain prompts)."""
    best: dict[tuple, float] = {}
    for r in _plain(prompts):
        k = (r["kind"], r["target"], int(r["seed"]), int(r["n_tokens"]))
        best[k] = max(best.get(k, -1.0), _f(r, "acc"))
    return [{"kind": k, "target": t, "seed": s, "n_tokens": n, "value": v} for (k, t, s, n), v in best.items()]


def tokens_needed(best: list[dict], threshold: float) -> list[dict]:
    """Per (kind, target, seed): the fewest tokens reaching threshold; inf if none does."""
    need: dict[tuple, float] = {}
    for r in best:
        k = (r["kind"], r["target"], r["seed"])
        hit = r["n_tokens"] if r["value"] >= threshold else math.inf
        need[k] = min(need.get(k, math.inf), hit)
    return [{"kind": k, "target": t, "seed": s, "value": v} for (k, t, s), v in need.items()]


def _needed_table(need: list[dict], threshold: float) -> list[dict]:
    reached = {(r["kind"], r["target"]): r for r in aggregate(need, ("kind", "target"), bounds=POS, finite=True)}
    groups: dict[tuple, list[float]] = {}
    for r in need:
        groups.setdefault((r["kind"], r["target"]), []).append(r["value"])
    rows = []
    for (k, t), vals in sorted(groups.items()):
        # no seed reached it: no finite value to average
        row = reached.get((k, t)) or {"kind": k, "target": t, "mean": math.inf, "lo": math.inf, "hi": math.inf,
                                      "n": 0, "n_runs": len(vals)}
        rows.append({**row, "threshold": threshold, "median": float(np.median(vals)),
                     "values": " ".join(f"{v:g}" for v in sorted(vals))})
    return rows


def _fragility(prompts: list[dict], scales) -> list[dict]:
    keys = ("kind", "target", "norm_bound", "noise", "n_tokens")
    per_seed: dict[tuple, list[dict]] = {}
    for r in prompts:
        per_seed.setdefault(tuple(r[k] for k in keys) + (r["seed"],), []).append(r)
    tidy = []
    for k, rs in per_seed.items():
        label = {**dict(zip(keys, k[:-1])), "seed": k[-1]}
        q = {"acc": (UNIT, [_f(r, "acc") for r in rs]), "grad_norm": (POS, [_f(r, "grad_norm") for r in rs]),
             "prompt_norm": (POS, [_f(r, "prompt_norm") for r in rs])}
        for s in scales:
            q[f"drop_{s:g}"] = ((-1.0, 1.0), [_f(r, "acc") - _f(r, f"sens_{s:g}") for r in rs])
        tidy += [{**label, "quantity": name, "bounds": b, "value": float(np.mean(v))} for name, (b, v) in q.items()]
    bounds = {r["quantity"]: r["bounds"] for r in tidy}
    return aggregate(tidy, keys + ("quantity",), bounds=lambda g: bounds[g["quantity"]], points=True)


def _rank_corr(need: list[dict], prompts: list[dict], longest: int) -> list[dict]:
    by = {(r["kind"], r["target"], r["seed"]): r["value"] for r in need}
    last = [r for r in _plain(prompts) if int(r["n_tokens"]) == longest]
    pts: dict[tuple, list[dict]] = {}
    for r in last:
        pts.setdefault((r["kind"], r["target"], int(r["seed"])), []).append(r)
    rows = []
    for group in ("trained", "all"):
        keys = [k for k in sorted(pts) if k in by and (group == "all" or k[0] not in NULLS)]
        for quantity, f in ((f"drop_{FRAGILITY_SCALE:g}", lambda r: _f(r, "acc") - _f(r, f"sens_{FRAGILITY_SCALE:g}")),
                            ("grad_norm", lambda r: _f(r, "grad_norm"))):
            # inf (never reached) ranks last; ties share a rank
            xy = np.array([[min(by[k], 1e9), np.mean([f(r) for r in pts[k]])] for k in keys])
            if len(xy) < 3 or np.ptp(xy[:, 0]) == 0 or np.ptp(xy[:, 1]) == 0:
                rho, lo, hi = math.nan, math.nan, math.nan
            else:
                def stat(a):
                    if np.ptp(a[:, 0]) == 0 or np.ptp(a[:, 1]) == 0:
                        return 0.0
                    return float(stats.spearmanr(a[:, 0], a[:, 1])[0])
                rho, lo, hi = bootstrap_ci(xy, stat)
            rows.append({"models": group, "quantity": quantity, "n_tokens": longest, "spearman": float(rho),
                         "lo": float(lo), "hi": float(hi), "n": len(xy)})
    return rows


def _prompt_curves(curves: list[dict]) -> list[dict]:
    tidy = [{**{k: r[k] for k in ("kind", "target", "n_tokens", "step", "seed", "prompt_seed")},
             "value": _f(r, "acc")} for r in _plain(curves)]
    per_seed: dict[tuple, list[float]] = {}
    for r in tidy:
        per_seed.setdefault((r["kind"], r["target"], r["n_tokens"], r["step"], r["seed"]), []).append(r["value"])
    seed_rows = [dict(zip(("kind", "target", "n_tokens", "step", "seed"), k), value=float(np.mean(v)))
                 for k, v in per_seed.items()]
    return aggregate(seed_rows, ("kind", "target", "n_tokens", "step"), bounds=UNIT, points=True)


def summarize(out: Path, table_dir: Path, threshold: float = THRESHOLD) -> None:
    out, table_dir = Path(out), Path(table_dir)
    table_dir.mkdir(parents=True, exist_ok=True)
    c = cached_rows(out)
    prompts, hard, unprompted = c["prompts"], c["hard"], c["unprompted"]
    scales = sorted({float(k[5:]) for k in prompts[0] if k.startswith("sens_")}) if prompts else []
    best = best_rows(prompts)
    need = tokens_needed(best, threshold)
    curve_rows = [{**r, "method": "soft"} for r in aggregate(best, ("kind", "target", "n_tokens"), bounds=UNIT,
                                                             points=True)]
    curve_rows += [{**r, "method": "hard"} for r in aggregate(
        [{**r, "value": _f(r, "acc")} for r in hard], ("kind", "target", "n_tokens"), bounds=UNIT, points=True)]
    longest = max((int(r["n_tokens"]) for r in prompts), default=0)
    write_rows(table_dir / "training.csv", training_table(out))
    write_rows(table_dir / "unprompted.csv", aggregate([{**r, "value": _f(r, "acc")} for r in unprompted],
                                                       ("kind", "target"), bounds=UNIT, points=True))
    write_rows(table_dir / "curves.csv", curve_rows)
    write_rows(table_dir / "tokens_needed.csv", _needed_table(need, threshold))
    write_rows(table_dir / "fragility.csv", _fragility(prompts, scales))
    write_rows(table_dir / "fragility_vs_information.csv", _rank_corr(need, prompts, longest))
    write_rows(table_dir / "prompt_curves.csv", _prompt_curves(c["prompt_curves"]))
    write_rows(table_dir / "hard_tokens.csv", [{k: r[k] for k in ("kind", "target", "seed", "n_tokens", "acc",
                                                                   "search_acc", "tokens")} for r in hard])

