import dataclasses

import numpy as np
import pytest

from toymodels.config import ConfigError
from toymodels.model import TransformerConfig
from toymodels.runs import to_host
from toymodels.runspec import RunSpec, runs_of
from toymodels.schedule import Event, Mixture
from toymodels.tasks import make_task
from toymodels.trainconfig import TrainConfig

M = TransformerConfig(n_layers=1, d_model=16, n_heads=2, vocab_size=8, max_seq_len=8)
TASKS = (("markov", make_task("markov", vocab_size=8, length=8)), ("copy", make_task("copy", length=3, n_symbols=4)))
MIX = Mixture(("markov", "copy"), events=(Event("drop", "copy", 5),))


def _spec(run_id="a", **train):
    return RunSpec(run_id, M, TrainConfig(steps=10, **train), TASKS, MIX)


def test_per_run_values_share_a_group_and_shapes_do_not():
    a = _spec("a", seed=0, lr=1e-3, weight_decay=0.0)
    b = dataclasses.replace(_spec("b", seed=1, lr=3e-3, weight_decay=0.1), mixture=Mixture(
        ("markov", "copy"), weights=(2.0, 1.0), events=(Event("drop", "copy", 8),)))
    assert a.group_key() == b.group_key()
    assert a.group_key() != _spec("c", batch_size=8).group_key()
    assert a.group_key() != dataclasses.replace(a, init_from="b").group_key()


def test_group_label_splits_groups_but_is_not_part_of_the_config():
    a, b = _spec("a"), dataclasses.replace(_spec("a"), group="slow")
    assert a.group_key() != b.group_key()
    assert a.config() == b.config() and "group" not in a.config()
    assert a.config()["run_id"] == "a" and a.config()["train"]["steps"] == 10
    assert a.config()["tasks"]["copy"]["name"] == "copy"


def test_runs_of_stacks_one_row_per_spec():
    specs = [_spec("a", seed=3, lr=1e-3),
             dataclasses.replace(_spec("b", seed=4, lr=2e-3), mixture=Mixture(
                 ("markov", "copy"), weights=(2.0, 1.0), events=(Event("drop", "copy", 8),)))]
    runs = to_host(runs_of(specs))
    assert runs.seed.tolist() == [3, 4]
    np.testing.assert_allclose(runs.lr, [1e-3, 2e-3])
    np.testing.assert_array_equal(runs.mixture.event_steps, [[5], [8]])
    np.testing.assert_allclose(runs.mixture.weights, [[1.0, 1.0], [2.0, 1.0]])
    assert runs_of(specs[:1] * 3).size == 3


def test_bad_specs_are_refused():
    for bad in ("a/b", ".", "..", ""):   # '..' would write into out/ itself
        with pytest.raises(ConfigError, match="run_id"):
            _spec(bad)
    assert _spec("a..b").run_id == "a..b"
    with pytest.raises(ConfigError, match="needs teacher"):
        _spec("a", context="teacher")
    with pytest.raises(ConfigError, match="takes no teacher"):
        dataclasses.replace(_spec("a"), teacher="b")
    assert dataclasses.replace(_spec("a"), init_from="x", teacher="").depends_on() == ("x",)


def test_a_tag_named_like_a_result_column_is_refused():
    """A tag "value" would overwrite every row's metric value when tags are copied into the rows."""
    with pytest.raises(ConfigError, match=r"tag\(s\) step, value would overwrite"):
        dataclasses.replace(_spec("a"), tags=(("value", "base"), ("step", 1), ("level", 2)))
    assert dict(dataclasses.replace(_spec("a"), tags=(("level", 2),)).tags) == {"level": 2}
