"""Per-node blocks, attention part: Select + Aggregate heads and SelectorWidth heads.

A selector's predicate over (query value, key value) is a 0/1 table A. We
factor it exactly with 0/1 features: group query values whose rows of A are
equal (or key values whose columns are equal, whichever gives fewer groups);
query feature g is the sum of its group's one-hot directions, key feature g
the sum of the key directions it matches. So q . k is exactly A[q, k], and a
None query or key (the zero vector) matches nothing. A conjunction of m
Selects concatenates features: the score is the number of predicates that hold.

Scores are scaled by ``coldness`` C. The BOS key gets (m - 1/2) C from a
query feature fed by every token direction (1 at every position), so a query
that selects keys puts weight e^{-C/2} ~ 0 on BOS and exactly uniform weight
on its selected keys, and a query that selects nothing attends to BOS, whose
value is zero: the numerical default 0, the categorical None. A SelectorWidth
head instead gives BOS the full score m C and reads the BOS direction as its
value, so it outputs 1/(width+1), which an MLP then decodes.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from toymodels.compiler.readouts import Lin, Readout, lin_sum


@dataclasses.dataclass
class HeadOp:
    node: str
    q: list[Lin]     # query features (already scaled by the coldness)
    k: list[Lin]     # key features
    v: list[Lin]     # value components
    out: list[str]   # residual label each value component is written to

    @property
    def reads(self) -> set[str]:
        return {k for lin in self.q + self.k + self.v for k in lin}

    @property
    def writes(self) -> set[str]:
        return set(self.out)

    @property
    def width(self) -> int:
        return max(len(self.q), len(self.v))


def _table(predicate, key_values, query_values) -> np.ndarray:
    def ok(k, q):
        try:
            return bool(predicate(k, q))
        except Exception:  # noqa: BLE001 - the interpreter would raise here too
            return False
    return np.array([[ok(k, q) for k in key_values] for q in query_values], bool).reshape(
        len(query_values), len(key_values))


def _groups(mat: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Rows with identical non-zero patterns: [(row indices, pattern)]."""
    groups: dict[bytes, list[int]] = {}
    for i, row in enumerate(mat):
        if row.any():
            groups.setdefault(row.tobytes(), []).append(i)
    return [(np.array(rows), mat[rows[0]]) for rows in groups.values()]


def select_features(predicate, keys: Readout, queries: Readout) -> tuple[list[Lin], list[Lin]]:
    """0/1 query and key features whose dot product is predicate(key, query)."""
    table = _table(predicate, keys.values, queries.values)      # [query, key]
    by_query, by_key = _groups(table), _groups(table.T)
    q_feats, k_feats = [], []
    if len(by_query) <= len(by_key):
        for rows, pattern in by_query:
            q_feats.append(lin_sum(queries.lins[i] for i in rows))
            k_feats.append(lin_sum(keys.lins[j] for j in np.flatnonzero(pattern)))
    else:
        for cols, pattern in by_key:
            k_feats.append(lin_sum(keys.lins[j] for j in cols))
            q_feats.append(lin_sum(queries.lins[i] for i in np.flatnonzero(pattern)))
    return q_feats, k_feats


def _qk(selects, coldness: float, bos_score: float, bos: str, one_all: Lin):
    q, k = [], []
    for predicate, keys, queries in selects:
        qf, kf = select_features(predicate, keys, queries)
        q += [f * coldness for f in qf]
        k += kf
    q.append(one_all * (bos_score * coldness))
    k.append(Lin({bos: 1.0}))
    return q, k


def aggregate_head(node: str, selects, value: Readout, out_labels: list[str], coldness: float,
                   bos: str, one_all: Lin) -> HeadOp:
    """Mean of ``value`` over the selected keys (zero where none is selected)."""
    q, k = _qk(selects, coldness, len(selects) - 0.5, bos, one_all)
    return HeadOp(node, q, k, list(value.lins), list(out_labels))


def width_head(node: str, selects, out_label: str, coldness: float, bos: str,
               one_all: Lin) -> HeadOp:
    """1 / (number of selected keys + 1) at every position."""
    q, k = _qk(selects, coldness, float(len(selects)), bos, one_all)
    return HeadOp(node, q, k, [Lin({bos: 1.0})], [out_label])
