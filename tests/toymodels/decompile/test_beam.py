"""Beam search over program tokens: greedy at width 1, exact where the width holds every
sequence, deterministic, best first."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from toymodels.decompile import greedy_decode
from toymodels.decompile.beam import beam_decode, beam_search
from toymodels.decompile.tokens import EOS, PAD, SEP, VOCAB
from toymodels.decompile.weights import program_vectors
from toymodels.model import TransformerConfig, init_model
from toymodels.tasks import make_task


@pytest.fixture(scope="module")
def setup():
    task = make_task("decompile", n_programs=30, n_eval=4, max_weight_tokens=48, max_program_tokens=24,
                     split_by="function")
    cfg = TransformerConfig(n_layers=1, d_model=16, n_heads=2, vocab_size=task.vocab.size, max_seq_len=task.seq_len,
                            input_kind="vectors", d_input=task.d_input)
    model = init_model(cfg, seed=1)
    return task, model, task.weights("eval")[:3]


def test_width_one_is_greedy_and_greedy_is_the_full_forward_argmax(setup):
    task, model, x = setup
    cands, scores = beam_decode(model, x, 1, task.layout, max_len=10)
    assert [c[0] for c in cands] == greedy_decode(model, x, task.layout, max_len=10)
    assert all(len(c) == 1 and len(s) == 1 for c, s in zip(cands, scores))
    # the cached decoders against argmax over full forward passes, token by token
    ids, _ = beam_search(model, x, 1, task.layout, max_len=10)
    for net in range(3):
        seq = []
        while len(seq) < 10 and EOS not in seq:
            seq.append(int(_logp_next(model, x[net], task.layout, [seq])[0].argmax()))
        assert ids[net, 0, :len(seq)].tolist() == seq


def _logp_next(model, x_NI, layout, prefixes):
    """log p(next token | <sep> prefix) for each prefix (list of ids), by one forward each."""
    n, N = len(prefixes), x_NI.shape[0]
    S = max(len(p) for p in prefixes) + 1
    stream = np.full((n, S), PAD, np.int32)
    stream[:, 0] = SEP
    for i, p in enumerate(prefixes):
        stream[i, 1:1 + len(p)] = p
    inputs = jnp.concatenate([jnp.repeat(jnp.asarray(x_NI, jnp.float32)[None], n, 0),
                              program_vectors(jnp.asarray(stream), layout)], 1)
    logits = model(inputs)[:, :, :len(VOCAB)]
    return np.asarray(jax.nn.log_softmax(logits[np.arange(n), [N + len(p) for p in prefixes]].astype(jnp.float32)))


def test_a_beam_as_wide_as_the_vocabulary_is_exact_over_two_tokens(setup):
    """Over two tokens, width V keeps every first token, so the V best beams are the V most
    likely sequences of all V^2 (after <eos>, only <pad>, at no cost): checked by enumeration."""
    task, model, x = setup
    V = len(VOCAB)
    ids, score = beam_search(model, x[:1], V, task.layout, max_len=2)
    lp1 = _logp_next(model, x[0], task.layout, [[]])[0]
    lp2 = _logp_next(model, x[0], task.layout, [[t] for t in range(V)])
    every = {(t1, t2): lp1[t1] + lp2[t1, t2] for t1 in range(V) if t1 != EOS for t2 in range(V)}
    every[(EOS, PAD)] = lp1[EOS]
    best = sorted(every.items(), key=lambda kv: -kv[1])[:V]
    np.testing.assert_allclose(score[0], [s for _, s in best], rtol=1e-5, atol=1e-5)
    # same sequences (ties of equal score may come in either order)
    assert sorted(map(tuple, ids[0].tolist())) == sorted(seq for seq, _ in best)
    for seq, s in zip(ids[0].tolist(), score[0]):
        assert every[tuple(seq)] == pytest.approx(s, abs=1e-5)


def test_beams_are_best_first_distinct_deterministic_and_at_least_as_likely_as_greedy(setup):
    task, model, x = setup
    ids, score = beam_search(model, x, 8, task.layout, max_len=10)
    assert ids.shape == (3, 8, 10) and np.all(np.diff(score, axis=1) <= 1e-6)
    for row in ids:
        assert len({tuple(r) for r in row.tolist()}) == 8
        for r in row.tolist():     # after <eos>, padding only
            if EOS in r:
                assert set(r[r.index(EOS) + 1:]) <= {PAD}
    again = beam_search(model, x, 8, task.layout, max_len=10)
    np.testing.assert_array_equal(again[0], ids)
    chunked = beam_search(model, x, 8, task.layout, max_len=10, rows=16)   # two nets a call, the last padded
    np.testing.assert_array_equal(chunked[0], ids)
    np.testing.assert_allclose(chunked[1], score, rtol=1e-6)
    # each score is its sequence's log-probability, token by token up to and including <eos>
    # (a beam search need not beat greedy: it may drop the greedy prefix before greedy ends)
    for net in range(3):
        seqs = ids[net].tolist()
        prefixes = [seq[:j] for seq in seqs for j in range(10)]
        lp = _logp_next(model, x[net], task.layout, prefixes).reshape(8, 10, -1)
        for b, seq in enumerate(seqs):
            n = seq.index(EOS) + 1 if EOS in seq else 10
            assert sum(lp[b, j, seq[j]] for j in range(n)) == pytest.approx(score[net, b], abs=1e-4)
    cands, scores = beam_decode(model, x, 8, task.layout, max_len=10)
    for c, s in zip(cands, scores):
        assert len({tuple(t) for t in c}) == len(c) >= 1 and s == sorted(s, reverse=True)


def test_bad_width_and_length_are_refused(setup):
    task, model, x = setup
    with pytest.raises(ValueError, match="width=0"):
        beam_search(model, x, 0, task.layout)
    with pytest.raises(ValueError, match="max_len=999"):
        beam_search(model, x, 2, task.layout, max_len=999)
