import typing

import pytest

from toymodels.config import ConfigError
from toymodels.trainconfig import CONTEXTS, TrainConfig


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
])
def test_bad_train_config_raises(build, match):
    with pytest.raises(ConfigError, match=match):
        build()


def test_log_eval_grid_and_extra_eval_steps():
    assert list(TrainConfig(steps=1000, n_evals=4, eval_spacing="log").eval_steps()) == [0, 1, 10, 100, 1000]
    assert list(TrainConfig(steps=100, n_evals=2, eval_at=(7, 8, 50)).eval_steps()) == [0, 7, 8, 50, 100]


def test_choice_fields_are_literals_listing_the_allowed_values():
    hints = typing.get_type_hints(TrainConfig)
    assert typing.get_args(hints["lr_schedule"]) == ("constant", "cosine")
    assert typing.get_args(hints["eval_spacing"]) == ("linear", "log")
    assert typing.get_args(hints["context"]) == CONTEXTS == ("live", "teacher", "none")
