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


def _truncate_state(step_dir):
    """Cut the largest array file of a checkpoint in half, as a crash or a full disk would."""
    files = [p for p in step_dir.rglob("*") if p.is_file() and "state" in p.parts]
    biggest = max(files, key=lambda p: p.stat().st_size)
    with open(biggest, "r+b") as f:
        f.truncate(biggest.stat().st_size // 2)


# orbax leaves the failed read's futures unretrieved; they are garbage, not failures
DAMAGED = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@DAMAGED
def test_a_damaged_newest_checkpoint_is_set_aside_and_the_older_one_restores(tmp_path, capsys):
    ckpt = Checkpointer(tmp_path, {"a": 1})
    ckpt.save(_state(4), TrainLog())
    ckpt.save(_state(8, scale=2.0), TrainLog())
    ckpt.close()
    _truncate_state(tmp_path / "8")
    again = Checkpointer(tmp_path, {"a": 1})
    with pytest.raises(ConfigError, match=r"checkpoint step 8 in .* does not restore"):
        again.restore_step(8, _abstract())   # a reader gets a refusal naming the folder, nothing moves
    state, _ = again.restore(_abstract())
    said = capsys.readouterr().out
    assert state.step == 4 and "checkpoint step 8" in said and "does not restore" in said and "damaged-8" in said
    assert (tmp_path / "damaged-8").is_dir() and again.latest_step() == 4
    again.save(_state(8, scale=3.0), TrainLog())   # step 8 can be saved again (orbax skips steps <= newest)
    np.testing.assert_array_equal(again.restore(_abstract())[0].params["w"], 3.0 * np.arange(6.0).reshape(2, 3))
    again.close()


@DAMAGED
def test_when_no_checkpoint_restores_training_starts_over_and_says_so(tmp_path, capsys):
    ckpt = Checkpointer(tmp_path, {"a": 1})
    ckpt.save(_state(4), TrainLog())
    _truncate_state(tmp_path / "4")
    assert ckpt.restore(_abstract()) is None
    assert "training starts from step 0" in capsys.readouterr().out
    ckpt.close()
