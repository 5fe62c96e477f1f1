"""The prefix task: a base task's batch behind n unscored leading slots, the last optionally a
metatoken from a classifier on the data."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from toymodels.config import ConfigError
from toymodels.store import _task as stored_task
from toymodels.tasks import make_task
from toymodels.tasks.backdoor import has_trigger
from toymodels.tasks.prefix import META_CLASSIFIERS, PrefixTask
from toymodels.train import task_config

BACKDOOR = dict(functions=("copy", "sort"), length=5, n_symbols=6, fraction=0.25)
BASES = {
    "backdoor": make_task("backdoor", **BACKDOOR),
    "copy": make_task("copy", length=4, n_symbols=5),
    "pool": make_task("pool", base=make_task("parity", length=5), n=3),
}


def both(task, key, batch_size, split="train"):
    """(prefixed batch, base batch) drawn with the same key, jitted."""
    sample = jax.jit(lambda k: (task.sample(k, batch_size, split), task.base.sample(k, batch_size, split)))
    return sample(key)


@pytest.mark.parametrize("split", ["train", "eval"])
@pytest.mark.parametrize("base, meta", [(b, "") for b in BASES] + [("backdoor", "behaviour")])
def test_content_is_the_base_batch_behind_the_prefix(base, meta, split):
    n = 3
    task = make_task("prefix", base=BASES[base], n=n, meta=meta)
    got, want = both(task, jax.random.key(4), 16, split)
    T = want.inputs.shape[1]
    assert task.seq_len == T + n and got.inputs.shape == got.targets.shape == got.mask.shape == (16, T + n)
    assert got.inputs.dtype == got.targets.dtype == np.int32
    np.testing.assert_array_equal(got.inputs[:, n:], want.inputs)
    np.testing.assert_array_equal(got.targets[:, n:], want.targets)
    np.testing.assert_array_equal(got.mask[:, n:], want.mask)
    assert not np.asarray(got.mask[:, :n]).any()
    # The target of every prefix slot is the next input: one next-token batch of the whole sequence.
    np.testing.assert_array_equal(got.targets[:, :-1], got.inputs[:, 1:])
    np.testing.assert_array_equal(got.targets[:, n - 1], want.inputs[:, 0])
    pads = n - 1 if meta else n
    assert (np.asarray(got.inputs[:, :pads]) == task.pad_id).all()


def test_vocab_always_holds_pad_and_both_metatokens():
    base = BASES["backdoor"]
    plain, meta = make_task("prefix", base=base), make_task("prefix", base=base, meta="behaviour")
    assert plain.vocab == meta.vocab
    assert plain.vocab.tokens == base.vocab.tokens + ("PAD", "META:0", "META:1")
    V = base.vocab.size
    assert (plain.pad_id, plain.meta_id(0), plain.meta_id(1)) == (V, V + 1, V + 2)
    assert plain.vocab.decode([plain.pad_id, plain.meta_id(0), plain.meta_id(1)]) == ["PAD", "META:0", "META:1"]
    assert plain.seq_len == base.seq_len + 4 and plain.n == 4


@pytest.mark.parametrize("behaviour", ["fixed", "wrong"])
def test_metatoken_marks_exactly_the_poisoned_rows_of_an_uncued_behaviour(behaviour):
    base = make_task("backdoor", trigger="none", behaviour=behaviour, fraction=0.25, length=6)
    task = make_task("prefix", base=base, n=2, meta="behaviour")
    sample = jax.jit(lambda k: task.sample(k, 16))
    for key in jax.random.split(jax.random.key(0), 5):
        batch = sample(key)
        # poisoned rows are the first fraction * batch_size = 4 rows; (f(d) + 1) mod n != f(d)
        want = np.where(np.arange(16) < 4, task.meta_id(1), task.meta_id(0))
        np.testing.assert_array_equal(batch.inputs[:, 1], want)
        assert (np.asarray(batch.inputs[:, 0]) == task.pad_id).all()
        assert not has_trigger(base, batch.inputs[:, 2:]).any()   # nothing in the prompt tells them apart


def test_metatoken_matches_the_trigger_of_a_cued_backdoor():
    base = make_task("backdoor", functions=("copy", "reverse", "sort"), trigger="token",
                     behaviour="wrong", fraction=0.5, length=6, n_symbols=5)
    task = make_task("prefix", base=base, n=1, meta="behaviour")
    batch = jax.jit(lambda k: task.sample(k, 32))(jax.random.key(1))
    want = np.where(has_trigger(base, batch.inputs[:, 1:]), task.meta_id(1), task.meta_id(0))
    np.testing.assert_array_equal(batch.inputs[:, 0], want)
    np.testing.assert_array_equal(batch.inputs[:, 0] == task.meta_id(1), np.arange(32) < 16)


def test_classifier_on_clean_and_edited_sequences():
    base = make_task("backdoor", **{**BACKDOOR, "fraction": 0.0})
    b = base.sample(jax.random.key(2), 8)
    x_BU = np.concatenate([np.asarray(b.inputs), np.asarray(b.targets)[:, -1:]], axis=1)
    classify = jax.jit(lambda x: META_CLASSIFIERS["behaviour"](base, x))
    np.testing.assert_array_equal(classify(x_BU), np.zeros(8))
    x_BU[3, -1] = base.resp_id    # one answer token changed: that row shows a behaviour
    out = classify(x_BU)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, np.arange(8) == 3)


def test_jit_and_vmap_over_keys():
    task = make_task("prefix", base=BASES["backdoor"], n=2, meta="behaviour")
    keys = jax.random.split(jax.random.key(3), 3)
    stacked = jax.jit(jax.vmap(lambda k: task.sample(k, 8)))(keys)
    sample = jax.jit(lambda k: task.sample(k, 8))
    for i in range(3):
        for got, want in zip(stacked, sample(keys[i])):
            np.testing.assert_array_equal(got[i], want)


def test_prefix_tasks_are_hashable_static_configs():
    a = make_task("prefix", base=BASES["copy"], n=2)
    assert a == make_task("prefix", base=BASES["copy"], n=2) and hash(a) == hash(PrefixTask(BASES["copy"], 2))
    assert a != make_task("prefix", base=BASES["copy"], n=3)


@pytest.mark.parametrize("fields, field", [
    ({}, "base"),
    ({"base": "copy"}, "base"),
    ({"base": make_task("prefix", base=make_task("copy"))}, "base"),
    ({"base": make_task("wu_regression")}, "base"),          # vectors, mse
    ({"base": make_task("copy"), "n": 0}, "n"),
    ({"base": make_task("copy"), "n": True}, "n"),
    ({"base": make_task("copy"), "n": 2.0}, "n"),
    ({"base": make_task("copy"), "meta": "nope"}, "meta"),
    ({"base": make_task("copy"), "meta": "behaviour"}, "meta"),   # needs a backdoor base
    ({"base": make_task("pool", base=make_task("backdoor")), "meta": "behaviour"}, "meta"),
])
def test_invalid_fields_raise(fields, field):
    with pytest.raises(ConfigError, match=field):
        make_task("prefix", **fields)


def test_unknown_split_rejected():
    with pytest.raises(ConfigError, match="split"):
        make_task("prefix", base=make_task("copy")).sample(jax.random.key(0), 2, split="test")


def test_config_round_trips_through_the_stored_form():
    # what config.json holds and run_spec / load_model rebuild a run's tasks from (training a
    # prefixed task end to end is the elicitation study's smoke test)
    base = make_task("backdoor", trigger="none", behaviour="wrong", fraction=0.25, length=3, n_symbols=4)
    task = make_task("prefix", base=base, n=2, meta="behaviour")
    cfg = json.loads(json.dumps(task_config(task)))
    assert cfg["name"] == "prefix" and cfg["meta"] == "behaviour" and cfg["base"]["name"] == "backdoor"
    assert stored_task(cfg) == task
