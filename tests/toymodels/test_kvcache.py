"""Incremental decoding equals the full forward pass, position by position."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from toymodels.kvcache import prefill, step
from toymodels.model import TransformerConfig, init_model

CONFIGS = {
    "tokens": dict(vocab_size=11),
    "tokens_tied_attention_only_no_bias": dict(vocab_size=11, tie_embeddings=True, d_mlp=0, use_bias=False),
    "vectors_no_norm_relu": dict(input_kind="vectors", d_input=5, norm="none", act="relu", vocab_size=9),
    "vectors_to_vectors": dict(input_kind="vectors", d_input=5, output_kind="vectors", d_output=3),
}


def _inputs(cfg, B, T, seed):
    rng = np.random.default_rng(seed)
    if cfg.input_kind == "tokens":
        return jnp.asarray(rng.integers(0, cfg.vocab_size, (B, T)), jnp.int32)
    return jnp.asarray(rng.normal(size=(B, T, cfg.d_input)), jnp.float32)


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_prefill_then_steps_equal_the_full_forward_pass(name):
    # weights far above the usual init scale, so that attention is far from uniform
    cfg = TransformerConfig(n_layers=2, d_model=16, n_heads=2, max_seq_len=12, init_std=0.5, **CONFIGS[name])
    model = init_model(cfg, seed=3)
    x = _inputs(cfg, 3, 10, seed=0)
    full = model(x)
    out, cache = prefill(model, x[:, :4], max_len=10)
    np.testing.assert_allclose(out, full[:, :4], rtol=1e-5, atol=1e-5)
    for t in range(4, 10):
        got, cache = step(model, cache, x[:, t])
        np.testing.assert_allclose(got, full[:, t], rtol=1e-4, atol=1e-5)
    assert int(cache.length) == 10


def test_one_jitted_step_serves_every_position_and_beams_reorder_the_cache():
    cfg = TransformerConfig(n_layers=1, d_model=8, n_heads=2, max_seq_len=8, vocab_size=7, init_std=0.5)
    model = init_model(cfg, seed=0)
    x = _inputs(cfg, 2, 6, seed=1)
    full = model(x)
    jstep = jax.jit(step)
    _, cache = prefill(model, x[:, :2], max_len=6)
    for t in range(2, 6):
        got, cache = jstep(model, cache, x[:, t])
        np.testing.assert_allclose(got, full[:, t], rtol=1e-4, atol=1e-5)
    # rows swapped: the cache of row 1 continues row 1's sequence in row 0
    _, cache = prefill(model, x[:, :3], max_len=6)
    swapped = cache.repeat(2).take(jnp.array([2, 0]))        # rows (1, 0) of the original
    got, _ = step(model, swapped, x[::-1, 3])
    np.testing.assert_allclose(got, full[::-1, 3], rtol=1e-4, atol=1e-5)


def test_bidirectional_models_and_bad_lengths_are_refused():
    cfg = TransformerConfig(n_layers=1, d_model=8, n_heads=2, max_seq_len=8, vocab_size=7)
    model = init_model(cfg, seed=0)
    x = _inputs(cfg, 1, 4, seed=0)
    with pytest.raises(ValueError, match="max_len=3"):
        prefill(model, x, max_len=3)
    with pytest.raises(ValueError, match="max_len=9"):
        prefill(model, x, max_len=9)
    bidir = init_model(TransformerConfig(n_layers=1, d_model=8, n_heads=2, max_seq_len=8, vocab_size=7,
                                         causal=False), seed=0)
    with pytest.raises(ValueError, match="causal"):
        prefill(bidir, x, max_len=6)
