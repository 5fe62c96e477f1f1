"""Stage 2: value-set inference.

For every node, the set of values it can take on inputs over ``vocab`` of
length 1..max_seq_len, by applying each node's own Python function to every
value (or pair of values) its inputs can take -- the same operations the
interpreter performs, so the floats agree bit for bit. Sets are supersets of
what occurs (inputs are treated as independent) but never miss a value.

Numerical means are exact: the mean of every multiset of 1..max_seq_len input
values (Tracr only includes v/n, missing e.g. 2/3; see docs/rasp.md). Two means
over the same selector of functions of one SOp are enumerated jointly when a
SequenceMap combines them (``opens - closes`` in make_pair_balance). ``None``
is tracked separately (``may_be_none``), since a categorical None is the zero
vector and a numerical SOp cannot represent it.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import numbers
from fractions import Fraction

import numpy as np

from toymodels.compiler.graph import CompileError, Graph, Node, SelectSpec

MAX_NUMERICAL_VALUES = 4_000_000
MAX_CATEGORICAL_VALUES = 4096
MAX_MEAN_WORK = 1_000_000


@dataclasses.dataclass
class ValueSet:
    values: list            # sorted, without None
    may_be_none: bool = False

    def __len__(self):
        return len(self.values)


def sort_key(v):
    if isinstance(v, numbers.Real):
        return (0, v, "")
    if isinstance(v, str):
        return (1, 0, v)
    return (2, 0, repr(v))


def sorted_values(values) -> list:
    """Distinct values in a stable order (numbers, then strings, then the rest by repr)."""
    try:
        distinct = set(values)
    except TypeError as e:
        raise CompileError(f"values must be hashable: {e}") from None
    try:
        return sorted(distinct, key=sort_key)
    except TypeError:
        return sorted(distinct, key=repr)



def _is_number(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, str)


# A SequenceMap or predicate raised: the interpreter would raise too, so the pair cannot occur
# (pairs are a superset: inputs are treated as independent). A Map raising is an error.
ERROR = object()


def _safe(fn, *args):
    try:
        return fn(*args)
    except Exception:  # noqa: BLE001
        return ERROR


def _map_value(node: Node, v):
    """A Map's output for one value its input can take. An exception is a compile error, as
    the interpreter raises on it too (compiled, it would silently become a zero)."""
    try:
        return node.fn(v)
    except Exception as e:  # noqa: BLE001
        raise CompileError(f"{node}: its function raised {type(e).__name__}: {e} on the input value "
                           f"{v!r} of {node.inputs[0]!r}; the interpreter raises here too") from None


def _outputs(outs, none: bool) -> ValueSet:
    outs = [o for o in outs if o is not ERROR]
    return ValueSet(sorted_values(o for o in outs if o is not None), none or any(o is None for o in outs))


def selects_self(spec: SelectSpec, vs: dict[Node, ValueSet]) -> bool:
    """Whether every query position is sure to select at least itself (or any key)."""
    k, q = vs[spec.keys], vs[spec.queries]
    if k.may_be_none or q.may_be_none or not k.values or not q.values:
        return False
    if spec.keys is spec.queries:
        return all(_holds(spec.predicate, v, v) for v in k.values)
    if len(k) * len(q) > 100_000:
        return False
    return all(_holds(spec.predicate, a, b) for a in k.values for b in q.values)


def _holds(predicate, key, query) -> bool:
    r = _safe(predicate, key, query)
    return r is not ERROR and bool(r)


def infer_value_sets(graph: Graph, vocab, max_seq_len: int) -> dict[Node, ValueSet]:
    vs: dict[Node, ValueSet] = {}
    for node in graph.nodes:
        vs[node] = _infer(node, vs, vocab, max_seq_len)
        _check(node, vs[node])
    return vs


def _check(node: Node, v: ValueSet) -> None:
    if node.numerical:
        if v.may_be_none:
            raise CompileError(f"{node}: a numerical SOp cannot be None, but this one can be "
                               "(a None input, a function returning None, or an empty selection)")
        bad = [x for x in v.values[:1000] if not _is_number(x)]
        if bad:
            raise CompileError(f"{node}: a numerical SOp must hold numbers, got {bad[0]!r}")
        if len(v.values) > MAX_NUMERICAL_VALUES:
            raise CompileError(f"{node}: {len(v.values)} possible values; too many to compile")
    elif len(v.values) > MAX_CATEGORICAL_VALUES:
        raise CompileError(f"{node}: {len(v.values)} possible values; too many for a one-hot code "
                           f"(max {MAX_CATEGORICAL_VALUES})")


def _infer(node: Node, vs: dict[Node, ValueSet], vocab, n: int) -> ValueSet:
    op = node.op
    if op == "tokens":
        return ValueSet(sorted_values(vocab))
    if op == "indices":
        return ValueSet(list(range(n)))
    if op == "full":
        return ValueSet([] if node.fill is None else [node.fill], node.fill is None)
    if op == "width_attn":
        lo = 1 if all(selects_self(s, vs) for s in node.selects) else 0
        return ValueSet(sorted(1.0 / (w + 1) for w in range(lo, n + 1)))
    if op == "aggregate":
        x = vs[node.inputs[0]]
        empty = not all(selects_self(s, vs) for s in node.selects)
        if not node.numerical:
            return ValueSet(list(x.values), x.may_be_none or empty)
        if x.may_be_none:
            raise CompileError(f"{node}: the mean of {node.inputs[0]!r}, which can be None")
        values = _mean_values(node, x.values, n)
        return ValueSet(sorted_values(values + [0] if empty else values))
    if op == "map":
        x = vs[node.inputs[0]]
        return _outputs([_map_value(node, v) for v in x.values], x.may_be_none)
    if op == "sequence_map":
        x, y = (vs[i] for i in node.inputs)
        none = x.may_be_none or y.may_be_none
        pairs = _joint_means(*node.inputs, vs, n)
        if pairs is not None:
            return _outputs([_safe(node.fn, u, v) for u, v in pairs], none)
        if node.linear and len(x) * len(y) > 100_000 and all(map(_is_number, x.values + y.values)):
            a, b = node.linear
            grid = a * np.asarray(x.values, float)[:, None] + b * np.asarray(y.values, float)[None]
            return ValueSet(np.unique(grid).tolist(), none)
        return _outputs([_safe(node.fn, u, v) for u, v in itertools.product(x.values, y.values)],
                        none)
    raise CompileError(f"{node}: unknown node type {op!r}")


def _mean_values(node: Node, values: list, n: int) -> list:
    """Every mean of a multiset of 1..n elements of ``values``, as the interpreter computes it."""
    return [m[0] for m in _means(node, [(v,) for v in values], n)]


def _means(node: Node, rows: list[tuple], n: int) -> set[tuple]:
    """Every component-wise mean of a multiset of 1..n of the tuples ``rows``.

    Values are exact rationals scaled to integers by the lcm L of their
    denominators; int / int is correctly rounded, like the interpreter's mean.
    """
    if not rows:
        return set()
    bad = [v for r in rows for v in r if not _is_number(v)]
    if bad:
        raise CompileError(f"{node}: a numerical Aggregate needs numbers, got {bad[0]!r}")
    fracs = {tuple(Fraction(v) for v in r) for r in rows}
    scale = math.lcm(*(f.denominator for r in fracs for f in r))
    elems = {tuple(int(f * scale) for f in r) for r in fracs}
    top = max(abs(v) for e in elems for v in e)
    if len(next(iter(elems))) == 1 and (top + 1) * n * scale < 2**53:
        return _means_fast(node, np.array(sorted(e[0] for e in elems), np.int64), n, scale)
    sums, out = {(0,) * len(next(iter(elems)))}, set()
    for k in range(1, n + 1):
        if len(sums) * len(elems) > MAX_MEAN_WORK:
            raise CompileError(f"{node}: the mean of {len(elems)} distinct values over up to {n} "
                               "positions has too many possible values to compile")
        sums = {tuple(a + b for a, b in zip(s, e)) for s in sums for e in elems}
        out.update(tuple(a / (k * scale) for a in s) for s in sums)
    return out


def _means_fast(node: Node, elems: np.ndarray, n: int, scale: int) -> set[tuple]:
    """``_means`` for scalars whose scaled sums fit exactly in float64 (same results)."""
    sums, out = np.zeros(1, np.int64), set()
    for k in range(1, n + 1):
        if sums.size * elems.size > MAX_MEAN_WORK:
            raise CompileError(f"{node}: the mean of {elems.size} distinct values over up to {n} "
                               "positions has too many possible values to compile")
        sums = np.unique(np.add.outer(sums, elems))
        out.update((float(m),) for m in sums / float(k * scale))
    return out


def _map_chain(node: Node):
    """(base node, function) with node == function(base), following single-input Maps."""
    fns = []
    while node.op == "map" and node.inputs[0].op != "width_attn":
        fns.append(node.fn)
        node = node.inputs[0]

    def apply(v):
        for f in reversed(fns):
            v = None if v is None else _safe(f, v)
        return v
    return node, apply


def _same_selects(a: Node, b: Node) -> bool:
    return len(a.selects) == len(b.selects) and all(
        s.keys is t.keys and s.queries is t.queries and s.predicate is t.predicate
        for s, t in zip(a.selects, b.selects))


def _joint_means(x: Node, y: Node, vs: dict[Node, ValueSet], n: int) -> list[tuple] | None:
    """Exact (x, y) pairs when both are numerical means over the same selector of
    functions of one SOp (e.g. the opens and closes of make_pair_balance); else None."""
    if not (x.op == y.op == "aggregate" and x.numerical and y.numerical and _same_selects(x, y)):
        return None
    (bx, fx), (by, fy) = _map_chain(x.inputs[0]), _map_chain(y.inputs[0])
    if bx is not by or vs[bx].may_be_none:
        return None
    rows = [(fx(v), fy(v)) for v in vs[bx].values]
    if any(not _is_number(v) for r in rows for v in r):
        return None
    pairs = _means(x, rows, n)
    if not all(selects_self(s, vs) for s in x.selects):
        pairs.add((0, 0))
    return sorted(pairs)
