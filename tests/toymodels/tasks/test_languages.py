"""Toy languages: every rule checked on decoded samples, shared vocabularies, splits, held-out pairs.

The decoders here read token STRINGS and re-derive numbers independently of the
module's id tables, so a wrong table shows up as a wrong number, not as a match.
"""

from __future__ import annotations

import itertools

import jax
import numpy as np
import pytest

from toymodels.config import ConfigError
from toymodels.tasks import make_task
from toymodels.tasks.languages import (FAMILIES, FORMS, LanguageTask, held_out_tasks,
                                       language_suite)

N_SEQ = 256
ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
        "fourteen fifteen sixteen seventeen eighteen").split()


def full_seq(batch) -> np.ndarray:
    return np.concatenate([np.asarray(batch.inputs), np.asarray(batch.targets)[:, -1:]], axis=1)


def words(task, split="train", key=0, n=N_SEQ) -> tuple[np.ndarray, np.ndarray]:
    """Decoded (B, U) token strings and the (B, T) mask of one sampled batch."""
    batch = task.sample(jax.random.key(key), n, split=split)
    return np.asarray(task.vocab.tokens)[full_seq(batch)], np.asarray(batch.mask)


def strip_copy(tok: str) -> tuple[str, int]:
    """"7_1" -> ("7", 1): the symbol and the vocabulary copy (knob: language) it is written in."""
    sym, _, copy = tok.partition("_")
    return sym, int(copy) if copy else 0


def suffix_mask(n_answer: int, seq_len: int) -> np.ndarray:
    return np.r_[np.zeros(seq_len - n_answer), np.ones(n_answer)]


# ---------------------------------------------------------------- case A
def a_values(task, w):
    """Family values as ints; phrase words as their index in the phrase."""
    body = w[:, 1:]
    if task.form == "phrase":
        return np.vectorize(("the", "cat", "sat", "down").index)(body)
    prefix = {"orbit": "orb", "count": "cnt", "alternate": "alt", "fibonacci": "fib", "bounce": "bnc",
              "palindrome": "pal", "sorted": "srt", "shift": "shf", "copy": "cpy"}[task.form]
    assert np.char.startswith(body.astype(str), prefix).all()
    return np.vectorize(lambda s: int(s[len(prefix):]))(body)


def check_a_rule(family, v, m):
    h = v.shape[1] // 2
    nxt, cur, prev = v[:, 2:], v[:, 1:-1], v[:, :-2]
    if family == "orbit":
        np.testing.assert_array_equal(v[:, 1:], (2 * v[:, :-1] + 1) % m)
    elif family == "phrase":
        np.testing.assert_array_equal(v[:, 1:], (v[:, :-1] + 1) % 4)
    elif family == "count":
        np.testing.assert_array_equal(v[:, 1:], (v[:, :-1] + 1) % m)
    elif family == "alternate":
        assert (v[:, 0] != v[:, 1]).all()
        np.testing.assert_array_equal(nxt, prev)
    elif family == "fibonacci":
        np.testing.assert_array_equal(nxt, (prev + cur) % m)
    elif family == "bounce":
        assert (np.abs(np.diff(v, axis=1)) == 1).all()
        at_end = (cur == 0) | (cur == m - 1)
        np.testing.assert_array_equal(nxt, np.where(at_end, prev, 2 * cur - prev))
    elif family == "palindrome":
        np.testing.assert_array_equal(v, v[:, ::-1])
    elif family == "sorted":
        assert (np.diff(v[:, h:], axis=1) >= 0).all()
        np.testing.assert_array_equal(v[:, h:], np.sort(v[:, :h], axis=1))
    elif family == "shift":
        np.testing.assert_array_equal((nxt - cur) % m, (cur - prev) % m)
    else:
        np.testing.assert_array_equal(v[:, h:], v[:, :h])


# Tokens the rule leaves free: one start, two seeds (or start + direction / step), or the first half.
A_FREE = {"orbit": 1, "phrase": 1, "count": 1, "alternate": 2, "fibonacci": 2, "bounce": 2,
          "shift": 2, "palindrome": 8, "sorted": 8, "copy": 8}


