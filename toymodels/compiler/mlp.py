"""Per-node blocks, MLP part: one ReLU MLP computing any function of its inputs exactly.

``function_mlp`` computes ``fn(*inputs)`` for k categorical inputs (one-hot
codes) and at most one numerical input with a known finite value set. For
each combination tau of categorical values it builds a gate

    G_tau = sum_j onehot_j[tau_j] - (k - 1) * one       (1 if all match, <= 0 else)

where ``one`` is 1 at every non-BOS position and 0 at BOS (the sum of the
token directions; the compiled nets use no biases). Without a numerical input
one hidden unit ReLU(G_tau) writes the code of fn(tau). With a numerical input
x (sorted values x_0 < x_1 < ...) it writes fn(tau, x_0) and adds, at every
i where the output changes, a step

    step_i(x) = ReLU(s (x - t) + 1/2) - ReLU(s (x - t) - 1/2),  t = (x_{i-1} + x_i) / 2

with its own slope s = 2 / (x_i - x_{i-1}): exactly 0 or 1 for every value in
the set, with a margin of a quarter gap for float error. Tracr uses one slope
for all thresholds, which is why its SelectorWidth fails from width ~10. Step
units are switched off by B * (G_tau - one) when tau does not match. At the
BOS position both units of a step get the same input and cancel, so every
output is exactly zero there.
"""

from __future__ import annotations

import dataclasses
import itertools

from toymodels.compiler.graph import CompileError
from toymodels.compiler.readouts import Lin, Readout

MIN_RELATIVE_GAP = 1e-6  # float32 activations cannot separate closer values


@dataclasses.dataclass
class MLPOp:
    node: str
    w_in: list[Lin]    # per hidden unit: its pre-activation as a function of the residual
    w_out: list[Lin]   # per hidden unit: what it writes to the residual

    @property
    def reads(self) -> set[str]:
        return {k for lin in self.w_in for k in lin}

    @property
    def writes(self) -> set[str]:
        return {k for lin in self.w_out for k in lin}


def call_all(fn, arg_lists):
    """fn(*args) for each args; an exception (the interpreter would raise too) gives None."""
    try:
        return [fn(*a) for a in arg_lists]
    except Exception:  # noqa: BLE001
        out = []
        for a in arg_lists:
            try:
                out.append(fn(*a))
            except Exception:  # noqa: BLE001
                out.append(None)
        return out


def _encoder(node: str, out: Readout):
    """y -> (comparison key, Lin written for y)."""
    if out.numerical:
        lab = next(iter(out.lins[0]))

        def enc(y):
            y = 0.0 if y is None else float(y)
            return y, (Lin({lab: y}) if y != 0.0 else Lin())
        return enc
    index = {v: j for j, v in enumerate(out.values)}

    def enc(y):
        if y is None:
            return -1, Lin()
        try:
            j = index[y]
        except (KeyError, TypeError):
            raise CompileError(f"{node}: internal error, output {y!r} missing from value set") from None
        return j, out.lins[j]
    return enc


def function_mlp(label: str, fn, inputs: list[Readout], num_values, out: Readout, one: Lin,
                 where: str = "") -> MLPOp:
    """An MLP writing ``out``'s code of fn(*inputs) (see module docstring)."""
    node = where or label
    cat = [i for i, r in enumerate(inputs) if not r.numerical]
    num = [i for i, r in enumerate(inputs) if r.numerical]
    if len(num) > 1:
        raise CompileError(f"{node}: internal error, MLP with {len(num)} numerical inputs")
    enc = _encoder(node, out)
    k = len(cat)
    w_in, w_out = [], []
    for combo in itertools.product(*(range(len(inputs[i].values)) for i in cat)):
        args: list = [None] * len(inputs)
        gate = one * float(1 - k)
        for i, j in zip(cat, combo):
            args[i] = inputs[i].values[j]
            gate = gate + inputs[i].lins[j]
        if not num:
            _, code = enc(call_all(fn, [args])[0])
            if code:
                w_in.append(gate.clean())
                w_out.append(code)
            continue
        p = num[0]
        xs = list(num_values)

        def with_x(x, args=args, p=p):
            a = list(args)
            a[p] = x
            return a
        codes = [enc(y) for y in call_all(fn, [with_x(x) for x in xs])]
        if codes[0][1]:
            w_in.append(gate.clean())
            w_out.append(codes[0][1])
        x_lin = inputs[p].lins[0]
        for i in range(1, len(xs)):
            if codes[i][0] == codes[i - 1][0]:
                continue
            lo, hi = float(xs[i - 1]), float(xs[i])
            gap = hi - lo
            if gap < MIN_RELATIVE_GAP * max(1.0, abs(lo), abs(hi)):
                raise CompileError(
                    f"{node}: input values {lo!r} and {hi!r} give different outputs but differ "
                    f"by only {gap:.3g}; float32 activations cannot tell them apart")
            s, t = 2.0 / gap, (lo + hi) / 2
            big = 0.0 if k == 0 else s * max(t - float(xs[0]), float(xs[-1]) - t) + 1.0
            delta = codes[i][1] - codes[i - 1][1]
            for sign in (1.0, -1.0):
                pre = x_lin * s + one * (0.5 * sign - s * t)
                if big:
                    pre = pre + (gate - one) * big
                w_in.append(pre.clean())
                w_out.append((delta * sign).clean())
    return MLPOp(label, w_in, w_out)
