"""Run only with XLA_FLAGS=--xla_force_host_platform_device_count=4 (see tests/toymodels/test_sharding.py).

Four devices, not more: every device compiles its own copy of each program.
"""

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
            for i in range(5)]   # 5 runs on 4 devices: 2 rows each, 3 of them padding


def test_four_devices():
    assert jax.device_count() == 4


def test_sharded_sweep_equals_unsharded(tmp_path):
    run_sweep(_specs(), tmp_path / "sharded", progress=False)
    run_sweep(_specs(), tmp_path / "single", progress=False, mesh=runs_mesh(jax.devices()[:1]))
    a, b = load_rows(tmp_path / "sharded"), load_rows(tmp_path / "single")
    assert {r["run"] for r in a} == {f"r{i}" for i in range(5)}     # padding never reaches results
    assert len(a) == len(b)
    for ra, rb in zip(a, b):
        assert (ra["run"], ra["step"], ra["task"], ra["metric"]) == (rb["run"], rb["step"], rb["task"], rb["metric"])
        assert ra["value"] == rb["value"]   # bit for bit: every device runs the one-device program
    for spec in _specs():
        pa, pb = load_model(tmp_path / "sharded", spec), load_model(tmp_path / "single", spec)
        for x, y in zip(jax.tree.leaves(pa), jax.tree.leaves(pb)):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_state_and_training_really_are_spread_over_devices():
    spec = _specs()[0]
    trainer = Trainer(spec.model, spec.train, dict(spec.tasks))
    runs, n = shard_runs(trainer.runs(seeds=list(range(5))), runs_mesh())
    assert (runs.size, n) == (8, 5)
    state = trainer.init(runs)
    leaf = jax.tree.leaves(state.params)[0]
    assert len(leaf.sharding.device_set) == 4
    assert {s.data.shape[0] for s in leaf.addressable_shards} == {2}
    res = trainer.train(runs, state, progress=False)
    assert len(jax.tree.leaves(res.state.params)[0].sharding.device_set) == 4


def test_stacked_trees_are_padded_and_placed_like_the_runs():
    runs, _ = shard_runs(Trainer(M, _specs()[0].train, dict(TASKS)).runs(seeds=list(range(5))), runs_mesh())
    tree = {"w": np.arange(10.0).reshape(5, 2)}
    padded = pad_runs(tree, runs.size, runs.seed.sharding)
    np.testing.assert_array_equal(np.asarray(padded["w"])[5:], [[8.0, 9.0]] * 3)   # repeats the last run
    assert padded["w"].sharding.is_equivalent_to(runs.seed.sharding, 2)
    placed = place_like({"w": np.zeros((8, 3))}, runs.seed.sharding)
    assert len(placed["w"].sharding.device_set) == 4
    assert {s.data.shape for s in placed["w"].addressable_shards} == {(2, 3)}


def _leaves(tree, i):
    return [np.asarray(x)[i] for x in jax.tree.leaves(tree)]


def test_ensembles_spread_over_the_cpu_devices_and_each_member_is_the_run_alone():
    """Trainer.runs places 4 runs on 4 devices (one each); member 3 equals run 3 trained
    alone on one device, bit for bit, params and eval metrics,
    with a stop criterion (chunk_until) and a teacher (distillation) as well."""
    spec = _specs()[0]
    stop = TrainConfig(steps=40, batch_size=8, n_evals=4, lr=3e-3, stop_when="markov.loss<=1.9", stop_every=5)
    for tcfg in (spec.train, stop):
        trainer = Trainer(spec.model, tcfg, dict(spec.tasks))
        runs4, alone = (trainer.runs(seeds=s) for s in (list(range(4)), [3]))
        assert len(runs4.seed.sharding.device_set) == 4
        assert len(alone.seed.sharding.device_set) == 1
        res = [trainer.train(r, progress=False) for r in (runs4, alone)]
        assert len(jax.tree.leaves(res[0].state.params)[0].sharding.device_set) == 4
        for x, y in zip(_leaves(res[0].state.params, 3), _leaves(res[1].state.params, 0)):
            np.testing.assert_array_equal(x, y)
        np.testing.assert_array_equal(np.asarray(res[0].history["markov"]["loss"])[3],
                                      np.asarray(res[1].history["markov"]["loss"])[0])
        if tcfg.stop_when:
            assert res[0].stop_step[3] == res[1].stop_step[0]
    distill = TrainConfig(steps=10, batch_size=8, n_evals=2, objective="distill")
    trainer = Trainer(spec.model, distill, dict(spec.tasks))
    teacher = res[0].state.params   # sharded over 4 devices
    out = trainer.train(trainer.runs(seeds=list(range(4))), progress=False, teacher=teacher)
    one = trainer.train(trainer.runs(seeds=[3]), progress=False,
                        teacher=jax.tree.map(lambda x: np.asarray(x)[3:4], teacher))
    for x, y in zip(_leaves(out.state.params, 3), _leaves(one.state.params, 0)):
        np.testing.assert_array_equal(x, y)