@pytest.mark.parametrize("m", [10, 7])
def test_case_a_families_follow_their_rules(m):
    suite = language_suite("A", modulus=m)
    assert [t.form for _, t in suite] == list(FAMILIES)
    seen = {}
    for i, (name, task) in enumerate(suite):
        w, mask = words(task, key=i)
        assert name == f"A{i}" and (w[:, 0] == f"<A{i}>").all()
        v = a_values(task, w)
        assert v.min() >= 0 and v.max() < m
        check_a_rule(task.form, v, m)
        np.testing.assert_array_equal(mask[0], suffix_mask(16 - A_FREE[task.form], 16))
        assert (mask == mask[0]).all()
        seen[name] = set(full_seq(task.sample(jax.random.key(i), N_SEQ))[:, 1:].ravel().tolist())
        if task.form != "phrase":  # the random parts of a family reach all of its m tokens
            assert len(seen[name]) == m
    for a, b in itertools.combinations(seen, 2):
        assert not seen[a] & seen[b], f"{a} and {b} share token ids"


def test_case_a_bounce_starts_in_both_directions():
    task = dict(language_suite("A"))["A5"]
    v = a_values(task, words(task)[0])
    steps = set(np.diff(v[:, :2], axis=1).ravel().tolist())
    assert steps == {-1, 1}


# ---------------------------------------------------------------- case B
def parse(w_BE: np.ndarray, i: int, n_copies_check=True) -> np.ndarray:
    """(B, 3) numbers a, b, c of language i's left-padded sentences (tag excluded)."""
    form, copy = FORMS[i % 5], i // 5
    rows = []
    for row in w_BE:
        toks = [strip_copy(t) for t in row if t != "PAD"]
        assert not n_copies_check or all(c == copy for _, c in toks), (i, row)
        s = [t for t, _ in toks]
        if form == "words":
            assert s[1] == "plus" and s[3] == "equals"
            rows.append([ONES.index(s[0]), ONES.index(s[2]), ONES.index(s[4])])
            continue
        W = (len(s) - 2) // 3
        num = lambda ds, rev=False: int("".join(ds[::-1] if rev else ds))  # noqa: E731
        if form in ("digits", "reversed"):
            assert s[W] == "+" and s[2 * W + 1] == "="
            a, b, c = s[:W], s[W + 1:2 * W + 1], s[2 * W + 2:]
        elif form == "prefix":
            assert s[0] == "plus" and s[2 * W + 1] == "equals"
            a, b, c = s[1:W + 1], s[W + 1:2 * W + 1], s[2 * W + 2:]
        else:
            assert s[2 * W:2 * W + 2] == ["+", "="]
            a, b, c = s[:W], s[W:2 * W], s[2 * W + 2:]
        rev = form == "reversed"
        rows.append([num(a, rev), num(b, rev), num(c, rev)])
    return np.asarray(rows)


def answer_positions(w_BU: np.ndarray) -> np.ndarray:
    """Mask over targets (B, T) of the tokens after the last "=" / "equals" of each row."""
    sym = np.vectorize(lambda t: strip_copy(t)[0])(w_BU)
    is_eq = np.isin(sym, ["=", "equals"])
    last_eq = w_BU.shape[1] - 1 - np.argmax(is_eq[:, ::-1], axis=1)
    return (np.arange(w_BU.shape[1])[None, :] > last_eq[:, None])[:, 1:].astype(float)


@pytest.mark.parametrize("n", [10, 4])
def test_case_b_every_form_adds(n):
    suite = language_suite("B", modulus=n)
    assert len(suite) == 10 and {t.seq_len for _, t in suite} == {suite[0][1].seq_len}
    for i, (name, task) in enumerate(suite):
        w, mask = words(task, key=i)
        assert name == f"B{i}" and (w[:, 0] == f"<B{i}>").all()
        abc = parse(w[:, 1:], i)
        assert abc[:, :2].max() < n and abc.min() >= 0
        np.testing.assert_array_equal(abc[:, 0] + abc[:, 1], abc[:, 2])
        np.testing.assert_array_equal(mask, answer_positions(w))
        assert mask.sum(1).max() == (1 if FORMS[i % 5] == "words" else len(str(2 * n - 2)))


