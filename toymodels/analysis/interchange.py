"""Interchange interventions on a subspace of the residual stream, and the learned rotation
that finds the subspace (distributed alignment search, Geiger et al. 2024).

An interchange intervention runs ``model`` on a base input with the component of the
residual stream ``layer`` that lies in span(Q) taken from a source input, at every
position:

    h' = h_base + (h_source - h_base) Q Q^T          Q (D, k) with orthonormal columns

For a compiled RASP net and one of its variables, Q = the variable's own residual
directions makes the net compute the program with that variable set to its value on
the source: the counterfactual output (``counterfactual``). For a trained net, ``fit_basis``
learns Q (k columns of a rotation, through a QR parametrisation) so that the intervened
net outputs the counterfactual, and ``interchange_accuracy`` scores it on held-out pairs:
the fraction of output positions where the intervened net's argmax is the counterfactual.

    cf_BT = counterfactual(compiled, label, layer, base_BT, source_BT)
    Q = fit_basis(twin, layer, k, base_BT, source_BT, cf_BT, mask_BT, steps=300)
    iia = interchange_accuracy(twin, layer, Q, base2, source2, cf2, mask2)

Outputs are classes (categorical programs); read the null next to it: a random k-dim
subspace (``random_basis``), and the fraction of positions where the counterfactual
equals the base output (an intervention that changes nothing scores that).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from toymodels.hooks import patch, run_with_cache, run_with_interventions


def _interchange(model, layer: str, Q_DK, base_BT, source_BT):
    _, cache_b = run_with_cache(model, base_BT, [layer])
    _, cache_s = run_with_cache(model, source_BT, [layer])
    h_b, h_s = cache_b[layer], cache_s[layer]
    patched = h_b + ((h_s - h_b) @ Q_DK) @ Q_DK.T
    return run_with_interventions(model, base_BT, {layer: patch(patched)})


@functools.lru_cache(maxsize=16)
def _logits_fn(graphdef, layer: str):
    @jax.jit
    def run(state, Q_DK, base_BT, source_BT):
        return _interchange(nnx.merge(graphdef, state), layer, Q_DK, base_BT, source_BT)
    return run


def interchange_logits(model, layer: str, Q_DK, base_BT, source_BT) -> np.ndarray:
    """The outputs (B, T, V) of ``model`` on ``base_BT`` with span(Q) of ``layer`` taken from
    ``source_BT`` at every position (one jitted function per model graph and layer)."""
    _check(model, layer, Q_DK)
    graphdef, state = nnx.split(model)
    return np.asarray(_logits_fn(graphdef, layer)(state, jnp.asarray(Q_DK, jnp.float32),
                                                  jnp.asarray(base_BT), jnp.asarray(source_BT)))


def _check(model, layer: str, Q_DK) -> None:
    if layer not in model.hook_names() or not layer.endswith(("resid_pre", "resid_mid", "resid_post")):
        allowed = [n for n in model.hook_names() if n.endswith(("resid_pre", "resid_mid", "resid_post"))]
        raise ValueError(f"layer={layer!r}: interchange needs a residual point, one of {allowed}")
    D = model.cfg.d_model
    if np.ndim(Q_DK) != 2 or np.shape(Q_DK)[0] != D or not 1 <= np.shape(Q_DK)[1] <= D:
        raise ValueError(f"basis of shape {np.shape(Q_DK)}: expected (d_model={D}, k) with 1 <= k <= {D}")


def variable_basis(compiled, label: str) -> np.ndarray:
    """(D, k) unit columns on a compiled variable's own residual directions (materialized
    variables only: ``CompiledModel.subspace``)."""
    idx = compiled.subspace(label)
    return np.eye(compiled.d_model)[:, idx]


def counterfactual(compiled, label: str, layer: str, base_BT, source_BT) -> np.ndarray:
    """(B, T) output class ids of ``compiled`` on the base inputs with variable ``label``
    interchanged from the sources at ``layer``: what the program outputs when that
    variable takes its value on the source. Categorical programs only."""
    if compiled.numerical_output:
        raise ValueError("counterfactual: the program's output is numerical; use a categorical program")
    logits = interchange_logits(compiled.model, layer, variable_basis(compiled, label), base_BT, source_BT)
    return logits[..., :len(compiled.output_values)].argmax(-1)


def random_basis(D: int, k: int, seed: int = 0) -> np.ndarray:
    """(D, k) orthonormal columns spanning a uniformly random k-dim subspace."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((D, k)))
    return q


