"""A compiled (or scrambled) network's weights as a set of fixed-width "weight tokens".

    layout = Layout(max_layers=6, d_max=40, max_heads=4)
    x_NI = weight_tokens(compiled, layout)      # (N, layout.width) float32

One token per rank-one piece of the network, each piece a pair of residual-space
vectors (a, b) written into the first 2 * d_max features (each zero-padded from
d_model to d_max), then one-hots of its kind, layer and head:

  embed     W_E[v]            for every input id v            (a only)
  pos       W_pos[t]          for every position t            (a only)
  qk        (W_Q[:, h, k], W_K[:, h, k])  per head h, head dim k: W_QK = sum_k a b^T
  ov        (W_V[:, h, k], W_O[h, k, :])  per head h, head dim k: W_OV = sum_k a b^T
  mlp       (W_in[:, u], W_out[u, :])     per hidden unit u
  unembed   W_U[:, j]         for every output column j       (a only)

in that order (layers ascending), skipping pieces that are exactly zero (the d_head
and d_mlp padding of the widest head / MLP). Pairing the two factors of each
rank-one term keeps what a bilinear form needs together in one token. Features hold
sign(w) * log1p(|w|) ("symlog"): compiled attention weights reach ~500 (softmax
coldness) while one-hots are 1, and a linear input layer copes badly with that range.

Scrambles (toymodels.scramble) keep this shape: a rotation moves every a and b, a unit
permutation reorders mlp tokens, a head permutation changes head one-hots, a ReLU
rescaling multiplies a by c and divides b by c. Biases and LayerNorm are not encoded
(compiled nets have neither), so such models are rejected.

Program tokens share the width: ``program`` kind, one-hot of the token id in the
first features (``Layout.value_width`` is wide enough for the program vocabulary).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from toymodels.decompile.tokens import VOCAB
from toymodels.params import model_params

KINDS = ("embed", "pos", "qk", "ov", "mlp", "unembed", "program")


@dataclasses.dataclass(frozen=True)
class Layout:
    max_layers: int = 6
    d_max: int = 40
    max_heads: int = 4

    @property
    def value_width(self) -> int:
        return max(2 * self.d_max, len(VOCAB))

    @property
    def kind_offset(self) -> int:
        return self.value_width

    @property
    def layer_offset(self) -> int:
        return self.kind_offset + len(KINDS)

    @property
    def head_offset(self) -> int:
        return self.layer_offset + self.max_layers

    @property
    def width(self) -> int:
        return self.head_offset + self.max_heads


def symlog(x):
    return np.sign(x) * np.log1p(np.abs(x))


def _params(model) -> tuple[object, dict[str, np.ndarray]]:
    if hasattr(model, "params") and hasattr(model, "plan"):   # a CompiledModel: no build needed
        return model.cfg, model.params()
    return model.cfg, model_params(model)


def fits(cfg, layout: Layout) -> bool:
    return (cfg.n_layers <= layout.max_layers and cfg.d_model <= layout.d_max
            and cfg.n_heads <= layout.max_heads)


def weight_tokens(model, layout: Layout = Layout(), transform: str = "symlog") -> np.ndarray:
    """(N, layout.width) float32 weight tokens of a CompiledModel or a Transformer, N =
    its number of non-zero pieces (module docstring). ValueError if it exceeds the layout."""
    cfg, p = _params(model)
    if cfg.use_bias or cfg.norm != "none" or cfg.input_kind != "tokens":
        raise ValueError("weight_tokens encodes bias-free, norm-free token-input nets only")
    if not fits(cfg, layout):
        raise ValueError(f"n_layers={cfg.n_layers}, d_model={cfg.d_model}, n_heads={cfg.n_heads} "
                         f"exceed {layout}")
    pieces: list[tuple[np.ndarray, np.ndarray | None, str, int, int]] = []
    pieces += [(row, None, "embed", -1, -1) for row in p["W_E"]]
    pieces += [(row, None, "pos", -1, -1) for row in p["W_pos"]]
    for i in range(cfg.n_layers):
        W_QKV = p[f"blocks.{i}.attn.W_QKV"]             # (D, 3, H, K)
        W_O = p[f"blocks.{i}.attn.W_O"]                 # (H, K, D)
        for h in range(cfg.n_heads):
            pieces += [(W_QKV[:, 0, h, k], W_QKV[:, 1, h, k], "qk", i, h) for k in range(W_O.shape[1])]
        for h in range(cfg.n_heads):
            pieces += [(W_QKV[:, 2, h, k], W_O[h, k], "ov", i, h) for k in range(W_O.shape[1])]
        if f"blocks.{i}.mlp.W_in" in p:
            W_in, W_out = p[f"blocks.{i}.mlp.W_in"], p[f"blocks.{i}.mlp.W_out"]
            pieces += [(W_in[:, u], W_out[u], "mlp", i, -1) for u in range(W_in.shape[1])]
    pieces += [(col, None, "unembed", -1, -1) for col in p["W_U"].T]
    D, out = cfg.d_model, []
    for a, b, kind, layer, head in pieces:
        if not np.any(a) and (b is None or not np.any(b)):
            continue
        x_I = np.zeros(layout.width, np.float64)
        x_I[:D] = a
        if b is not None:
            x_I[layout.d_max:layout.d_max + D] = b
        x_I[layout.kind_offset + KINDS.index(kind)] = 1.0
        if layer >= 0:
            x_I[layout.layer_offset + layer] = 1.0
        if head >= 0:
            x_I[layout.head_offset + head] = 1.0
        out.append(x_I)
    x_NI = np.stack(out)
    if transform == "symlog":
        x_NI[:, :layout.value_width] = symlog(x_NI[:, :layout.value_width])
    elif transform != "raw":
        raise ValueError(f"transform={transform!r}: choose 'symlog' or 'raw'")
    return x_NI.astype(np.float32)


def program_vectors(ids, layout: Layout = Layout()):
    """Program token ids (..., L) -> (..., L, layout.width) input vectors (jnp, jit-safe)."""
    ids = jnp.asarray(ids)
    x = jnp.zeros(ids.shape + (layout.width,), jnp.float32)
    x = x.at[..., :len(VOCAB)].set(jnp.eye(len(VOCAB), dtype=jnp.float32)[ids])
    return x.at[..., layout.kind_offset + KINDS.index("program")].set(1.0)