def test_case_b_copies_use_disjoint_ids_for_the_same_words():
    suite = dict(language_suite("B"))
    for i in range(5):
        ids_a = set(full_seq(suite[f"B{i}"].sample(jax.random.key(0), N_SEQ))[:, 1:].ravel().tolist())
        ids_b = set(full_seq(suite[f"B{i + 5}"].sample(jax.random.key(0), N_SEQ))[:, 1:].ravel().tolist())
        assert not (ids_a - {0}) & (ids_b - {0})  # only PAD is shared


# ---------------------------------------------------------------- case C and D
def check_translation(task, w, mask):
    i, j, E = task.index, task.target, task.expr_len
    assert (w[:, 0] == f"<B{i}>").all() and (w[:, E + 1] == f"<toB{j}>").all()
    src, tgt = parse(w[:, 1:E + 1], i), parse(w[:, E + 2:], j)
    np.testing.assert_array_equal(src, tgt)
    np.testing.assert_array_equal(src[:, 0] + src[:, 1], src[:, 2])
    want = np.zeros_like(w, dtype=float)
    want[:, E + 2:] = w[:, E + 2:] != "PAD"
    np.testing.assert_array_equal(mask, want[:, 1:])


def test_case_c_translations_agree_on_both_sides():
    suite = language_suite("C")
    names = [name for name, _ in suite]
    assert names[:10] == [f"B{i}" for i in range(10)]
    assert names[10:] == [f"T{i}-{j}" for i in range(10) for j in range(10) if i != j]
    for k, (name, task) in enumerate(suite[10:]):
        check_translation(task, *words(task, key=k, n=64))


def test_case_d_holds_out_one_pair_in_both_directions():
    kw = dict(n_languages=10, held_out_pair=(3, 6))
    suite = language_suite("D", **kw)
    held = held_out_tasks(**kw)
    assert [n for n, _ in held] == ["T3-6", "T6-3"]
    assert not {n for n, _ in held} & {n for n, _ in suite}
    assert len(suite) == 10 + 90 - 2
    forbidden = {("<B3>", "<toB6>"), ("<B6>", "<toB3>")}
    for k, (name, task) in enumerate(suite):
        for key in range(2):
            w, _ = words(task, key=100 * k + key)
            emitted = set(zip(w[:, 0].tolist(), w[:, task.expr_len + 1].tolist())) if task.target >= 0 else set()
            assert not emitted & forbidden, name
    for name, task in held:
        w, mask = words(task, split="eval")
        check_translation(task, w, mask)
        with pytest.raises(ConfigError, match="held_out_pair"):
            task.sample(jax.random.key(0), 4)
        with pytest.raises(ConfigError, match="held_out_pair"):
            language_suite("D", pairs=[(task.index, task.target)], **kw)
    # Outside case D the same pair trains normally.
    make_task("language", case="C", index=3, target=6).sample(jax.random.key(0), 4)


def test_held_out_task_in_a_training_mixture_fails_loudly():
    from toymodels.programs import sample_mixture  # what every training step calls

    tasks = [t for _, t in language_suite("D", n_languages=2) + held_out_tasks(n_languages=2)]
    probs = np.full(len(tasks), 1 / len(tasks))
    with pytest.raises(ConfigError, match="held_out_pair"):
        sample_mixture(tasks, probs, jax.random.key(0), 8, max(t.seq_len for t in tasks))
    sample_mixture(tasks[:2], probs[:2] / probs[:2].sum(), jax.random.key(0), 8, tasks[0].seq_len)


# ---------------------------------------------------------------- splits
def pairs_of(task, split, n=2000):
    """Pairs (a, b) of a task whose source language writes "a1 a2 + b1 b2 = ..." (digits form)."""
    w, _ = words(task, split=split, n=n)
    d = np.vectorize(lambda t: int(strip_copy(t)[0]))(w[:, [1, 2, 4, 5]])
    assert (np.vectorize(lambda t: strip_copy(t)[0])(w[:, [3, 6]]) == ["+", "="]).all()
    return set(zip((10 * d[:, 0] + d[:, 1]).tolist(), (10 * d[:, 2] + d[:, 3]).tolist()))


