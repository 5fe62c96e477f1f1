"""Decompiler data: program tokens round-trip, weight tokens, the decompile task, scoring."""

from __future__ import annotations

import itertools
import random

import jax
import numpy as np
import pytest

from toymodels.compiler import compile_program
from toymodels.decompile import (
    VOCAB,
    Layout,
    exact_match,
    functionally_equivalent,
    greedy_decode,
    parse_program,
    program_tokens,
    weight_tokens,
)
from toymodels.decompile.evaluate import strip
from toymodels.decompile.tokens import ParseError
from toymodels.decompile.weights import KINDS, program_vectors
from toymodels.model import TransformerConfig, init_model
from toymodels.rasp import Comparison, evaluate, fountain, rasp
from toymodels.scramble import scramble
from toymodels.tasks import make_task

ABC = ("a", "b", "c")
INPUTS = [list(xs) for n in range(1, 5) for xs in itertools.product(ABC, repeat=n)]
SMALL = {"n_programs": 40, "n_eval": 8, "max_weight_tokens": 64, "max_program_tokens": 48}


def outputs(program):
    out = []
    for xs in INPUTS:
        try:
            out.append(evaluate(program, xs))
        except Exception as e:  # noqa: BLE001
            out.append(type(e).__name__)
    return out


# ---------------------------------------------------------------- program tokens
def test_round_trip_is_exact_on_fountain_programs():
    rng = random.Random(0)
    for seed in range(210):
        program = fountain.generate(seed, n_ops=rng.randint(2, 8))
        toks = program_tokens(program)
        assert set(toks) <= set(VOCAB)
        again = parse_program(toks)
        assert program_tokens(again) == toks, seed
        assert outputs(again) == outputs(program), seed


def test_merged_selectors_round_trip():
    # selector_and folds a Full side / shared keys into one Select with a lambda predicate.
    x = rasp.Map(fountain._MAPS[0][3], rasp.indices, simplify=False)
    sel = (rasp.Select(rasp.indices, rasp.Full(2), Comparison.LT)
           & rasp.Select(rasp.indices, x, Comparison.LEQ))
    assert isinstance(sel, rasp.Select) and not isinstance(sel.predicate, Comparison)
    program = rasp.numerical(rasp.Aggregate(sel, rasp.numerical(
        rasp.Map(fountain._TO_NUM[2][3], rasp.indices, simplify=False)), default=0))
    toks = program_tokens(program)
    assert "And" in toks and "Full" in toks
    again = parse_program(toks)
    assert program_tokens(again) == toks and outputs(again) == outputs(program)


def test_vocab_is_closed_and_unique():
    assert len(set(VOCAB)) == len(VOCAB) and VOCAB[:3] == ("<pad>", "<sep>", "<eos>")
    with pytest.raises(ValueError, match="named functions"):
        program_tokens(rasp.Map(lambda v: v, rasp.tokens))
    for bad in (["Map", "f:x+1"], ["Map", "f:x+1", "v3", "cat"], ["Select"], []):
        with pytest.raises(ParseError):
            parse_program(bad)


# ---------------------------------------------------------------- equivalence
IDENTITY_PLUS = ["Map", "f:x+1", "indices", "cat", "Map", "f:x-1", "v1", "cat",
                 "Map", "f:x%3", "v2", "cat"]


def test_functionally_equivalent():
    program = parse_program(["Map", "f:x%3", "indices", "cat"])
    assert functionally_equivalent(IDENTITY_PLUS, program, 4)
    assert not exact_match(IDENTITY_PLUS, program_tokens(program))
    assert not functionally_equivalent(["Map", "f:min(x,2)", "indices", "cat"], program, 4)
    assert not functionally_equivalent(["Map", "f:x%3"], program, 4)           # unparsable
    assert not functionally_equivalent(["Map", "f:x+1", "tokens", "cat"], program, 4)  # errors
    # The same program with independent lines in the other order.
    a = ["Map", "f:x+1", "indices", "cat", "Map", "f:-x", "indices", "cat",
         "SequenceMap", "g:x<y", "v1", "v2", "cat"]
    b = ["Map", "f:-x", "indices", "cat", "Map", "f:x+1", "indices", "cat",
         "SequenceMap", "g:x<y", "v2", "v1", "cat"]
    assert functionally_equivalent(b, a, 4) and not exact_match(a, b)
    assert exact_match(a + ["<eos>", "<pad>"], a)


