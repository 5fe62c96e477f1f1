"""fit resumes from its checkpoint to the uninterrupted numbers (killing the command itself, at
random points, is tests/toymodels/test_faults.py)."""

import jax
import numpy as np
import pytest

from toymodels.checkpoint import Checkpointer
from toymodels.config import ConfigError
from toymodels.fit import fit
from toymodels.model import TransformerConfig
from toymodels.tasks import make_task
from toymodels.train import Trainer
from toymodels.trainconfig import TrainConfig

TASKS = {"m": make_task("markov", vocab_size=8, length=8)}
M = TransformerConfig(n_layers=1, d_model=16, n_heads=2, vocab_size=8, max_seq_len=8)


def _params_equal(a, b) -> bool:
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


class _Killed(Exception):
    pass


def test_fit_resumes_from_its_checkpoint_to_the_uninterrupted_numbers(tmp_path, capsys):
    trainer = Trainer(M, TrainConfig(steps=20, batch_size=4, n_evals=2, chunk_steps=5), TASKS)
    runs = trainer.runs(seeds=[0, 1])
    straight = fit(trainer, runs, tmp_path / "a", progress=False)
    ckpt = Checkpointer(tmp_path / "b", trainer.describe(runs))   # the config fit writes

    def killed_at_10(state, log):
        if state.step == 10:
            ckpt.save(state, log)
            raise _Killed
    with pytest.raises(_Killed):
        trainer.train(runs, progress=False, on_chunk=killed_at_10)
    ckpt.close()
    resumed = fit(trainer, runs, tmp_path / "b", progress=False)
    assert "resuming from step 10" in capsys.readouterr().out
    assert _params_equal(straight.state.params, resumed.state.params)
    np.testing.assert_array_equal(straight.history["m"]["loss"], resumed.history["m"]["loss"])
    np.testing.assert_array_equal(straight.train_loss, resumed.train_loss)
    assert list(resumed.chunk_ends) == [5, 10, 15, 20] and list(resumed.eval_steps) == [0, 10, 20]


def test_checkpoint_of_another_config_is_refused(tmp_path):
    t = TrainConfig(steps=10, batch_size=4, n_evals=1)
    tr = Trainer(M, t, TASKS)
    fit(tr, tr.runs(), tmp_path, progress=False)
    other = Trainer(M, TrainConfig(steps=10, batch_size=4, n_evals=1, lr=5e-4), TASKS)
    with pytest.raises(ConfigError, match=r"(?s)different config.*train.lr"):
        fit(other, other.runs(), tmp_path, progress=False)
    assert Checkpointer(tmp_path, {}).latest_step() == 10
