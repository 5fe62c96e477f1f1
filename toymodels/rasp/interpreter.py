"""The reference interpreter: ``evaluate(program, xs)`` -> the program's output sequence.

This is the ground truth compiled models are tested against. Where Tracr's
interpreter would silently disagree with a compiled model, this one raises a
``RASPError`` naming the node instead:
  * a categorical Aggregate that selects several *different* values (a
    compiled head would average their one-hot codes into garbage);
  * a numerical Aggregate of non-numeric or ``None`` values.
Numerical means are the exact rational mean of the selected values, rounded
once to float, so the result does not depend on summation order.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from fractions import Fraction

from toymodels.rasp import rasp
from toymodels.rasp.rasp import RASPError, Value


def evaluate(program: rasp.RASPExpr, xs: Sequence[Value]):
    """Evaluates ``program`` on the input sequence ``xs`` (without BOS).

    Returns a list of values (an SOp) or a ``[query][key]`` boolean matrix (a selector).
    """
    return _Evaluator(list(xs)).eval(program)


def mean(values: Sequence[Value], where: str = "Aggregate") -> float:
    """The exact mean of numbers, rounded once (shared with value-set inference)."""
    if all(type(v) in (int, bool) for v in values):
        return sum(values) / len(values)
    for v in values:
        if not isinstance(v, numbers.Real) or isinstance(v, str):
            raise RASPError(f"{where}: numerical mean of non-numeric value {v!r}")
    return float(sum(Fraction(v) for v in values) / len(values))


class _Evaluator:
    def __init__(self, xs: list):
        self.xs = xs
        self.memo: dict[int, object] = {}

    def eval(self, expr: rasp.RASPExpr):
        key = id(expr)
        if key not in self.memo:
            self.memo[key] = self._eval(expr)
        return self.memo[key]

    def _eval(self, expr):
        n = len(self.xs)
        if isinstance(expr, rasp.TokensType):
            return list(self.xs)
        if isinstance(expr, rasp.IndicesType):
            return list(range(n))
        if isinstance(expr, rasp.LengthType):
            return [n] * n
        if isinstance(expr, rasp.Full):
            return [expr.fill] * n
        if isinstance(expr, rasp.Map):
            return [None if x is None else expr.f(x) for x in self.eval(expr.inner)]
        if isinstance(expr, rasp.SequenceMap):
            return [None if x is None or y is None else expr.f(x, y)
                    for x, y in zip(self.eval(expr.fst), self.eval(expr.snd))]
        if isinstance(expr, rasp.SelectorWidth):
            return [sum(row) for row in self.eval(expr.selector)]
        if isinstance(expr, rasp.Aggregate):
            return self._aggregate(expr)
        if isinstance(expr, rasp.Select):
            keys, queries = self.eval(expr.keys), self.eval(expr.queries)
            p = expr.predicate
            return [[q is not None and k is not None and bool(p(k, q)) for k in keys]
                    for q in queries]
        if isinstance(expr, rasp.SelectorAnd):
            a, b = self.eval(expr.fst), self.eval(expr.snd)
            return [[x and y for x, y in zip(r, s)] for r, s in zip(a, b)]
        if isinstance(expr, rasp.SelectorOr):
            a, b = self.eval(expr.fst), self.eval(expr.snd)
            return [[x or y for x, y in zip(r, s)] for r, s in zip(a, b)]
        if isinstance(expr, rasp.SelectorNot):
            return [[not x for x in r] for r in self.eval(expr.inner)]
        raise RASPError(f"{expr.label}: cannot evaluate expression of type {type(expr).__name__}")

    def _aggregate(self, expr: rasp.Aggregate) -> list:
        rows = self.eval(expr.selector)
        values = self.eval(expr.sop)
        where = f"Aggregate {expr.label!r}"
        out = []
        for q, row in enumerate(rows):
            chosen = [v for v, s in zip(values, row) if s]
            if not chosen:
                out.append(expr.default)
            elif rasp.is_numerical(expr):
                if any(v is None for v in chosen):
                    raise RASPError(f"{where}: numerical mean over None values at query {q}")
                out.append(mean(chosen, where))
            else:
                first = chosen[0]
                if any(v != first or (v is None) != (first is None) for v in chosen[1:]):
                    raise RASPError(
                        f"{where}: categorical aggregate selects different values "
                        f"{sorted(set(map(repr, chosen)))} at query {q}; a compiled head would "
                        "average their encodings. Select a single key, or make it numerical.")
                out.append(first)
        return out


# Tracr's call syntax: ``expr(xs)`` is ``evaluate(expr, xs)`` (see ``rasp.RASPExpr``).
rasp.RASPExpr.__call__ = evaluate
