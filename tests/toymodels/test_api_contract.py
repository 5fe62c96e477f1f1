"""The JAX / Flax NNX / optax APIs toymodels relies on: an upgrade that changes one fails here first."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx


class _Two(nnx.Module):
    def __init__(self, rngs):
        self.layers = nnx.List([nnx.Param(jax.random.normal(rngs.params(), (2,))) for _ in range(2)])
        self.w = nnx.Param(jnp.ones((3,)))


def test_nnx_split_merge_state_eval_shape_and_list():
    m = _Two(nnx.Rngs(params=0))
    graphdef, params = nnx.split(m, nnx.Param)
    assert len(jax.tree.leaves(params)) == 3
    abstract = nnx.eval_shape(lambda: _Two(nnx.Rngs(params=0)))
    assert nnx.graphdef(abstract) == graphdef
    stacked = jax.vmap(lambda k: nnx.state(_Two(nnx.Rngs(params=k)), nnx.Param))(jax.random.split(jax.random.key(0), 4))
    assert jax.tree.leaves(stacked)[0].shape[0] == 4
    m2 = nnx.merge(graphdef, jax.tree.map(lambda x: x[1], stacked))
    m2.w[...] = 2.0
    assert float(m2.w[...].sum()) == 6.0


def test_optax_pieces():
    params = {"a": jnp.ones((3,))}
    adam = optax.scale_by_adam(0.9, 0.95, 1e-8)
    upd, _ = adam.update({"a": jnp.full((3,), 2.0)}, adam.init(params))
    np.testing.assert_allclose(upd["a"], 1.0, rtol=1e-6)   # first Adam step is sign-like
    assert float(optax.tree.norm({"a": jnp.full((4,), 2.0)})) == 4.0
    xent = optax.softmax_cross_entropy_with_integer_labels(jnp.zeros((2, 4)), jnp.array([0, 3]))
    np.testing.assert_allclose(xent, np.log(4.0), rtol=1e-6)
    np.testing.assert_allclose(optax.huber_loss(jnp.array([3.0]), jnp.array([0.0]), delta=1.0), [2.5])


def test_jax_random_keys_under_vmap():
    keys = jax.vmap(lambda s: jax.random.fold_in(jax.random.key(s), 1))(jnp.arange(3))
    draws = jax.vmap(lambda k: jax.random.uniform(k))(keys)
    assert len(set(np.asarray(draws).tolist())) == 3
