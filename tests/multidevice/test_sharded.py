"""Run only with XLA_FLAGS=--xla_force_host_platform_device_count=8 (see tests/toymodels/test_sharding.py)."""

import jax
import numpy as np

from toymodels.model import TransformerConfig
from toymodels.runs import pad_runs, place_like, runs_mesh, shard_runs
from toymodels.runspec import RunSpec
from toymodels.store import load_model, load_rows
from toymodels.sweep import run_sweep
from toymodels.tasks import make_task
from toymodels.train import Trainer
from toymodels.trainconfig import TrainConfig

M = TransformerConfig(n_layers=1, d_model=16, n_heads=2, vocab_size=8, max_seq_len=8)
TASKS = (("markov", make_task("markov", vocab_size=8, length=8)),)


def _specs():
    return [RunSpec(f"r{i}", M, TrainConfig(steps=30, batch_size=8, n_evals=3, seed=i, lr=1e-3 * (1 + i)), TASKS)
            for i in range(5)]   # 5 runs on 8 devices: 3 padding rows


def test_eight_devices():
    assert jax.device_count() == 8


def test_sharded_sweep_equals_unsharded(tmp_path):
    run_sweep(_specs(), tmp_path / "sharded", progress=False)
    run_sweep(_specs(), tmp_path / "single", progress=False, mesh=runs_mesh(jax.devices()[:1]))
    a, b = load_rows(tmp_path / "sharded"), load_rows(tmp_path / "single")
    assert {r["run"] for r in a} == {f"r{i}" for i in range(5)}     # padding never reaches results
    assert len(a) == len(b)
    for ra, rb in zip(a, b):
        assert (ra["run"], ra["step"], ra["task"], ra["metric"]) == (rb["run"], rb["step"], rb["task"], rb["metric"])
        assert abs(ra["value"] - rb["value"]) <= 1e-5
    for spec in _specs():
        pa, pb = load_model(tmp_path / "sharded", spec), load_model(tmp_path / "single", spec)
        for x, y in zip(jax.tree.leaves(pa), jax.tree.leaves(pb)):
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-5)


def test_state_and_training_really_are_spread_over_devices():
    spec = _specs()[0]
    trainer = Trainer(spec.model, spec.train, dict(spec.tasks))
    runs, n = shard_runs(trainer.runs(seeds=list(range(5))), runs_mesh())
    assert (runs.size, n) == (8, 5)
    state = trainer.init(runs)
    leaf = jax.tree.leaves(state.params)[0]
    assert len(leaf.sharding.device_set) == 8
    assert {s.data.shape[0] for s in leaf.addressable_shards} == {1}
    res = trainer.train(runs, state, progress=False)
    assert len(jax.tree.leaves(res.state.params)[0].sharding.device_set) == 8


def test_stacked_trees_are_padded_and_placed_like_the_runs():
    runs, _ = shard_runs(Trainer(M, _specs()[0].train, dict(TASKS)).runs(seeds=list(range(5))), runs_mesh())
    tree = {"w": np.arange(10.0).reshape(5, 2)}
    padded = pad_runs(tree, runs.size, runs.seed.sharding)
    np.testing.assert_array_equal(np.asarray(padded["w"])[5:], [[8.0, 9.0]] * 3)   # repeats the last run
    assert padded["w"].sharding.is_equivalent_to(runs.seed.sharding, 2)
    placed = place_like({"w": np.zeros((8, 3))}, runs.seed.sharding)
    assert len(placed["w"].sharding.device_set) == 8
    assert {s.data.shape for s in placed["w"].addressable_shards} == {(1, 3)}
