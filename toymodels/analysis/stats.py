"""Mean and confidence intervals over seeds.

``mean_ci`` uses the Student-t interval (the default: honest with 3-5 seeds);
``bootstrap_ci`` is the percentile bootstrap for non-normal statistics.
"""

from __future__ import annotations

import numpy as np
from scipy import stats


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


def aggregate(rows, keys, value: str = "value", level: float = 0.95) -> list[dict]:
    """Group tidy rows by ``keys`` and give mean, t-interval (lo, hi) and n (seeds) per group."""
    groups: dict[tuple, list[float]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(float(r[value]))
    out = []
    for key in sorted(groups, key=lambda k: tuple((str(type(x)), x) for x in k)):
        vals = np.asarray(groups[key])
        m, lo, hi = mean_ci(vals, axis=0, level=level)
        out.append({**dict(zip(keys, key)), "mean": float(m), "lo": float(lo), "hi": float(hi), "n": len(vals)})
    return out
