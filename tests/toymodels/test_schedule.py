import jax
import jax.numpy as jnp
import numpy as np

from toymodels.schedule import Event, Mixture


def _p(mix, step, params=None):
    return np.asarray(mix.probs(jnp.int32(step), params))


def test_equal_weights_then_drop():
    mix = Mixture(("a", "b", "c"), events=(Event("drop", "b", 100),))
    np.testing.assert_allclose(_p(mix, 99), [1 / 3] * 3, atol=1e-6)
    np.testing.assert_allclose(_p(mix, 100), [0.5, 0.0, 0.5], atol=1e-6)


def test_add_then_drop_then_relearn():
    mix = Mixture(("a", "b"), weights=(3.0, 1.0),
                  events=(Event("add", "b", 10), Event("drop", "b", 20), Event("add", "b", 30)))
    np.testing.assert_allclose(_p(mix, 0), [1.0, 0.0])
    np.testing.assert_allclose(_p(mix, 10), [0.75, 0.25])
    np.testing.assert_allclose(_p(mix, 25), [1.0, 0.0])
    np.testing.assert_allclose(_p(mix, 30), [0.75, 0.25])


def test_replay_gets_exactly_its_fraction():
    mix = Mixture(("a", "b", "c"), events=(Event("replay", "c", 50, fraction=0.05),))
    np.testing.assert_allclose(_p(mix, 49), [1 / 3] * 3, atol=1e-6)
    np.testing.assert_allclose(_p(mix, 50), [0.475, 0.475, 0.05], atol=1e-6)


def test_per_run_event_steps_under_vmap():
    mix = Mixture(("a", "b"), events=(Event("drop", "b", 0),))
    params = mix.params()
    steps = jnp.asarray([[10], [20], [30]], jnp.int32)
    batched = params._replace(event_steps=steps, weights=jnp.ones((3, 2)), fractions=jnp.zeros((3, 1)))
    probs = jax.vmap(lambda p: mix.probs(jnp.int32(25), p))(batched)
    np.testing.assert_allclose(probs[:, 1], [0.0, 0.0, 0.5])
