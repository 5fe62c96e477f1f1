"""The myopia-study tasks: Wu et al.'s regression data, multiplication, pair counting, adjacent pairs."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest

from toymodels.config import ConfigError
from toymodels.tasks import make_task
from toymodels.tasks.myopia import wu_targets_numpy


def sample(task, n, split="train", seed=0):
    return jax.jit(lambda k: task.sample(k, n, split))(jax.random.key(seed))


def full_seq(batch) -> np.ndarray:
    return np.concatenate([np.asarray(batch.inputs), np.asarray(batch.targets)[:, -1:]], axis=1)


# ---------------------------------------------------------------- wu_regression
@pytest.mark.parametrize("p", [0.0, 0.3, 1.0])
def test_wu_targets_match_direct_loop(p):
    task = make_task("wu_regression", p=p, length=40)
    batch = sample(task, 64)
    x, z, y = (np.asarray(a) for a in (batch.inputs[..., 0], batch.inputs[..., 1], batch.targets[..., 0]))
    np.testing.assert_allclose(y, wu_targets_numpy(x, z, task.n_terms, task.freq), atol=1e-5)
    np.testing.assert_array_equal(batch.mask, np.ones((64, 40)))
    # z is Bernoulli(p): 2560 draws put the rate within 0.05 of p.
    assert set(np.unique(z)) <= {0.0, 1.0} and abs(z.mean() - p) < 0.05
    if p == 0.0:
        np.testing.assert_array_equal(y, x)
    if p == 1.0:
        np.testing.assert_array_equal(y[:, 0], 0.0)  # nothing before the start
        np.testing.assert_allclose(y[:, 1], np.sin(task.freq * x[:, 0]), atol=1e-5)   # float32 sin, as above


def test_wu_feature_is_sin_of_x():
    task = make_task("wu_regression", freq=3.0, length=8)
    batch = sample(task, 4)
    np.testing.assert_allclose(task.feature(batch.inputs), np.sin(3.0 * np.asarray(batch.inputs[..., 0])),
                               atol=1e-6)


def test_wu_numpy_reference_by_hand():
    x, z = np.array([0.5, -1.0, 2.0]), np.array([1.0, 0.0, 1.0])
    want = [0.0, -1.0, np.sin(5.0) + np.sin(-10.0)]
    np.testing.assert_allclose(wu_targets_numpy(x, z, n_terms=2, freq=10.0), want)


# ---------------------------------------------------------------- multiplication
def digits_value(cols: np.ndarray, base: int = 10) -> np.ndarray:
    return (cols * base ** np.arange(cols.shape[1])).sum(1)


@pytest.mark.parametrize("split", ["train", "eval"])
@pytest.mark.parametrize("base", [10, 4])
def test_multiplication_products_and_fillers(split, base):
    task = make_task("multiplication", digits=3, fillers=4, base=base)
    x = full_seq(sample(task, 256, split))
    assert x.shape == (256, 4 * 3 + 2 + 4)
    words = np.asarray(task.vocab.tokens)[x]
    assert ((words == ".").sum(1) == 4).all() and (words[:, 8:12] == ".").all()
    assert (words[:, 3] == "*").all() and (words[:, 7] == "=").all() and task.vocab.size == base + 3
    a, b, c = (digits_value(x[:, cols], base) for cols in (slice(0, 3), slice(4, 7), slice(-6, None)))
    assert a.max() < base ** 3 and len(np.unique(a)) > base ** 2   # uniform over base^3 values, not fewer
    np.testing.assert_array_equal(a * b, c)
    assert (np.asarray(task.is_eval(a, b)) == (split == "eval")).all()


def test_multiplication_splits_disjoint_and_uniform():
    task = make_task("multiplication", digits=2)
    n = 100
    every = np.asarray(task.is_eval(*np.divmod(np.arange(n * n), n)))
    assert 0.08 < every.mean() < 0.12
    seen = {}
    for split in ("train", "eval"):
        x = full_seq(sample(task, 4000, split, seed=1))
        seen[split] = set(zip(digits_value(x[:, :2]).tolist(), digits_value(x[:, 3:5]).tolist()))
    assert seen["train"] and seen["eval"] and not seen["train"] & seen["eval"]
    # 4000 uniform draws over ~1000 eval pairs miss each with probability e^-4: coverage shows uniformity.
    assert len(seen["eval"]) > 0.95 * every.sum()


@pytest.mark.parametrize("fields, field, words", [
    (dict(digits=5), "digits", "1..4 for base 10"), (dict(digits=8, base=4), "digits", "1..7 for base 4"),
    (dict(digits=0), "digits", ">= 1"), (dict(fillers=-1), "fillers", ">= 0"), (dict(base=1), "base", ">= 2"),
    (dict(base=50_000), "base", "2..46340")])
def test_multiplication_bad_fields(fields, field, words):
    with pytest.raises(ConfigError, match=field) as err:
        make_task("multiplication", **fields)
    assert words in str(err.value)


# ---------------------------------------------------------------- pair_count
def test_pair_count_answers_and_distribution():
    task = make_task("pair_count")  # L = 16, 4 symbols
    x = full_seq(sample(task, 4000))
    L, n = task.length, task.n_symbols
    count = (x[:, 1:L] == x[:, :L - 1]).sum(1)
    assert (x[:, :L] < n).all() and (x[:, L] == n).all()
    np.testing.assert_array_equal(x[:, -1], n + 1 + count)
    # Consecutive matches of i.i.d. uniform symbols are independent: Binomial(L - 1, 1 / n).
    pmf = np.array([math.comb(L - 1, c) * (1 / n) ** c * (1 - 1 / n) ** (L - 1 - c) for c in range(L)])
    freq = np.bincount(count, minlength=L) / count.size
    assert 0.5 * np.abs(freq - pmf).sum() < 0.05


# ---------------------------------------------------------------- adjacent_pair
def test_adjacent_pair_answer_is_uniform_and_position_spread():
    task = make_task("adjacent_pair", length=10, n_symbols=8)
    x = np.asarray(task.sample(jax.random.key(0), 2000).inputs)
    answer = np.asarray(task.sample(jax.random.key(0), 2000).targets)[:, -1]
    counts = np.bincount(answer, minlength=8)
    assert counts.min() > 150                         # uniform over 8 symbols: 250 each
    where = np.argmax(x[:, 1:10] == x[:, :9], axis=1)
    assert len(np.unique(where)) == 9                 # the pair can sit anywhere


def test_adjacent_pair_splits_are_disjoint():
    """L = 6 has ~20k sequences: without a held-out split a run of 1500 x 32 rows trains on its eval set."""
    task = make_task("adjacent_pair", length=6, n_symbols=16)
    seen = {split: {tuple(r) for r in full_seq(sample(task, 3000, split, seed=2)).tolist()}
            for split in ("train", "eval")}
    assert len(seen["eval"]) > 1000 and not seen["train"] & seen["eval"]
    for split, rows in seen.items():
        assert (np.asarray(task.is_eval(np.array(sorted(rows)))) == (split == "eval")).all()
    drawn = np.asarray(task.is_eval(task._draw(jax.random.key(3), 4000)))   # before the split
    assert 0.08 < drawn.mean() < 0.12