def _orthonormal(W_DK):
    q, r = jnp.linalg.qr(W_DK)
    return q * jnp.sign(jnp.diagonal(r))[None]      # a smooth, unique choice of signs


@functools.lru_cache(maxsize=16)
def _fit_fn(graphdef, layer: str, steps: int, lr: float, n_classes: int):
    opt = optax.adam(lr)

    def loss_fn(W, state, base, source, cf, mask):
        logits = _interchange(nnx.merge(graphdef, state), layer, _orthonormal(W), base, source)[..., :n_classes]
        nll = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), cf)
        return (nll * mask).sum() / jnp.maximum(mask.sum(), 1)

    def fit_one(W, state, base, source, cf, mask):
        def step(carry, _):
            W, opt_state = carry
            loss, g = jax.value_and_grad(loss_fn)(W, state, base, source, cf, mask)
            updates, opt_state = opt.update(g, opt_state)
            return (optax.apply_updates(W, updates), opt_state), loss
        (W, _), losses = jax.lax.scan(step, (W, opt.init(W)), None, length=steps)
        return _orthonormal(W), jnp.append(losses, loss_fn(W, state, base, source, cf, mask))

    # restarts: one vmapped program over the initial bases
    return jax.jit(jax.vmap(fit_one, in_axes=(0, None, None, None, None, None)))


def fit_basis(model, layer: str, k: int, base_BT, source_BT, cf_BT, mask_BT, *, n_classes: int,
              steps: int = 300, lr: float = 1e-2, restarts: int = 1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Learn (D, k) orthonormal Q so that ``model`` with span(Q) of ``layer`` interchanged
    outputs the counterfactual classes ``cf_BT`` where ``mask_BT`` is 1 (cross-entropy over
    the first ``n_classes`` logits, full-batch Adam). Saturated nets (compiled ones) have
    poor local optima: ``restarts`` random initial bases are fitted at once and the one
    with the lowest final loss kept. Returns (Q, its loss per step; the last entry is the
    loss of the returned Q)."""
    D = model.cfg.d_model
    if not 1 <= k <= D or steps < 1 or lr <= 0 or restarts < 1:
        raise ValueError(f"k={k}, steps={steps}, lr={lr}, restarts={restarts}: need 1 <= k <= d_model={D}, "
                         "steps >= 1, lr > 0, restarts >= 1")
    _check(model, layer, np.zeros((D, k)))
    graphdef, state = nnx.split(model)
    W = jnp.asarray(np.stack([random_basis(D, k, seed * 1000 + r) for r in range(restarts)]), jnp.float32)
    Q, losses = _fit_fn(graphdef, layer, int(steps), float(lr), int(n_classes))(
        W, state, jnp.asarray(base_BT), jnp.asarray(source_BT), jnp.asarray(cf_BT, jnp.int32),
        jnp.asarray(mask_BT, jnp.float32))
    best = int(np.argmin(np.asarray(losses)[:, -1]))
    return np.asarray(Q[best]), np.asarray(losses[best])


def interchange_accuracy(model, layer: str, Q_DK, base_BT, source_BT, cf_BT, mask_BT, n_classes: int) -> float:
    """Fraction of masked positions where the intervened model's argmax class is the
    counterfactual."""
    pred = interchange_logits(model, layer, Q_DK, base_BT, source_BT)[..., :n_classes].argmax(-1)
    mask = np.asarray(mask_BT, bool)
    return float((pred == np.asarray(cf_BT))[mask].mean())