# ---------------------------------------------------------------- weight tokens
def test_weight_tokens_layout_and_scrambles():
    layout = Layout(max_layers=6, d_max=40, max_heads=4)
    compiled = compile_program(fountain.generate(5, n_ops=5), ABC, 5)
    x_NI = weight_tokens(compiled, layout)
    assert x_NI.dtype == np.float32 and x_NI.shape[1] == layout.width
    kinds = x_NI[:, layout.kind_offset:layout.kind_offset + len(KINDS)]
    assert (kinds.sum(1) == 1).all()
    cfg = compiled.cfg
    n_of = lambda kind: int(kinds[:, KINDS.index(kind)].sum())
    nonzero_rows = lambda w: int(np.any(w != 0, axis=1).sum())  # zero pieces are skipped
    p = compiled.params()
    assert (n_of("embed"), n_of("pos")) == (nonzero_rows(p["W_E"]), nonzero_rows(p["W_pos"]))
    assert n_of("mlp") == nonzero_rows(np.concatenate([p[f"blocks.{i}.mlp.W_in"].T for i in
                                                       range(cfg.n_layers)]))
    np.testing.assert_array_equal(weight_tokens(compiled.model, layout), x_NI)  # Transformer too
    raw = weight_tokens(compiled, layout, transform="raw")
    assert np.abs(raw).max() > 20 > np.abs(x_NI).max()
    scrambled = weight_tokens(scramble(compiled.model, 1), layout)
    assert scrambled.shape == x_NI.shape and not np.allclose(scrambled, x_NI, atol=1e-2)
    meta = slice(layout.kind_offset, layout.head_offset)   # kind and layer survive scrambling
    np.testing.assert_array_equal(scrambled[:, meta], x_NI[:, meta])
    with pytest.raises(ValueError, match="exceed"):
        weight_tokens(compiled, Layout(max_layers=6, d_max=cfg.d_model - 1))


# ---------------------------------------------------------------- the task
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


def test_greedy_decode_is_self_consistent(task):
    cfg = TransformerConfig(n_layers=1, d_model=16, n_heads=2, d_mlp=32, vocab_size=len(VOCAB),
                            max_seq_len=task.seq_len, input_kind="vectors", d_input=task.d_input)
    model = init_model(cfg, 0)
    x_BNI = task.weights("eval")[:3]
    decoded = greedy_decode(model, x_BNI, task.layout, max_len=task.max_program_tokens + 1)
    assert greedy_decode(model, x_BNI[0], task.layout, task.max_program_tokens + 1) == decoded[0]
    for x_NI, toks in zip(x_BNI, decoded):
        S = task.max_program_tokens + 1
        ids = ([1] + [VOCAB.index(t) for t in toks] + [0] * S)[:S]
        inputs = np.concatenate([x_NI, program_vectors(np.array(ids), task.layout)])
        logits = model(inputs[None])[0, task.max_weight_tokens:, :len(VOCAB)]
        want = [VOCAB[i] for i in np.asarray(logits.argmax(-1))[:len(toks)]]
        assert want == toks


def test_trainer_accepts_the_task(task):
    from toymodels.train import TrainConfig, Trainer
    cfg = TransformerConfig(n_layers=1, d_model=16, n_heads=2, vocab_size=task.vocab.size,
                            max_seq_len=task.seq_len, input_kind="vectors", d_input=task.d_input)
    Trainer(cfg, TrainConfig(steps=1), {"decompile": task})
