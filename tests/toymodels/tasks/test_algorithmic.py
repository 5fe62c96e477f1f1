"""Algorithmic tasks: sort answers, modular-addition pair splits."""

from __future__ import annotations

import jax
import numpy as np

from toymodels.tasks import make_task


def full_seq(batch) -> np.ndarray:
    """The (B, T + 1) sequence the batch was cut from."""
    return np.concatenate([np.asarray(batch.inputs), np.asarray(batch.targets)[:, -1:]], axis=1)


def test_sort_answer_is_a_sorted_permutation():
    task = make_task("sort", length=7, n_symbols=5)
    x = full_seq(task.sample(jax.random.key(3), 256))
    digits, answer = x[:, :7], x[:, 8:]
    assert (np.diff(answer, axis=1) >= 0).all()
    np.testing.assert_array_equal(np.sort(digits, 1), np.sort(answer, 1))


def test_modular_addition_splits_disjoint_and_cover_all_pairs():
    task = make_task("modular_addition", p=13, train_frac=0.8)
    seen = {}
    for split in ("train", "eval"):
        x = full_seq(task.sample(jax.random.key(4), 4000, split=split))
        seen[split] = set(zip(x[:, 0].tolist(), x[:, 2].tolist()))
    assert not seen["train"] & seen["eval"]
    assert seen["train"] | seen["eval"] == {(a, b) for a in range(13) for b in range(13)}
    assert len(seen["train"]) == round(0.8 * 169)
    full = full_seq(task.full_batch("eval"))
    assert set(zip(full[:, 0].tolist(), full[:, 2].tolist())) == seen["eval"]


def test_modular_addition_split_fixed_by_seed():
    ids = lambda **kw: make_task("modular_addition", p=13, **kw).pair_ids("eval")
    np.testing.assert_array_equal(ids(data_seed=0), ids(data_seed=0))
    assert not np.array_equal(ids(data_seed=0), ids(data_seed=1))
