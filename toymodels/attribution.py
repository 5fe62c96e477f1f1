"""Where a prediction comes from: logit lens, residual decompositions, direct logit attribution.

    logits_LBTV, labels = logit_lens(model, tokens)
    comps_CBD, labels = decompose_resid(model, tokens, layer=-1, pos=-1, per_head=True)
    dla_CB, labels = direct_logit_attribution(model, tokens, tokens_a=a_B, tokens_b=b_B)

Pure functions of a model and its inputs, read from one jitted cached forward pass
(``hooks.forward``). Residual points are numbered 0..n_layers: point l is the stream
entering block l, point n_layers the stream after the last block. Every function returns
(array, labels), one label per entry of the leading axis; labels are activation names.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from toymodels.hooks import forward
from toymodels.model import Transformer

PER = ("layer", "head")


def check_layer(model: Transformer, layer: int) -> int:
    """A residual point in [0, n_layers] (negative counts from the end), as a non-negative int."""
    L = model.cfg.n_layers
    if not isinstance(layer, (int, np.integer)) or isinstance(layer, bool) or not -L - 1 <= layer <= L:
        raise IndexError(f"layer {layer!r} is out of range for a model with n_layers={L} "
                         f"(allowed: 0..{L}, or -{L + 1}..-1; {L} = after the last block)")
    return int(layer) % (L + 1)


def check_pos(pos, T: int) -> int | None:
    """A position in [-T, T), or None (every position)."""
    if pos is None:
        return None
    if not isinstance(pos, (int, np.integer)) or isinstance(pos, bool) or not -T <= pos < T:
        raise IndexError(f"position {pos!r} is out of range for T={T} positions "
                         f"(allowed: -{T}..{T - 1}, or None for every position)")
    return int(pos) % T


def resid_label(model: Transformer, layer: int) -> str:
    """The activation name of residual point ``layer``."""
    L = model.cfg.n_layers
    return f"blocks.{layer}.resid_pre" if layer < L else f"blocks.{L - 1}.resid_post"


def readout(model: Transformer):
    """(W_U (D, V), b_U (V,) or None): what the final normed residual is multiplied by."""
    if model.cfg.output_kind == "logits":
        return (model.W_E[...].T if model.cfg.tie_embeddings else model.W_U[...]), None
    return model.W_U[...], model.b_U[...] if model.b_U is not None else None


def _layers(model: Transformer, layers) -> list[int]:
    if model.cfg.n_layers == 0:
        raise ValueError("a model with n_layers=0 has no residual points between blocks")
    L = model.cfg.n_layers
    return list(range(L + 1)) if layers is None else [check_layer(model, i) for i in layers]


def accumulated_resid(model: Transformer, inputs, layers=None, pos=None):
    """(resid_LBTD, labels): the residual stream at each point in ``layers`` (default every
    point, 0..n_layers); ``pos``: one position, giving resid_LBD."""
    layers = _layers(model, layers)
    t = check_pos(pos, np.shape(inputs)[1])
    _, cache = forward(model, inputs, tuple(dict.fromkeys(resid_label(model, i) for i in layers)))
    resid_LBTD = jnp.stack([cache[resid_label(model, i)] for i in layers])
    return (resid_LBTD if t is None else resid_LBTD[:, :, t]), [resid_label(model, i) for i in layers]


def logit_lens(model: Transformer, inputs, layers=None):
    """(logits_LBTV, labels): each residual point read out through the final norm (its own
    statistics) and the unembedding; the last point's are the model's logits."""
    resid_LBTD, labels = accumulated_resid(model, inputs, layers)
    W_U, b_U = readout(model)
    logits_LBTV = jnp.einsum("lbtd,dv->lbtv", model.ln_final(resid_LBTD), W_U)
    return (logits_LBTV if b_U is None else logits_LBTV + b_U[None, None, None]), labels


def _component_names(model: Transformer, layer: int, per_head: bool) -> list[str]:
    names = ["embed"] + (["pos_embed"] if model.cfg.pos_embed else [])
    for i in range(layer):
        names.append(f"blocks.{i}.attn.{'result' if per_head else 'out'}")
        names += [f"blocks.{i}.mlp.out"] if model.cfg.mlp_dim else []
    return names


def _components(model: Transformer, cache, names: list[str], B: int):
    comps, labels = [], []
    for n in names:
        x = cache[n]
        if n == "pos_embed":
            comps.append(jnp.broadcast_to(x[None], (B,) + x.shape))
            labels.append(n)
        elif n.endswith(".result"):
            comps += list(jnp.moveaxis(x, 2, 0))
            labels += [f"{n}[{h}]" for h in range(x.shape[2])]
            b_O = model.blocks[int(n.split(".")[1])].attn.b_O
            if b_O is not None:
                comps.append(jnp.broadcast_to(b_O[...], x.shape[:2] + x.shape[3:]))
                labels.append(n.replace("result", "b_O"))
        else:
            comps.append(x)
            labels.append(n)
    return jnp.stack(comps), labels


def decompose_resid(model: Transformer, inputs, layer: int = -1, pos=None, per_head: bool = False):
    """(comps_CBTD, labels): the residual at point ``layer`` as the sum of its components:
    embed, pos_embed, then each earlier block's attn.out and mlp.out. ``per_head``: attn.out
    split into ``blocks.{i}.attn.result[h]`` per head plus ``blocks.{i}.attn.b_O``. ``pos``:
    one position, giving comps_CBD."""
    layer = check_layer(model, layer)
    t = check_pos(pos, np.shape(inputs)[1])
    names = _component_names(model, layer, per_head)
    _, cache = forward(model, inputs, tuple(names))
    comps_CBTD, labels = _components(model, cache, names, np.shape(inputs)[0])
    return (comps_CBTD if t is None else comps_CBTD[:, :, t]), labels


def _check_tokens(which: str, tokens, V: int, lead: tuple[int, ...]) -> np.ndarray:
    ids = np.asarray(tokens)
    if not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"{which} must be integer token ids, got dtype {ids.dtype}")
    bad = ids[(ids < 0) | (ids >= V)] if ids.size else ids
    if bad.size:
        raise ValueError(f"{which} must be in [0, {V}) (the model's outputs); got {bad.reshape(-1)[0].item()}")
    if ids.ndim == 1 and len(lead) == 2:
        ids = ids[:, None]                        # one id per batch element, at every position
    try:
        return np.broadcast_to(ids, lead)
    except ValueError:
        raise ValueError(f"{which} of shape {ids.shape} does not broadcast to the positions read, "
                         f"{lead} (an int, one id per batch element, or one per (batch, position) "
                         "with pos=None)") from None


def direct_logit_attribution(model: Transformer, inputs, tokens_a, tokens_b=None, per: str = "layer",
                             pos=-1):
    """(dla_CB, labels): each residual component's direct contribution to
    logit[a] - logit[b] (or logit[a] with no b) at position ``pos`` (None: every position,
    dla_CBT), through the final norm with its cached scale: centred by the norm's mean,
    times ``final.rstd`` and the norm's weight, dotted with W_U[:, a] - W_U[:, b].

    ``per``: "layer" (embed, pos_embed, each block's attn.out and mlp.out) or "head" (attn.out
    split per head, as ``decompose_resid(per_head=True)``). The last entry, ``final.bias``, is
    the final norm's bias (and any unembedding bias) term; the entries sum to the logit
    difference. ``tokens_a``/``tokens_b``: an id, (B,) ids, or (B, T) ids with pos=None.
    """
    if per not in PER:
        raise ValueError(f"per={per!r}: use 'layer' or 'head'")
    B, T = np.shape(inputs)[:2]
    t = check_pos(pos, T)
    ln = model.cfg.norm != "none"
    W_U, b_U = readout(model)
    lead = (B,) if t is not None else (B, T)
    a = _check_tokens("tokens_a", tokens_a, W_U.shape[1], lead)
    b = None if tokens_b is None else _check_tokens("tokens_b", tokens_b, W_U.shape[1], lead)
    names = _component_names(model, model.cfg.n_layers, per == "head")
    _, cache = forward(model, inputs, tuple(names) + ("final.rstd",) * ln)
    comps, labels = _components(model, cache, names, B)
    comps = comps if t is None else comps[:, :, t]                 # (C, B, T, D) or (C, B, D)
    u_xD = W_U.T[a] - (0.0 if b is None else W_U.T[b])           # x: (B,) or (B, T)
    bias_x = jnp.zeros(lead) if b_U is None else b_U[a] - (0.0 if b is None else b_U[b])
    if ln:   # the final norm, linear once its scale is the cached one
        scale_x1 = cache["final.rstd"] if t is None else cache["final.rstd"][:, t]
        w = model.ln_final.scale[...][(None,) * (comps.ndim - 1)]
        comps = (comps - comps.mean(-1, keepdims=True)) * scale_x1[None] * w
        bias_x = bias_x + u_xD @ model.ln_final.bias[...]
    dla_Cx = jnp.einsum("c...d,...d->c...", comps, u_xD)
    return jnp.concatenate([dla_Cx, bias_x[None]]), labels + ["final.bias"]
