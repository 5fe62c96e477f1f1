import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from toymodels.config import ConfigError
from toymodels.model import TransformerConfig
from toymodels.runs import Runs, make_runs, pad_runs, place_like, runs_exec, runs_mesh, shard_runs, to_host
from toymodels.schedule import Event, Mixture
from toymodels.trainconfig import TrainConfig

MODEL = TransformerConfig(n_layers=1, d_model=32, n_heads=2, vocab_size=16, max_seq_len=16, dropout=0.1)
MIX = Mixture(("a", "b"), events=(Event("drop", "b", 50),))


def test_make_runs_broadcasts_defaults_and_takes_one_value_per_run():
    runs = make_runs(TrainConfig(lr=1e-3, weight_decay=0.2), MODEL, MIX, seeds=[0, 1, 2], lr=[1e-3, 2e-3, 3e-3],
                     event_steps=[[10], [20], [30]])
    assert isinstance(runs, Runs) and runs.size == 3
    np.testing.assert_allclose(to_host(runs.lr), [1e-3, 2e-3, 3e-3])
    np.testing.assert_allclose(to_host(runs.weight_decay), [0.2] * 3)       # from the config
    np.testing.assert_allclose(to_host(runs.dropout), [0.1] * 3)            # from the model config
    np.testing.assert_array_equal(to_host(runs.mixture.event_steps), [[10], [20], [30]])
    one = runs.take(1)
    assert one.size == 1 and int(one.seed[0]) == 1 and int(one.mixture.event_steps[0, 0]) == 20
    assert make_runs(TrainConfig(seed=7), MODEL, MIX).seed.tolist() == [7]


@pytest.mark.parametrize("kwargs, match", [
    (dict(seeds=[0, 1, 2], lr=[1, 2]), "lr has 2 values"),
    (dict(learning_rate=[1]), "unknown per-run field"),
    (dict(dropout=[1.0]), "dropout"),
    (dict(myopic_beta=[2.0]), "myopic_beta"),
])
def test_bad_per_run_values_raise(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        make_runs(TrainConfig(), MODEL, Mixture(("m",)), **kwargs)


def test_one_cpu_device_walks_the_runs_with_map():
    runs = make_runs(TrainConfig(), MODEL, MIX, seeds=[0, 1])
    assert runs_exec(runs) == ("map" if jax.default_backend() == "cpu" else "vmap")


def test_to_host_gives_numpy_trees():
    out = to_host({"a": jnp.arange(3), "b": [jnp.ones(2)]})
    assert isinstance(out["a"], np.ndarray) and out["a"].tolist() == [0, 1, 2] and isinstance(out["b"][0], np.ndarray)


def test_shard_pad_and_place_on_a_one_device_mesh():
    mesh = runs_mesh(jax.devices()[:1])
    assert mesh.axis_names == ("runs",) and mesh.devices.size == 1
    runs, n = shard_runs(make_runs(TrainConfig(), MODEL, MIX, seeds=[0, 1, 2]), mesh)
    assert (runs.size, n) == (3, 3)                           # one device: nothing to pad
    assert runs.seed.sharding == NamedSharding(mesh, PartitionSpec("runs"))
    tree = {"w": jnp.arange(6.0).reshape(2, 3), "step": jnp.float32(1)}
    padded = pad_runs({"w": tree["w"]}, 4, runs.seed.sharding)
    np.testing.assert_array_equal(padded["w"], [[0, 1, 2], [3, 4, 5], [3, 4, 5], [3, 4, 5]])   # repeats the last
    assert padded["w"].sharding.spec == PartitionSpec("runs")
    placed = place_like(tree, runs.seed.sharding)
    np.testing.assert_array_equal(placed["w"], tree["w"])
    assert placed["w"].sharding.spec == PartitionSpec("runs") and float(placed["step"]) == 1.0
