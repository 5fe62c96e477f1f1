"""The program catalogue: library names, fountain names, max_seq_len suffixes, errors."""

import pytest

from toymodels.config import ConfigError
from toymodels.rasp import catalogue, evaluate, fountain


def test_library_names_and_length_suffix():
    program, vocab, max_len = catalogue.resolve_program("reverse", accept=None)
    assert (vocab, max_len) == (("a", "b", "c"), 5) and evaluate(program, list("abc")) == list("cba")
    assert catalogue.resolve_program("sort@8", accept=None)[2] == 8
    assert set(catalogue.LIBRARY) >= {"reverse", "sort", "frac_prevs", "is_palindrome"}


def test_fountain_names_are_the_fountain_with_the_given_check():
    calls = []

    def accept(program, vocab, max_seq_len):
        calls.append((vocab, max_seq_len))
        return True

    program, vocab, max_len = catalogue.resolve_program("fountain:3:4@6", accept=accept)
    assert (vocab, max_len) == (catalogue.FOUNTAIN_VOCAB, 6) and calls == [(vocab, 6)]
    again = fountain.generate(3, n_ops=4, vocab=vocab, max_seq_len=6, accept=accept)
    xs = list("abcab")
    assert evaluate(program, xs) == evaluate(again, xs)
    # cached: one name and check, one SOp object
    assert catalogue.resolve_program("fountain:3:4@6", accept=accept)[0] is program


@pytest.mark.parametrize("bad", ["nope", "fountain:x", "fountain:1:2:3", "sort@0", "sort@x", 3])
def test_unknown_names_list_the_choices(bad):
    with pytest.raises(ConfigError, match="reverse"):
        catalogue.resolve_program(bad, accept=None)