def test_pair_splits_disjoint_shared_and_fixed_by_seed():
    b0 = make_task("language", case="B", index=0, modulus=10)
    train, held = pairs_of(b0, "train"), pairs_of(b0, "eval")
    assert not train & held
    assert train | held == set(itertools.product(range(10), repeat=2))
    assert len(train) == 80
    # Every language and translation draws from the same split, so no eval sum is trained anywhere.
    for task in (make_task("language", case="B", index=5), make_task("language", case="C", index=0, target=1),
                 make_task("language", case="knob", index=3)):
        assert pairs_of(task, "train", 500) <= train and pairs_of(task, "eval", 500) <= held
    full = full_seq(b0.full_batch("eval"))
    assert set(map(tuple, parse(np.asarray(b0.vocab.tokens)[full][:, 1:], 0)[:, :2].tolist())) == held
    assert pairs_of(make_task("language", case="B", eval_pairs="train"), "eval", 500) <= train
    other = make_task("language", case="B", data_seed=1)
    assert not np.array_equal(other.pair_ids("eval"), b0.pair_ids("eval"))


# ---------------------------------------------------------------- similarity knob
def knob_content(task, key=0):
    return full_seq(task.sample(jax.random.key(key), N_SEQ))[:, 1:]


def test_knob_similarity_endpoints_and_nesting():
    base = make_task("language", case="knob", index=0)
    for i in range(1, 10):
        same = make_task("language", case="knob", index=i, similarity=1.0)
        np.testing.assert_array_equal(knob_content(same), knob_content(base))
        apart = make_task("language", case="knob", index=i, similarity=0.0)
        assert not set(knob_content(apart).ravel().tolist()) & set(range(base.vocab.size)[10:22])
        assert not set(knob_content(apart).ravel().tolist()) & set(knob_content(base).ravel().tolist())
    base_ids = base.token_ids(0)
    previous = set()
    for s in np.linspace(0, 1, 13):
        shared = set(np.flatnonzero(make_task("language", case="knob", index=2, similarity=s).token_ids(2)
                                    == base_ids).tolist())
        assert len(shared) == round(12 * s) and previous <= shared
        previous = shared


def test_knob_sentences_add_and_private_tokens_belong_to_their_language():
    for i, (name, task) in enumerate(language_suite("knob", similarity=0.5)):
        w, mask = words(task, key=i)
        assert (w[:, 0] == f"<K{i}>").all()
        owners = {strip_copy(t)[1] for t in w[:, 1:].ravel()}
        assert owners <= {0, i}
        abc = parse(np.vectorize(lambda t: strip_copy(t)[0])(w[:, 1:]), 0, n_copies_check=False)
        np.testing.assert_array_equal(abc[:, 0] + abc[:, 1], abc[:, 2])
        np.testing.assert_array_equal(mask, answer_positions(w))


@pytest.mark.parametrize("n", [10, 5, 2])
@pytest.mark.parametrize("similarity", [0.0, 1.0])
def test_knob_functions_compute_their_answer_on_one_surface(n, similarity):
    """The interference arms: kept languages compute a + b + 1 or |a - b| on X's surface (and at
    similarity 1 on X's very tokens); X keeps a + b. Decoded from token strings."""
    rule = {"add": lambda a, b: a + b, "add1": lambda a, b: a + b + 1, "absdiff": lambda a, b: np.abs(a - b)}
    functions = ("add1", "absdiff", "add")
    suite = language_suite("knob", n_languages=3, modulus=n, similarity=similarity, functions=functions)
    assert {t.seq_len for _, t in suite} == {suite[0][1].seq_len}
    for i, ((name, task), f) in enumerate(zip(suite, functions)):
        assert task.function == f
        for split in ("train", "eval"):
            w, mask = words(task, split=split, key=i)
            assert (w[:, 0] == f"<K{i}>").all()
            owners = {strip_copy(t)[1] for t in w[:, 1:].ravel()}
            assert owners <= ({0} if similarity == 1.0 or i == 0 else {i})
            abc = parse(np.vectorize(lambda t: strip_copy(t)[0])(w[:, 1:]), 0, n_copies_check=False)
            np.testing.assert_array_equal(rule[f](abc[:, 0], abc[:, 1]), abc[:, 2])
            np.testing.assert_array_equal(mask, answer_positions(w))
    # the same pair (a, b) gets a different answer on the very same surface
    add, add1 = (language_suite("knob", n_languages=2, modulus=n, similarity=1.0, functions=fs)[1][1]
                 for fs in (("add", "add"), ("add", "add1")))
    x, y = (full_seq(t.full_batch("eval")) for t in (add, add1))
    np.testing.assert_array_equal(x[:, :-add.n_answer], y[:, :-add.n_answer])
    assert (x[:, -add.n_answer:] != y[:, -add.n_answer:]).any(axis=1).all()


