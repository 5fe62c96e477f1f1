"""Named activations, caches and interventions, passed into the forward pass as data.

Nothing here is global state: a ``Hooks`` object lives for one forward call,
so a failed call cannot leave a hook behind, and interventions are pytrees
that compose with ``jit`` and ``vmap``.

Activation layouts: residual-like names are (B, T, D), except ``pos_embed``, which is
(T, D) (one for the whole batch); ``attn.q/k/v/z`` are (B, T, H, K); ``attn.scores``
and ``attn.pattern`` are (B, H, T, S) (query T, key S); ``mlp.pre/post`` are (B, T, F).
``final`` is the residual after the final norm, i.e. what the unembedding reads.
``attn.result`` (B, T, H, D) is head h's output z_h @ W_O[h] (without b_O); it costs H x the
memory, so the forward pass computes it only when a cache or intervention asks for it
(``Hooks.wants``). ``ln1.rstd``, ``ln2.rstd`` and ``final.rstd`` (B, T, 1) are a LayerNorm's
1/sqrt(var + eps); models with norm="none" have no norm and no rstd names.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from typing import Any, Iterable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

Array = jax.Array


def position_axis(name: str) -> int:
    """The position (query) axis of an activation: ``pos_embed`` is (T, D), with no batch axis."""
    if name == "pos_embed":
        return 0
    return 2 if name.endswith((".scores", ".pattern")) else 1


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Intervention:
    """Replace activation x by ``scale * x + value`` at ``positions`` (all if None).

    ``positions``: int indices in [-T, T) or a bool mask of length T over the query/position
    axis; other positions raise when applied (unless traced: under jit they are not checked).
    Build them with ``ablate``, ``mean_ablate``, ``patch`` and ``steer``.
    """
    scale: Any
    value: Any
    positions: Any = None

    def apply(self, name: str, x: Array) -> Array:
        scale = jnp.asarray(self.scale)
        # where, not a product: 0 * -inf (masked attention scores) would be NaN, not 0
        new = jnp.where(scale == 0, 0.0, scale * x) + jnp.broadcast_to(self.value, x.shape)
        if self.positions is None:
            return new.astype(x.dtype)
        axis = position_axis(name)
        T = x.shape[axis]
        check_positions(name, self.positions, T)
        pos = jnp.asarray(self.positions)
        mask = pos if pos.dtype == jnp.bool_ else jnp.zeros(T, bool).at[pos].set(True)
        shape = [1] * x.ndim
        shape[axis] = T
        return jnp.where(mask.reshape(shape), new, x).astype(x.dtype)


def check_positions(name: str, positions, T: int) -> None:
    """Index positions lie in [-T, T) and a mask has T entries; traced positions (under jit
    or vmap) cannot be read and are not checked."""
    if any(isinstance(p, jax.core.Tracer) for p in jax.tree.leaves(positions)):
        return
    pos = np.asarray(positions)
    if pos.dtype == np.bool_:
        if pos.shape != (T,):
            raise IndexError(f"intervention on {name!r}: a position mask must have shape ({T},) "
                             f"(T={T} positions), got {pos.shape}")
    elif not np.issubdtype(pos.dtype, np.integer):
        raise IndexError(f"intervention on {name!r}: positions must be integers or a bool mask, "
                         f"got {pos.dtype}")
    elif pos.size and (pos.min() < -T or pos.max() >= T):
        bad = pos[(pos < -T) | (pos >= T)].reshape(-1)[0].item()
        raise IndexError(f"intervention on {name!r}: position {bad} is out of range for T={T} "
                         f"positions (allowed: -{T}..{T - 1})")


def ablate(positions=None) -> Intervention:
    """Zero ablation."""
    return Intervention(0.0, 0.0, positions)


def mean_ablate(mean: Array, positions=None) -> Intervention:
    """Replace by a mean activation (e.g. ``cache[name].mean(0)``)."""
    return Intervention(0.0, mean, positions)


def patch(value: Array, positions=None) -> Intervention:
    """Replace by another run's activation (e.g. from a clean cache)."""
    return Intervention(0.0, value, positions)


def steer(vector: Array, positions=None, coeff: float = 1.0) -> Intervention:
    """Add ``coeff * vector`` to the activation."""
    return Intervention(1.0, coeff * jnp.asarray(vector), positions)


class Hooks:
    """What one forward call caches and intervenes on; ``hooks(name, x)`` is the hook point."""

    def __init__(self, names: Iterable[str] = (), interventions: Mapping[str, Intervention] | None = None):
        self.patterns = tuple(names)
        self.interventions = dict(interventions or {})
        self.cache: dict[str, Array] = {}

    def __call__(self, name: str, x: Array) -> Array:
        iv = self.interventions.get(name)
        if iv is not None:
            x = iv.apply(name, x)
        if self.caches(name):
            self.cache[name] = x
        return x

    def caches(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, p) for p in self.patterns)

    def edits(self, name: str) -> bool:
        return name in self.interventions

    def wants(self, name: str) -> bool:
        """Whether this call caches or edits ``name``: opt-in activations are computed only then."""
        return self.edits(name) or self.caches(name)


def _check_names(model, names: Iterable[str], interventions: Mapping[str, Any]) -> None:
    valid = model.hook_names()
    for pat in names:
        if not fnmatch.filter(valid, pat):
            raise KeyError(f"no activation matches {pat!r}; valid names: {', '.join(valid)}")
    for name in interventions:
        if name not in valid:
            raise KeyError(f"cannot intervene on unknown activation {name!r}; valid names: {', '.join(valid)}")


def run_with_cache(model, inputs: Array, names: Iterable[str] = (), *,
                   interventions: Mapping[str, Intervention] | None = None,
                   **forward_kwargs) -> tuple[Array, dict[str, Array]]:
    """Forward pass returning (outputs, {name: activation}) for the requested names only.

    ``names`` are exact activation names or glob patterns (``"blocks.*.attn.pattern"``).
    """
    names = (names,) if isinstance(names, str) else tuple(names)
    interventions = dict(interventions or {})
    _check_names(model, names, interventions)
    hooks = Hooks(names, interventions)
    out = model(inputs, hooks=hooks, **forward_kwargs)
    return out, hooks.cache


def run_with_interventions(model, inputs: Array, interventions: Mapping[str, Intervention],
                           **forward_kwargs) -> Array:
    return run_with_cache(model, inputs, (), interventions=interventions, **forward_kwargs)[0]


_FORWARDS: dict = {}


def forward(model, inputs: Array, names: Iterable[str] = ()) -> tuple[Array, dict[str, Array]]:
    """``run_with_cache`` through one jitted function per (model config, names): every model
    of one architecture (seeds, scrambles, compiled nets) shares a compile, and no eager
    op-by-op forward pass compiles each primitive separately."""
    names = (names,) if isinstance(names, str) else tuple(names)
    graphdef, state = nnx.split(model)
    key = (model.cfg, names)
    fn = _FORWARDS.get(key)
    if fn is None:
        _check_names(model, names, {})
        fn = _FORWARDS[key] = jax.jit(lambda s, x: run_with_cache(nnx.merge(graphdef, s), x, names))
    model.check_inputs(inputs)   # under jit the ids are traced and cannot be checked
    return fn(state, inputs)
