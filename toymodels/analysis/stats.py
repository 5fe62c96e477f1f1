"""Mean and confidence intervals over seeds, with intervals that respect a metric's bounds.

``mean_ci`` is the Student-t interval (honest with 3-5 seeds); ``bootstrap_ci`` the
percentile bootstrap for non-normal statistics. ``bounded_ci`` respects a metric's range:
for a quantity in a finite range [lo, hi] (accuracy, CKA) it is the t-interval taken on the
logit scale of its position in the range and mapped back (delta method: the same centre
and standard error to first order, never outside the range); for a quantity bounded on
one side only (a loss >= 0, an R^2 <= 1) it is the t-interval cut at the bound, which
covers the true mean exactly as often as the t-interval does (the mean lies inside the
range) and stays as long as it is on the open side (a log scale there turned 2-3 seed
intervals into decades). Both are functions of (mean, sd, n) alone, so a summary table's
interval can be recomputed from its own columns (``rebound``).

``aggregate`` turns tidy rows into one row per group: mean, lo, hi, n and, for n <= 5,
the per-seed values (``values``, space-separated) that figures draw as points.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Mapping

import numpy as np
from scipy import stats

Bounds = tuple[float, float]
# Ranges of the metrics the studies report, by name; anything not listed is unbounded.
METRIC_BOUNDS: dict[str, Bounds] = {
    **{k: (0.0, 1.0) for k in ("acc", "exact", "matched", "reached", "train_acc", "equivalent", "parsable",
                               "cka", "sparsity", "effective_rank_frac", "half_life_reached",
                               "prefers_power_law", "auroc", "average_precision", "asr")},
    **{k: (0.0, math.inf) for k in ("loss", "train_loss", "huber", "mse", "frobenius", "stable_rank",
                                    "half_life", "offdiag_ratio", "exp_gap", "steps")},
    **{k: (-math.inf, 1.0) for k in ("r2", "debiased_cka", "affine_r2_to_ref", "affine_r2_from_ref", "mlp_r2_to_ref",
                                     "r2_to_sop", "r2_from_sop")},
    "offdiag_cos": (-1.0, 1.0),
    "procrustes": (0.0, math.sqrt(2.0)),   # distance between centred unit-norm matrices
}
POINTS_MAX_N = 5   # per-seed values are kept (and drawn) up to this many seeds


def mean_ci(x, axis: int = 0, level: float = 0.95) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean, lower, upper) of a t-interval over ``axis``; one sample gives a zero-width interval."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[axis]
    mean = x.mean(axis)
    if n < 2:
        return mean, mean.copy(), mean.copy()
    half = stats.t.ppf(0.5 + level / 2, n - 1) * x.std(axis, ddof=1) / np.sqrt(n)
    return mean, mean - half, mean + half


def bootstrap_ci(x, stat=np.mean, level: float = 0.95, n_boot: int = 2000, seed: int = 0):
    """(stat, lower, upper) of a percentile bootstrap over the first axis."""
    x = np.asarray(x, dtype=np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(x), (n_boot, len(x)))
    boots = np.array([stat(x[i]) for i in idx])
    lo, hi = np.quantile(boots, [0.5 - level / 2, 0.5 + level / 2])
    return stat(x), lo, hi


def pearson_ci(x, y, level: float = 0.95) -> tuple[float, float, float]:
    """(r, lower, upper): Pearson's correlation with the Fisher-z interval (inside [-1, 1]);
    needs at least 4 pairs."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or len(x) < 4:
        raise ValueError(f"pearson_ci needs two equal-length 1-d samples of >= 4 pairs; got {x.shape}, {y.shape}")
    r = float(np.corrcoef(x, y)[0, 1])
    half = stats.norm.ppf(0.5 + level / 2) / math.sqrt(len(x) - 3)
    z = math.atanh(min(max(r, -1 + 1e-15), 1 - 1e-15))
    return r, math.tanh(z - half), math.tanh(z + half)


def bounded_ci(mean: float, sd: float, n: int, bounds: Bounds | None = None,
               level: float = 0.95) -> tuple[float, float]:
    """(lower, upper) of a mean's interval that stays in ``bounds``: logit-scale t-interval
    for two finite bounds, the t-interval cut at the bound for one, the t-interval for none.
    A mean on a bound (every seed there) or sd = 0 gives [mean, mean]."""
    if n < 2 or not sd > 0:
        return mean, mean
    t = stats.t.ppf(0.5 + level / 2, n - 1)
    se = sd / math.sqrt(n)
    lo_b, hi_b = bounds if bounds is not None else (-math.inf, math.inf)
    if mean <= lo_b or mean >= hi_b:
        return mean, mean
    if math.isinf(lo_b) or math.isinf(hi_b):
        return max(lo_b, mean - t * se), min(hi_b, mean + t * se)
    w = hi_b - lo_b                 # logit of the position in [lo, hi]
    u = (mean - lo_b) / w
    centre, half = math.log(u / (1 - u)), t * se / (w * u * (1 - u))

    def back(z):
        return lo_b + w * (0.5 * (1 + math.tanh(z / 2)))   # expit, overflow-free
    return back(centre - half), back(centre + half)


def sd_from_t_interval(lo: float, hi: float, n: int, level: float = 0.95) -> float:
    """The sample sd behind a t-interval [lo, hi] of n values (to recompute it bounded)."""
    if n < 2:
        return 0.0
    return (hi - lo) / 2 / stats.t.ppf(0.5 + level / 2, n - 1) * math.sqrt(n)


