"""Band-limited myopic descent (``TrainConfig.myopic_band``) against its definition, in float64."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from toymodels.config import ConfigError
from toymodels.hooks import patch, run_with_cache, steer
from toymodels.model import TransformerConfig, init_model
from toymodels.tasks import make_task
from toymodels.train import Trainer
from toymodels.trainconfig import TrainConfig

B, T = 3, 8


def _setup(cfg, seed):
    model = init_model(dataclasses.replace(cfg, max_seq_len=T), seed)
    graphdef, params = nnx.split(model, nnx.Param)
    params = jax.tree.map(lambda p: p.astype(jnp.float64), params)
    x = jax.random.randint(jax.random.key(seed), (B, T), 0, cfg.vocab_size)
    return graphdef, params, x


def _loss_t(out, x, t):
    return optax.softmax_cross_entropy_with_integer_labels(out[:, t], x[:, (t + 1) % T]).mean()


def _flat(tree):
    return np.concatenate([np.ravel(g) for g in jax.tree.leaves(tree)])


def definition(graphdef, params, x, k, frozen_paths=("k", "v")):
    """sum_t dL_t/dtheta with everything computed at positions more than k before t held
    constant: every layer's keys and values there (``frozen_paths`` of them) patched with
    their own values."""
    model = nnx.merge(graphdef, params)
    n_layers = model.cfg.n_layers
    kv = [f"blocks.{i}.attn.{n}" for i in range(n_layers) for n in frozen_paths]
    _, cache = run_with_cache(model, x, kv)
    total = None
    for t in range(T):
        frozen = {n: patch(cache[n], positions=jnp.arange(T) < t - k) for n in kv}

        def loss(p, frozen=frozen, t=t):
            out, _ = run_with_cache(nnx.merge(graphdef, p), x, (), interventions=frozen)
            return _loss_t(out, x, t)
        g = _flat(jax.grad(loss)(params))
        total = g if total is None else total + g
    return total


def banded(graphdef, params, x, **kw):
    def loss(p):
        out = nnx.merge(graphdef, p)(x, **kw)
        return sum(_loss_t(out, x, t) for t in range(T))
    return _flat(jax.grad(loss)(params))


@pytest.fixture
def x64():
    with jax.enable_x64(True):
        yield


@pytest.mark.parametrize("k", [0, 1, 3])
def test_one_layer_band_equals_definition(tiny_cfg, x64, k):
    g, p, x = _setup(dataclasses.replace(tiny_cfg, n_layers=1), 1)
    want = definition(g, p, x, k)
    got = banded(g, p, x, myopic=True, myopic_band=k)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-11)
    if k:   # the band really differs from myopic descent
        assert np.abs(got - banded(g, p, x, myopic=True)).max() > 1e-4


@pytest.mark.parametrize("k", [0, 2])
@pytest.mark.parametrize("far, frozen", [("key", ("v",)), ("value", ("k",))])
def test_far_path_restored_equals_definition(tiny_cfg, x64, k, far, frozen):
    """myopic_far: the links beyond the band keep the named path's gradient; only the other
    path is held constant there."""
    g, p, x = _setup(dataclasses.replace(tiny_cfg, n_layers=1), 4)
    got = banded(g, p, x, myopic=True, myopic_band=k, myopic_far=far)
    np.testing.assert_allclose(got, definition(g, p, x, k, frozen), rtol=1e-9, atol=1e-11)
    plain, vanilla = banded(g, p, x, myopic=True, myopic_band=k), banded(g, p, x)
    assert np.abs(got - plain).max() > 1e-4 and np.abs(got - vanilla).max() > 1e-4


def test_band_ends_are_myopic_and_vanilla(tiny_cfg, x64):
    g, p, x = _setup(tiny_cfg, 2)   # two layers
    np.testing.assert_allclose(banded(g, p, x, myopic=True), definition(g, p, x, 0), rtol=1e-9, atol=1e-11)
    vanilla = banded(g, p, x)
    for k in (T - 1, T, 3 * T):
        np.testing.assert_allclose(banded(g, p, x, myopic=True, myopic_band=k), vanilla, rtol=1e-9, atol=1e-11)


def test_band_is_per_attention_hop(tiny_cfg, x64):
    """Through two layers with band k the loss at t reaches 2k positions back, no further."""
    g, p, x = _setup(tiny_cfg, 3)
    model, t, k = nnx.merge(g, p), T - 1, 2

    def f(v):
        out, _ = run_with_cache(model, x, (), interventions={"embed": steer(v)}, myopic=True, myopic_band=k)
        return _loss_t(out, x, t)
    reach = np.abs(np.asarray(jax.grad(f)(jnp.zeros((B, T, tiny_cfg.d_model))))).sum(axis=(0, 2))
    assert np.all(reach[:t - 2 * k] == 0.0)
    assert np.all(reach[t - 2 * k:] > 0)


def test_band_training_at_full_width_follows_vanilla():
    task = make_task("adjacent_pair", length=6)

    cfg = TransformerConfig(n_layers=1, d_model=16, n_heads=2, vocab_size=task.vocab.size, max_seq_len=task.seq_len)
    base = TrainConfig(steps=6, batch_size=8, lr=3e-3, n_evals=1, eval_batch=16)
    params = {}
    for name, tc in (("vanilla", base), ("band", dataclasses.replace(base, myopic=True, myopic_band=task.seq_len)),
                     ("myopic", dataclasses.replace(base, myopic=True))):
        params[name] = _flat(Trainer(cfg, tc, {"a": task}).train(progress=False).state.params)
    np.testing.assert_allclose(params["band"], params["vanilla"], atol=1e-5)
    assert np.abs(params["myopic"] - params["vanilla"]).max() > 1e-4


@pytest.mark.parametrize("changes, match", [
    (dict(myopic_band=2), "myopic=True"),
    (dict(myopic=True, myopic_band=-1), "myopic_band"),
    (dict(myopic=True, myopic_band=2, context="none"), "context='live'"),
    (dict(myopic_band=0, myopic_far="key"), "myopic=True"),
    (dict(myopic=True, myopic_far="query"), "'key', 'value'"),
])
def test_band_config_errors(changes, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**changes)
