"""Scoring a decompiler: functional equivalence, greedy decoding, ``score``, ``decoder_report``."""

from __future__ import annotations

import numpy as np
import pytest

from toymodels.decompile import (
    VOCAB,
    decoder_report,
    exact_match,
    functionally_equivalent,
    greedy_decode,
    parse_program,
    program_tokens,
    score,
)
from toymodels.decompile.weights import program_vectors
from toymodels.model import TransformerConfig, init_model
from toymodels.tasks import make_task

SMALL = {"n_programs": 40, "n_eval": 8, "max_weight_tokens": 64, "max_program_tokens": 48}


@pytest.fixture(scope="module")
def task():
    return make_task("decompile", **SMALL)


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


def test_score_exact_equivalent_parsable():
    program = ["Map", "f:x%3", "indices", "cat"]
    assert score(program, program) == dict(exact=1.0, equivalent=1.0, parsable=1.0)
    assert score(program + ["<eos>", "<pad>"], program)["exact"] == 1.0
    assert score(IDENTITY_PLUS, program) == dict(exact=0.0, equivalent=1.0, parsable=1.0)
    assert score(["Map", "f:min(x,2)", "indices", "cat"], program) == \
        dict(exact=0.0, equivalent=0.0, parsable=1.0)
    assert score(["Map", "f:x%3"], program) == dict(exact=0.0, equivalent=0.0, parsable=0.0)
    # the same verdicts as functionally_equivalent, for every pair of these programs
    for pred in (program, IDENTITY_PLUS, ["Map", "f:x+1", "tokens", "cat"], ["Select"]):
        for true in (program, IDENTITY_PLUS):
            assert score(pred, true)["equivalent"] == float(functionally_equivalent(pred, true))


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




def test_decoder_report_is_the_mean_score_of_greedy_decodings(task):
    cfg = TransformerConfig(n_layers=1, d_model=16, n_heads=2, d_mlp=32, vocab_size=len(VOCAB),
                            max_seq_len=task.seq_len, input_kind="vectors", d_input=task.d_input)
    model = init_model(cfg, 1)
    report = decoder_report(model, task, "eval", limit=4)
    entries = task.programs("eval")[:4]
    decoded = greedy_decode(model, task.weights("eval")[:4], task.layout, task.max_program_tokens + 1)
    scores = [score(d, e["tokens"]) for d, e in zip(decoded, entries)]
    assert report["n"] == 4 and 0.0 <= report["token_acc"] <= 1.0
    for k in ("exact", "equivalent", "parsable"):
        assert report[k] == np.mean([s[k] for s in scores])


def test_retrieval_baseline_finds_training_programs_and_only_guesses_held_out_ones():
    from toymodels.decompile.evaluate import score
    from toymodels.decompile.retrieval import nearest_programs, weight_features

    task = make_task("decompile", n_programs=60, n_eval=12, max_weight_tokens=64, max_program_tokens=48,
                     split_by="function")
    # on its own training programs it returns (almost) every program itself
    train = task.programs("train")
    got = nearest_programs(task, "train")
    assert np.mean([g == e["tokens"] for g, e in zip(got, train)]) > 0.9
    # held out by function, it is never exact: every training program computes another function
    held = task.programs("eval")
    scores = [score(d, e["tokens"]) for d, e in zip(nearest_programs(task, "eval"), held)]
    assert len(scores) == len(held) and not any(s["exact"] or s["equivalent"] for s in scores)
    assert weight_features(np.ones((3, 2))).tolist() == [3, 1, 1, 0, 0, 1, 1]
    with pytest.raises(ValueError, match="weight tokens of shape"):
        weight_features(np.ones((0, 2)))
