"""Stage 3: per-node blocks.

Decides how each node is computed, then builds its block:

  source     tokens, indices: written by the embeddings
  virtual    a linear read-out of other SOps' directions, no layer, no dimension:
             categorical-input Maps, affine numerical Maps and SequenceMaps
             (LinearSequenceMap, ``x + y``, ...), constants
  mlp        any other Map / SequenceMap: one ``function_mlp`` (mlp.py)
  attention  Aggregate (one head), SelectorWidth attention (one head)
  fused      an MLP node whose only consumer is an MLP: the consumer computes
             the composition directly (e.g. SelectorWidth's decoding and
             ``length - indices`` in make_reverse), saving its layer and its
             dimensions, as long as the merged MLP has at most one numerical
             input and a bounded number of hidden units.

Where a one-hot code is needed from a numerical SOp (Select keys/queries, a
categorical Aggregate, an MLP with two numerical inputs), a categorical copy
``<sop>.cat`` is made by an MLP.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from toymodels.compiler.attention import HeadOp, aggregate_head, width_head
from toymodels.compiler.graph import Graph, Node
from toymodels.compiler.mlp import MLPOp, call_all, function_mlp
from toymodels.compiler.readouts import Lin, Readout, lin_sum, own_readout, value_labels
from toymodels.compiler.valuesets import ValueSet, sorted_values

MAX_FUSED_HIDDEN = 50_000


@dataclasses.dataclass
class Plan:
    residual_labels: list[str]
    ops: list[HeadOp | MLPOp]       # in dependency order
    readouts: dict[str, Readout]    # every SOp that is not fused away, by label
    impl: dict[str, str]            # label -> source | virtual | mlp | attention | fused
    values: dict[str, ValueSet]
    sink: str
    bos_label: str
    token_labels: list[str]         # in input-id order (id 0 is BOS)
    index_labels: list[str]
    one: Lin                        # 1 at every non-BOS position
    one_all: Lin                    # 1 at every position


def _numbers(vs: ValueSet) -> bool:
    return not vs.may_be_none and all(
        isinstance(v, (int, float, np.integer, np.floating)) for v in vs.values)


def _fit(columns: list[np.ndarray], ys) -> tuple | None:
    """Coefficients c with ys == sum_i c_i columns_i + c_const (to 1e-9), or None."""
    if not all(isinstance(y, (int, float, np.integer, np.floating)) for y in ys):
        return None
    y = np.asarray(ys, float)
    a = np.stack(columns + [np.ones_like(y)], 1)
    coef = np.linalg.lstsq(a, y, rcond=None)[0]
    if np.abs(a @ coef - y).max(initial=0.0) > 1e-9 * max(1.0, np.abs(y).max(initial=0.0)):
        return None
    return tuple(float(c) for c in coef)


class _Builder:
    def __init__(self, graph: Graph, vs: dict[Node, ValueSet], vocab, max_seq_len, bos, coldness):
        self.graph, self.vs, self.coldness = graph, vs, coldness
        self.bos_label = f"tokens:{bos}"
        self.vocab, self.n = vocab, max_seq_len
        self.impl: dict[Node, str] = {}
        self.affine: dict[Node, tuple] = {}
        self.twins: dict[Node, Node] = {}

    # ------------------------------------------------------------ decisions

    def decide(self, node: Node) -> str:
        op, vs = node.op, self.vs
        if op in ("tokens", "indices"):
            return "source"
        if op == "full":
            return "virtual"
        if op in ("aggregate", "width_attn"):
            return "attention"
        if op == "map":
            x = node.inputs[0]
            if x.op == "width_attn":
                return "mlp"
            if not x.numerical:
                return "virtual"
            if node.numerical:
                xs = vs[x].values
                fit = _fit([np.asarray(xs, float)], call_all(node.fn, [[v] for v in xs]))
                if fit is not None:
                    self.affine[node] = fit
                    return "virtual"
            return "mlp"
        x, y = node.inputs
        if node.numerical and _numbers(vs[x]) and _numbers(vs[y]):
            if node.linear:
                self.affine[node] = (*map(float, node.linear), 0.0)
                return "virtual"
            if len(vs[x]) * len(vs[y]) <= 200_000:
                gx, gy = np.meshgrid(np.asarray(vs[x].values, float),
                                     np.asarray(vs[y].values, float), indexing="ij")
                args = [[u, v] for u in vs[x].values for v in vs[y].values]
                fit = _fit([gx.ravel(), gy.ravel()], call_all(node.fn, args))
                if fit is not None:
                    self.affine[node] = fit
                    return "virtual"
        return "mlp"

    def twin(self, x: Node) -> Node:
        """A categorical copy of numerical ``x`` (made by an MLP)."""
        if x not in self.twins:
            labels = {n.label for n in self.graph.nodes}
            label = f"{x.label}.cat"
            while label in labels:
                label += "_"
            t = Node(label, "map", False, [x], fn=lambda v: v, kind="categorical copy")
            self.vs[t] = ValueSet(list(self.vs[x].values))
            self.impl[t] = "mlp"
            self.twins[x] = t
        return self.twins[x]

    def add_twins(self) -> list[Node]:
        for node in self.graph.nodes:
            if node.op == "aggregate" and not node.numerical and node.inputs[0].numerical:
                node.inputs = [self.twin(node.inputs[0])]
            for spec in node.selects:
                if spec.keys.numerical:
                    spec.keys = self.twin(spec.keys)
                if spec.queries.numerical:
                    spec.queries = self.twin(spec.queries)
            if self.impl[node] == "mlp":
                nums = [i for i in node.inputs if i.numerical]
                node.inputs = [self.twin(i) if i in nums[1:] else i for i in node.inputs]
        order = []
        for node in self.graph.nodes:
            order.append(node)
            if node in self.twins:
                order.append(self.twins[node])
        return order

    # ------------------------------------------------------------ fusion

    def hidden_estimate(self, inputs: list[Node]) -> int:
        est = 1
        for i in inputs:
            est *= (2 * len(self.vs[i]) - 1) if i.numerical else len(self.vs[i])
        return est

    def fuse(self, order: list[Node], sink: Node) -> None:
        consumers = Graph(order, sink).consumers()
        for m in order:
            if self.impl[m] != "mlp":
                continue
            changed = True
            while changed:
                changed = False
                for p in m.inputs:
                    if self.impl[p] != "mlp" or p is sink or consumers[p] != [m]:
                        continue
                    merged = list(dict.fromkeys(
                        j for i in m.inputs for j in (p.inputs if i is p else [i])))
                    est = self.hidden_estimate(merged)
                    limit = 4 * (self.hidden_estimate(m.inputs) + self.hidden_estimate(p.inputs))
                    if sum(i.numerical for i in merged) > 1 or est > min(limit + 64, MAX_FUSED_HIDDEN):
                        continue
                    m.fn, m.inputs = _compose(m, p, merged), merged
                    for i in p.inputs:
                        consumers[i] = [m if c is p else c for c in consumers[i]]
                        consumers[i] = list(dict.fromkeys(consumers[i]))
                    self.impl[p] = "fused"
                    changed = True
                    break

    # ------------------------------------------------------------ building

    def build(self) -> Plan:
        for node in self.graph.nodes:
            self.impl[node] = self.decide(node)
        order = self.add_twins()
        self.fuse(order, self.graph.sink)
        tok_values = sorted_values(self.vocab)
        token_labels = value_labels("tokens", tok_values)
        index_labels = value_labels("indices", list(range(self.n)))
        self.one = Lin({lab: 1.0 for lab in token_labels})
        self.one_all = self.one + Lin({self.bos_label: 1.0})
        self.labels = [self.bos_label] + token_labels + index_labels
        self.readouts: dict[Node, Readout] = {}
        self.ops: list = []
        for node in order:
            impl = self.impl[node]
            if impl == "fused":
                continue
            if node.op == "tokens":
                self.readouts[node] = own_readout(token_labels, tok_values)
            elif node.op == "indices":
                self.readouts[node] = own_readout(index_labels, list(range(self.n)))
            elif impl == "virtual":
                self.readouts[node] = self.virtual(node)
            else:
                self.readouts[node] = self.materialize(node)
        return Plan(self.labels, self.ops, {n.label: r for n, r in self.readouts.items()},
                    {n.label: self.impl[n] for n in order}, {n.label: self.vs[n] for n in order},
                    self.graph.sink.label, self.bos_label, token_labels, index_labels, self.one,
                    self.one_all)

    def number(self, node: Node) -> Lin:
        return self.readouts[node].number()

    def virtual(self, node: Node) -> Readout:
        vs = self.vs[node]
        if node.op == "full":
            if node.numerical:
                return Readout([self.one * float(node.fill)], None)
            return Readout([self.one] if node.fill is not None else [], list(vs.values))
        if node in self.affine:
            *coefs, c = self.affine[node]
            lin = lin_sum(self.number(i) * a for i, a in zip(node.inputs, coefs)) + self.one * c
            return Readout([lin.clean()], None)
        x = self.readouts[node.inputs[0]]
        outs = call_all(node.fn, [[v] for v in x.values])
        if node.numerical:
            return Readout([lin_sum(lin * float(y) for lin, y in zip(x.lins, outs)
                                    if y is not None).clean()], None)
        index = {v: j for j, v in enumerate(vs.values)}
        lins = [Lin() for _ in vs.values]
        for lin, y in zip(x.lins, outs):
            if y is not None:
                lins[index[y]] = lins[index[y]] + lin
        return Readout(lins, list(vs.values))

    def materialize(self, node: Node) -> Readout:
        vs = self.vs[node]
        if node.numerical:
            labels, values = [node.label], None
        else:
            labels, values = value_labels(node.label, vs.values), list(vs.values)
        self.labels += labels
        out = own_readout(labels, values)
        if node.op == "width_attn":
            self.ops.append(width_head(node.label, self.selects(node), labels[0], self.coldness,
                                       self.bos_label, self.one_all))
        elif node.op == "aggregate":
            x = node.inputs[0]
            value = Readout([self.number(x)], None) if node.numerical else self.readouts[x]
            self.ops.append(aggregate_head(node.label, self.selects(node), value, labels,
                                           self.coldness, self.bos_label, self.one_all))
        else:
            inputs, num_values = [], None
            for i in node.inputs:
                if i.numerical:
                    inputs.append(Readout([self.number(i)], None))
                    num_values = self.vs[i].values
                else:
                    inputs.append(self.readouts[i])
            self.ops.append(function_mlp(node.label, node.fn, inputs, num_values, out, self.one,
                                         where=repr(node)))
        return out

    def selects(self, node: Node):
        return [(s.predicate, self.readouts[s.keys], self.readouts[s.queries]) for s in node.selects]


def _compose(m: Node, p: Node, merged: list[Node]):
    """m's function with p's computed inline, as a function of ``merged``."""
    m_fn, p_fn, m_in, p_in = m.fn, p.fn, list(m.inputs), list(p.inputs)
    m_idx = [None if i is p else merged.index(i) for i in m_in]
    p_idx = [merged.index(i) for i in p_in]

    def fn(*vals):
        pv = p_fn(*(vals[j] for j in p_idx))
        args = [pv if j is None else vals[j] for j in m_idx]
        return None if any(a is None for a in args) else m_fn(*args)
    return fn


def build_blocks(graph: Graph, vs: dict[Node, ValueSet], vocab, max_seq_len: int, bos: str,
                 coldness: float) -> Plan:
    return _Builder(graph, vs, vocab, max_seq_len, bos, coldness).build()
