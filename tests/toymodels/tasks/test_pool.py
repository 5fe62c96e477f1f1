"""The pool task: a fixed set of base examples; eval is the base task's eval."""

from __future__ import annotations

import jax
import numpy as np

from toymodels.tasks import make_task
from toymodels.train import task_configs


def test_pool_is_fixed_across_keys_and_eval_is_the_base_eval():
    base = make_task("modular_addition", p=13)
    pool = make_task("pool", base=base, n=4, seed=1)
    rows = {tuple(r) for k in range(5) for r in np.asarray(pool.sample(jax.random.key(k), 32).inputs).tolist()}
    assert len(rows) == 4 and rows == {tuple(r) for r in np.asarray(pool.examples().inputs).tolist()}
    key = jax.random.key(7)
    for a, b in zip(pool.sample(key, 16, split="eval"), base.sample(key, 16, split="eval")):
        np.testing.assert_array_equal(a, b)
    other = make_task("pool", base=base, n=4, seed=2).examples().inputs
    assert not np.array_equal(other, pool.examples().inputs)


def test_pool_config_names_its_base():
    cfg = task_configs({"x": make_task("pool", base=make_task("parity", length=3))})["x"]
    assert cfg["name"] == "pool" and cfg["base"] == {"name": "parity", "length": 3}
