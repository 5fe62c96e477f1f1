"""Where attention goes: the attention mass at each query-to-key distance.

    mass_HD = mass_by_distance(pattern_BHTS, min_query=11)   # (H, T): mass at distance d
    beyond = mass_HD[:, 11:].sum(-1)                          # per head, links more than 10 back

Distance d = t - s (query t, key s; 0 is the query's own position). The mean runs over the
batch and the queries t >= ``min_query``; a distance a query cannot reach (t - d < 0) counts
as 0, so summing over any set of distances gives the mean mass that set receives, and the
sum over all distances is the mean total mass of the selected queries (1 for causal softmax).
"""

from __future__ import annotations

import numpy as np


def mass_by_distance(pattern_BHTS, min_query: int = 0) -> np.ndarray:
    """(H, S) mean attention mass at each distance d = t - s, over the batch and the queries
    t >= ``min_query`` of a (B, H, T, S) pattern (keys after the query are not counted)."""
    p = np.asarray(pattern_BHTS, dtype=np.float64)
    if p.ndim != 4:
        raise ValueError(f"pattern must be (B, H, T, S); got shape {p.shape}")
    B, H, T, S = p.shape
    if not 0 <= min_query < T:
        raise ValueError(f"min_query={min_query}: must be in [0, {T}) for {T} query positions")
    t = np.arange(min_query, T)[:, None]
    d = np.arange(S)[None, :]
    s = t - d                                                       # (Q, S): the key at distance d
    valid = (s >= 0) & (s < S)
    picked = p[:, :, t, np.clip(s, 0, S - 1)] * valid               # (B, H, Q, S)
    return picked.mean(axis=(0, 2))
