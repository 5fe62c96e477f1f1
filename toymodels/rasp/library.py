"""Library of RASP programs, with Tracr's names and arguments (tracr/compiler/lib.py).

Tracr's programs: make_length, make_reverse, make_pair_balance, make_shuffle_dyck,
make_shuffle_dyck2, make_hist, make_sort_unique, make_sort, make_sort_freq,
make_frac_prevs, shift_by, detect_pattern, make_count_less_freq, make_count,
make_nary_sequencemap. Ours: make_first, make_last, make_mean, make_is_palindrome,
make_running_count.
"""

from __future__ import annotations

from collections.abc import Sequence

from toymodels.rasp import rasp
from toymodels.rasp.rasp import Comparison, SOp


def make_length() -> SOp:
    """The sequence length at every position: ``length("abcd") == [4, 4, 4, 4]``."""
    all_true = rasp.Select(rasp.tokens, rasp.tokens, Comparison.TRUE).named("all_true_selector")
    return rasp.SelectorWidth(all_true).named("length")


length = make_length()


def make_reverse(sop: SOp) -> SOp:
    """``sop`` reversed: ``reverse("Hello") == list("olleH")``."""
    opp_idx = (length - rasp.indices).named("opp_idx")
    opp_idx = (opp_idx - 1).named("opp_idx-1")
    reverse_selector = rasp.Select(rasp.indices, opp_idx, Comparison.EQ).named("reverse_selector")
    return rasp.Aggregate(reverse_selector, sop).named("reverse")


def make_frac_prevs(bools: SOp) -> SOp:
    """Fraction of positions up to here where ``bools`` is True (numerical).

    ``make_frac_prevs(tokens == "l")("hello") == [0, 0, 1/3, 1/2, 2/5]``
    """
    bools = rasp.numerical(bools)
    prevs = rasp.Select(rasp.indices, rasp.indices, Comparison.LEQ)
    return rasp.numerical(rasp.Aggregate(prevs, bools, default=0)).named("frac_prevs")


def make_pair_balance(sop: SOp, open_token: str, close_token: str) -> SOp:
    """Fraction of open tokens minus fraction of close tokens so far (numerical)."""
    bools_open = rasp.numerical(sop == open_token).named("bools_open")
    opens = rasp.numerical(make_frac_prevs(bools_open)).named("opens")
    bools_close = rasp.numerical(sop == close_token).named("bools_close")
    closes = rasp.numerical(make_frac_prevs(bools_close)).named("closes")
    pair_balance = rasp.numerical(rasp.LinearSequenceMap(opens, closes, 1, -1))
    return pair_balance.named("pair_balance")


def make_shuffle_dyck(pairs: list[str]) -> SOp:
    """True at every position iff each bracket pair type is balanced (shuffle-Dyck)."""
    assert len(pairs) >= 1
    balances = []
    for pair in pairs:
        assert len(pair) == 2
        open_token, close_token = pair
        balance = make_pair_balance(rasp.tokens, open_token=open_token,
                                    close_token=close_token).named(f"balance_{pair}")
        balances.append(balance)

    any_negative = balances[0] < 0
    for balance in balances[1:]:
        any_negative = any_negative | (balance < 0)
    any_negative = rasp.numerical(rasp.Map(lambda x: x, any_negative)).named("any_negative")
    select_all = rasp.Select(rasp.indices, rasp.indices, Comparison.TRUE).named("select_all")
    has_neg = rasp.numerical(rasp.Aggregate(select_all, any_negative, default=0)).named("has_neg")

    all_zero = balances[0] == 0
    for balance in balances[1:]:
        all_zero = all_zero & (balance == 0)
    select_last = rasp.Select(rasp.indices, length - 1, Comparison.EQ).named("select_last")
    last_zero = rasp.Aggregate(select_last, all_zero).named("last_zero")

    not_has_neg = (~has_neg).named("not_has_neg")
    return (last_zero & not_has_neg).named("shuffle_dyck")


def make_shuffle_dyck2() -> SOp:
    return make_shuffle_dyck(pairs=["()", "{}"]).named("shuffle_dyck2")


def make_hist() -> SOp:
    """How often each position's token occurs: ``hist("abac") == [2, 1, 2, 1]``."""
    same_tok = rasp.Select(rasp.tokens, rasp.tokens, Comparison.EQ).named("same_tok")
    return rasp.SelectorWidth(same_tok).named("hist")


def make_sort_unique(vals: SOp, keys: SOp) -> SOp:
    """``vals`` sorted by ``keys``; keys must be unique (else positions get None)."""
    smaller = rasp.Select(keys, keys, Comparison.LT).named("smaller")
    target_pos = rasp.SelectorWidth(smaller).named("target_pos")
    sel_new = rasp.Select(target_pos, rasp.indices, Comparison.EQ)
    return rasp.Aggregate(sel_new, vals).named("sort")


