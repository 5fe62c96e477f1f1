"""Summary tables of the dictionaries study (one CSV each under the table folder).

  training.csv       the engine runs' curves (normal, altered, refit): acc per task along training
  layouts.csv        per (source, drift, arm, mult): explained_variance and mmcs (mean over blocks
                     within a seed, then over seeds), total latents, l0
  shared_size.csv    per (source, drift, metric): the smallest multiplier m at which the shared
                     dictionary (m * S latents) matches the per-block dictionaries (L * S in all),
                     per seed (inf: not by largest_m), their median and how many seeds reached it;
                     "matches" = at most TOLERANCE below the per-block value of the same seed
  joint.csv          per (layout, coeff): the model's loss and acc, the joint dictionaries' FVU, the
                     fresh post-hoc dictionaries' explained variance and explained-latent share;
                     random_init rows are the floor
  joint_cost.csv     per (layout, coeff > 0): paired differences from coeff 0 of the same seed
  joint_curves.csv   per (layout, coeff, step): loss, acc and joint FVU along training
  usage.csv          per block: latents of the shared dictionary (m = L) it uses, uses first, uses alone
  meanings.csv       per block pair and over all pairs: cofire and effect cosine of latents used by
                     both blocks, against the random-latent nulls (per seed: the mean over latents)
  attribution.csv    per (fine-tune, block): AUROC and precision@top of the attribution ranking for
                     reverse-selective latents, the base rate (a random ranking), the KL attributed
Intervals: over seeds (t, or bounded where the metric is); n <= 5 lists per-seed values.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from studies.dictionaries.joint_arm import cached_joint
from studies.dictionaries.measure import cached_rows
from toymodels.analysis.stats import aggregate
from toymodels.results import write_rows
from toymodels.store import load_rows
from toymodels.tables import index_runs

UNIT = (0.0, 1.0)
COS = (-1.0, 1.0)
POS = (0.0, math.inf)
TOLERANCE = 0.01
TABLES = ("training", "layouts", "shared_size", "joint", "joint_cost", "joint_curves", "usage", "meanings",
          "attribution")
BOUNDS = {"explained_variance": (-math.inf, 1.0), "mmcs": UNIT, "l0": POS, "loss": POS, "acc": UNIT,
          "joint_fvu": POS, "posthoc_ev": (-math.inf, 1.0), "explained": UNIT, "cofire": COS, "effect_cos": COS,
          "null_cofire": COS, "null_effect_cos": COS, "auroc": UNIT, "precision_top": UNIT, "abs_auroc": UNIT,
          "abs_precision_top": UNIT, "base_rate": UNIT,
          "kl": POS, "used": POS, "new": POS, "only_here": POS}


def _f(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):   # "-": not applicable
        return float("nan")


def _long(rows: list[dict], keys: tuple[str, ...], metrics: tuple[str, ...], unit: str = "seed") -> list[dict]:
    """Per (keys, unit) means of each metric (NaN left out), then ``aggregate`` across units."""
    per: dict[tuple, list[float]] = {}
    for r in rows:
        for m in metrics:
            v = _f(r[m])
            if math.isfinite(v):
                per.setdefault((tuple(r[k] for k in keys), m, r[unit]), []).append(v)
    means = [{**dict(zip(keys, k)), "metric": m, unit: u, "value": float(np.mean(v))} for (k, m, u), v in per.items()]
    return aggregate(means, (*keys, "metric"), bounds=lambda key: BOUNDS.get(key["metric"]), points=True)


def training_table(out: Path) -> list[dict]:
    rows = []
    for r in index_runs(load_rows(out)).values():
        for (t, metric), (steps, vals) in r["curves"].items():
            if metric == "acc":
                rows += [{"kind": r["tags"]["kind"], "task": t, "seed": r["tags"]["unit"], "step": int(s),
                          "value": float(v)} for s, v in zip(steps, vals)]
    return aggregate(rows, ("kind", "task", "step"), bounds=UNIT, points=True)


def shared_size(layouts: list[dict]) -> list[dict]:
    """Per (source, drift, metric, seed): the smallest m whose shared dictionary reaches the
    per-block one's block-mean metric minus TOLERANCE."""
    keys = ("source", "drift", "arm", "mult", "seed")
    per: dict[tuple, dict[str, list[float]]] = {}
    for r in layouts:
        for m in ("explained_variance", "mmcs"):
            per.setdefault(tuple(str(r[k]) for k in keys), {}).setdefault(m, []).append(_f(r[m]))
    out = []
    for (source, drift, arm, _, seed), vals in per.items():
        if arm != "per_block":
            continue
        for metric, v in vals.items():
            ref = float(np.mean(v))
            if not math.isfinite(ref):
                continue
            ms = sorted((int(k[3]), float(np.mean(x[metric]))) for k, x in per.items()
                        if k[:2] == (source, drift) and k[2] == "shared" and k[4] == seed)
            hit = [m for m, x in ms if x >= ref - TOLERANCE]
            out.append({"source": source, "drift": drift, "metric": metric, "seed": seed, "per_block": ref,
                        "value": float(hit[0]) if hit else math.inf})
    largest = max((int(r["mult"]) for r in layouts if r["arm"] == "shared"), default=0)
    table = []
    for key in sorted({(r["source"], r["drift"], r["metric"]) for r in out}, key=str):
        got = [r for r in out if (r["source"], r["drift"], r["metric"]) == key]
        vals = sorted(r["value"] for r in got)
        table.append({"source": key[0], "drift": key[1], "metric": key[2], "median": float(np.median(vals)),
                      "per_seed": " ".join(f"{v:g}" for v in vals), "n_reached": sum(map(math.isfinite, vals)),
                      "n": len(vals), "largest_m": largest,
                      "per_block_mean": float(np.mean([r["per_block"] for r in got]))})
    return table


