"""The RASP language: sequence operations (SOps) and selectors.

Names and semantics follow DeepMind's Tracr (Lindner et al. 2023), so Tracr
programs port by changing the import. Every expression is a function of the
input sequence: an SOp maps it to a sequence of values (one per position), a
Selector to a boolean matrix ``[query][key]`` (an attention pattern).

Semantics (see ``interpreter.py``):
  * ``None`` propagates: a Map or SequenceMap with a ``None`` input is ``None``
    (the function is not called); a comparison in ``Select`` with a ``None`` key
    or query is False (Tracr raises instead).
  * ``Aggregate`` takes the mean of the selected values. A numerical Aggregate
    of nothing gives its default (which must be 0 to compile); a categorical
    one must select values that are all equal, and gives ``None`` when it
    selects nothing.
  * Annotations (``named``, ``numerical``, ``categorical``) update the
    expression in place and return it (Tracr returns a copy; programs here,
    e.g. the decompiler's parser, rely on in place). The primitives ``tokens``,
    ``indices`` and ``length`` are shared by every program, so annotating one
    returns an annotated copy and never changes them for anyone else.
"""

from __future__ import annotations

import copy
import enum
import itertools
from collections.abc import Callable
from typing import Any

from toymodels.rasp.comparison import Comparison, Value  # noqa: F401  (rasp.Comparison, as in Tracr)


class RASPError(ValueError):
    """A RASP program is malformed, or cannot run on this input."""


class Encoding(enum.Enum):
    """How an SOp is stored in a compiled residual stream."""
    CATEGORICAL = "categorical"  # one direction per value (one-hot); None = zero vector
    NUMERICAL = "numerical"      # a single direction holding the number


class RASPExpr:
    """Base class of all RASP expressions (SOps and selectors); ``expr(xs)`` evaluates it, as
    in Tracr (``__call__`` is installed by interpreter.py, which builds on these classes)."""

    _ids = itertools.count(1)
    _kind = "expr"

    def __init__(self):
        self.unique_id = next(RASPExpr._ids)
        self._annotations: dict[str, Any] = {}

    __hash__ = object.__hash__

    @property
    def annotations(self) -> dict[str, Any]:
        """A copy of this expression's annotations (name, encoding, ...)."""
        out = {"name": self.name}
        if isinstance(self, SOp):
            out["encoding"] = get_encoding(self)
        return {**out, **self._annotations}

    @property
    def name(self) -> str:
        return self._annotations.get("name") or f"{self._kind}_{self.unique_id}"

    @property
    def label(self) -> str:
        return self.name

    @property
    def children(self) -> list[RASPExpr]:
        return []

    def named(self, name: str):
        return annotate(self, name=name)

    def annotated(self, **annotations):
        return annotate(self, **annotations)

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r})"


def annotate(expr: RASPExpr, **annotations) -> RASPExpr:
    """Sets annotations on ``expr`` in place and returns it; a primitive (tokens, indices,
    length) is copied first, so the shared module-level ones never change."""
    if "encoding" in annotations and not isinstance(annotations["encoding"], Encoding):
        raise RASPError(f"encoding must be an Encoding, got {annotations['encoding']!r}")
    if isinstance(expr, (TokensType, IndicesType, LengthType)):
        expr = copy.copy(expr)
        expr.unique_id, expr._annotations = next(RASPExpr._ids), dict(expr._annotations)
    expr._annotations.update(annotations)
    return expr


# ---------------------------------------------------------------- SOps


class SOp(RASPExpr):
    """A sequence operation: input sequence -> one value per position.

    Operators build new SOps: with a constant, ``sop + 1`` is a Map; with
    another SOp, ``a + b`` is a SequenceMap. ``==`` therefore builds an SOp
    (SOps hash by identity).
    """

    _kind = "sop"

    def _binary(self, other, f, reverse=False):
        if isinstance(other, SOp):
            return SequenceMap(f, other, self) if reverse else SequenceMap(f, self, other)
        if reverse:
            return Map(lambda x: f(other, x), self)
        return Map(lambda x: f(x, other), self)

    def __lt__(self, other): return self._binary(other, lambda x, y: x < y)
    def __le__(self, other): return self._binary(other, lambda x, y: x <= y)
    def __eq__(self, other): return self._binary(other, lambda x, y: x == y)  # type: ignore[override]
    def __ne__(self, other): return self._binary(other, lambda x, y: x != y)  # type: ignore[override]
    def __gt__(self, other): return self._binary(other, lambda x, y: x > y)
    def __ge__(self, other): return self._binary(other, lambda x, y: x >= y)
    def __add__(self, other): return self._binary(other, lambda x, y: x + y)
    def __radd__(self, other): return self._binary(other, lambda x, y: x + y, True)
    def __sub__(self, other): return self._binary(other, lambda x, y: x - y)
    def __rsub__(self, other): return self._binary(other, lambda x, y: x - y, True)
    def __mul__(self, other): return self._binary(other, lambda x, y: x * y)
    def __rmul__(self, other): return self._binary(other, lambda x, y: x * y, True)
    def __truediv__(self, other): return self._binary(other, lambda x, y: x / y)
    def __rtruediv__(self, other): return self._binary(other, lambda x, y: x / y, True)
    def __and__(self, other): return self._binary(other, lambda x, y: x and y)
    def __rand__(self, other): return self._binary(other, lambda x, y: x and y, True)
    def __or__(self, other): return self._binary(other, lambda x, y: x or y)
    def __ror__(self, other): return self._binary(other, lambda x, y: x or y, True)
    def __invert__(self): return Map(lambda x: not x, self)
    def __neg__(self): return Map(lambda x: -x, self)

    __hash__ = RASPExpr.__hash__


