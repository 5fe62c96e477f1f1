"""The program fountain: seeded, typed, interpretable programs that pass a caller's check."""

import pytest

from toymodels.rasp import evaluate, fountain, rasp


def test_fountain_is_seeded_typed_and_interpretable():
    a, b = fountain.generate(7, n_ops=5, accept=None), fountain.generate(7, n_ops=5, accept=None)
    xs = list("abcab")
    assert evaluate(a, xs) == evaluate(b, xs)
    progs = list(fountain.programs(0, 20, n_ops=4, accept=None))
    assert len({repr(evaluate(p, xs)) for p in progs}) > 5
    only_maps = fountain.generate(1, n_ops=4, mix={k: 0 for k in fountain.DEFAULT_MIX} | {"map": 1},
                                  accept=None)
    assert not any(isinstance(e, (rasp.Aggregate, rasp.SelectorWidth)) for e in _exprs(only_maps))
    big = fountain.generate(2, n_ops=12, accept=None)
    assert len([e for e in _exprs(big) if not isinstance(e, (rasp.TokensType, rasp.IndicesType))]) >= 12


def _exprs(program):
    seen, stack = {}, [program]
    while stack:
        e = stack.pop()
        if id(e) not in seen:
            seen[id(e)] = e
            stack += e.children
    return [e for e in seen.values() if isinstance(e, rasp.SOp)]


def test_accept_decides_which_program_a_seed_gives():
    calls = []

    def reject_first(program, vocab, max_seq_len):
        calls.append((vocab, max_seq_len))
        return len(calls) > 1

    kept = fountain.generate(4, n_ops=3, vocab=("a", "b"), max_seq_len=3, accept=reject_first)
    # consulted with the fountain's vocab and length: the first candidate rejected, the next kept
    assert calls == [(("a", "b"), 3)] * 2 and isinstance(kept, rasp.SOp)
    with pytest.raises(RuntimeError, match="no valid program in 3 tries"):
        fountain.generate(4, n_ops=3, max_tries=3, accept=lambda *_: False)
    with pytest.raises(TypeError, match="accept"):
        fountain.generate(4, n_ops=3)    # no silent default: the check changes the programs
