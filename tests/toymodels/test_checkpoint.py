import jax
import jax.numpy as jnp
import numpy as np
import pytest

from toymodels.checkpoint import Checkpointer
from toymodels.config import ConfigError
from toymodels.trainlog import TrainLog, TrainState


def _state(step, scale=1.0):
    params = {"w": scale * jnp.arange(6.0).reshape(2, 3), "b": jnp.ones((2,))}
    return TrainState(params, {"mu": jnp.zeros((2, 3))}, step)


def _abstract():
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype) if hasattr(x, "shape") else x, _state(0))


def test_save_and_restore_round_trip_state_log_and_step(tmp_path):
    log = TrainLog({0: {"copy": {"loss": np.asarray([1.5, 2.5], np.float32)}}}, [np.asarray([0.25, 0.5], np.float32)],
                   [4])
    ckpt = Checkpointer(tmp_path, {"train": {"lr": 1e-3, "eval_at": (1, 2)}})
    assert ckpt.latest_step() is None and ckpt.restore(_abstract()) is None
    ckpt.save(_state(4), log)
    ckpt.save(_state(8, scale=2.0), log)
    ckpt.close()
    again = Checkpointer(tmp_path, {"train": {"lr": 1e-3, "eval_at": [1, 2]}})   # tuples and lists compare equal
    state, got_log = again.restore(_abstract())
    again.close()
    assert state.step == 8 == again.latest_step()
    np.testing.assert_array_equal(state.params["w"], 2.0 * np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(state.opt["mu"], np.zeros((2, 3)))
    assert got_log.to_json() == log.to_json()


def test_checkpoint_of_another_config_is_refused_naming_the_field(tmp_path):
    ckpt = Checkpointer(tmp_path, {"train": {"lr": 1e-3}})
    ckpt.save(_state(1), TrainLog())
    ckpt.close()
    other = Checkpointer(tmp_path, {"train": {"lr": 5e-4}})
    with pytest.raises(ConfigError, match=r"(?s)different config.*train.lr: checkpoint has 0.001, this run has 0.0005"):
        other.restore(_abstract())
    assert other.restore(_abstract(), check_config=False)[0].step == 1
    other.close()