class TokensType(SOp):
    """The input tokens."""
    _kind = "tokens"

    @property
    def name(self) -> str:
        return "tokens"


class IndicesType(SOp):
    """The position of each token: 0, 1, ..., n-1."""
    _kind = "indices"

    @property
    def name(self) -> str:
        return "indices"


class LengthType(SOp):
    """The sequence length at every position (compiled as ``make_length()``)."""
    _kind = "length"

    @property
    def name(self) -> str:
        return self._annotations.get("name") or "length"


tokens = TokensType()
indices = IndicesType()
length = LengthType()


class Map(SOp):
    """``f`` applied at every position: ``Map(lambda x: x + 1, tokens)``.

    With ``simplify`` (default, as in Tracr) a Map of a Map becomes one Map of
    the composed function; the inner Map's name and encoding are dropped.
    """
    _kind = "map"

    def __init__(self, f: Callable[[Value], Value], inner: SOp, simplify: bool = True):
        super().__init__()
        if not isinstance(inner, SOp):
            raise RASPError(f"Map input must be an SOp, got {inner!r}")
        if not callable(f) or isinstance(f, RASPExpr):
            raise RASPError(f"Map function must be a callable, got {f!r}")
        if simplify and isinstance(inner, Map):
            g, h = inner.f, f
            f = lambda x: None if (y := g(x)) is None else h(y)
            inner = inner.inner
        self.f, self.inner = f, inner

    @property
    def children(self):
        return [self.inner]


class SequenceMap(SOp):
    """``f(x, y)`` applied position-wise to two SOps."""
    _kind = "sequence_map"

    def __init__(self, f: Callable[[Value, Value], Value], fst: SOp, snd: SOp):
        super().__init__()
        if not (isinstance(fst, SOp) and isinstance(snd, SOp)):
            raise RASPError(f"SequenceMap inputs must be SOps, got {fst!r}, {snd!r}")
        if not callable(f) or isinstance(f, RASPExpr):
            raise RASPError(f"SequenceMap function must be a callable, got {f!r}")
        self.f, self.fst, self.snd = f, fst, snd

    @property
    def children(self):
        return [self.fst, self.snd]


class LinearSequenceMap(SequenceMap):
    """``fst_fac * x + snd_fac * y`` position-wise."""
    _kind = "linear_sequence_map"

    def __init__(self, fst: SOp, snd: SOp, fst_fac: float, snd_fac: float):
        super().__init__(lambda x, y: fst_fac * x + snd_fac * y, fst, snd)
        self.fst_fac, self.snd_fac = fst_fac, snd_fac


class Full(SOp):
    """The constant ``fill`` at every position."""
    _kind = "full"

    def __init__(self, fill: Value):
        super().__init__()
        self.fill = fill


# ---------------------------------------------------------------- selectors


class Selector(RASPExpr):
    """A boolean matrix ``[query][key]``; ``&``, ``|`` and ``~`` combine selectors."""
    _kind = "selector"

    def __and__(self, other): return selector_and(self, other)
    def __rand__(self, other): return selector_and(other, self)
    def __or__(self, other): return selector_or(self, other)
    def __ror__(self, other): return selector_or(other, self)
    def __invert__(self): return selector_not(self)


class Select(Selector):
    """Query position q selects key position k iff ``predicate(keys[k], queries[q])``."""
    _kind = "select"

    def __init__(self, keys: SOp, queries: SOp, predicate: Callable[[Value, Value], bool]):
        super().__init__()
        if not (isinstance(keys, SOp) and isinstance(queries, SOp)):
            raise RASPError(f"Select keys and queries must be SOps, got {keys!r}, {queries!r}")
        if not callable(predicate):
            raise RASPError(f"Select predicate must be a Comparison or callable, got {predicate!r}")
        self.keys, self.queries, self.predicate = keys, queries, predicate

    @property
    def children(self):
        return [self.keys, self.queries]


