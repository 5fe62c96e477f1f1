"""Stage 4: layer allocation.

Each block goes into the earliest sub-layer after everything it reads is
written (as-soon-as-possible scheduling, which minimises depth): a head into
an attention sub-layer, an MLP into an MLP sub-layer. Time 0 is the
embedding; layer L's attention writes at time 2L+1, its MLP at 2L+2.
"""

from __future__ import annotations

import dataclasses

from toymodels.compiler.attention import HeadOp
from toymodels.compiler.blocks import Plan
from toymodels.compiler.mlp import MLPOp


@dataclasses.dataclass
class Layer:
    heads: list[HeadOp] = dataclasses.field(default_factory=list)
    mlps: list[MLPOp] = dataclasses.field(default_factory=list)

    @property
    def d_mlp(self) -> int:
        return sum(len(m.w_in) for m in self.mlps)


def allocate_layers(plan: Plan) -> list[Layer]:
    ready: dict[str, int] = {}
    layers: list[Layer] = []
    for op in plan.ops:
        t = max((ready.get(label, 0) for label in op.reads), default=0)
        if isinstance(op, HeadOp):
            index, done = (t + 1) // 2, 0
        else:
            index, done = t // 2, 1
        while len(layers) <= index:
            layers.append(Layer())
        (layers[index].heads if isinstance(op, HeadOp) else layers[index].mlps).append(op)
        for label in op.writes:
            ready[label] = 2 * index + 1 + done
    return layers