def bounds_by(column: str, table: Mapping[str, Bounds] = METRIC_BOUNDS) -> Callable[[dict], Bounds | None]:
    """A ``bounds`` argument for ``aggregate``: look up a group's ``column`` (e.g. "metric") in ``table``.

    ``column`` must be one of the grouping keys: otherwise every group would silently get no
    bounds, so that is refused."""
    def lookup(key: dict) -> Bounds | None:
        if column not in key:
            raise KeyError(f"bounds_by({column!r}) needs {column!r} among aggregate's keys (got "
                           f"{sorted(key)}); group by it, or pass the bounds themselves")
        return table.get(key[column])
    return lookup


def _sort_key(k: tuple):
    return tuple((str(type(x)), x) for x in k)


def aggregate(rows: Iterable[dict], keys: Iterable[str], value: str = "value", level: float = 0.95, *,
              bounds: Bounds | Callable[[dict], Bounds | None] | None = None, points: bool = False,
              finite: bool = False) -> list[dict]:
    """Group tidy rows by ``keys``: mean, 95% interval (lo, hi) and n per group.

    ``bounds``: the metric's range, or a function of the group's key dict giving it (e.g.
    ``bounds_by("metric")``); bounded groups get ``bounded_ci``, others the t-interval.
    Values are clipped into the range first: float error puts a CKA of 1 at 1 + 1e-15.
    ``points``: add ``values``, the group's values space-separated when n <= POINTS_MAX_N.
    ``finite``: leave non-finite values out of the mean and add ``n_runs``, the count
    before dropping them (a failed fit or a criterion never reached is not averaged).
    """
    keys = tuple(keys)
    groups: dict[tuple, list[float]] = {}
    counts: dict[tuple, int] = {}
    for r in rows:
        key = tuple(r[k] for k in keys)
        counts[key] = counts.get(key, 0) + 1
        v = float(r[value])
        if finite and not math.isfinite(v):
            continue
        groups.setdefault(key, []).append(v)
    out = []
    for key in sorted(groups, key=_sort_key):
        vals = np.asarray(groups[key])
        label = dict(zip(keys, key))
        b = bounds(label) if callable(bounds) else bounds
        if b is None:
            m, lo, hi = mean_ci(vals, axis=0, level=level)
        else:
            vals = np.clip(vals, *b)
            m = vals.mean()
            lo, hi = bounded_ci(float(m), float(vals.std(ddof=1)) if len(vals) > 1 else 0.0, len(vals), b, level)
        row = {**label, "mean": float(m), "lo": float(lo), "hi": float(hi), "n": len(vals)}
        if points:
            row["values"] = " ".join(f"{v:.6g}" for v in vals) if len(vals) <= POINTS_MAX_N else ""
        if finite:
            row["n_runs"] = counts[key]
        out.append(row)
    return out


def seed_means(rows: Iterable[dict], keys: Iterable[str], unit: str = "seed", **kw) -> list[dict]:
    """Mean over everything not in ``keys`` (programs, layers, ...) within each ``unit``,
    then ``aggregate`` across units: the seed is the unit of every interval."""
    keys = tuple(keys)
    per: dict[tuple, list[float]] = {}
    for r in rows:
        per.setdefault((tuple(r[k] for k in keys), r[unit]), []).append(float(r["value"]))
    means = [{**dict(zip(keys, k)), unit: u, "value": float(np.mean(v))} for (k, u), v in per.items()]
    return aggregate(means, keys, **kw)


def rebound(table: Iterable[dict], bounds: Bounds | Callable[[dict], Bounds | None] | None,
            level: float = 0.95) -> list[dict]:
    """A summary table's t-intervals recomputed as ``bounded_ci`` from its own mean, lo, hi
    and n (exact: the t-interval fixes the sd). Rows without bounds are unchanged."""
    out = []
    for r in table:
        b = bounds(r) if callable(bounds) else bounds
        if b is not None and all(isinstance(r.get(k), (int, float)) for k in ("mean", "lo", "hi", "n")) \
                and all(math.isfinite(r[k]) for k in ("mean", "lo", "hi")):
            sd = sd_from_t_interval(r["lo"], r["hi"], int(r["n"]), level)
            lo, hi = bounded_ci(float(r["mean"]), sd, int(r["n"]), b, level)
            r = {**r, "lo": lo, "hi": hi}
        out.append(r)
    return out


def survival(durations, observed, times) -> np.ndarray:
    """Kaplan-Meier estimate of P(duration > t) at each of ``times``: the fraction of runs whose
    event (e.g. a half-life reached) has not happened by t, with right-censored runs (``observed``
    False: the window ended first, at ``durations``) counted as at risk until they leave. A
    censored duration is never treated as an event, so no censored run shortens the curve."""
    d = np.asarray(durations, dtype=np.float64)
    o = np.asarray(observed, dtype=bool)
    if d.shape != o.shape or d.ndim != 1:
        raise ValueError(f"durations {d.shape} and observed {o.shape} must be one 1-D shape")
    if not np.all(np.isfinite(d)) or np.any(d < 0):
        raise ValueError("durations must be finite and >= 0 (a censored run has the length of its window)")
    event_times = np.unique(d[o])
    s, steps = 1.0, []
    for t in event_times:
        at_risk = np.sum(d >= t)
        s *= 1.0 - np.sum((d == t) & o) / at_risk
        steps.append(s)
    out = np.ones(len(np.atleast_1d(times)))
    for i, t in enumerate(np.atleast_1d(np.asarray(times, dtype=np.float64))):
        k = np.searchsorted(event_times, t, side="right")
        out[i] = steps[k - 1] if k else 1.0
    return out
