import json

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from toymodels.checkpoint import Checkpointer, state_names
from toymodels.config import ConfigError
from toymodels.fit import fit
from toymodels.model import TransformerConfig
from toymodels.params import param_paths
from toymodels.tasks import make_task
from toymodels.train import Trainer
from toymodels.trainconfig import TrainConfig
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


# -- the layout on disk: leaves by name, and the numbered layout of older checkpoints ----------

M = TransformerConfig(n_layers=1, d_model=16, n_heads=2, vocab_size=8, max_seq_len=8)
TASKS = {"m": make_task("markov", vocab_size=8, length=8)}


def _trainer():
    return Trainer(M, TrainConfig(steps=20, batch_size=4, n_evals=2, chunk_steps=5), TASKS)


def test_state_leaves_are_stored_by_parameter_path_and_read_by_orbax_alone(tmp_path):
    trainer = _trainer()
    runs = trainer.runs(seeds=[0, 1])
    state = trainer.init(runs)
    names = state_names(state)
    assert names[:len(param_paths(state.params))] == [f"params/{p}" for p in param_paths(state.params)]
    assert {"params/blocks.0.attn.W_QKV", "opt/mu/blocks.0.attn.W_QKV", "opt/nu/W_E", "opt/count"} <= set(names)
    ckpt = Checkpointer(tmp_path, {"a": 1})
    ckpt.save(state, TrainLog())
    ckpt.close()
    assert '"blocks.0.attn.W_QKV"' in (tmp_path / "0" / "state" / "_METADATA").read_text()   # plain inspection
    tree = ocp.StandardCheckpointer().restore(tmp_path / "0" / "state")   # no toymodels code involved
    assert sorted(tree) == ["opt", "params"] and sorted(tree["opt"]) == ["count", "mu", "nu"]
    by_name = dict(zip(names, jax.tree.leaves((state.params, state.opt))))
    np.testing.assert_array_equal(tree["params"]["blocks.0.attn.W_QKV"], by_name["params/blocks.0.attn.W_QKV"])
    np.testing.assert_array_equal(tree["opt"]["mu"]["W_E"], by_name["opt/mu/W_E"])


def _save_numbered(directory, state, log, config):
    """A checkpoint as the code before named leaves wrote it: leaves numbered in leaf order."""
    manager = ocp.CheckpointManager(directory, options=ocp.CheckpointManagerOptions(
        max_to_keep=2, create=True, enable_async_checkpointing=False), item_names=("state", "log", "config"))
    leaves = jax.tree.leaves((state.params, state.opt))
    manager.save(state.step, args=ocp.args.Composite(
        state=ocp.args.StandardSave({f"{i:05d}": x for i, x in enumerate(leaves)}),
        log=ocp.args.JsonSave(log.to_json()), config=ocp.args.JsonSave(json.loads(json.dumps(config)))))
    manager.wait_until_finished()
    manager.close()


def test_a_checkpoint_in_the_old_numbered_layout_restores_and_resumes_bit_exact(tmp_path, capsys):
    trainer = _trainer()
    runs = trainer.runs(seeds=[0, 1])
    straight = fit(trainer, runs, tmp_path / "a", progress=False)

    def old_save_at_10(state, log):
        if state.step == 10:
            _save_numbered(tmp_path / "b", state, log, trainer.describe(runs))
            raise KeyboardInterrupt   # killed right after the save
    with pytest.raises(KeyboardInterrupt):
        trainer.train(runs, progress=False, on_chunk=old_save_at_10)
    assert sorted(ocp.StandardCheckpointer().metadata(tmp_path / "b" / "10" / "state").item_metadata.tree)[:2] \
        == ["00000", "00001"]
    resumed = fit(trainer, runs, tmp_path / "b", progress=False)
    assert "resuming from step 10" in capsys.readouterr().out
    for x, y in zip(jax.tree.leaves((straight.state.params, straight.state.opt)),
                    jax.tree.leaves((resumed.state.params, resumed.state.opt))):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    np.testing.assert_array_equal(straight.history["m"]["loss"], resumed.history["m"]["loss"])
    np.testing.assert_array_equal(straight.train_loss, resumed.train_loss)
    # the final checkpoint beside the old one is written by name; both restore
    assert "params" in ocp.StandardCheckpointer().metadata(tmp_path / "b" / "20" / "state").item_metadata.tree
    ckpt = Checkpointer(tmp_path / "b", {}, read_only=True)
    old, _ = ckpt.restore_step(10, trainer.abstract_state(runs), check_config=False)
    ckpt.close()
    assert old.step == 10 and jax.tree.structure(old.params) == jax.tree.structure(straight.state.params)
