"""rasp_io: tables equal the interpreter, splits are disjoint, compiled nets are perfect on the task."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from toymodels.compiler.compiling import forward
from toymodels.config import ConfigError
from toymodels.rasp import evaluate
from toymodels.tasks import make_task, metrics
from toymodels.rasp.catalogue import LIBRARY
from toymodels.tasks.rasp_io import N_SAMPLED, resolve_program


def task_of(program, length=4, n_eval=16, **kw):
    return make_task("rasp_io", program=program, length=length, n_eval=n_eval, **kw)


@pytest.mark.parametrize("program, length", [("sort", 4), ("frac_prevs", 4), ("fountain:3", 5)])
def test_tables_equal_the_interpreter(program, length):
    task = task_of(program, length)
    rasp_program = resolve_program(program)[0]
    n_rows = 0
    for split in ("train", "eval"):
        ins, outs = task.values(split)
        n_rows += len(ins)
        for xs, ys in zip(ins, outs):
            want = evaluate(rasp_program, xs)
            if task.numerical:  # table values are float32
                np.testing.assert_allclose(ys, want, rtol=1e-6, atol=1e-7)
            else:
                assert ys == want, xs
    assert n_rows == len(task.input_values) ** length


def test_splits_disjoint_and_eval_never_sampled_in_training():
    task = task_of("reverse", length=5, n_eval=40)
    rows = {s: {tuple(r) for r in task.table(s)[0]} for s in ("train", "eval")}
    assert len(rows["eval"]) == 40 and len(rows["train"]) == 3**5 - 40
    assert not rows["train"] & rows["eval"]
    for split in ("train", "eval"):
        batch = task.sample(jax.random.key(0), 2000, split)
        assert {tuple(r) for r in np.asarray(batch.inputs[:, 1:])} <= rows[split]
    other = task_of("reverse", length=5, n_eval=40, data_seed=1)
    assert not np.array_equal(other.table("eval")[0], task.table("eval")[0])


def test_large_input_space_is_a_fixed_sample_of_distinct_inputs():
    task = task_of("first@10", length=10, n_eval=100)   # 3^10 > 50,000 inputs
    x_RL = np.concatenate([task.table("train")[0], task.table("eval")[0]])
    assert x_RL.shape == (N_SAMPLED, 10)
    assert len({r.tobytes() for r in x_RL}) == N_SAMPLED
    ins, outs = task.values("eval")
    assert all(ys == xs[:1] * 10 for xs, ys in zip(ins, outs))


def test_layout_matches_the_compiled_encoding():
    task = task_of("hist", length=4)
    compiled = task.compile()
    batch = task.sample(jax.random.key(1), 8)
    ins, _ = task.values("train")
    assert task.vocab.size == compiled.cfg.vocab_size   # 1 + 3 tokens < 6 output classes
    assert task.output_vocab == tuple(compiled.output_values)
    np.testing.assert_array_equal(compiled.encode([["BOS", *ins[0]]])[0, 1:], task.table("train")[0][0])
    np.testing.assert_array_equal(batch.inputs[:, 0], 0)
    np.testing.assert_array_equal(batch.mask, np.broadcast_to(np.r_[0.0, np.ones(4)], (8, 5)))
    assert task.loss == "xent" and task.seq_len == 5


@pytest.mark.parametrize("program, length", [
    ("reverse", 5), ("sort", 4), ("shuffle_dyck2", 4), ("fountain:0", 4), ("frac_prevs", 5),
])
def test_compiled_net_is_perfect_on_sampled_batches(program, length):
    task = task_of(program, length)
    compiled = task.compile()
    for i, split in enumerate(("train", "eval")):
        batch = task.sample(jax.random.key(i), 64, split)
        # forward() jits once per config: eager calls would compile every op anew.
        m = metrics(forward(compiled.model, batch.inputs), batch, task.loss)
        if task.numerical:
            assert task.loss == "mse" and batch.targets.shape == (64, length + 1, 1)
            assert float(m["loss"]) < 1e-10
        else:
            assert float(m["acc"]) == 1.0 and float(m["exact"]) == 1.0
        # The compiled net's own decoding agrees, position by position.
        words = [["BOS", *(task.input_values[j - 1] for j in row)] for row in np.asarray(batch.inputs[:, 1:])]
        decoded = compiled.run_batch(words)
        if task.numerical:
            np.testing.assert_allclose(decoded, batch.targets[:, 1:, 0], atol=1e-5)
        else:
            assert decoded == [[task.output_vocab[j] for j in row] for row in np.asarray(batch.targets[:, 1:])]


def test_first_fountain_programs_compile_and_run_perfectly():
    for seed in (1, 2):
        task = task_of(f"fountain:{seed}", length=4, n_eval=8)
        batch = task.full_batch("train")
        m = metrics(forward(task.compile().model, batch.inputs), batch, task.loss)
        assert float(m["acc"] if "acc" in m else 1.0 - m["loss"]) == pytest.approx(1.0, abs=1e-9), seed


def test_resolve_program_names():
    for name in LIBRARY:
        _, vocab, max_len = resolve_program(name)
        assert len(vocab) >= 3 and max_len >= 4
    assert resolve_program("fountain:5")[0] is resolve_program("fountain:5")[0]
    assert resolve_program("fountain:5:4")[0] is not resolve_program("fountain:5")[0]
    assert resolve_program("sort@7")[2] == 7
    for bad in ("nope", "fountain:x", "fountain:1:2:3", "sort@0", "sort@x"):
        with pytest.raises(ConfigError, match="reverse"):
            resolve_program(bad)


@pytest.mark.parametrize("fields, match", [
    (dict(program="nope"), "program"),
    (dict(program=3), "program"),
    (dict(length=6), "length"),              # longer than reverse's max_seq_len=5
    (dict(length=0), "length"),
    (dict(n_eval=0), "n_eval"),
    (dict(length=2, n_eval=9), "n_eval"),    # 3^2 = 9 rows: nothing left to train on
    (dict(data_seed=-1), "data_seed"),
])
def test_invalid_fields_raise(fields, match):
    with pytest.raises(ConfigError, match=match):
        make_task("rasp_io", **fields)


def test_longer_inputs_through_max_seq_len_suffix():
    task = task_of("reverse@6", length=6, n_eval=32)
    assert task.max_seq_len == 6 and task.seq_len == 7
    ins, outs = task.values("eval")
    assert all(ys == xs[::-1] for xs, ys in zip(ins, outs))
