"""Stage 5: weight assembly into a ``toymodels`` Transformer.

No layer norm, ReLU MLPs, no biases (constants come from the token
directions), bidirectional attention. Input ids: 0 = BOS, then the sorted
vocabulary. A categorical output is read by the unembedding as logits over
its sorted values plus a final ``None`` logit fixed at 1/2 (a real value's
logit is 1, all are 0 for None); a numerical output is a 1-d vector output.
"""

from __future__ import annotations

import math

import numpy as np

from toymodels.compiler.allocate import Layer
from toymodels.compiler.blocks import Plan
from toymodels.compiler.readouts import Lin, Readout
from toymodels.model import TransformerConfig


def model_config(plan: Plan, layers: list[Layer], vocab_size: int, max_seq_len: int,
                 output: Readout) -> TransformerConfig:
    n_out = 1 if output.numerical else len(output.values) + 1
    return TransformerConfig(
        n_layers=len(layers), d_model=len(plan.residual_labels),
        n_heads=max([1] + [len(layer.heads) for layer in layers]),
        d_head=max([1] + [h.width for layer in layers for h in layer.heads]),
        d_mlp=max([0] + [layer.d_mlp for layer in layers]),
        vocab_size=vocab_size if output.numerical else max(vocab_size, n_out),
        max_seq_len=max_seq_len + 1, pos_embed=True, norm="none", act="relu", causal=False,
        use_bias=False, input_kind="tokens",
        output_kind="vectors" if output.numerical else "logits",
        d_output=1 if output.numerical else 0, tie_embeddings=False)


def assemble_weights(plan: Plan, layers: list[Layer]) -> tuple[TransformerConfig, dict]:
    """The model config and every non-zero parameter (by dotted path) of the compiled net."""
    output = plan.readouts[plan.sink]
    max_seq_len = len(plan.index_labels)
    cfg = model_config(plan, layers, len(plan.token_labels) + 1, max_seq_len, output)
    D, H, K, F, V = cfg.d_model, cfg.n_heads, cfg.head_dim, cfg.mlp_dim, cfg.vocab_size
    idx = {label: i for i, label in enumerate(plan.residual_labels)}

    def put(mat, lin: Lin, col, scale=1.0):
        for label, coef in lin.items():
            mat[idx[label], col] += coef * scale

    p: dict[str, np.ndarray] = {}
    W_E = np.zeros((V, D))
    W_E[0, idx[plan.bos_label]] = 1.0
    for i, label in enumerate(plan.token_labels):
        W_E[i + 1, idx[label]] = 1.0
    W_pos = np.zeros((cfg.max_seq_len, D))
    for i, label in enumerate(plan.index_labels):
        W_pos[i + 1, idx[label]] = 1.0
    p["W_E"], p["W_pos"] = W_E, W_pos
    for n, layer in enumerate(layers):
        W_QKV, W_O = np.zeros((D, 3, H, K)), np.zeros((H, K, D))
        for h, head in enumerate(layer.heads):
            for f, (q, k) in enumerate(zip(head.q, head.k)):
                put(W_QKV[:, 0, h], q, f, math.sqrt(K))
                put(W_QKV[:, 1, h], k, f)
            for j, (v, out) in enumerate(zip(head.v, head.out)):
                put(W_QKV[:, 2, h], v, j)
                W_O[h, j, idx[out]] = 1.0
        p[f"blocks.{n}.attn.W_QKV"], p[f"blocks.{n}.attn.W_O"] = W_QKV, W_O
        if F:
            W_in, W_out = np.zeros((D, F)), np.zeros((F, D))
            u = 0
            for mlp in layer.mlps:
                for pre, post in zip(mlp.w_in, mlp.w_out):
                    put(W_in, pre, u)
                    put(W_out.T, post, u)
                    u += 1
            p[f"blocks.{n}.mlp.W_in"], p[f"blocks.{n}.mlp.W_out"] = W_in, W_out
    W_U = np.zeros((D, 1 if output.numerical else V))
    for j, lin in enumerate(output.lins):
        put(W_U, lin, j)
    if not output.numerical:
        put(W_U, plan.one, len(output.values), 0.5)
    p["W_U"] = W_U
    return cfg, p
