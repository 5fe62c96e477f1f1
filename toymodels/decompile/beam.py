"""Beam search over a decompiler's program tokens: the ``width`` most likely decodings.

    cands, logp = beam_decode(model, task.weights("eval"), 16, task.layout)   # per net, best first
    ids, logp = beam_search(model, task.weights("eval"), 16, task.layout)     # raw ids (B, 16, S)

Every step extends each live beam by every token and keeps the ``width`` highest summed
log-probabilities (temperature 1) over all of them; a beam that emitted <eos> is finished
and carries its score on unchanged. At width 1 this is greedy decoding; at a width that
holds every sequence it is exact (the most likely sequences, in order). Unlike sampling,
the candidates are deterministic and none repeats. The weight tokens run once per net
(``kvcache.prefill``), then one cached step per token over (nets x width) rows, a chunk of
nets at a time.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from toymodels import kvcache
from toymodels.decompile.evaluate import _batched, strip
from toymodels.decompile.tokens import EOS, PAD, SEP, VOCAB
from toymodels.decompile.weights import Layout, program_vectors


@functools.lru_cache(maxsize=8)
def _beam(graphdef, layout: Layout, n_steps: int, width: int):
    V = len(VOCAB)

    @jax.jit
    def run(state, x_BNI):
        model = nnx.merge(graphdef, state)
        B, N, _ = x_BNI.shape
        stream = jnp.full((B, width, n_steps + 1), PAD, jnp.int32).at[:, :, 0].set(SEP)
        # one live beam at the start: the others would only repeat it
        score = jnp.full((B, width), -jnp.inf, jnp.float32).at[:, 0].set(0.0)
        done = jnp.zeros((B, width), bool)
        finished_row = jnp.full((V,), -jnp.inf, jnp.float32).at[PAD].set(0.0)   # a finished beam: pad, score kept
        out, cache = kvcache.prefill(model, jnp.concatenate([x_BNI, program_vectors(stream[:, 0, :1], layout)], 1),
                                     N + n_steps)
        logits = jnp.repeat(out[:, N, :V].astype(jnp.float32), width, 0)     # (B * width, V)
        cache = cache.repeat(width)

        def step(j, carry):
            stream, score, done, cache, logits = carry
            step_lp = jnp.where(done[..., None], finished_row, jax.nn.log_softmax(logits.reshape(B, width, V)))
            score, idx = jax.lax.top_k((score[..., None] + step_lp).reshape(B, width * V), width)
            parent, token = idx // V, (idx % V).astype(jnp.int32)
            stream = jnp.take_along_axis(stream, parent[..., None], 1).at[:, :, j + 1].set(token)
            done = jnp.take_along_axis(done, parent, 1) | (token == EOS)
            cache = cache.take((jnp.arange(B)[:, None] * width + parent).reshape(-1))
            # the last step's output is never read (its position is past the cache: clamped)
            logits, cache = kvcache.step(model, cache, program_vectors(token.reshape(-1), layout))
            return stream, score, done, cache, logits[:, :V].astype(jnp.float32)

        stream, score, _, _, _ = jax.lax.fori_loop(0, n_steps, step, (stream, score, done, cache, logits))
        return stream[:, :, 1:], score
    return run


def beam_search(model, weight_tokens, width: int, layout: Layout | None = None,
                max_len: int | None = None, rows: int = 512) -> tuple[np.ndarray, np.ndarray]:
    """The ``width`` most likely token sequences after <sep> of each net of padded weight
    tokens (B, N, I) or (N, I), ``max_len`` tokens each (default: as many as fit the model's
    max_seq_len; after <eos>, <pad>): (ids (B, width, max_len), summed log-probabilities
    (B, width)), best first; -inf where fewer than ``width`` sequences exist. Nets are
    searched ``rows // width`` at a time (at least one; the last chunk padded to the same
    shape, so one compile), bounding memory at ``rows`` forward rows."""
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"width={width!r}: a beam search keeps at least 1 beam (an int >= 1)")
    layout = layout or Layout()
    _, x_BNI = _batched(weight_tokens)
    room = model.cfg.max_seq_len - x_BNI.shape[1]
    n_steps = max_len or room
    if not 1 <= n_steps <= room:
        raise ValueError(f"max_len={max_len}: {x_BNI.shape[1]} weight tokens leave room for 1..{room} program "
                         f"tokens in max_seq_len {model.cfg.max_seq_len}")
    graphdef, state = nnx.split(model)
    run = _beam(graphdef, layout, n_steps, width)
    B = x_BNI.shape[0]
    chunk = min(B, max(1, rows // width))
    ids, score = [], []
    for start in range(0, B, chunk):
        x = x_BNI[start:start + chunk]
        got = run(state, jnp.concatenate([x, jnp.repeat(x[:1], chunk - x.shape[0], 0)]))
        ids.append(np.asarray(got[0])[:x.shape[0]])
        score.append(np.asarray(got[1])[:x.shape[0]])
    return np.concatenate(ids), np.concatenate(score)


def beam_decode(model, weight_tokens, width: int, layout: Layout | None = None,
                max_len: int | None = None, rows: int = 512) -> tuple[list[list[list[str]]], list[list[float]]]:
    """``beam_search`` as programs: per net, the decodings as token lists without specials,
    best first, and their scores. Decodings equal once specials are stripped appear once,
    at their best score; a beam cut off at ``max_len`` without <eos> is kept (it parses or
    not, as a greedy decoding would)."""
    ids, score = beam_search(model, weight_tokens, width, layout, max_len, rows)
    cands, scores = [], []
    for row_ids, row_score in zip(ids, score):
        seen, toks_out, lp_out = set(), [], []
        for seq, lp in zip(row_ids, row_score):
            toks = strip(VOCAB[i] for i in seq)
            if np.isfinite(lp) and tuple(toks) not in seen:
                seen.add(tuple(toks))
                toks_out.append(toks)
                lp_out.append(float(lp))
        cands.append(toks_out)
        scores.append(lp_out)
    return cands, scores
