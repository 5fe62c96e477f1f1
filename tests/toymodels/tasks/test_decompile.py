"""The decompile task: disjoint program splits, batches that decode to their programs, scrambles."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest

from toymodels.compiler import compile_program
from toymodels.decompile import parse_program, weight_tokens
from toymodels.decompile.evaluate import strip
from toymodels.decompile.weights import program_vectors
from toymodels.model import TransformerConfig
from rasp_cases import ABC, outputs
from toymodels.tasks import make_task
from toymodels.train import TrainConfig, Trainer

SMALL = {"n_programs": 40, "n_eval": 8, "max_weight_tokens": 64, "max_program_tokens": 48}


@pytest.fixture(scope="module")
def task():
    return make_task("decompile", **SMALL)



def test_splits_are_disjoint_programs(task):
    train, held = task.programs("train"), task.programs("eval")
    assert len(held) == 8 and len(train) + len(held) == task.stats()["kept"]
    assert not {e["id"] for e in train} & {e["id"] for e in held}
    assert not {tuple(e["tokens"]) for e in train} & {tuple(e["tokens"]) for e in held}
    stats = task.stats()
    assert stats["tried"] == 40 and sum(v for k, v in stats.items() if k.startswith("skipped")) \
        + stats["kept"] == 40


@pytest.mark.parametrize("split", ["train", "eval"])
def test_batches_decode_to_their_programs(task, split):
    batch = task.sample(jax.random.key(1), 16, split)
    W = task.max_weight_tokens
    by_tokens = {tuple(e["tokens"]): e for e in task.programs(split)}
    for x_TI, y_T, m_T in zip(np.asarray(batch.inputs), np.asarray(batch.targets),
                              np.asarray(batch.mask)):
        toks = strip(task.vocab.decode(y_T[W:]))
        entry = by_tokens[tuple(toks)]
        assert outputs(parse_program(toks)) == outputs(entry["program"])
        want = weight_tokens(compile_program(entry["program"], ABC, 5), task.layout)
        np.testing.assert_array_equal(x_TI[:len(want)], want)
        # Teacher forcing: the input at each program position is the previous target.
        np.testing.assert_array_equal(x_TI[W:], program_vectors(
            np.r_[1, y_T[W:-1]], task.layout))
        assert m_T[:W].sum() == 0 and m_T[W:].all()


def test_extra_train_programs_leave_the_eval_split_alone(task):
    more = make_task("decompile", **SMALL, extra_train=20)
    held = [e["tokens"] for e in task.programs("eval")]
    assert [e["tokens"] for e in more.programs("eval")] == held
    np.testing.assert_array_equal(more.weights("eval"), task.weights("eval"))
    base, train = [e["id"] for e in task.programs("train")], [e["id"] for e in more.programs("train")]
    assert train[:len(base)] == base and len(train) > len(base)
    assert min(train[len(base):]) >= task.n_programs     # the extra seeds
    assert not {tuple(e["tokens"]) for e in more.programs("train")} & set(map(tuple, held))
    assert more.stats()["tried"] == 60


def test_scrambled_task_same_programs_other_weights(task):
    scr = make_task("decompile", **SMALL, scrambled=True)
    assert [e["tokens"] for e in scr.programs("eval")] == [e["tokens"] for e in task.programs("eval")]
    clean, hidden = task.weights("eval"), scr.weights("eval")
    assert clean.shape == hidden.shape and (clean != 0).any(-1).sum() == (hidden != 0).any(-1).sum()
    for c, h in zip(clean, hidden):
        assert not np.allclose(c, h, atol=1e-2)


def test_trainer_scores_the_task_on_its_eval_programs(task):
    cfg = TransformerConfig(n_layers=1, d_model=16, n_heads=2, vocab_size=task.vocab.size,
                            max_seq_len=task.seq_len, input_kind="vectors", d_input=task.d_input)
    trainer = Trainer(cfg, TrainConfig(steps=1), {"decompile": task})
    runs = trainer.runs()
    scores = trainer.evaluate(trainer.init(runs), runs)["decompile"]
    # An untrained model: finite loss near uniform guessing over the program vocabulary.
    assert scores["loss"].shape == (1,) and abs(float(scores["loss"][0]) - math.log(task.vocab.size)) < 1.0
    assert 0.0 <= float(scores["acc"][0]) <= 1.0


def test_function_split_never_puts_one_input_output_table_on_both_sides():
    from toymodels.decompile.evaluate import io_table, is_degenerate

    def tables(t, split):
        return {io_table(e["program"]) for e in t.programs(split)}

    # by tokens, programs computing the same function land on both sides of this split
    cfg = dict(SMALL, n_programs=120, n_eval=30)
    by_tokens = make_task("decompile", **cfg)
    assert tables(by_tokens, "train") & tables(by_tokens, "eval")
    fair = make_task("decompile", **cfg, split_by="function", extra_train=60)
    train, held = fair.programs("train"), fair.programs("eval")
    assert not tables(fair, "train") & tables(fair, "eval")
    assert 0 < len(held) <= 30 and not {e["function"] for e in train} & {e["function"] for e in held}
    # whole functions are held out: every base program computing a held-out function is held out
    held_tables = tables(fair, "eval")
    assert all(io_table(e["program"]) not in held_tables for e in train)
    stats = fair.stats()
    assert stats["skipped: function held out"] > 0 and stats["kept"] == len(train) + len(held)
    assert all(e["degenerate"] == is_degenerate(io_table(e["program"])) for e in held)
    with pytest.raises(Exception, match="split_by='words'"):
        make_task("decompile", **SMALL, split_by="words")


def test_degenerate_means_output_set_by_length_alone():
    from toymodels.decompile.evaluate import is_degenerate

    vocab = ("a", "b")
    by_length = tuple(n for n in range(1, 4) for _ in range(2 ** n))
    assert is_degenerate(by_length, 3, vocab)
    assert not is_degenerate(by_length[:-1] + ("x",), 3, vocab)
