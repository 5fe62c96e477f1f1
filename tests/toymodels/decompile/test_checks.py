"""Execution checks, sampled candidates and ranked retrieval: the pieces of the fair
decompiler benchmark's ``+check`` methods."""

from __future__ import annotations

import pytest

from toymodels.compiler import compile_program
from toymodels.decompile import greedy_decode
from toymodels.decompile.checks import agrees, check_inputs, first_agreeing, net_outputs
from toymodels.decompile.evaluate import io_table, sample_decode
from toymodels.decompile.retrieval import nearest_programs, ranked_programs
from toymodels.model import TransformerConfig, init_model
from toymodels.rasp.catalogue import FOUNTAIN_MAX_SEQ_LEN, FOUNTAIN_VOCAB
from toymodels.scramble import scramble
from toymodels.tasks import make_task


@pytest.fixture(scope="module")
def task():
    return make_task("decompile", n_programs=40, n_eval=6, max_weight_tokens=64, max_program_tokens=48,
                     split_by="function")


def test_check_inputs_are_distinct_cover_every_length_and_are_seeded():
    xs = check_inputs(8)
    assert len(set(xs)) == 8 and {len(x) for x in xs} == {1, 2, 3, 4, 5}
    assert all(set(x) <= set(FOUNTAIN_VOCAB) for x in xs)
    assert check_inputs(8) == xs and check_inputs(8, seed=1) != xs
    assert len(set(check_inputs(363))) == 363          # every input of length 1..5 over three tokens
    with pytest.raises(ValueError, match="allowed 1..363"):
        check_inputs(364)
    # one length only (the length a trained twin has seen): distinct, all 3^5 reachable
    five = check_inputs(8, min_len=5, max_len=5)
    assert len(set(five)) == 8 and {len(x) for x in five} == {5} and five[0] == xs[0]
    assert len(set(check_inputs(243, min_len=5, max_len=5))) == 243
    with pytest.raises(ValueError, match="allowed 1..243"):
        check_inputs(244, min_len=5, max_len=5)
    with pytest.raises(ValueError, match="min_len=6"):
        check_inputs(8, min_len=6)


def test_nets_and_their_scrambles_agree_with_their_own_program_only(task):
    """Padded to one shape, each net outputs what its program's interpreter does (and what the
    unpadded net's run_batch decodes); a program of another function fails the check."""
    entries = [e for e in task.programs("train") + task.programs("eval") if not e["degenerate"]][:4]
    assert len({io_table(e["program"]) for e in entries}) == 4
    inputs = check_inputs(8)
    nets = []
    for e in entries:
        c = compile_program(e["program"], FOUNTAIN_VOCAB, FOUNTAIN_MAX_SEQ_LEN)
        nets += [(c.model, c), (scramble(c.model, e["seed"]), c)]
    observed = net_outputs(nets, inputs)
    c0 = nets[0][1]
    assert observed[0] == [c0.run([c0.bos, *x]) for x in inputs]
    for i, obs in enumerate(observed):
        own = entries[i // 2]["tokens"]
        assert agrees(own, inputs, obs)
        others = [e["tokens"] for e in entries if e["tokens"] != own]
        # a function differing somewhere may still match on 8 inputs; on all 363 it may not
        assert not any(agrees(t, check_inputs(363), net_outputs([nets[i]], check_inputs(363))[0]) for t in others)
    assert not agrees(["Map", "f:x%3"], inputs, observed[0])          # unparsable
    own, other = entries[0]["tokens"], entries[1]["tokens"]
    all_inputs = check_inputs(363)
    obs_all, = net_outputs([nets[0]], all_inputs)
    assert first_agreeing([other, own], all_inputs, obs_all) == (own, 1)
    assert first_agreeing([other, ["Select"]], all_inputs, obs_all) == (other, -1)


def test_sample_decode_puts_greedy_first_and_is_seeded(task):
    cfg = TransformerConfig(n_layers=1, d_model=16, n_heads=2, vocab_size=task.vocab.size, max_seq_len=task.seq_len,
                            input_kind="vectors", d_input=task.d_input)
    model = init_model(cfg, seed=0)
    x = task.weights("eval")[:3]
    cands = sample_decode(model, x, 6, task.layout, max_len=12, seed=3)
    assert [c[0] for c in cands] == greedy_decode(model, x, task.layout, max_len=12)
    for c in cands:   # repeats removed; an untrained model samples several distinct sequences
        assert len({tuple(t) for t in c}) == len(c) and 1 < len(c) <= 7
    assert sample_decode(model, x, 6, task.layout, max_len=12, seed=3) == cands
    assert sample_decode(model, x, 6, task.layout, max_len=12, seed=4) != cands
    assert sample_decode(model, x, 0, task.layout, max_len=12) == [[c[0]] for c in cands]
    with pytest.raises(ValueError, match="temperature > 0"):
        sample_decode(model, x, 2, task.layout, temperature=0.0)


def test_ranked_programs_start_with_the_nearest_and_are_distinct_training_programs(task):
    ranked = ranked_programs(task, "eval", k=5)
    assert [r[0] for r in ranked] == nearest_programs(task, "eval")
    train = [e["tokens"] for e in task.programs("train")]
    for r in ranked:
        assert len(r) == 5 and all(t in train for t in r)
        assert len({tuple(t) for t in r}) == 5     # the training split has distinct token sequences
    with pytest.raises(ValueError, match="k=0"):
        ranked_programs(task, "eval", k=0)
