"""Scoring a decompiler: greedy decoding, exact match, functional equivalence.

    toks = greedy_decode(model, task.weights("eval")[0], task.layout)
    cands = sample_decode(model, task.weights("eval"), 16, task.layout)   # greedy first, then by log-prob
    exact_match(toks, entry["tokens"]); functionally_equivalent(toks, entry["program"], 5)
    score(toks, entry["tokens"])          # {"exact", "equivalent", "parsable"}, each 0 or 1
    decoder_report(model, task, "eval")   # token accuracy, and the mean scores
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from toymodels import kvcache
from toymodels.decompile.tokens import EOS, PAD, SEP, SPECIALS, VOCAB, parse_program
from toymodels.decompile.weights import Layout, program_vectors
from toymodels.hooks import forward
from toymodels.rasp import interpreter
from toymodels.rasp.catalogue import FOUNTAIN_VOCAB


def strip(tokens) -> list[str]:
    """Program tokens only: up to the first <eos>, without <sep> / <pad>."""
    toks = list(tokens)
    if "<eos>" in toks:
        toks = toks[:toks.index("<eos>")]
    return [t for t in toks if t not in SPECIALS]


@functools.lru_cache(maxsize=8)
def _decoder(graphdef, layout: Layout, n_steps: int, temperature: float = 0.0):
    """One jitted decoding loop: argmax at temperature 0, else sampling from softmax(logits /
    temperature) with a key per step. Returns the ids after <sep> and each row's summed
    log-probability (temperature 1) of the tokens it chose up to and including <eos>.
    The weight tokens and <sep> run once (``kvcache.prefill``); each program token after
    that is one cached ``kvcache.step``."""
    V = len(VOCAB)

    @jax.jit
    def run(state, x_BNI, key):
        model = nnx.merge(graphdef, state)
        B, N, _ = x_BNI.shape
        stream_BS = jnp.full((B, n_steps + 1), PAD, jnp.int32).at[:, 0].set(SEP)
        out, cache = kvcache.prefill(model, jnp.concatenate([x_BNI, program_vectors(stream_BS[:, :1], layout)], 1),
                             N + n_steps)

        def step(j, carry):
            stream_BS, logp_B, cache, logits_BV = carry
            done_B = jnp.any((stream_BS == EOS) & (jnp.arange(n_steps + 1) <= j)[None], axis=1)
            if temperature == 0.0:
                pick_B = jnp.argmax(logits_BV, -1)
            else:
                pick_B = jax.random.categorical(jax.random.fold_in(key, j), logits_BV / temperature)
            pick_B = pick_B.astype(jnp.int32)
            lp_B = jnp.take_along_axis(jax.nn.log_softmax(logits_BV), pick_B[:, None], 1)[:, 0]
            stream_BS = stream_BS.at[:, j + 1].set(jnp.where(done_B, PAD, pick_B))
            # the last step's output is never read (its position is past the cache: clamped)
            logits, cache = kvcache.step(model, cache, program_vectors(stream_BS[:, j + 1], layout))
            return stream_BS, logp_B + jnp.where(done_B, 0.0, lp_B), cache, logits[:, :V].astype(jnp.float32)

        init = (stream_BS, jnp.zeros(B, jnp.float32), cache, out[:, N, :V].astype(jnp.float32))
        stream_BS, logp_B, _, _ = jax.lax.fori_loop(0, n_steps, step, init)
        return stream_BS[:, 1:], logp_B
    return run


def _batched(weight_tokens):
    x = jnp.asarray(weight_tokens, jnp.float32)
    return x.ndim == 2, (x[None] if x.ndim == 2 else x)


def greedy_decode(model, weight_tokens, layout: Layout | None = None, max_len: int | None = None):
    """Argmax decoding after <sep> for padded weight tokens (N, I) or (B, N, I): a token
    list (or one per row) without specials. One jitted loop of ``max_len`` full forward
    passes (default: as many as fit the model's max_seq_len)."""
    layout = layout or Layout()
    single, x_BNI = _batched(weight_tokens)
    n_steps = max_len or model.cfg.max_seq_len - x_BNI.shape[1]
    graphdef, state = nnx.split(model)
    ids_BS, _ = _decoder(graphdef, layout, n_steps)(state, x_BNI, jax.random.key(0))
    out = [strip(VOCAB[i] for i in row) for row in np.asarray(ids_BS)]
    return out[0] if single else out


def sample_decode(model, weight_tokens, n_samples: int, layout: Layout | None = None,
                  max_len: int | None = None, temperature: float = 1.0, seed: int = 0) -> list[list[list[str]]]:
    """Candidate programs for each net of padded weight tokens (B, N, I): the greedy decoding
    first, then ``n_samples`` sampled decodings (softmax at ``temperature``), repeats
    removed and ordered by the model's log-probability of the whole sequence, most likely
    first. One list of token lists per net (specials stripped)."""
    if n_samples < 0 or temperature <= 0:
        raise ValueError(f"n_samples={n_samples}, temperature={temperature}: need n_samples >= 0, temperature > 0")
    layout = layout or Layout()
    _, x_BNI = _batched(weight_tokens)
    B = x_BNI.shape[0]
    n_steps = max_len or model.cfg.max_seq_len - x_BNI.shape[1]
    graphdef, state = nnx.split(model)
    out = [[strip(VOCAB[i] for i in row)] for row in
           np.asarray(_decoder(graphdef, layout, n_steps)(state, x_BNI, jax.random.key(seed))[0])]
    if n_samples == 0:
        return out
    # one sampling pass over the batch per sample (memory of one greedy pass), keys folded per pass
    run = _decoder(graphdef, layout, n_steps, float(temperature))
    passes = [run(state, x_BNI, jax.random.fold_in(jax.random.key(seed), k)) for k in range(n_samples)]
    ids_KBS = np.stack([np.asarray(ids) for ids, _ in passes])
    logp_KB = np.stack([np.asarray(lp) for _, lp in passes])
    for b in range(B):
        seen = {tuple(out[b][0])}
        for k in np.argsort(-logp_KB[:, b], kind="stable"):
            toks = strip(VOCAB[i] for i in ids_KBS[k, b])
            if tuple(toks) not in seen:
                seen.add(tuple(toks))
                out[b].append(toks)
    return out


def exact_match(pred, true) -> bool:
    return strip(pred) == strip(true)


@functools.lru_cache(maxsize=16)
def _inputs(max_len: int, vocab: tuple) -> tuple[list, ...]:
    return tuple(list(xs) for n in range(1, max_len + 1) for xs in itertools.product(vocab, repeat=n))


def _output(program, xs):
    try:
        return interpreter.evaluate(program, xs)
    except Exception as e:  # noqa: BLE001 -- a garbage program may fail any way
        return f"<error {type(e).__name__}>"


def _hashable(out):
    return tuple(out) if isinstance(out, list) else out


def io_table(program, max_len: int = 5, vocab=FOUNTAIN_VOCAB) -> tuple:
    """A program's outputs (an error where it errs) on every input of length 1..max_len over
    ``vocab``, as one hashable tuple: two programs are functionally equivalent on these
    inputs exactly when their tables are equal."""
    return tuple(_hashable(_output(program, xs)) for xs in _inputs(max_len, tuple(vocab)))


def is_degenerate(table: tuple, max_len: int = 5, vocab=FOUNTAIN_VOCAB) -> bool:
    """The table of a program whose output depends on the input's length alone: within every
    length, every input gives the same output (a constant program, or one whose every
    token-reading line is dead)."""
    start = 0
    for n in range(1, max_len + 1):
        block = table[start:start + len(vocab) ** n]
        start += len(vocab) ** n
        if len(set(block)) > 1:
            return False
    return True


@functools.lru_cache(maxsize=4096)
def _reference_outputs(true_tokens: tuple, max_len: int, vocab: tuple) -> tuple:
    """A reference program's outputs on every input (cached: each is checked against many
    decodings)."""
    return io_table(parse_program(list(true_tokens)), max_len, vocab)


def functionally_equivalent(pred_tokens, program, max_len: int = 5, vocab=FOUNTAIN_VOCAB) -> bool:
    """``pred_tokens`` parse and give ``program``'s outputs (a program or its tokens) on every
    input of length 1..max_len over ``vocab`` (an error where it errs). Unparsable: False.
    Stops at the first input where they differ."""
    try:
        pred = parse_program(strip(pred_tokens))
    except ValueError:
        return False
    inputs = _inputs(max_len, tuple(vocab))
    if isinstance(program, (list, tuple)):
        ref = _reference_outputs(tuple(strip(program)), max_len, tuple(vocab))
    else:
        ref = (_hashable(_output(program, xs)) for xs in inputs)   # lazy: stops with the comparison
    return all(_hashable(_output(pred, xs)) == r for xs, r in zip(inputs, ref))


def parses(tokens) -> bool:
    """Whether ``tokens`` (specials stripped) parse as a program."""
    try:
        parse_program(strip(tokens))
    except ValueError:
        return False
    return True


@functools.lru_cache(maxsize=100_000)
def _equivalent(pred: tuple, true: tuple, max_len: int, vocab: tuple) -> bool:
    # Cached: seeds and test weights often decode to the same tokens, and each check runs
    # both programs on every input (363 for length 5 over three tokens).
    return functionally_equivalent(list(pred), list(true), max_len, vocab)


def score(decoded, true_tokens, max_len: int = 5, vocab=FOUNTAIN_VOCAB) -> dict[str, float]:
    """One decoding against the true program's tokens: ``exact`` (same tokens), ``equivalent``
    (same outputs on every input of length 1..max_len over ``vocab``; implied by exact) and
    ``parsable``, each 0.0 or 1.0."""
    exact = exact_match(decoded, true_tokens)
    parsable = parses(decoded)
    equivalent = exact or (parsable and _equivalent(tuple(strip(decoded)), tuple(strip(true_tokens)),
                                                    max_len, tuple(vocab)))
    return dict(exact=float(exact), equivalent=float(equivalent), parsable=float(parsable))


def decoder_report(model, task, split: str = "eval", limit: int | None = None,
                   max_len: int = 5) -> dict[str, float]:
    """Teacher-forced accuracy on real program tokens (to <eos>), and greedy decoding's
    mean ``score``s (exact match, functional equivalence, parse rate) over ``split``'s programs."""
    entries = task.programs(split)[:limit]
    batch = task.full_batch(split)
    n = len(entries)
    logits, _ = forward(model, batch.inputs[:n])
    W = task.max_weight_tokens
    pred_BS, true_BS = np.asarray(logits[:, W:].argmax(-1)), np.asarray(batch.targets[:n, W:])
    real_BS = np.arange(true_BS.shape[1])[None] <= np.array([len(e["tokens"]) for e in entries])[:, None]
    decoded = greedy_decode(model, task.weights(split)[:n], task.layout,
                            max_len=task.max_program_tokens + 1)
    scores = [score(d, e["tokens"], max_len) for d, e in zip(decoded, entries)]
    return {
        "token_acc": float((pred_BS == true_BS)[real_BS].mean()),
        **{k: float(np.mean([s[k] for s in scores])) for k in ("exact", "equivalent", "parsable")},
        "n": n,
    }
