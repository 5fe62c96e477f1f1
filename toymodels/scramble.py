"""Function-preserving scrambles of a Transformer's weights.

Each function returns a new model computing the same function (up to float
rounding) with visibly different weights -- a test for interpretability
methods that should not depend on the basis a network happens to use
(e.g. a compiled RASP network's clean one-hot basis).

  rotate_residual    random orthogonal change of residual basis (no layer norm only)
  permute_residual   random permutation of the residual basis (also with layer norm)
  permute_mlp_units  random permutation of each layer's MLP hidden units
  permute_heads      random permutation of each layer's attention heads
  rescale_mlp_units  ReLU unit u: W_in[:, u] *= c_u, W_out[u] /= c_u, c_u > 0 (ReLU only)

With LayerNorm, permutations (of units, heads, and of the residual basis with
the norm's scale and bias permuted alike) and the ReLU rescaling stay exact.
A general rotation does not: LayerNorm centres and scales each coordinate,
which commutes only with rotations fixing the all-ones vector, and only after
its elementwise scale and bias are folded into the next weights.
"""

from __future__ import annotations

import jax
import numpy as np

from toymodels.config import ConfigError
from toymodels.model import Transformer, TransformerConfig
from toymodels.params import build_model, model_params

Params = dict[str, np.ndarray]


def _params(model: Transformer) -> Params:
    return model_params(model)


def _build(model: Transformer, params: Params) -> Transformer:
    return build_model(model.cfg, params)


def _rng(key) -> np.random.Generator:
    """A numpy generator from an int seed or a JAX PRNG key (typed or raw uint32)."""
    if isinstance(key, int):
        return np.random.default_rng(key)
    try:
        key = jax.random.key_data(key)
    except (TypeError, ValueError):
        pass
    return np.random.default_rng(np.asarray(key).ravel().tolist())


def random_orthogonal(d: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


# Each scramble is a map on the parameter dict (float64, by dotted path); the public
# functions wrap it as model -> model.
def _change_basis(cfg: TransformerConfig, p: Params, Q: np.ndarray, norm_ok: bool) -> Params:
    """The parameters for residual x' = x @ Q (Q orthogonal)."""
    if cfg.norm != "none" and not norm_ok:
        raise ConfigError("rotate_residual needs norm='none': LayerNorm does not commute with "
                          "rotations; use permute_residual")
    out = {}
    for path, w in p.items():
        name = path.split(".")[-1]
        if name in ("W_E", "W_pos", "b_O", "b_out") or (name in ("W_in", "b_in") and "mlp" not in path):
            w = w @ Q                                     # writes into the residual
        elif name in ("W_O", "W_out"):
            w = w @ Q
        elif name == "W_QKV":
            w = np.einsum("ed,d...->e...", Q.T, w)        # reads from the residual
        elif name == "W_in" or name == "W_U":
            w = Q.T @ w
        elif name in ("scale", "bias"):
            w = w @ np.abs(Q)                             # permutations only (checked by caller)
        out[path] = w
    return out


def _rotate(cfg, p, key):
    return _change_basis(cfg, p, random_orthogonal(cfg.d_model, _rng(key)), norm_ok=False)


def _permute_residual(cfg, p, key):
    perm = _rng(key).permutation(cfg.d_model)
    return _change_basis(cfg, p, np.eye(cfg.d_model)[:, perm], norm_ok=True)


def _permute_mlp(cfg, p, key):
    rng, p = _rng(key), dict(p)
    for i in range(cfg.n_layers):
        pre = f"blocks.{i}.mlp"
        if f"{pre}.W_in" not in p:
            continue
        perm = rng.permutation(p[f"{pre}.W_in"].shape[1])
        p[f"{pre}.W_in"] = p[f"{pre}.W_in"][:, perm]
        p[f"{pre}.W_out"] = p[f"{pre}.W_out"][perm]
        if f"{pre}.b_in" in p:
            p[f"{pre}.b_in"] = p[f"{pre}.b_in"][perm]
    return p


def _permute_heads(cfg, p, key):
    rng, p = _rng(key), dict(p)
    for i in range(cfg.n_layers):
        pre = f"blocks.{i}.attn"
        perm = rng.permutation(cfg.n_heads)
        p[f"{pre}.W_QKV"] = p[f"{pre}.W_QKV"][:, :, perm]
        p[f"{pre}.W_O"] = p[f"{pre}.W_O"][perm]
        if f"{pre}.b_QKV" in p:
            p[f"{pre}.b_QKV"] = p[f"{pre}.b_QKV"][:, perm]
    return p


def _rescale(cfg, p, key, low: float = 0.25, high: float = 4.0):
    if cfg.act != "relu":
        raise ConfigError("rescale_mlp_units needs act='relu' (GELU is not positively homogeneous)")
    rng, p = _rng(key), dict(p)
    for i in range(cfg.n_layers):
        pre = f"blocks.{i}.mlp"
        if f"{pre}.W_in" not in p:
            continue
        c = np.exp(rng.uniform(np.log(low), np.log(high), p[f"{pre}.W_in"].shape[1]))
        p[f"{pre}.W_in"] = p[f"{pre}.W_in"] * c
        p[f"{pre}.W_out"] = p[f"{pre}.W_out"] / c[:, None]
        if f"{pre}.b_in" in p:
            p[f"{pre}.b_in"] = p[f"{pre}.b_in"] * c
    return p


def rotate_residual(model: Transformer, key=0) -> Transformer:
    return _build(model, _rotate(model.cfg, _params(model), key))


def permute_residual(model: Transformer, key=0) -> Transformer:
    return _build(model, _permute_residual(model.cfg, _params(model), key))


def permute_mlp_units(model: Transformer, key=0) -> Transformer:
    return _build(model, _permute_mlp(model.cfg, _params(model), key))


def permute_heads(model: Transformer, key=0) -> Transformer:
    return _build(model, _permute_heads(model.cfg, _params(model), key))


def rescale_mlp_units(model: Transformer, key=0, low: float = 0.25, high: float = 4.0) -> Transformer:
    return _build(model, _rescale(model.cfg, _params(model), key, low, high))


def _as_stored(p: Params) -> Params:
    """What a model stores (float32), read back as float64: each step of ``scramble``
    rounds as if its result were built into a model, without building one."""
    return {k: np.asarray(v, np.float32).astype(np.float64) for k, v in p.items()}


def scramble(model: Transformer, key=0, *, rotate: bool = True, permute_mlp: bool = True,
             permute_attention: bool = True, rescale: bool = True) -> Transformer:
    """All of the above (rotation only without LayerNorm, rescaling only with ReLU)."""
    cfg, p = model.cfg, _params(model)
    seeds = _rng(key).integers(0, 2**31, 4).tolist()
    steps = [(rotate, _rotate if cfg.norm == "none" else _permute_residual), (permute_mlp, _permute_mlp),
             (permute_attention, _permute_heads), (rescale and cfg.act == "relu", _rescale)]
    for (on, fn), seed in zip(steps, seeds):
        if on:
            p = _as_stored(fn(cfg, p, seed))
    return _build(model, p)
