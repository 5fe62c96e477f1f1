import dataclasses
import typing

import pytest

from toymodels.config import ConfigError
from toymodels.trainconfig import CONTEXTS, DECAYS, LATER_FIELDS, StopRule, TrainConfig


@pytest.mark.parametrize("build, match", [
    (lambda: TrainConfig(steps=0), "steps=0"),
    (lambda: TrainConfig(batch_size=-4), "batch_size"),
    (lambda: TrainConfig(lr_schedule="linear"), "lr_schedule='linear' is not allowed: choose one of 'constant'"),
    (lambda: TrainConfig(eval_spacing="cubic"), "eval_spacing"),
    (lambda: TrainConfig(context="past"), "context='past' is not allowed: choose one of 'live', 'teacher', 'none'"),
    (lambda: TrainConfig(lr=0.0), "lr=0.0"),
    (lambda: TrainConfig(b2=1.0), "b2"),
    (lambda: TrainConfig(trainable="("), "not a valid regular expression"),
    (lambda: TrainConfig(steps=100, eval_at=(101,)), "eval_at step 101 is beyond steps=100"),
    (lambda: TrainConfig(grad_diagnostics=True, context="none"), "grad_diagnostics"),
    (lambda: TrainConfig(decay="biases"), "decay='biases' is not allowed: choose one of 'all', 'matrices'"),
    (lambda: TrainConfig(data_offset=-1), "data_offset=-1"),
    (lambda: TrainConfig(steps=10, data_offset=2**31 - 5), "data_offset \\+ steps must fit int32"),
    (lambda: TrainConfig(stop_every=0), "stop_every=0"),
    (lambda: TrainConfig(stop_when="sort.acc>0.9"), r"stop_when='sort.acc>0.9' is not allowed: write TASK.METRIC>=X"),
    (lambda: TrainConfig(stop_when="acc>=0.9"), "stop_when='acc>=0.9'"),
    (lambda: TrainConfig(stop_when="sort.acc>=nan"), "finite number"),
    (lambda: TrainConfig(stop_when=0.9), "stop_when=0.9 is not allowed: must be a string"),
])
def test_bad_train_config_raises(build, match):
    with pytest.raises(ConfigError, match=match):
        build()


def test_stop_when_parses_task_metric_direction_and_threshold():
    assert TrainConfig().stop_rule() is None
    assert TrainConfig(stop_when="sort.acc>=0.99").stop_rule() == StopRule("sort", "acc", ">=", 0.99)
    assert TrainConfig(stop_when=" a.b.loss <= 2e-3 ").stop_rule() == StopRule("a.b", "loss", "<=", 0.002)


def test_as_dict_leaves_later_fields_out_at_their_defaults():
    # Configs saved before these fields existed (checkpoints, config.json) must still compare equal.
    t = TrainConfig(steps=7)
    assert t.as_dict() == {k: v for k, v in dataclasses.asdict(t).items() if k not in LATER_FIELDS}
    later = dict(decay="matrices", data_offset=5, stop_when="m.loss<=1", stop_every=10, objective="distill",
                 init_noise=0.5, precision="bf16", myopic_band=2, optimizer="sgd", displacement=True,
                 trainable_rows=(1, 2), myopic_far="key")
    assert set(later) == set(LATER_FIELDS)
    used = TrainConfig(myopic=True, trainable="W_E", **later).as_dict()
    assert {k: used[k] for k in LATER_FIELDS} == later
    assert TrainConfig(**used) == TrainConfig(myopic=True, trainable="W_E", **later)


def test_log_eval_grid_and_extra_eval_steps():
    assert list(TrainConfig(steps=1000, n_evals=4, eval_spacing="log").eval_steps()) == [0, 1, 10, 100, 1000]
    assert list(TrainConfig(steps=100, n_evals=2, eval_at=(7, 8, 50)).eval_steps()) == [0, 7, 8, 50, 100]
    # one log-spaced eval: geomspace(1, steps, 1) is [1], yet training (chunked to eval steps) must reach steps
    assert list(TrainConfig(steps=8, n_evals=1, eval_spacing="log").eval_steps()) == [0, 1, 8]


def test_choice_fields_are_literals_listing_the_allowed_values():
    hints = typing.get_type_hints(TrainConfig)
    assert typing.get_args(hints["lr_schedule"]) == ("constant", "cosine")
    assert typing.get_args(hints["eval_spacing"]) == ("linear", "log")
    assert typing.get_args(hints["context"]) == CONTEXTS == ("live", "teacher", "none")
    assert typing.get_args(hints["decay"]) == DECAYS == ("all", "matrices") and TrainConfig().decay == "all"
