"""The RASP language and its interpreter (shared cases in rasp_cases.py)."""

import pytest
from rasp_cases import CASES, same_output

from toymodels.rasp import Comparison, RASPError, evaluate, rasp
from toymodels.rasp import library as lib


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_interpreter_on_named_cases(case):
    for xs, expected in case.examples:
        got = evaluate(case.make(), list(xs))
        assert same_output(got, expected), (case.name, xs, got, expected)


def test_call_syntax_and_selector_values():
    assert lib.make_length()("abc") == [3, 3, 3]
    sel = rasp.Select(rasp.indices, rasp.indices, Comparison.LT)
    assert evaluate(sel, "abc") == [[F, F, F], [T, F, F], [T, T, F]]


T, F = True, False


def test_operator_sugar():
    t, i = rasp.tokens, rasp.indices
    assert evaluate(t == "a", "ab") == [T, F]
    assert evaluate(i + 1, "ab") == [1, 2]
    assert evaluate(1 - i, "ab") == [1, 0]
    assert evaluate(i * i, "abc") == [0, 1, 4]
    assert evaluate(-i, "ab") == [0, -1]
    assert evaluate(i / 2, "ab") == [0, 0.5]
    assert evaluate((i > 0) & (t == "b"), "abb") == [F, T, T]
    assert evaluate((i > 0) | (t == "a"), "ab") == [T, T]
    assert evaluate(~(t == "a"), "ab") == [F, T]
    assert isinstance(t + i, rasp.SequenceMap) and isinstance(t + 1, rasp.Map)
    assert {t: 1}[t] == 1  # SOps hash by identity although == builds an SOp


def test_map_simplify_composes_and_keeps_none():
    inner = lib.shift_by(1, rasp.tokens)
    m = rasp.Map(lambda x: x * 2, rasp.Map(lambda x: x + "!", rasp.Map(lambda x: x, inner)))
    assert m.inner is inner
    assert evaluate(m, "ab") == [None, "a!a!"]
    assert rasp.Map(len, rasp.Map(str, rasp.tokens), simplify=False).inner is not rasp.tokens


def test_none_propagates_and_never_matches():
    shifted = lib.shift_by(1, rasp.tokens)
    assert evaluate(rasp.Map(lambda x: 1 / 0, shifted), "a") == [None]  # f is never called on None
    assert evaluate(rasp.SequenceMap(lambda x, y: x + y, shifted, rasp.tokens), "ab") == [None, "ab"]
    for comparison in Comparison:
        assert comparison(None, 1) is False and comparison(1, None) is False
    sel = rasp.Select(shifted, shifted, lambda k, q: True)
    assert evaluate(rasp.SelectorWidth(sel), "ab") == [0, 1]


def test_comparison_semantics_are_key_then_query():
    sel = rasp.Select(rasp.indices, rasp.Full(1), Comparison.LT)  # key < query
    assert evaluate(sel, "abc") == [[T, F, F]] * 3
    assert Comparison.GEQ(3, 2) and not Comparison.GT(2, 2) and Comparison.NEQ("a", "b")
    assert Comparison.TRUE(1, 2) and not Comparison.FALSE(1, 2)


def test_selector_combinators_simplify_like_tracr():
    a = rasp.Select(rasp.tokens, rasp.tokens, Comparison.EQ)
    b = rasp.Select(rasp.tokens, rasp.tokens, Comparison.LEQ)
    assert isinstance(a & b, rasp.Select) and isinstance(a | b, rasp.Select) and isinstance(~a, rasp.Select)
    c = rasp.Select(rasp.indices, rasp.indices, Comparison.LT)
    assert isinstance(a & c, rasp.SelectorAnd) and isinstance(a | c, rasp.SelectorOr)
    assert isinstance(~(a & c), rasp.SelectorNot)
    assert evaluate(rasp.SelectorWidth(a | c), "aba") == [2, 2, 3]
    assert evaluate(rasp.SelectorWidth(~(a & c)), "aba") == [3, 3, 2]
    full_keys = rasp.Select(rasp.Full(1), rasp.indices, Comparison.LEQ)  # 1 <= query
    assert isinstance(full_keys & c, rasp.Select)
    assert evaluate(rasp.SelectorWidth(full_keys & c), "abc") == [0, 1, 2]


def test_aggregate_means_are_exact_and_defaults_apply():
    bools = rasp.numerical(rasp.tokens == "a")
    every = rasp.Select(rasp.indices, rasp.indices, Comparison.TRUE)
    assert evaluate(rasp.numerical(rasp.Aggregate(every, bools, default=0)), "aab") == [2 / 3] * 3
    thirds = rasp.numerical(rasp.Map(lambda x: 0.1 if x else 0.2, rasp.tokens == "a", simplify=False))
    got = evaluate(rasp.numerical(rasp.Aggregate(every, thirds, default=0)), "aab")
    assert got == [(0.1 + 0.1 + 0.2) / 3] * 3 or abs(got[0] - 0.4 / 3) < 1e-15
    none = rasp.Select(rasp.indices, rasp.indices, Comparison.FALSE)
    assert evaluate(rasp.numerical(rasp.Aggregate(none, bools, default=0)), "ab") == [0, 0]
    assert evaluate(rasp.Aggregate(none, rasp.tokens), "ab") == [None, None]


def test_categorical_aggregate_of_different_values_fails_naming_the_node():
    every = rasp.Select(rasp.indices, rasp.indices, Comparison.TRUE)
    agg = rasp.Aggregate(every, rasp.tokens).named("mixer")
    assert evaluate(agg, "aa") == ["a", "a"]  # equal values are fine
    with pytest.raises(RASPError, match="mixer"):
        evaluate(agg, "ab")
    with pytest.raises(RASPError, match="numeric"):
        evaluate(rasp.numerical(rasp.Aggregate(every, rasp.tokens, default=0)), "ab")


def test_annotating_a_primitive_returns_a_copy_and_leaves_the_shared_one_alone():
    for prim in (rasp.tokens, rasp.indices, rasp.length):
        num = rasp.numerical(prim)
        assert num is not prim and rasp.is_numerical(num) and type(num) is type(prim)
        assert rasp.is_categorical(prim) and prim.named("x") is not prim
    assert rasp.tokens.name == "tokens" and rasp.length.name == "length"
    assert rasp.length.named("n").name == "n" and evaluate(rasp.numerical(rasp.length), "abc") == [3, 3, 3]


def test_annotations_of_other_expressions_are_in_place():
    m = rasp.Map(lambda x: x, rasp.tokens)
    assert rasp.numerical(m) is m and rasp.is_numerical(m)
    assert rasp.categorical(m) is m and rasp.is_categorical(m)
    assert m.named("foo") is m and m.name == m.label == "foo"
    assert m.annotations["encoding"] is rasp.Encoding.CATEGORICAL
    assert rasp.Map(len, rasp.tokens).name.startswith("map_")
    assert rasp.tokens.name == "tokens" and rasp.indices.name == "indices"


def test_constructors_reject_bad_arguments():
    with pytest.raises(RASPError):
        rasp.Map(lambda x: x, "tokens")
    with pytest.raises(RASPError):
        rasp.Aggregate(rasp.tokens, rasp.tokens)
    with pytest.raises(RASPError):
        rasp.SelectorWidth(rasp.tokens)
