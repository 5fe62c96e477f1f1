"""TrainConfig.optimizer ("adamw" / "sgd") and TrainConfig.displacement (distance of the
parameters from where the runs started, at every eval)."""

import dataclasses

import jax
import numpy as np
import pytest

from toymodels.analyses import config_hash
from toymodels.checkpoint import Checkpointer
from toymodels.config import ConfigError
from toymodels.fit import fit
from toymodels.model import TransformerConfig
from toymodels.tasks import make_task
from toymodels.train import Trainer
from toymodels.trainconfig import REPR_LATER_FIELDS, TrainConfig

TASKS = {"m": make_task("markov", vocab_size=8, length=8)}
M = TransformerConfig(n_layers=1, d_model=16, n_heads=2, vocab_size=8, max_seq_len=8)
BASE = TrainConfig(steps=1, batch_size=8, n_evals=1, lr=1e-3, weight_decay=0.0, warmup_steps=0,
                   lr_schedule="constant")


class _Killed(Exception):
    pass


def _step(**kw):
    """Every parameter's change after one step, divided by lr, flattened."""
    trainer = Trainer(M, dataclasses.replace(BASE, **kw), TASKS)
    runs = trainer.runs(seeds=[0])
    start = trainer.init(runs)
    before = [np.asarray(x) for x in jax.tree.leaves(start.params)]
    after = trainer.train(runs, start, progress=False).state.params
    return np.concatenate([(np.asarray(a) - b).ravel() for a, b in zip(jax.tree.leaves(after), before)]) / BASE.lr


def test_sgd_steps_along_the_gradient_and_adam_by_its_sign():
    adam, sgd = _step(), _step(optimizer="sgd")
    moved = (np.abs(adam) > 0.5) & (np.abs(sgd) > 1e-6)
    assert moved.sum() > 100
    np.testing.assert_array_equal(np.sign(adam[moved]), np.sign(sgd[moved]))   # both go down the gradient
    np.testing.assert_allclose(np.abs(adam[moved]), 1.0, atol=0.02)   # Adam's first step: g / (|g| + eps)
    assert np.std(np.abs(sgd[moved])) > 0.05 * np.mean(np.abs(sgd[moved]))  # SGD's: g itself, sizes vary


def test_sgd_lowers_the_loss():
    trainer = Trainer(M, dataclasses.replace(BASE, steps=200, n_evals=2, lr=0.5, optimizer="sgd"), TASKS)
    loss = trainer.train(trainer.runs(seeds=[0]), progress=False).history["m"]["loss"][0]
    assert loss[-1] < loss[0] - 0.1


def test_displacement_of_weight_decay_alone_is_the_shrinkage():
    """objective none: theta_t = (1 - lr wd)^t theta_0, so ||theta_t - theta_0|| = (1 - (1 - lr wd)^t) ||theta_0||."""
    lr, wd = 1e-2, 0.5
    cfg = dataclasses.replace(BASE, steps=40, n_evals=4, lr=lr, weight_decay=wd, objective="none",
                              displacement=True)
    trainer = Trainer(M, cfg, TASKS)
    runs = trainer.runs(seeds=[0, 1])
    start = trainer.init(runs)
    norm0 = np.sqrt(sum(np.sum(np.asarray(x).reshape(2, -1) ** 2, 1) for x in jax.tree.leaves(start.params)))
    res = trainer.train(runs, start, progress=False)
    want = (1 - (1 - lr * wd) ** res.eval_steps)[None, :] * norm0[:, None]
    np.testing.assert_allclose(res.history["train"]["displacement"], want, rtol=1e-4, atol=1e-6)
    assert res.history["train"]["displacement"][:, 0].tolist() == [0.0, 0.0]


def test_displacement_resumes_to_the_uninterrupted_numbers(tmp_path):
    cfg = dataclasses.replace(BASE, steps=20, batch_size=4, n_evals=4, chunk_steps=5, displacement=True)
    trainer = Trainer(M, cfg, TASKS)
    runs = trainer.runs(seeds=[0, 1])
    straight = fit(trainer, runs, tmp_path / "a", progress=False)
    ckpt = Checkpointer(tmp_path / "b", trainer.describe(runs))

    def killed_at_10(state, log):
        if state.step == 10:
            ckpt.save(state, log)
            raise _Killed
    with pytest.raises(_Killed):
        trainer.train(runs, progress=False, on_chunk=killed_at_10)
    ckpt.close()
    resumed = fit(trainer, runs, tmp_path / "b", progress=False)
    d = straight.history["train"]["displacement"]
    assert np.all(d[:, 1:] > 0)
    np.testing.assert_array_equal(d, resumed.history["train"]["displacement"])


def test_bad_optimizer_and_a_resume_without_its_origin_are_refused():
    with pytest.raises(ConfigError, match=r"optimizer.*adamw.*sgd"):
        TrainConfig(optimizer="adam")
    trainer = Trainer(M, dataclasses.replace(BASE, steps=4, displacement=True), TASKS)
    runs = trainer.runs(seeds=[0])
    mid = trainer.init(runs)._replace(step=2)
    with pytest.raises(ConfigError, match="origin"):
        trainer.train(runs, mid, progress=False)


def test_new_fields_at_their_defaults_leave_the_saved_config_as_before():
    d = TrainConfig().as_dict()
    assert "optimizer" not in d and "displacement" not in d
    assert TrainConfig(optimizer="sgd").as_dict()["optimizer"] == "sgd"


def test_new_fields_at_their_defaults_leave_the_repr_and_so_every_analysis_cache_key_as_before():
    """Analysis caches hash configs by repr: a field added later must not change it at its default."""
    r = repr(TrainConfig(steps=7))
    assert not [f for f in REPR_LATER_FIELDS if f in r] and "trainable_rows" in REPR_LATER_FIELDS
    assert r.startswith("TrainConfig(steps=7, batch_size=64,") and r.endswith("precision='fp32')")
    assert repr(TrainConfig(optimizer="sgd", displacement=True)).endswith("optimizer='sgd', displacement=True)")
    assert config_hash(TrainConfig()) != config_hash(TrainConfig(optimizer="sgd"))
