"""Activation tables: named activations of a model on many inputs, one row per (input, position).

    acts = collect(model, inputs, positions="non_bos")    # {layer: (N, D) float32}

Rows are (input, position) pairs in batch-major order, so two tables collected from the
same inputs and positions are row-aligned, whatever the models. The default layers are the
residual stream entering block 0 (``blocks.0.resid_pre``) and after each block's attention
(``blocks.{i}.resid_mid``) and MLP (``blocks.{i}.resid_post``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from toymodels.hooks import forward
from toymodels.model import Transformer


def default_layers(model: Transformer) -> list[str]:
    """Residual stream after the embedding and after each sub-layer, in forward order."""
    cfg = model.cfg
    if cfg.n_layers == 0:
        return ["final"]
    names = ["blocks.0.resid_pre"]
    for i in range(cfg.n_layers):
        if cfg.mlp_dim:
            names.append(f"blocks.{i}.resid_mid")
        names.append(f"blocks.{i}.resid_post")
    return names


def position_index(positions, T: int) -> np.ndarray:
    """Position indices (P,) for "all", "non_bos" (every position but 0) or explicit indices."""
    if isinstance(positions, str):
        if positions == "all":
            return np.arange(T)
        if positions == "non_bos":
            return np.arange(1, T)
        raise ValueError(f"positions={positions!r}: use 'all', 'non_bos' or position indices")
    index = np.atleast_1d(np.asarray(positions, np.int64))
    if index.ndim != 1 or (index.size and (index.min() < -T or index.max() >= T)):
        raise ValueError(f"positions {positions!r} out of range for {T} positions")
    return index


def collect(model: Transformer, inputs, layers: Sequence[str] | None = None,
            positions="all", batch_size: int = 4096) -> dict[str, np.ndarray]:
    """{layer: (N, D) float32}, N = inputs x positions (batch-major), from jitted forwards
    over chunks of ``batch_size`` inputs; ``layers``: hook names (default ``default_layers``)."""
    names = tuple(default_layers(model) if layers is None else layers)
    inputs = np.asarray(inputs)
    pos_P = position_index(positions, inputs.shape[1])
    chunks: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for start in range(0, inputs.shape[0], batch_size):
        _, cache = forward(model, inputs[start:start + batch_size], names)
        for n in names:
            acts_BTD = np.asarray(cache[n], np.float32)
            chunks[n].append(acts_BTD[:, pos_P].reshape(-1, acts_BTD.shape[-1]))
    return {n: np.concatenate(c) for n, c in chunks.items()}


def input_features(inputs, vocab_size: int, positions="all") -> np.ndarray:
    """One-hot token and one-hot position of every (input, position) row, laid out as
    ``collect`` lays out activations of the same inputs and positions: (N, vocab_size + T).
    The input-only null of a representation comparison (what any network that keeps its
    token and position identity carries), and the design that ``similarity.partial_out``
    removes."""
    inputs = np.asarray(inputs)
    if inputs.ndim != 2:
        raise ValueError(f"inputs of shape {inputs.shape}: expected (batch, positions) token ids")
    if inputs.size and (inputs.min() < 0 or inputs.max() >= vocab_size):
        raise ValueError(f"token ids span {inputs.min()}..{inputs.max()}: expected 0..{vocab_size - 1}")
    T = inputs.shape[1]
    pos_P = position_index(positions, T) % T
    tok = inputs[:, pos_P].reshape(-1)
    pos = np.tile(pos_P, inputs.shape[0])
    out = np.zeros((tok.size, vocab_size + T), np.float32)
    out[np.arange(tok.size), tok] = 1.0
    out[np.arange(tok.size), vocab_size + pos] = 1.0
    return out