class _SelectorPair(Selector):
    def __init__(self, fst: Selector, snd: Selector):
        super().__init__()
        if not (isinstance(fst, Selector) and isinstance(snd, Selector)):
            raise RASPError(f"{type(self).__name__} needs two Selectors, got {fst!r}, {snd!r}")
        self.fst, self.snd = fst, snd

    @property
    def children(self):
        return [self.fst, self.snd]


class SelectorAnd(_SelectorPair):
    """Selected by both (compiles when both sides are Selects or SelectorAnds)."""
    _kind = "selector_and"


class SelectorOr(_SelectorPair):
    """Selected by either (compiles only when it simplifies to one Select)."""
    _kind = "selector_or"


class SelectorNot(Selector):
    """Not selected (compiles only when it simplifies to one Select)."""
    _kind = "selector_not"

    def __init__(self, inner: Selector):
        super().__init__()
        if not isinstance(inner, Selector):
            raise RASPError(f"SelectorNot needs a Selector, got {inner!r}")
        self.inner = inner

    @property
    def children(self):
        return [self.inner]


def _merge_selects(fst: Selector, snd: Selector, combine) -> Select | None:
    """One Select equivalent to combining two with matching keys and queries (or Full)."""
    if not (isinstance(fst, Select) and isinstance(snd, Select)):
        return None
    p1, p2 = fst.predicate, snd.predicate
    keys = fst.keys if fst.keys is snd.keys else None
    queries = fst.queries if fst.queries is snd.queries else None
    if isinstance(fst.keys, Full) and keys is None:
        keys, p1 = snd.keys, (lambda k, q, p=p1, c=fst.keys.fill: p(c, q))
    elif isinstance(snd.keys, Full) and keys is None:
        keys, p2 = fst.keys, (lambda k, q, p=p2, c=snd.keys.fill: p(c, q))
    if isinstance(fst.queries, Full) and queries is None:
        queries, p1 = snd.queries, (lambda k, q, p=p1, c=fst.queries.fill: p(k, c))
    elif isinstance(snd.queries, Full) and queries is None:
        queries, p2 = fst.queries, (lambda k, q, p=p2, c=snd.queries.fill: p(k, c))
    if keys is None or queries is None:
        return None
    return Select(keys, queries, lambda k, q: combine(p1(k, q), p2(k, q)))


def selector_and(fst: Selector, snd: Selector, simplify: bool = True) -> Selector:
    merged = _merge_selects(fst, snd, lambda a, b: a and b) if simplify else None
    return merged or SelectorAnd(fst, snd)


def selector_or(fst: Selector, snd: Selector, simplify: bool = True) -> Selector:
    merged = _merge_selects(fst, snd, lambda a, b: a or b) if simplify else None
    return merged or SelectorOr(fst, snd)


def selector_not(inner: Selector, simplify: bool = True) -> Selector:
    if simplify and isinstance(inner, Select):
        p = inner.predicate
        return Select(inner.keys, inner.queries, lambda k, q: not p(k, q))
    return SelectorNot(inner)


# ---------------------------------------------------------------- selector-consuming SOps


class SelectorWidth(SOp):
    """The number of keys each query selects."""
    _kind = "selector_width"

    def __init__(self, selector: Selector):
        super().__init__()
        if not isinstance(selector, Selector):
            raise RASPError(f"SelectorWidth needs a Selector, got {selector!r}")
        self.selector = selector

    @property
    def children(self):
        return [self.selector]


class Aggregate(SOp):
    """Mean of ``sop`` over the selected keys; ``default`` where nothing is selected."""
    _kind = "aggregate"

    def __init__(self, selector: Selector, sop: SOp, default: Value = None):
        super().__init__()
        if not isinstance(selector, Selector):
            raise RASPError(f"Aggregate needs a Selector, got {selector!r}")
        if not isinstance(sop, SOp):
            raise RASPError(f"Aggregate needs an SOp to aggregate, got {sop!r}")
        self.selector, self.sop, self.default = selector, sop, default

    @property
    def children(self):
        return [self.selector, self.sop]


# ---------------------------------------------------------------- encodings


def numerical(sop: SOp) -> SOp:
    """Mark ``sop`` as numerically encoded (one direction holding the number)."""
    return annotate(sop, encoding=Encoding.NUMERICAL)


def categorical(sop: SOp) -> SOp:
    """Mark ``sop`` as categorically encoded (one-hot over its values; the default)."""
    return annotate(sop, encoding=Encoding.CATEGORICAL)


def get_encoding(sop: SOp) -> Encoding:
    return sop._annotations.get("encoding", Encoding.CATEGORICAL)


def is_numerical(sop: SOp) -> bool:
    return get_encoding(sop) is Encoding.NUMERICAL


def is_categorical(sop: SOp) -> bool:
    return get_encoding(sop) is Encoding.CATEGORICAL
