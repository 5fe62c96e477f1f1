import dataclasses

import jax
import numpy as np
import pytest

from toymodels.config import ConfigError
from toymodels.model import TransformerConfig
from toymodels.runspec import RunSpec
from toymodels.store import complete, final_params, load_model, load_models, load_rows
from toymodels.sweep import run_sweep
from toymodels.tasks import make_task
from toymodels.trainconfig import TrainConfig

M = TransformerConfig(n_layers=1, d_model=16, n_heads=2, vocab_size=8, max_seq_len=8)
TASKS = (("markov", make_task("markov", vocab_size=8, length=8)),)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Three runs in two groups (a lone wider-batch run forms its own group)."""
    out = tmp_path_factory.mktemp("sweep")
    specs = [RunSpec(f"r{i}", M, TrainConfig(steps=6, batch_size=4 if i < 2 else 8, n_evals=1, seed=i), TASKS)
             for i in range(3)]
    run_sweep(specs, out, progress=False)
    return out, specs


def test_complete_knows_finished_runs_and_refuses_a_reused_id(sweep):
    out, specs = sweep
    assert all(complete(out, s) for s in specs)
    assert not complete(out, dataclasses.replace(specs[0], run_id="new"))
    with pytest.raises(ConfigError, match="different config"):
        complete(out, dataclasses.replace(specs[0], train=dataclasses.replace(specs[0].train, lr=0.5)))


def test_load_rows_reads_all_or_some_runs(sweep):
    out, _ = sweep
    rows = load_rows(out)
    assert {r["run"] for r in rows} == {"r0", "r1", "r2"}
    assert {r["run"] for r in load_rows(out, ["r2"])} == {"r2"}
    assert {"step", "task", "metric", "value"} <= set(rows[0])


def test_final_params_stack_runs_across_groups_and_models_match_them(sweep):
    out, specs = sweep
    order = [specs[2], specs[0], specs[1]]
    stacked = final_params(out, order)
    assert jax.tree.leaves(stacked)[0].shape[0] == 3
    models = load_models(out, order)
    assert len(models) == 3
    for i, spec in enumerate(order):
        one = jax.tree.leaves(load_model(out, spec))
        for a, b, c in zip(one, jax.tree.leaves(models[i]), jax.tree.leaves(stacked)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(c[i]))
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert all(isinstance(x, np.ndarray) for x in jax.tree.leaves(models[0]))   # numpy: slicing compiles nothing
    assert not np.array_equal(np.asarray(jax.tree.leaves(models[1])[0]), np.asarray(jax.tree.leaves(models[2])[0]))


def test_load_models_needs_one_architecture(sweep):
    out, specs = sweep
    wide = dataclasses.replace(specs[0], model=dataclasses.replace(M, d_model=32))
    with pytest.raises(ConfigError, match="one architecture"):
        load_models(out, [specs[1], wide])
