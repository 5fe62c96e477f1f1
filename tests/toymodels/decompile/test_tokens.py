"""Program tokens: fountain programs round-trip exactly through tokens, and the vocabulary."""

from __future__ import annotations

import random

import pytest

from toymodels.compiler import accepts
from toymodels.decompile import VOCAB, parse_program, program_tokens
from toymodels.decompile.tokens import ParseError
from rasp_cases import outputs
from toymodels.rasp import Comparison, fountain, rasp



# ---------------------------------------------------------------- program tokens
def test_round_trip_is_exact_on_fountain_programs():
    rng = random.Random(0)
    for seed in range(210):
        program = fountain.generate(seed, n_ops=rng.randint(2, 8), accept=accepts)
        toks = program_tokens(program)
        assert set(toks) <= set(VOCAB)
        again = parse_program(toks)
        assert program_tokens(again) == toks, seed
        assert outputs(again) == outputs(program), seed


def test_merged_selectors_round_trip():
    # selector_and folds a Full side / shared keys into one Select with a lambda predicate.
    x = rasp.Map(fountain.MAPS[0][3], rasp.indices, simplify=False)
    sel = (rasp.Select(rasp.indices, rasp.Full(2), Comparison.LT)
           & rasp.Select(rasp.indices, x, Comparison.LEQ))
    assert isinstance(sel, rasp.Select) and not isinstance(sel.predicate, Comparison)
    program = rasp.numerical(rasp.Aggregate(sel, rasp.numerical(
        rasp.Map(fountain.TO_NUM[2][3], rasp.indices, simplify=False)), default=0))
    toks = program_tokens(program)
    assert "And" in toks and "Full" in toks
    again = parse_program(toks)
    assert program_tokens(again) == toks and outputs(again) == outputs(program)


def test_vocab_is_closed_and_unique():
    assert len(set(VOCAB)) == len(VOCAB) and VOCAB[:3] == ("<pad>", "<sep>", "<eos>")
    with pytest.raises(ValueError, match="named functions"):
        program_tokens(rasp.Map(lambda v: v, rasp.tokens))
    for bad in (["Map", "f:x+1"], ["Map", "f:x+1", "v3", "cat"], ["Select"], []):
        with pytest.raises(ParseError):
            parse_program(bad)
