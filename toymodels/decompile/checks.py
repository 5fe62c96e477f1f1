"""Execution checks: keep the first candidate program that does what the net does.

A compiled net can be run, so a decompiler may test its guesses: run the net on a few
inputs, run each candidate program (``evaluate.sample_decode``'s list, most likely
first) through the RASP interpreter on the same inputs, and answer with the first
candidate whose outputs agree (the first candidate when none does).

    inputs = check_inputs(8)                          # the same inputs for every net
    observed, = net_outputs([(net, compiled)], inputs)  # net: compiled.model or a scramble of it
    tokens, rank = first_agreeing(candidates, inputs, observed)

The check sees the net's behaviour on ``len(inputs)`` inputs only; functional equivalence
(``evaluate.functionally_equivalent``) is scored on every input of length 1..5, so a
candidate can pass the check and still be wrong.
"""

from __future__ import annotations

import copy
import math

import numpy as np

from toymodels.compiler.compiling import forward
from toymodels.decompile.evaluate import _inputs, _output
from toymodels.decompile.tokens import parse_program
from toymodels.rasp.catalogue import FOUNTAIN_MAX_SEQ_LEN, FOUNTAIN_VOCAB

ATOL = 1e-2   # numerical outputs of a compiled net are exact up to float error and softmax leakage


def check_inputs(n: int, seed: int = 0, max_len: int = FOUNTAIN_MAX_SEQ_LEN, vocab=FOUNTAIN_VOCAB,
                 min_len: int = 1) -> list[tuple]:
    """``n`` distinct inputs (without BOS), lengths cycling max_len, max_len - 1, ..., min_len
    so that programs that differ only at some lengths are told apart; drawn with ``seed``.
    ``min_len = max_len``: one length only (e.g. the length a trained net has seen)."""
    if not 1 <= min_len <= max_len:
        raise ValueError(f"min_len={min_len}: allowed 1..max_len={max_len}")
    every = _inputs(max_len, tuple(vocab))
    pools = {m: [tuple(x) for x in every if len(x) == m] for m in range(1, max_len + 1)}
    total = sum(len(pools[m]) for m in range(min_len, max_len + 1))
    if n < 1 or n > total:
        raise ValueError(f"n={n} check inputs of length {min_len}..{max_len}: allowed 1..{total}")
    rng = np.random.default_rng(seed)
    for m in pools:   # every length shuffled, so a length's draws do not depend on min_len
        rng.shuffle(pools[m])
    out, m = [], max_len
    while len(out) < n:
        if pools[m]:
            out.append(pools[m].pop())
        m = m - 1 if m > min_len else max_len
    return out


SHAPE_FIELDS = ("n_layers", "d_model", "n_heads", "d_head", "d_mlp", "vocab_size", "max_seq_len")


def net_outputs(nets, inputs) -> list[list[list]]:
    """What each net outputs on each input: ``nets`` are (model, compiled) pairs, the model a
    Transformer with ``compiled``'s config and input/output spaces (``compiled.model`` or a
    scramble of it), decoded as ``compiled`` does. Every net is zero-padded
    (``CompiledModel.padded``, same function) to one shape first, so the whole list costs
    one compilation per input length instead of one per net."""
    nets = list(nets)
    shape = {f: max(getattr(c.cfg, f) for _, c in nets) for f in SHAPE_FIELDS} if nets else {}
    out = []
    for model, compiled in nets:
        c = copy.copy(compiled)
        c.model = model
        c = c.padded(**shape)
        by_input: dict[int, list] = {}
        for m in sorted({len(x) for x in inputs}):
            idx = [i for i, x in enumerate(inputs) if len(x) == m]
            ids = compiled.encode([[compiled.bos, *inputs[i]] for i in idx])
            by_input |= dict(zip(idx, c.decode(forward(c.model, ids))))
        out.append([by_input[i] for i in range(len(inputs))])
    return out


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), abs_tol=ATOL)
    return a == b


def agrees(tokens, inputs, observed) -> bool:
    """``tokens`` parse, and the program's interpreter outputs equal ``observed`` on every
    input (numbers within ATOL; a value the interpreter leaves undefined never agrees)."""
    try:
        program = parse_program(list(tokens))
    except ValueError:
        return False
    for x, want in zip(inputs, observed):
        got = _output(program, list(x))
        if not isinstance(got, list) or len(got) != len(want) or not all(map(_same, got, want)):
            return False
    return True


def first_agreeing(candidates, inputs, observed) -> tuple[list[str], int]:
    """The first candidate that ``agrees`` with the net and its rank, or (the first
    candidate, -1) when none does."""
    for rank, toks in enumerate(candidates):
        if agrees(toks, inputs, observed):
            return list(toks), rank
    return list(candidates[0]), -1