def make_sort(vals: SOp, keys: SOp, *, max_seq_len: int, min_key: float) -> SOp:
    """``vals`` sorted by numeric ``keys`` (ties broken by position)."""
    keys = rasp.SequenceMap(lambda x, i: x + min_key * i / max_seq_len, keys, rasp.indices)
    return make_sort_unique(vals, keys)


def make_sort_freq(max_seq_len: int) -> SOp:
    """Tokens sorted by decreasing frequency (stable)."""
    hist = -1 * make_hist().named("hist")
    return make_sort(rasp.tokens, hist, max_seq_len=max_seq_len, min_key=1).named("sort_freq")


def shift_by(offset: int, /, sop: SOp) -> SOp:
    """``sop`` shifted right by ``offset`` positions, None-padded."""
    select_off_by_offset = rasp.Select(rasp.indices, rasp.indices, lambda k, q: q == k + offset)
    out = rasp.Aggregate(select_off_by_offset, sop, default=None)
    return out.named(f"shift_by({offset})")


def detect_pattern(sop: SOp, pattern: Sequence) -> SOp:
    """True at the last element of each occurrence of ``pattern`` (first len-1 are None)."""
    if len(pattern) < 1:
        raise ValueError(f"Length of `pattern` must be at least 1. Got {pattern}")
    detectors = []
    for i, element in enumerate(reversed(pattern)):
        detector = sop == element
        if i != 0:
            detector = shift_by(i, detector)
        detectors.append(detector)
    pattern_detected = detectors.pop()
    while detectors:
        pattern_detected = pattern_detected & detectors.pop()
    return pattern_detected.named(f"detect_pattern({pattern})")


def make_count_less_freq(n: int) -> SOp:
    """How many tokens occur at most ``n`` times."""
    hist = make_hist().named("hist")
    select_less = rasp.Select(hist, hist, lambda x, y: x <= n).named("select_less")
    return rasp.SelectorWidth(select_less).named("count_less_freq")


def make_count(sop: SOp, token) -> SOp:
    """How often ``token`` occurs in ``sop``, at every position."""
    return rasp.SelectorWidth(rasp.Select(sop, sop, lambda k, q: k == token)).named(f"count_{token}")


def make_nary_sequencemap(f, *sops: SOp) -> SOp:
    """``f(x1, ..., xn)`` position-wise, via binary SequenceMaps over tuples."""
    values, *rest = sops
    for sop in rest:
        values = rasp.SequenceMap(lambda x, y: (*x, y) if isinstance(x, tuple) else (x, y), values, sop)
    return rasp.Map(lambda args: f(*args), values)


# ---------------------------------------------------------------- our own


def make_first(sop: SOp) -> SOp:
    """``sop`` at position 0, broadcast to every position."""
    first = rasp.Select(rasp.indices, rasp.indices, lambda k, q: k == 0).named("select_first")
    return rasp.Aggregate(first, sop).named("first")


def make_last(sop: SOp) -> SOp:
    """``sop`` at the last position, broadcast to every position."""
    select_last = rasp.Select(rasp.indices, length - 1, Comparison.EQ).named("select_last")
    return rasp.Aggregate(select_last, sop).named("last")


def make_mean(sop: SOp) -> SOp:
    """The mean of numerical ``sop`` over the whole sequence (numerical)."""
    select_all = rasp.Select(rasp.indices, rasp.indices, Comparison.TRUE).named("select_all")
    return rasp.numerical(rasp.Aggregate(select_all, rasp.numerical(sop), default=0)).named("mean")


def make_is_palindrome(sop: SOp = rasp.tokens) -> SOp:
    """True at every position iff ``sop`` reads the same backwards."""
    same = rasp.SequenceMap(lambda x, y: x == y, sop, make_reverse(sop)).named("same")
    n_same = rasp.SelectorWidth(rasp.Select(same, same, lambda k, q: k is True)).named("n_same")
    return rasp.SequenceMap(lambda a, n: a == n, n_same, length).named("is_palindrome")


def make_running_count(sop: SOp, token) -> SOp:
    """How often ``token`` occurred in ``sop`` up to and including each position (categorical).

    A numerical Map of ``make_frac_prevs``: correct only with exact value sets
    (Tracr's inference misses k/n for k > 1, see docs/rasp.md).
    """
    frac = make_frac_prevs(sop == token)
    return rasp.SequenceMap(lambda f, i: round(f * (i + 1)), frac, rasp.indices).named(
        f"running_count_{token}")
