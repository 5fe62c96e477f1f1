"""Residual-stream directions, and SOps as linear read-outs of the residual stream.

Every residual direction has a label: ``tokens:BOS``, ``tokens:a``,
``indices:3``, ``<sop>:<value>`` for a categorical SOp, ``<sop>`` for a
numerical one, ``<sop>.attn`` for a SelectorWidth's attention output.

A ``Lin`` is a linear function of the residual stream, as {label: coefficient}.
A ``Readout`` gives an SOp's code as linear functions of the residual: one
``Lin`` per value (the one-hot code; ``None`` is the zero vector) for a
categorical SOp, a single ``Lin`` for a numerical one. A materialized SOp
reads its own directions; a *virtual* one (a categorical Map, a linear
numerical map, a constant) reads someone else's, so it costs no layer and no
dimension. Every SOp code is zero at the BOS position (up to e^-C/2 from attention).
"""

from __future__ import annotations

import dataclasses


class Lin(dict):
    """{residual label: coefficient}; supports +, -, and scaling by a float."""

    def __add__(self, other: Lin) -> Lin:
        out = Lin(self)
        for k, v in other.items():
            out[k] = out.get(k, 0.0) + v
        return out

    def __sub__(self, other: Lin) -> Lin:
        return self + other * -1.0

    def __mul__(self, c: float) -> Lin:
        return Lin({k: v * c for k, v in self.items()})

    __rmul__ = __mul__

    def clean(self) -> Lin:
        return Lin({k: v for k, v in self.items() if v != 0.0})


def lin_sum(lins) -> Lin:
    out = Lin()
    for x in lins:
        out = out + x
    return out


@dataclasses.dataclass
class Readout:
    """An SOp's code: ``lins[j]`` reads the one-hot entry of ``values[j]`` (categorical),
    or ``lins[0]`` reads the number (numerical, ``values is None``)."""
    lins: list[Lin]
    values: list | None

    @property
    def numerical(self) -> bool:
        return self.values is None

    @property
    def labels(self) -> list[str]:
        return list(dict.fromkeys(k for lin in self.lins for k in lin))

    def number(self) -> Lin:
        """The SOp's value as one linear function (a categorical SOp must hold numbers)."""
        if self.numerical:
            return self.lins[0]
        return lin_sum(lin * float(v) for lin, v in zip(self.lins, self.values)).clean()


def value_labels(name: str, values: list) -> list[str]:
    """``name:value`` per value; ``repr`` where two values print alike (1 and "1")."""
    labels = [f"{name}:{v}" for v in values]
    if len(set(labels)) < len(labels):
        labels = [f"{name}:{v!r}" for v in values]
    return labels


def own_readout(labels: list[str], values: list | None) -> Readout:
    return Readout([Lin({lab: 1.0}) for lab in labels], values)
