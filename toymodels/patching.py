"""Activation patching sweeps as one program: every patch of a sweep is a vmapped run.

    values_LT, clean, corrupted = patch_sweep(model, clean_x, corrupt_x, metric)
    values_LH, clean, corrupted = patch_sweep(model, clean_x, corrupt_x, metric, "attn.z", over="head")

Each run patches one (layer, position) or one (layer, head) of the clean run's activation
into the corrupted run. Every run carries an intervention at every layer (``hooks.patch``
with a position mask, or a head mask); the masks are the only thing that differs between
runs, so ``jax.vmap`` over them makes the sweep one jitted program.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from toymodels.hooks import Intervention, patch, run_with_cache, run_with_interventions
from toymodels.model import Transformer

Array = jax.Array
OVER = ("layer_pos", "head")
HEAD_NAMES = ("attn.q", "attn.k", "attn.v", "attn.scores", "attn.pattern", "attn.z", "attn.result")


def head_axis(name: str) -> int:
    return 1 if name.endswith((".scores", ".pattern")) else 2


def _check(model: Transformer, clean, corrupted, names: str, over: str) -> None:
    if over not in OVER:
        raise ValueError(f"over={over!r}: use 'layer_pos' or 'head'")
    if model.cfg.n_layers == 0:
        raise ValueError("a model with n_layers=0 has no layers to patch")
    valid = sorted({n.split(".", 2)[2] for n in model.hook_names() if n.startswith("blocks.0.")})
    allowed = [n for n in valid if n in HEAD_NAMES] if over == "head" else valid
    if names not in allowed:
        raise ValueError(f"names={names!r} cannot be patched over {over!r}; allowed: {', '.join(allowed)}")
    if np.shape(clean) != np.shape(corrupted):
        raise ValueError(f"clean {np.shape(clean)} and corrupted {np.shape(corrupted)} inputs must have "
                         "the same shape")


def patch_heads(value: Array, mask_H, axis: int) -> Intervention:
    """Replace heads where ``mask_H`` is True (at every position) by ``value``'s."""
    shape = [1] * value.ndim
    shape[axis] = -1
    m = jnp.reshape(mask_H, shape)
    return Intervention(jnp.where(m, 0.0, 1.0), jnp.where(m, value, 0.0))


def patch_sweep(model: Transformer, clean, corrupted, metric: Callable[[Array], Array],
                names: str | None = None, over: str = "layer_pos", batch_size: int | None = None):
    """(values_LT or values_LH, clean_metric, corrupted_metric): ``metric(logits)`` (a scalar)
    of the corrupted run with the clean ``blocks.{l}.{names}`` patched in at one position t
    (``over="layer_pos"``, values_LT) or one head h (``over="head"``, values_LH).

    ``names``: the per-block activation (default "resid_pre", or "attn.z" over heads).
    ``batch_size``: runs per vmapped batch (``jax.lax.map``; None = all runs at once).
    """
    names = names or ("resid_pre" if over == "layer_pos" else "attn.z")
    _check(model, clean, corrupted, names, over)
    L = model.cfg.n_layers
    full = [f"blocks.{i}.{names}" for i in range(L)]
    X = np.shape(clean)[1] if over == "layer_pos" else model.cfg.n_heads
    masks_PLX = jnp.eye(L * X, dtype=bool).reshape(L * X, L, X)
    model.check_inputs(clean)
    model.check_inputs(corrupted)
    graphdef, state = nnx.split(model)

    def sweep(state, clean, corrupted, masks_PLX):
        m = nnx.merge(graphdef, state)
        clean_logits, cache = run_with_cache(m, clean, full)

        def one(mask_LX):
            if over == "layer_pos":
                ivs = {n: patch(cache[n], positions=mask_LX[i]) for i, n in enumerate(full)}
            else:
                ivs = {n: patch_heads(cache[n], mask_LX[i], head_axis(n)) for i, n in enumerate(full)}
            return metric(run_with_interventions(m, corrupted, ivs))
        values_P = jax.vmap(one)(masks_PLX) if batch_size is None else jax.lax.map(
            one, masks_PLX, batch_size=batch_size)
        return values_P.reshape(L, X), metric(clean_logits), metric(m(corrupted))
    return jax.jit(sweep)(state, clean, corrupted, masks_PLX)
