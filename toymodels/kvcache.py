"""Incremental decoding: a causal transformer's forward pass one position at a time, with every
layer's keys and values cached.

    out_BPO, cache = prefill(model, prompt, max_len)   # the prompt's outputs; cache holds max_len
    out_BO, cache = step(model, cache, next_input)     # the next position's outputs

``step`` computes one position against the cached keys and values instead of rerunning the
whole sequence: per token, work grows with the sequence length, not with its square. Its
outputs equal the full forward pass's at that position up to float rounding (tested).
``prefill`` is the model's own forward pass (its keys and values read through hooks).
Inference only: no dropout, no myopia, no external past states.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from toymodels.hooks import Hooks, run_with_cache

Array = jax.Array


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Cache:
    """Keys and values (n_layers, B, max_len, H, K) of the positions so far; ``length`` of them
    are filled (a traced int, so one compiled ``step`` serves every position)."""
    k: Array
    v: Array
    length: Array

    def take(self, index_B: Array) -> Cache:
        """The cache of rows ``index_B``: for beams that continue another beam's sequence."""
        return Cache(self.k[:, index_B], self.v[:, index_B], self.length)

    def repeat(self, n: int) -> Cache:
        """Each row ``n`` times in a row (B -> B * n): one cache per beam of a net."""
        return Cache(jnp.repeat(self.k, n, 1), jnp.repeat(self.v, n, 1), self.length)


def _check(model) -> None:
    if not model.cfg.causal:
        raise ValueError("incremental decoding needs a causal model (cfg.causal=True): a position of a "
                         "bidirectional one reads later positions, which do not exist yet")


def prefill(model, inputs: Array, max_len: int) -> tuple[Array, Cache]:
    """The model's outputs on ``inputs`` (B, P[, I]) and a cache with room for ``max_len``
    positions (P <= max_len <= cfg.max_seq_len)."""
    _check(model)
    P = inputs.shape[1]
    if not P <= max_len <= model.cfg.max_seq_len:
        raise ValueError(f"max_len={max_len}: allowed {P} (the prompt's length) .. {model.cfg.max_seq_len} "
                         "(the model's max_seq_len)")
    out, acts = run_with_cache(model, inputs, ("blocks.*.attn.k", "blocks.*.attn.v"))
    pad = ((0, 0), (0, 0), (0, max_len - P), (0, 0), (0, 0))
    stack = [jnp.stack([acts[f"blocks.{i}.attn.{n}"] for i in range(model.cfg.n_layers)]) for n in ("k", "v")]
    k, v = (jnp.pad(a, pad) for a in stack)
    return out, Cache(k, v, jnp.asarray(P, jnp.int32))


def step(model, cache: Cache, x: Array) -> tuple[Array, Cache]:
    """The outputs (B, O) at the next position, whose input is ``x`` (B,) token ids or (B, I)
    vectors, and the cache with it appended (the cache must have room left)."""
    _check(model)
    cfg, pos = model.cfg, cache.length
    if cfg.input_kind == "tokens":
        h = jnp.take(model.W_E[...], x, axis=0)
    else:
        h = x @ model.W_in[...]
        if model.b_in is not None:
            h = h + model.b_in[...][None]
    if model.W_pos is not None:
        h = h + jax.lax.dynamic_index_in_dim(model.W_pos[...], pos, keepdims=False)[None]
    B, D = h.shape
    S = cache.k.shape[2]
    visible_S = jnp.arange(S) <= pos
    ks, vs = [], []
    for i, block in enumerate(model.blocks):
        attn = block.attn
        _, three, H, K = attn.W_QKV.shape
        qkv = block.ln1(h) @ attn.W_QKV[...].reshape(D, three * H * K)
        if attn.b_QKV is not None:
            qkv = qkv + attn.b_QKV[...].reshape(1, -1)
        q, k, v = (qkv.reshape(B, 3, H, K)[:, j] for j in range(3))
        k_all = jax.lax.dynamic_update_index_in_dim(cache.k[i], k, pos, axis=1)   # (B, S, H, K)
        v_all = jax.lax.dynamic_update_index_in_dim(cache.v[i], v, pos, axis=1)
        ks.append(k_all)
        vs.append(v_all)
        s_BHS = jnp.einsum("bhk,bshk->bhs", q * (1.0 / math.sqrt(K)), k_all)
        p_BHS = jax.nn.softmax(jnp.where(visible_S[None, None], s_BHS, -jnp.inf), axis=-1)
        z = jnp.einsum("bhs,bshk->bhk", p_BHS, v_all).reshape(B, H * K)
        a = z @ attn.W_O[...].reshape(H * K, D)
        if attn.b_O is not None:
            a = a + attn.b_O[...][None]
        h = h + a
        if block.mlp is not None:
            h = h + block.mlp(block.ln2(h)[:, None], Hooks(), f"blocks.{i}.mlp")[:, 0]
    h = model.ln_final(h)
    if cfg.output_kind == "logits":
        out = h @ (model.W_E[...].T if cfg.tie_embeddings else model.W_U[...])
    else:
        out = h @ model.W_U[...]
        if model.b_U is not None:
            out = out + model.b_U[...][None]
    return out, Cache(jnp.stack(ks), jnp.stack(vs), pos + 1)
