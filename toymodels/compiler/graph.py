"""Stage 1: the program graph.

Turns a RASP expression tree into a list of ``Node``s in dependency order,
with unique labels, a few structural rewrites, and static validation that
fails fast naming the offending node:

  * ``length`` (the primitive) becomes ``make_length()``'s SelectorWidth;
  * ``SequenceMap(f, x, x)`` becomes ``Map(lambda v: f(v, v), x)``;
  * ``SelectorWidth(sel)`` becomes two nodes: a numerical attention output
    ``<label>.attn`` holding 1/(width+1), and a Map decoding the width from it
    (so an MLP can later absorb the decoding, see ``blocks.py``);
  * selectors are flattened into conjunctions of ``SelectSpec``s.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from toymodels.rasp import rasp
from toymodels.rasp.rasp import RASPError


class CompileError(RASPError):
    """The program cannot be compiled (the message names the node and the reason)."""


@dataclasses.dataclass(eq=False)
class SelectSpec:
    keys: Node
    queries: Node
    predicate: Callable[[Any, Any], bool]
    label: str


@dataclasses.dataclass(eq=False)
class Node:
    """One SOp of the program. ``op`` is one of
    tokens | indices | full | map | sequence_map | aggregate | width_attn."""
    label: str
    op: str
    numerical: bool
    inputs: list[Node] = dataclasses.field(default_factory=list)
    fn: Callable | None = None          # map/sequence_map: fn(*input values)
    linear: tuple | None = None         # LinearSequenceMap factors (a, b)
    fill: Any = None                    # full
    selects: list[SelectSpec] = dataclasses.field(default_factory=list)
    default: Any = None                 # aggregate
    kind: str = ""                      # the RASP class it came from, for messages

    def deps(self) -> list[Node]:
        out = list(self.inputs)
        for s in self.selects:
            out += [s.keys, s.queries]
        return out

    def __repr__(self):
        return f"{self.label!r} ({self.kind or self.op})"


@dataclasses.dataclass
class Graph:
    nodes: list[Node]   # dependency order: every node after its deps
    sink: Node
    exprs: dict[str, rasp.SOp] = dataclasses.field(default_factory=dict)  # label -> RASP SOp

    def consumers(self) -> dict[Node, list[Node]]:
        out: dict[Node, list[Node]] = {n: [] for n in self.nodes}
        for n in self.nodes:
            for d in dict.fromkeys(n.deps()):
                out[d].append(n)
        return out


def width_decode(x: float) -> int:
    """The width w from the SelectorWidth attention output 1/(w+1)."""
    return round(1.0 / x) - 1


def extract_graph(program: rasp.SOp) -> Graph:
    if not isinstance(program, rasp.SOp):
        raise CompileError(f"{program!r}: the program must be an SOp, not {type(program).__name__}")
    builder = _Builder()
    sink = builder.node(program)
    return Graph(builder.nodes, sink, {n.label: builder.exprs[k] for k, n in builder.by_expr.items()})


class _Builder:
    def __init__(self):
        self.nodes: list[Node] = []
        self.by_expr: dict[int, Node] = {}
        self.exprs: dict[int, rasp.SOp] = {}
        self.labels: set[str] = {"tokens", "indices"}
        self.sources: dict[str, Node] = {}

    def unique(self, label: str) -> str:
        out, i = label, 2
        while out in self.labels:
            out, i = f"{label}_{i}", i + 1
        self.labels.add(out)
        return out

    def add(self, node: Node) -> Node:
        self.nodes.append(node)
        return node

    def source(self, op: str) -> Node:
        if op not in self.sources:
            self.sources[op] = self.add(Node(op, op, False, kind=op))
        return self.sources[op]

    def node(self, expr: rasp.SOp) -> Node:
        key = id(expr)
        if key not in self.by_expr:
            self.by_expr[key] = self._make(expr)
            self.exprs[key] = expr
        return self.by_expr[key]

    def _make(self, expr: rasp.SOp) -> Node:
        kind = type(expr).__name__
        num = rasp.is_numerical(expr)
        if isinstance(expr, (rasp.TokensType, rasp.IndicesType)):
            if num:
                raise CompileError(f"{expr.label!r} ({kind}): {expr.label} must be categorical; "
                                   "use numerical(Map(lambda x: x, ...)) for a numerical copy")
            return self.source(expr.label)
        if isinstance(expr, rasp.LengthType):
            tok = self.source("tokens")
            spec = SelectSpec(tok, tok, rasp.Comparison.TRUE, "all_true_selector")
            return self._width(expr.label, [spec], num, kind)
        if isinstance(expr, rasp.Full):
            return self.add(Node(self.unique(expr.label), "full", num, fill=expr.fill, kind=kind))
        if isinstance(expr, rasp.Map):
            x = self.node(expr.inner)
            return self.add(Node(self.unique(expr.label), "map", num, [x], fn=expr.f, kind=kind))
        if isinstance(expr, rasp.SequenceMap):
            x, y = self.node(expr.fst), self.node(expr.snd)
            lin = (expr.fst_fac, expr.snd_fac) if isinstance(expr, rasp.LinearSequenceMap) else None
            if x is y:
                f = expr.f
                return self.add(Node(self.unique(expr.label), "map", num, [x],
                                     fn=lambda v: f(v, v), kind=kind))
            return self.add(Node(self.unique(expr.label), "sequence_map", num, [x, y],
                                 fn=expr.f, linear=lin, kind=kind))
        if isinstance(expr, rasp.SelectorWidth):
            return self._width(expr.label, self.selects(expr.selector), num, kind)
        if isinstance(expr, rasp.Aggregate):
            specs = self.selects(expr.selector)
            x = self.node(expr.sop)
            if num and (expr.default is None or expr.default != 0):
                raise CompileError(f"{expr.label!r} ({kind}): a numerical Aggregate must have "
                                   f"default=0 (got {expr.default!r})")
            if not num and expr.default is not None:
                raise CompileError(f"{expr.label!r} ({kind}): a categorical Aggregate must have "
                                   f"default=None (got {expr.default!r})")
            return self.add(Node(self.unique(expr.label), "aggregate", num, [x], selects=specs,
                                 default=expr.default, kind=kind))
        raise CompileError(f"{expr.label!r} ({kind}): cannot compile this kind of expression")

    def _width(self, label: str, specs: list[SelectSpec], num: bool, kind: str) -> Node:
        label = self.unique(label)
        attn = self.add(Node(self.unique(f"{label}.attn"), "width_attn", True, selects=specs,
                             kind="SelectorWidth attention"))
        return self.add(Node(label, "map", num, [attn], fn=width_decode, kind=kind))

    def selects(self, sel: rasp.Selector) -> list[SelectSpec]:
        if isinstance(sel, rasp.Select):
            return [SelectSpec(self.node(sel.keys), self.node(sel.queries), sel.predicate,
                               sel.label)]
        if isinstance(sel, rasp.SelectorAnd):
            return self.selects(sel.fst) + self.selects(sel.snd)
        raise CompileError(
            f"{sel.label!r} ({type(sel).__name__}): only Select and SelectorAnd compile; "
            "| and ~ compile only when they simplify to one Select (same keys and queries)")
