import dataclasses

import jax
import numpy as np
import pytest

from toymodels.config import ConfigError
from toymodels.dictionaries import DictConfig
from toymodels.joint import JointConfig, train_joint
from toymodels.model import TransformerConfig
from toymodels.params import model_params
from toymodels.tasks import make_task
from toymodels.train import Trainer
from toymodels.trainconfig import TrainConfig

TASK = make_task("sort", length=4, n_symbols=5)
MODEL = TransformerConfig(n_layers=2, d_model=16, n_heads=2, vocab_size=6, max_seq_len=8)
TRAIN = TrainConfig(steps=60, batch_size=32, lr=3e-3, n_evals=2, chunk_steps=25, weight_decay=0.01, warmup_steps=5)
DICT = DictConfig(d_in=16, d_sae=32, k=2, lr=3e-3)


def test_coeff_zero_trains_the_model_exactly_as_the_trainer_does():
    # the dictionaries learn alongside, but their gradient never reaches the model
    res = train_joint(MODEL, TRAIN, {"sort": TASK}, JointConfig(DICT, "shared"), seeds=(3,), coeffs=(0.0,))
    trainer = Trainer(MODEL, dataclasses.replace(TRAIN, seed=3), {"sort": TASK})
    ref = trainer.train(progress=False)
    ours, theirs = model_params(res.models[0]), model_params(trainer.model(ref.state, 0))
    assert max(float(np.abs(ours[k] - theirs[k]).max()) for k in ours) < 1e-5
    np.testing.assert_allclose(res.history["loss"][:, 0], ref.history["sort"]["loss"][0], rtol=1e-5, atol=1e-6)
    assert list(res.history["step"]) == list(ref.eval_steps)


def test_the_joint_loss_makes_the_residual_stream_easier_to_reconstruct():
    tcfg = dataclasses.replace(TRAIN, steps=150, chunk_steps=75)
    res = train_joint(MODEL, tcfg, {"sort": TASK}, JointConfig(DICT, "per_block"), seeds=(0,), coeffs=(0.0, 3.0))
    fvu = res.history["fvu"][-1]           # (runs, blocks) at the last eval
    assert fvu.shape == (2, 2) and np.isfinite(fvu).all()
    assert fvu[1].mean() < 0.7 * fvu[0].mean()
    assert res.coeffs == [0.0, 3.0] and len(res.dictionaries[0]) == 2   # one dictionary per block
    l0 = res.history["l0"][-1]
    assert np.all(l0 <= DICT.k + 1e-6)     # topk keeps at most k latents per row


def test_shared_layout_has_one_dictionary_and_runs_are_independent():
    res = train_joint(MODEL, TRAIN, {"sort": TASK}, JointConfig(DICT, "shared"), seeds=(0, 1), coeffs=(0.0, 1.0))
    assert [len(d) for d in res.dictionaries] == [1] * 4 and res.seeds == [0, 0, 1, 1]
    solo = train_joint(MODEL, TRAIN, {"sort": TASK}, JointConfig(DICT, "shared"), seeds=(1,), coeffs=(1.0,))
    a, b = model_params(res.models[3]), model_params(solo.models[0])
    assert max(float(np.abs(a[k] - b[k]).max()) for k in a) < 1e-5
    np.testing.assert_allclose(res.dictionaries[3][0]["W_dec"], solo.dictionaries[0][0]["W_dec"], atol=1e-5)


@pytest.mark.parametrize("change, match", [
    (dict(tcfg=dataclasses.replace(TRAIN, myopic=True)), "myopic"),
    (dict(jcfg=JointConfig(dataclasses.replace(DICT, d_in=8))), "d_model"),
    (dict(coeffs=(-1.0,)), "coeff"),
    (dict(coeffs=()), "non-empty"),
])
def test_bad_settings_are_refused_before_compiling(change, match):
    kw = dict(tcfg=TRAIN, jcfg=JointConfig(DICT), coeffs=(0.0,))
    kw.update(change)
    with pytest.raises(ConfigError, match=match):
        train_joint(MODEL, kw["tcfg"], {"sort": TASK}, kw["jcfg"], coeffs=kw["coeffs"])
    with pytest.raises(ConfigError, match="layout"):
        JointConfig(DICT, layout="crosscoder")
    with pytest.raises(ConfigError, match="dictionary"):
        JointConfig("topk")
    assert jax.devices()
