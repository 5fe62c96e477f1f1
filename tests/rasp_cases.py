"""Named RASP test cases shared by the interpreter tests and the compiled-model tests.

A case is (name, program factory, vocab, max_seq_len, [(input, expected output)]).
Factories build a fresh program each time (annotations mutate in place).
Helpers at the bottom compare outputs and run many compiled models cheaply.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable

from toymodels.rasp import evaluate
from toymodels.rasp import library as lib
from toymodels.rasp import rasp
from toymodels.rasp.rasp import Comparison

T, F = True, False


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[], rasp.SOp]
    vocab: tuple
    max_seq_len: int
    examples: tuple  # ((input, expected), ...)


def _frac(token="a"):
    return lib.make_frac_prevs(rasp.tokens == token)


def _next_token():
    return rasp.Aggregate(rasp.Select(rasp.indices, rasp.indices, lambda k, q: k == q + 1),
                          rasp.tokens).named("next_token")


CASES = [
    # ---- Tracr's library, with the examples from its docstrings
    Case("length", lib.make_length, tuple("abc"), 5, (("abca", [4, 4, 4, 4]), ("a", [1]))),
    Case("reverse", lambda: lib.make_reverse(rasp.tokens), tuple("Helo"), 5,
         (("Hello", list("olleH")), ("eH", ["H", "e"]))),
    Case("hist", lib.make_hist, tuple("abc"), 5, (("abac", [2, 1, 2, 1]), ("ccc", [3, 3, 3]))),
    Case("frac_prevs", lambda: _frac("l"), tuple("helo"), 5,
         (("hello", [0, 0, 1 / 3, 1 / 2, 2 / 5]), ("lll", [1, 1, 1]))),
    Case("pair_balance", lambda: lib.make_pair_balance(rasp.tokens, "(", ")"), tuple("()abc"), 8,
         (("a()b(c))", [0, 1 / 2, 0, 0, 1 / 5, 1 / 6, 0, -1 / 8]),)),
    Case("shuffle_dyck2", lib.make_shuffle_dyck2, tuple("(){}"), 5,
         (("({)}", [T] * 4), ("(){)}", [F] * 5), ("({}", [F] * 3), ("{}", [T, T]))),
    Case("shuffle_dyck", lambda: lib.make_shuffle_dyck(["()"]), tuple("()"), 5,
         (("(())", [T] * 4), ("())(", [F] * 4))),
    Case("sort_unique", lambda: lib.make_sort_unique(rasp.tokens, rasp.tokens), (1, 2, 3, 4, 5), 5,
         (([2, 4, 3, 1], [1, 2, 3, 4]), ([3, 3], [3, None]))),
    Case("sort", lambda: lib.make_sort(rasp.tokens, rasp.tokens, max_seq_len=5, min_key=1),
         (1, 2, 3, 4), 5, (([2, 4, 3, 1], [1, 2, 3, 4]), ([2, 4, 1, 2], [1, 2, 2, 4]))),
    Case("sort_freq", lambda: lib.make_sort_freq(5), (1, 2, 4), 5, (([2, 4, 2, 1], [2, 2, 4, 1]),)),
    Case("detect_pattern", lambda: lib.detect_pattern(rasp.tokens, "abc"), tuple("abc"), 6,
         (("abcabc", [None, None, T, F, F, T]),)),
    Case("count_less_freq", lambda: lib.make_count_less_freq(2), tuple("abc"), 6,
         (("aaabbc", [3] * 6), ("aacbbc", [6] * 6))),
    Case("count", lambda: lib.make_count(rasp.tokens, "a"), tuple("abc"), 6,
         (("aaabbc", [3] * 6), ("cabc", [1] * 4))),
    Case("shift_by", lambda: lib.shift_by(1, rasp.tokens), tuple("abc"), 5,
         (("abc", [None, "a", "b"]),)),
    Case("nary_sequencemap", lambda: lib.make_nary_sequencemap(
        lambda x, y, z: x + y + z, rasp.tokens, rasp.tokens, lib.shift_by(1, rasp.tokens)),
        tuple("ab"), 4, (("abb", [None, "bba", "bbb"]),)),
    # ---- our library programs
    Case("first", lambda: lib.make_first(rasp.tokens), tuple("xyz"), 5, (("zxy", ["z"] * 3),)),
    Case("last", lambda: lib.make_last(rasp.tokens), tuple("xyz"), 5, (("zxy", ["y"] * 3),)),
    Case("mean", lambda: lib.make_mean(rasp.tokens == "a"), tuple("ab"), 5,
         (("aab", [2 / 3] * 3), ("b", [0]))),
    Case("is_palindrome", lib.make_is_palindrome, tuple("ab"), 5,
         (("abba", [T] * 4), ("aab", [F] * 3), ("a", [T]))),
    Case("running_count", lambda: lib.make_running_count(rasp.tokens, "a"), tuple("ab"), 5,
         (("abaa", [1, 1, 2, 3]), ("bb", [0, 0]))),
    # ---- primitives, operators and semantics
    Case("length_primitive", lambda: rasp.length * 1, tuple("ab"), 5, (("abb", [3, 3, 3]),)),
    Case("full_plus_indices", lambda: rasp.Full(1) + rasp.indices, tuple("ab"), 4,
         (("abb", [1, 2, 3]),)),
    Case("map_of_none", lambda: rasp.Map(lambda x: x + "!", lib.shift_by(1, rasp.tokens)),
         tuple("abc"), 4, (("abc", [None, "a!", "b!"]),)),
    Case("sequence_map_of_none", lambda: rasp.tokens + lib.shift_by(1, rasp.tokens), tuple("abc"),
         4, (("abc", [None, "ba", "cb"]),)),
    Case("aggregate_selects_nothing", _next_token, tuple("abc"), 5,
         (("abc", ["b", "c", None]), ("a", [None]))),
    Case("numerical_map_of_frac_prevs",
         lambda: rasp.numerical(rasp.Map(lambda x: 1 if x > 0.5 else 0, _frac())), tuple("ab"), 5,
         (("aab", [1, 1, 1]), ("abab", [1, 0, 1, 0]), ("baa", [0, 0, 1]))),
    Case("categorical_map_of_frac_prevs", lambda: _frac() > 0.6, tuple("ab"), 5,
         (("aabab", [T, T, T, T, F]),)),
    Case("affine_map_of_frac_prevs", lambda: rasp.numerical(rasp.Map(lambda x: 3 * x - 1, _frac())),
         tuple("ab"), 4, (("ab", [2, 0.5]),)),
    Case("product_of_two_numericals",
         lambda: rasp.numerical(rasp.SequenceMap(lambda x, y: x * y, _frac("a"), _frac("b"))),
         tuple("abc"), 4, (("abc", [0, 1 / 4, 1 / 9]),)),
    Case("sum_of_two_numericals", lambda: rasp.numerical(_frac("a") + _frac("b")), tuple("abc"), 4,
         (("abc", [1, 1, 2 / 3]),)),
    Case("numerical_mean_of_categorical_ints", lambda: rasp.numerical(rasp.Aggregate(
        rasp.Select(rasp.indices, rasp.indices, Comparison.TRUE), rasp.indices, default=0)),
        tuple("ab"), 5, (("abab", [1.5] * 4),)),
    Case("categorical_aggregate_of_numerical", lambda: rasp.Aggregate(
        rasp.Select(rasp.indices, rasp.indices, lambda k, q: k == q - 1), _frac()),
        tuple("ab"), 4, (("aba", [None, 1, 1 / 2]),)),
    Case("select_on_numerical", lambda: rasp.SelectorWidth(
        rasp.Select(_frac(), _frac(), Comparison.LT)), tuple("ab"), 4, (("aba", [2, 0, 1]),)),
    Case("selector_and", lambda: rasp.SelectorWidth(
        rasp.Select(rasp.indices, rasp.indices, Comparison.LT)
        & rasp.Select(rasp.tokens, rasp.tokens, Comparison.EQ)), tuple("ab"), 5,
        (("abab", [0, 0, 1, 1]),)),
    Case("selector_not", lambda: rasp.SelectorWidth(
        ~rasp.Select(rasp.tokens, rasp.tokens, Comparison.EQ)), tuple("ab"), 5,
        (("aab", [1, 1, 2]),)),
    Case("selector_or", lambda: rasp.SelectorWidth(
        rasp.Select(rasp.indices, rasp.indices, Comparison.LT)
        | rasp.Select(rasp.indices, rasp.indices, Comparison.EQ)), tuple("ab"), 5,
        (("abb", [1, 2, 3]),)),
    Case("select_with_none", lambda: rasp.SelectorWidth(
        rasp.Select(lib.shift_by(1, rasp.tokens), rasp.tokens, Comparison.EQ)), tuple("ab"), 5,
        (("aab", [2, 2, 0]),)),
    Case("numerical_selector_width", lambda: rasp.numerical(rasp.SelectorWidth(
        rasp.Select(rasp.tokens, rasp.tokens, Comparison.EQ))), tuple("ab"), 5,
        (("aab", [2, 2, 1]),)),
    Case("negation_and_comparisons", lambda: ~(rasp.indices >= 2) & (rasp.tokens != "b"),
         tuple("ab"), 4, (("abaa", [T, F, F, F]),)),
]

CASES_BY_NAME = {c.name: c for c in CASES}


# ---------------------------------------------------------------- helpers


def same_output(got, expected, tol: float = 1e-4) -> bool:
    """Element-wise equality; numbers compare within ``tol``; None only equals None."""
    if len(got) != len(expected):
        return False
    for a, b in zip(got, expected):
        if a is None or b is None:
            if a is not b:
                return False
        elif isinstance(a, (int, float)) and isinstance(b, (int, float)):
            if abs(a - b) > tol:
                return False
        elif a != b:
            return False
    return True


# Shared padded shapes: models that fit are zero-padded to one of these, so that one
# jitted forward pass per (shape, output kind, sequence length) serves every test.
SHAPES = [
    {"n_layers": 4, "d_model": 64, "n_heads": 6, "d_head": 32, "d_mlp": 64, "vocab_size": 64,
     "max_seq_len": 9},
    {"n_layers": 8, "d_model": 256, "n_heads": 8, "d_head": 64, "d_mlp": 2048, "vocab_size": 64,
     "max_seq_len": 9},
]
_FIELDS = ("n_layers", "d_model", "n_heads", "d_mlp", "vocab_size", "max_seq_len")


def _shape(cfg) -> dict:
    return {**{k: getattr(cfg, k) for k in _FIELDS}, "d_head": cfg.head_dim}


def run_many(items):
    """Outputs for [(compiled model, [input without BOS, ...]), ...].

    Models are zero-padded to a shared shape (SHAPES, or the largest of the
    models that fit none) so that few jitted forward passes serve them all;
    padding preserves the function exactly (see CompiledModel.padded).
    """
    groups: dict[tuple, list[int]] = {}
    for i, (m, _) in enumerate(items):
        shape = _shape(m.cfg)
        fits = [j for j, s in enumerate(SHAPES) if all(shape[k] <= s[k] for k in s)]
        size_class = ("shared", fits[0]) if fits else (shape["d_mlp"] > 1024, shape["d_model"] > 256)
        groups.setdefault((m.numerical_output, size_class), []).append(i)
    results = [None] * len(items)
    for (_, size_class), members in groups.items():
        if size_class[0] == "shared":
            target = SHAPES[size_class[1]]
        else:
            shapes = [_shape(items[i][0].cfg) for i in members]
            target = {k: max(s[k] for s in shapes) for k in shapes[0]}
        for i in members:
            model, seqs = items[i]
            padded = model.padded(**target)
            out = [None] * len(seqs)
            by_len: dict[int, list[int]] = {}
            for j, s in enumerate(seqs):
                by_len.setdefault(len(s), []).append(j)
            for js in by_len.values():
                for j, o in zip(js, padded.run_batch([[model.bos, *seqs[j]] for j in js])):
                    out[j] = o
            results[i] = out
    return results


# ---------------------------------------------------------------- library programs


@dataclasses.dataclass(frozen=True)
class LibraryProgram:
    name: str
    make: Callable[[int], rasp.SOp]   # max_seq_len -> program
    vocab: tuple                       # for the exhaustive check and the size table
    tracr_size: tuple | None = None    # (layers, residual width) of Tracr's compiled model
    size_max_seq_len: int = 5


LIBRARY = [
    LibraryProgram("make_length", lambda n: lib.make_length(), tuple("abc"), (1, 18)),
    LibraryProgram("make_hist", lambda n: lib.make_hist(), tuple("abc"), (1, 18)),
    LibraryProgram("make_reverse", lambda n: lib.make_reverse(rasp.tokens), tuple("abc"), (4, 41)),
    LibraryProgram("make_frac_prevs", lambda n: lib.make_frac_prevs(rasp.tokens == "a"),
                   tuple("abc"), (2, 13)),
    LibraryProgram("make_sort_unique", lambda n: lib.make_sort_unique(rasp.tokens, rasp.tokens),
                   (1, 2, 3, 4, 5), (2, 25)),
    LibraryProgram("make_sort", lambda n: lib.make_sort(rasp.tokens, rasp.tokens, max_seq_len=n,
                                                        min_key=1), (1, 2, 3), (3, 36)),
    LibraryProgram("make_pair_balance", lambda n: lib.make_pair_balance(rasp.tokens, "(", ")"),
                   tuple("()a"), (2, 16)),
    LibraryProgram("make_shuffle_dyck2", lambda n: lib.make_shuffle_dyck2(), tuple("(){}"), (8, 52),
                   size_max_seq_len=4),
    LibraryProgram("make_shuffle_dyck", lambda n: lib.make_shuffle_dyck(["()"]), tuple("()a")),
    LibraryProgram("make_sort_freq", lambda n: lib.make_sort_freq(n), (1, 2, 3)),
    LibraryProgram("detect_pattern", lambda n: lib.detect_pattern(rasp.tokens, "ab"), tuple("abc")),
    LibraryProgram("make_count_less_freq", lambda n: lib.make_count_less_freq(2), tuple("abc")),
    LibraryProgram("make_count", lambda n: lib.make_count(rasp.tokens, "a"), tuple("abc")),
    LibraryProgram("shift_by", lambda n: lib.shift_by(2, rasp.tokens), tuple("abc")),
    LibraryProgram("make_nary_sequencemap", lambda n: lib.make_nary_sequencemap(
        lambda x, y, z: f"{x}{y}{z}", rasp.tokens, rasp.indices, rasp.tokens), tuple("abc")),
    LibraryProgram("make_first", lambda n: lib.make_first(rasp.tokens), tuple("abc")),
    LibraryProgram("make_last", lambda n: lib.make_last(rasp.tokens), tuple("abc")),
    LibraryProgram("make_mean", lambda n: lib.make_mean(rasp.tokens == "a"), tuple("abc")),
    LibraryProgram("make_is_palindrome", lambda n: lib.make_is_palindrome(), tuple("abc")),
    LibraryProgram("make_running_count", lambda n: lib.make_running_count(rasp.tokens, "a"),
                   tuple("abc")),
]


# Every input over a, b, c up to length 4, and a program's outputs on them (an exception's
# name where it raises): two programs with equal outputs compute the same function there.
ABC = ("a", "b", "c")
INPUTS = [list(xs) for n in range(1, 5) for xs in itertools.product(ABC, repeat=n)]


def outputs(program):
    """A program's outputs on INPUTS, exceptions by class name."""
    out = []
    for xs in INPUTS:
        try:
            out.append(evaluate(program, xs))
        except Exception as e:  # noqa: BLE001
            out.append(type(e).__name__)
    return out
