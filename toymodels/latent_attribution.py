"""Which dictionary latents a change in a model's outputs runs through (fine-tuning attribution).

Given a model M, another model FT with the same vocabulary (e.g. M fine-tuned) and a dictionary
on one of M's activations: splice the dictionary into M there, keeping its reconstruction error
so the spliced forward pass equals M's exactly (x = decode(z) + (x - decode(z)), the error held
fixed), and take the gradient of

    loss = mean over scored positions of KL(FT(x) || M(x))

with respect to the latents z. A latent's score is the mean over the scored rows of
z_s * dloss/dz_s (attribution patching): to first order, how much switching the latent off would
lower the loss, i.e. move M towards FT. Latents the change runs through should rank first; a
latent that M merely depends on scores negative (switching it off moves M further from FT),
which the unsigned score, the mean of |z_s * dloss/dz_s| (how strongly the loss depends on the
latent at all), ranks as high as a targeted one. Both are returned.

    signed_S, unsigned_S, kl = latent_attribution(model, ft_logits_BTV, batch, hook_name, params, cfg)
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from toymodels.dictionaries import DictConfig, decode, encode
from toymodels.hooks import forward, patch, run_with_interventions
from toymodels.tasks.base import Batch

Array = jax.Array


@functools.partial(jax.jit, static_argnames=("graphdef", "hook_name", "cfg"))
def _scores(graphdef, state, inputs, mask_BT, ft_BTV, x_BTD, params, hook_name: str, cfg: DictConfig):
    B, T, D = x_BTD.shape
    z_NS = encode(params, x_BTD.reshape(-1, D), cfg)
    err_ND = x_BTD.reshape(-1, D) - decode(params, z_NS)

    def loss(z):
        value = (decode(params, z) + err_ND).reshape(B, T, D)
        logits = run_with_interventions(nnx.merge(graphdef, state), inputs, {hook_name: patch(value)})
        logp_ft, logp = jax.nn.log_softmax(ft_BTV, -1), jax.nn.log_softmax(logits, -1)
        kl_BT = jnp.sum(jnp.exp(logp_ft) * (logp_ft - logp), -1)
        return jnp.sum(kl_BT * mask_BT) / jnp.maximum(mask_BT.sum(), 1.0)

    g_NS = jax.grad(loss)(z_NS)
    rows = mask_BT.reshape(-1)[:, None]
    n = jnp.maximum(rows.sum(), 1.0)
    return jnp.sum(z_NS * g_NS * rows, 0) / n, jnp.sum(jnp.abs(z_NS * g_NS) * rows, 0) / n, loss(z_NS)


def latent_attribution(model, ft_logits_BTV, batch: Batch, hook_name: str, params: dict,
                       cfg: DictConfig) -> tuple[np.ndarray, np.ndarray, float]:
    """(signed score (S,), unsigned score (S,), the KL(FT || M) attributed), over ``batch``'s scored positions.
    ``ft_logits_BTV``: the other model's logits on ``batch.inputs``; ``hook_name``: an activation
    of ``model`` with last axis ``cfg.d_in``."""
    _, cache = forward(model, batch.inputs, [hook_name])
    x = cache[hook_name]
    if x.ndim != 3 or x.shape[-1] != cfg.d_in:
        raise ValueError(f"{hook_name} has shape {x.shape}; the dictionary reads d_in={cfg.d_in} (a (B, T, D) "
                         "residual-like activation)")
    ft = jnp.asarray(ft_logits_BTV, jnp.float32)
    if ft.shape[:2] != x.shape[:2]:
        raise ValueError(f"ft_logits_BTV has shape {ft.shape}; expected ({x.shape[0]}, {x.shape[1]}, vocab)")
    graphdef, state = nnx.split(model)
    params = {n: jnp.asarray(v, jnp.float32) for n, v in params.items()}
    s, u, kl = _scores(graphdef, state, batch.inputs, jnp.asarray(batch.mask, jnp.float32), ft, x, params, hook_name,
                       cfg)
    return np.asarray(s), np.asarray(u), float(kl)


@functools.partial(jax.jit, static_argnames=("graphdef", "hook_name", "cfg"))
def _ablated(graphdef, state, inputs, x_BTD, params, off_S, hook_name: str, cfg: DictConfig):
    B, T, D = x_BTD.shape
    z_NS = encode(params, x_BTD.reshape(-1, D), cfg)
    err_ND = x_BTD.reshape(-1, D) - decode(params, z_NS)
    value = (decode(params, jnp.where(off_S[None], 0.0, z_NS)) + err_ND).reshape(B, T, D)
    return run_with_interventions(nnx.merge(graphdef, state), inputs, {hook_name: patch(value)})


def ablated_logits(model, inputs, hook_name: str, params: dict, cfg: DictConfig, latents) -> Array:
    """The model's logits with the dictionary spliced in at ``hook_name`` (its error kept) and
    ``latents`` switched off: a change known to run through those latents (a positive control)."""
    _, cache = forward(model, inputs, [hook_name])
    off = np.zeros(cfg.d_sae, bool)
    off[np.asarray(latents, int)] = True
    graphdef, state = nnx.split(model)
    params = {n: jnp.asarray(v, jnp.float32) for n, v in params.items()}
    return _ablated(graphdef, state, inputs, cache[hook_name], params, jnp.asarray(off), hook_name, cfg)


def auroc(score, positive) -> float:
    """Probability that a random positive outranks a random negative (ties count half); NaN
    when either class is empty."""
    score, positive = np.asarray(score, float), np.asarray(positive, bool)
    pos, neg = score[positive], score[~positive]
    if not len(pos) or not len(neg):
        return float("nan")
    greater = (pos[:, None] > neg[None]).mean()
    ties = (pos[:, None] == neg[None]).mean()
    return float(greater + 0.5 * ties)