def joint_cost(joint: list[dict]) -> list[dict]:
    base = {(r["layout"], r["seed"]): r for r in joint if _f(r["coeff"]) == 0}
    diffs = []
    for r in joint:
        b = base.get((r["layout"], r["seed"]))
        if b is None or not _f(r["coeff"]) > 0:
            continue
        diffs += [{"layout": r["layout"], "coeff": r["coeff"], "seed": r["seed"], "metric": f"d_{m}",
                   "value": _f(r[m]) - _f(b[m])} for m in ("loss", "acc", "joint_fvu", "posthoc_ev", "explained")]
    return aggregate(diffs, ("layout", "coeff", "metric"), points=True)


def meanings_table(rows: list[dict]) -> list[dict]:
    metrics = ("cofire", "effect_cos", "null_cofire", "null_effect_cos")
    pairs = _long([{**r, "pair": f"{r['block_a']}-{r['block_b']}"} for r in rows], ("pair",), metrics)
    every = _long([{**r, "pair": "all"} for r in rows], ("pair",), metrics)
    counts: dict[tuple, set] = {}
    for r in rows:
        counts.setdefault((f"{r['block_a']}-{r['block_b']}", r["seed"]), set()).add(r["latent"])
    for row in pairs:
        row["latents_per_seed"] = float(np.mean([len(v) for (p, _), v in counts.items() if p == row["pair"]]))
    return pairs + every


def summarize(out: Path, table_dir: Path) -> list[Path]:
    out, table_dir = Path(out), Path(table_dir)
    c = cached_rows(out) | cached_joint(out)
    for name in ("joint", "joint_curves"):   # coeffs went through float32: 0.1 reads 0.10000000149
        c[name] = [{**r, "coeff": round(r["coeff"], 6) if isinstance(r["coeff"], float) else r["coeff"]}
                   for r in c[name]]
    joint = c["joint"]
    tables = {
        "training": training_table(out),
        "layouts": _long(c["layouts"], ("source", "drift", "arm", "mult", "total_latents"),
                         ("explained_variance", "mmcs", "l0")),
        "shared_size": shared_size(c["layouts"]),
        "joint": _long(joint, ("layout", "coeff"), ("loss", "acc", "joint_fvu", "posthoc_ev", "explained")),
        "joint_cost": joint_cost(joint),
        "joint_curves": _long(c["joint_curves"], ("layout", "coeff", "step"), ("loss", "acc", "joint_fvu")),
        "usage": _long(c["usage"], ("block",), ("used", "new", "only_here")),
        "meanings": meanings_table(c["meanings"]),
        "attribution": _long(c["attribution"], ("ft", "block"), ("auroc", "precision_top", "abs_auroc",
                                                                  "abs_precision_top", "base_rate", "kl")),
    }
    table_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in TABLES:
        path = table_dir / f"{name}.csv"
        write_rows(path, tables[name])
        paths.append(path)
    return paths