# ---------------------------------------------------------------- suites fit one model
@pytest.mark.parametrize("case, fields", [("A", {}), ("B", {}), ("C", dict(n_languages=4)),
                                          ("D", dict(n_languages=4)), ("knob", {})])
def test_suite_shares_one_vocab_and_fits_one_model(case, fields):
    from toymodels.model import TransformerConfig
    from toymodels.schedule import Mixture
    from toymodels.train import validate
    from toymodels.trainconfig import TrainConfig

    tasks = dict(language_suite(case, **fields) + (held_out_tasks(**fields) if case == "D" else ()))
    vocabs = {t.vocab for t in tasks.values()}
    assert len(vocabs) == 1 and next(iter(vocabs)).size <= 200
    T = max(t.seq_len for t in tasks.values())
    assert T <= 24
    for t in tasks.values():
        x = full_seq(t.sample(jax.random.key(0), 32, split="eval"))
        assert x.min() >= 0 and x.max() < t.vocab.size
        hash(t)
    model = TransformerConfig(n_layers=1, d_model=16, n_heads=2, vocab_size=t.vocab.size, max_seq_len=T)
    names = tuple(n for n, t in tasks.items() if not t.is_held_out)
    validate(model, TrainConfig(steps=2, batch_size=4), tasks, Mixture(names))
    if case in ("C", "D"):  # translations reuse B's layout, so a B model continues into C or D
        assert next(iter(vocabs)) == language_suite("B", **fields)[0][1].vocab


# ---------------------------------------------------------------- config errors
@pytest.mark.parametrize("fields, field", [
    (dict(case="E"), "case"),
    (dict(index=10), "index"),
    (dict(index=-1), "index"),
    (dict(n_languages=1), "n_languages"),
    (dict(n_languages=11), "n_languages"),
    (dict(case="B", n_languages=21), "n_languages"),
    (dict(target=2), "target"),
    (dict(case="C", index=2, target=2), "target"),
    (dict(case="C", target=10), "target"),
    (dict(modulus=1), "modulus"),
    (dict(case="B", modulus=51), "modulus"),
    (dict(length=7), "length"),
    (dict(length=2), "length"),
    (dict(similarity=1.5), "similarity"),
    (dict(similarity=float("nan")), "similarity"),
    (dict(case="D", held_out_pair=(2, 2)), "held_out_pair"),
    (dict(case="D", held_out_pair=(0, 10)), "held_out_pair"),
    (dict(case="D", held_out_pair=(0,)), "held_out_pair"),
    (dict(train_frac=1.0), "train_frac"),
    (dict(case="B", modulus=2, train_frac=0.05), "train_frac"),
    (dict(eval_pairs="all"), "eval_pairs"),
    (dict(data_seed=-1), "data_seed"),
    (dict(case="knob", function="mul"), "function"),
    (dict(case="B", function="add1"), "function"),
])
def test_invalid_fields_raise(fields, field):
    with pytest.raises(ConfigError, match=field):
        make_task("language", **fields)


def test_suite_argument_errors():
    with pytest.raises(ConfigError, match="pairs"):
        language_suite("B", pairs=[(0, 1)])
    with pytest.raises(ConfigError, match="pairs"):
        language_suite("C", n_languages=3, pairs=[(0, 0)])
    with pytest.raises(ConfigError, match="index"):
        language_suite("C", index=2)
    with pytest.raises(ConfigError, match="case"):
        language_suite("Z")
    assert [n for n, _ in language_suite("C", n_languages=3, pairs=[(0, 2)])] == ["B0", "B1", "B2", "T0-2"]
    assert LanguageTask(case="D", held_out_pair=[1, 2]).held_out_pair == (1, 2)
    with pytest.raises(ConfigError, match="functions"):
        language_suite("knob", n_languages=3, functions=("add", "add1"))
    with pytest.raises(ConfigError, match="function"):
        language_suite("knob", function="add1")
