"""Losses of a trained model at every position of a batch (where in a sequence it is good)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from toymodels.tasks.base import Batch, token_losses


@functools.partial(jax.jit, static_argnums=2)
def _position_losses(graphdef, state, loss_kind: str, batch: Batch, past):
    loss_BT = token_losses(nnx.merge(graphdef, state)(batch.inputs, past_resid=past), batch.targets, loss_kind)
    w_T = batch.mask.sum(0)
    return (loss_BT * batch.mask).sum(0) / jnp.maximum(w_T, 1), w_T


def position_losses(model, batch: Batch, loss_kind: str, past_resid=None) -> tuple[jax.Array, jax.Array]:
    """(mean loss per position over the batch's scored rows (T,), scored count per position (T,)),
    jitted once per architecture; ``past_resid`` as in ``Transformer.__call__``."""
    graphdef, state = nnx.split(model)
    return _position_losses(graphdef, state, loss_kind, batch, past_resid)
