import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from toymodels.config import ConfigError
from toymodels.model import TransformerConfig
from toymodels.runs import Runs, make_runs, pad_runs, place_like, runs_exec, runs_mesh, shard_runs, to_host
from toymodels.schedule import NEVER, Event, Mixture
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


@pytest.mark.parametrize("kwargs, match", [
    (dict(lr=[1e-3, -1.0]), r"lr\[1\]=-1.0 is not allowed: must be in \(0.0, inf\)"),
    (dict(lr=[float("inf")]), r"lr\[0\]=inf is not allowed: must be a finite number"),
    (dict(weight_decay=[float("nan")]), r"weight_decay\[0\]=nan"),
    (dict(dropout=[float("nan")]), r"dropout\[0\]=nan"),
    (dict(fractions=[[5.0]]), r"run 0: event.fraction=5.0 is not allowed: must be in \[0.0, 1.0\]"),
    (dict(fractions=[[float("nan")]]), r"run 0: event.fraction=nan"),
    (dict(event_steps=[[10, 20]]), r"run 0: give 1 event step\(s\) and fraction\(s\) per run"),
    (dict(event_steps=[[10], []]), r"run 1: give 1 event step"),
    (dict(event_steps=[[-5]]), r"run 0: event.step=-5"),
    (dict(event_steps=[[99999]]), r"run 0: event drop:b step=99999 is not allowed: must be <= steps=1000"),
    (dict(event_steps=[[1.5]]), r"run 0: event.step=1.5"),
    (dict(weights=[[1.0, float("inf")]]), r"run 0: mixture.weights\[1\]=inf"),
    (dict(weights=[[1.0]]), r"run 0: mixture.weights has 1 entries for 2 tasks"),
    (dict(seeds=[]), r"seeds=\[\] is not allowed: give at least one seed"),
    (dict(seeds=[0, 99999999999]), r"seeds\[1\]=99999999999 .*int32 PRNG seed range"),
    (dict(seeds=[float("nan")]), r"seeds\[0\]=nan"),
    (dict(lr=0.1), r"lr=0.1 is not allowed: give a list with one value per run"),
    (dict(seeds=[0, 0], myopic_beta=[0.0, 1.0]),
     r"myopic_beta=\[0.0, 1.0\] .*myopic=False.*TrainConfig\(myopic=True\)"),
])
def test_every_per_run_value_is_checked_like_its_config_field(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        make_runs(TrainConfig(steps=1000), MODEL, MIX, **kwargs)


def test_per_run_values_accept_numpy_and_never_steps():
    runs = make_runs(TrainConfig(myopic=True), MODEL, MIX, seeds=np.arange(2), lr=np.array([1e-3, 2e-3]),
                     myopic_beta=[np.float32(0.0), 1.0], event_steps=[[NEVER], [np.int64(5)]])
    np.testing.assert_array_equal(to_host(runs.mixture.event_steps), [[NEVER], [5]])
    np.testing.assert_allclose(to_host(runs.myopic_beta), [0.0, 1.0])
    assert to_host(runs.seed).tolist() == [0, 1]


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
