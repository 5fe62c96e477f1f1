"""Parameters by dotted path (``blocks.0.attn.W_QKV``): the one home for reading, writing
and naming the leaves of a model's parameter tree, used by training (trainable subsets),
the compiler (weight assembly), scrambles, weight tokens and analyses."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from toymodels.model import Transformer, TransformerConfig, abstract_model


def param_paths(params) -> list[str]:
    """Dotted paths of the leaves of a parameter tree (``blocks.0.attn.W_QKV``), in leaf order."""
    out = []
    for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]:
        parts = [str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", k)))) for k in path]
        out.append(".".join(p for p in parts if p != "value"))
    return out


@functools.lru_cache(maxsize=256)
def _skeleton(cfg: TransformerConfig):
    """(graphdef, treedef, parameter paths, shapes) of a Transformer, traced once per config."""
    graphdef, state = abstract_model(cfg)
    leaves, treedef = jax.tree_util.tree_flatten(state)
    return graphdef, treedef, param_paths(state), [leaf.shape for leaf in leaves]


def param_shapes(cfg: TransformerConfig) -> dict[str, tuple]:
    """Every parameter's shape by dotted path."""
    _, _, paths, shapes = _skeleton(cfg)
    return {p: tuple(s) for p, s in zip(paths, shapes)}


def build_model(cfg: TransformerConfig, params: dict[str, np.ndarray]) -> Transformer:
    """A Transformer with the given parameters by dotted path; missing ones are zero.
    No random initialisation is run."""
    graphdef, treedef, paths, shapes = _skeleton(cfg)
    unknown = set(params) - set(paths)
    if unknown:
        raise KeyError(f"unknown parameters {sorted(unknown)}; valid: {paths}")
    arrays = []
    for path, shape in zip(paths, shapes):
        value = np.asarray(params.get(path, np.zeros(shape)), np.float32)
        if value.shape != tuple(shape):
            raise ValueError(f"{path}: shape {value.shape} != {tuple(shape)}")
        arrays.append(jax.device_put(value))
    return nnx.merge(graphdef, jax.tree_util.tree_unflatten(treedef, arrays))


def model_params(model: Transformer) -> dict[str, np.ndarray]:
    """Every parameter of ``model`` by dotted path, as float64 numpy arrays."""
    _, state = nnx.split(model, nnx.Param)
    return {".".join(map(str, path)): np.asarray(var.get_value(), np.float64)
            for path, var in nnx.to_flat_state(state)}


@functools.lru_cache(maxsize=256)
def n_params(cfg: TransformerConfig) -> int:
    """Number of parameters of a config's model (no weights are drawn)."""
    return int(sum(np.prod(shape) for shape in param_shapes(cfg).values()))


@jax.jit
def param_distance(params, origin):
    """(E,) L2 distance over all parameters between two trees with a leading runs axis."""
    sq = [jnp.sum(jnp.square(p - o).reshape(p.shape[0], -1), axis=1)
          for p, o in zip(jax.tree.leaves(params), jax.tree.leaves(origin))]
    return jnp.sqrt(sum(sq))
