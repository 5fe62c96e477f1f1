"""Runs by cell, and the decay fits of each drop run: half-lives, floors, the weight-decay
clock, and the half-life's scaling with model size."""

from __future__ import annotations

import math

import numpy as np

from studies.ood_decay.presets import CENSOR, NO_DECAY
from toymodels.analysis import decay

# the run labels every summary row carries (besides its own keys)
LABELS = ("case", "axis", "size", "params", "n_layers", "reg", "weight_decay", "dropout", "p")
# the headline metric: exact match (every answer token right). Per-token accuracy ("acc") sits on
# a template floor near 0.5 for translations (half their target tokens are constant); it stays in
# the curve and fit tables for reference. METRICS: every metric those tables carry.
HEADLINE = "exact"
METRICS = ("exact", "acc", "loss")


def x_curve(rec: dict, metric: str = HEADLINE):
    """(steps, values) of X's own language in one run record (``tables.index_runs``)."""
    return rec["curves"][(rec["tags"]["x_lang"], metric)]


def x_metrics(rec: dict) -> tuple[str, ...]:
    """The METRICS recorded for X in one run record."""
    return tuple(m for m in METRICS if (rec["tags"]["x_lang"], m) in rec["curves"])


def cells(runs) -> dict[tuple, dict[str, dict]]:
    """(case, size, reg, seed) -> role (drops as drop_p{p}) -> run record."""
    out: dict[tuple, dict] = {}
    for rec in runs.values():
        t = rec["tags"]
        role = f"drop_p{t['p']:g}" if t["role"] == "drop" else t["role"]
        out.setdefault((t["case"], t["size"], t["reg"], t["seed"]), {})[role] = rec
    return out


def labels(rec: dict) -> dict:
    return {k: rec["tags"][k] for k in LABELS}


def fit_one(t, r, lr: float, wd: float, worse: int = -1) -> dict[str, float]:
    """Both decay fits of one curve, the AIC choice, and the model-free half-life.

    ``worse``: the direction in which the metric gets worse (-1: accuracy falls, +1: loss rises).
    A fitted half-life beyond CENSOR decay windows is an extrapolation of a curve that
    barely moved: it is reported as not reached (inf), which leaves it out of the means
    (n counts the rest) while half_life_reached records the fraction of runs that got there.
    So is the half-life of a curve that did not get worse by NO_DECAY of its start over the
    window (the mean of its last quarter against its first point): a fit to a curve that
    holds or improves times noise, not decay.
    """
    cmp = decay.fit_decay(t, r)   # a power law with beta -> 0 gets an infinite half-life, not an error
    window = float(t[-1] - t[0])
    # No decay for a fit to time: the curve stays within 1% of its own scale, or it did not
    # get worse by NO_DECAY of its start (mean of its last quarter against its first point).
    worsened = worse * (np.mean(r[-max(1, len(r) // 4):]) - r[0])
    no_decay = np.ptp(r) <= 0.01 * np.max(np.abs(r)) + 1e-12 or worsened <= NO_DECAY * abs(r[0])

    def censored(h):
        return math.inf if no_decay or h > CENSOR * window else h
    best = cmp.best
    hl = censored(best.half_life) if best is not None else math.nan
    return {"half_life": hl, "log10_half_life": math.log10(hl) if 0 < hl < math.inf else math.nan,
            "half_life_reached": float(hl <= window),
            "floor": best.floor if best is not None else math.nan,
            "depth": best.r0 - best.floor if best is not None else math.nan,
            "half_life_exponential": censored(cmp.exponential.half_life),
            "half_life_power_law": censored(cmp.power_law.half_life),
            "prefers_power_law": math.nan if cmp.preferred is None else float(cmp.preferred == "power_law"),
            "delta_aic": cmp.delta_aic, "half_life_crossing": decay.half_life_crossing(t, r),
            "wd_clock": decay.weight_decay_half_life(lr, wd)}


def fit_rows(runs) -> list[dict]:
    """One row per (drop run, metric, quantity): the per-seed values behind fits.csv."""
    rows = []
    for run_id, rec in runs.items():
        if rec["tags"]["role"] != "drop":
            continue
        for metric in x_metrics(rec):
            f = fit_one(*x_curve(rec, metric), rec["tags"]["lr"], rec["tags"]["weight_decay"],
                        worse=1 if metric == "loss" else -1)
            clock = f.pop("wd_clock")
            rows += [{**labels(rec), "run": run_id, "wd_clock": clock, "metric": metric, "quantity": q,
                      "value": v} for q, v in f.items()]
    return rows


def scaling_rows(fits) -> list[dict]:
    """Half-life ~ params^slope over every seed's (params, half-life of X accuracy) of drop(p=0)
    at the base regularisation: all sizes, and the width series (the base size's depth) alone.
    No rows without a size axis (the paper preset runs the base cell only)."""
    if not any(r["axis"] == "size" for r in fits):
        return []
    points: dict[str, list] = {}
    for r in fits:
        if (r["quantity"], r["metric"], r["p"]) == ("half_life", HEADLINE, 0) and r["axis"] in ("base", "size"):
            points.setdefault(r["case"], []).append((r["params"], r["n_layers"], r["axis"] == "base", r["value"]))
    rows = []
    for case, pts in sorted(points.items()):
        base_layers = {nl for _, nl, is_base, _ in pts if is_base}
        for series, keep in (("all sizes", lambda nl: True), ("width", lambda nl, b=base_layers: nl in b)):
            x, y = zip(*[(pa, hl) for pa, nl, _, hl in pts if keep(nl) and math.isfinite(hl)] or [(0, 0)])
            try:
                fit = decay.power_law_exponent(x, y)
                vals = dict(slope=fit.slope, lo=fit.ci_lo, hi=fit.ci_hi, intercept=fit.intercept)
            except ValueError:   # fewer than 3 usable points or a single size
                vals = dict(slope=math.nan, lo=math.nan, hi=math.nan, intercept=math.nan)
            rows.append({"case": case, "series": series, "metric": HEADLINE, "quantity": "half_life_exponent",
                         **vals, "n": sum(v > 0 for v in y), "n_sizes": len({v for v in x if v > 0})})
    return rows
