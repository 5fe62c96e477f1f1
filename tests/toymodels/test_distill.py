"""Distillation (objective='distill') and noised copies (init_noise) of a trained model."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from toymodels.config import ConfigError
from toymodels.model import TransformerConfig
from toymodels.programs import distill_losses
from toymodels.tasks import make_task
from toymodels.tasks.base import masked_mean
from toymodels.train import Trainer
from toymodels.trainconfig import TrainConfig

M2 = TransformerConfig(n_layers=2, d_model=16, n_heads=2, vocab_size=8, max_seq_len=8)
COPY = make_task("copy", length=3, n_symbols=7)
DISTILL = TrainConfig(steps=200, batch_size=32, lr=3e-3, weight_decay=0.0, n_evals=2, objective="distill")


def _teacher(seeds=(0, 1), steps=300):
    trainer = Trainer(M2, dataclasses.replace(DISTILL, objective="data", steps=steps), {"copy": COPY})
    return trainer.train(trainer.runs(seeds=list(seeds)), progress=False).state.params


def test_an_identical_copy_has_zero_distillation_loss_and_gradient():
    trainer = Trainer(M2, DISTILL, {"copy": COPY})
    runs = trainer.runs(seeds=[0])
    params = trainer.init(runs).params
    model = trainer.model(trainer.init(runs), 0)
    graphdef, own = nnx.split(model, nnx.Param)
    batch = trainer.eval_sets()["copy"]

    def loss(p):
        target = jax.lax.stop_gradient(nnx.merge(graphdef, own)(batch.inputs))
        return masked_mean(distill_losses(nnx.merge(graphdef, p)(batch.inputs), target), batch.mask)

    value, grads = jax.value_and_grad(loss)(own)
    assert abs(float(value)) < 1e-6
    assert max(float(jnp.abs(g).max()) for g in jax.tree.leaves(grads)) < 1e-6
    # and through the compiled training step: the copy's first training loss is ~0 (later steps
    # are not: Adam normalises the float-noise gradient into steps of size ~lr)
    one = Trainer(M2, dataclasses.replace(DISTILL, steps=1, n_evals=1), {"copy": COPY})
    res = one.train(runs, one.state_from_params(params, runs), teacher=params, progress=False)
    assert float(res.train_loss.max()) < 1e-6


def test_distillation_teaches_a_fresh_student_the_teachers_function():
    teacher = _teacher()
    trainer = Trainer(M2, DISTILL, {"copy": COPY})
    runs = trainer.runs(seeds=[7, 8])   # other seeds: an independent init
    with pytest.raises(ConfigError, match="needs teacher"):
        trainer.train(runs, progress=False)
    res = trainer.train(runs, teacher=teacher, progress=False)
    acc = res.history["copy"]["acc"]
    assert (acc[:, 0] < 0.4).all() and (acc[:, -1] > 0.9).all()
    # the same student with the data objective and no teacher is refused a teacher
    data = Trainer(M2, dataclasses.replace(DISTILL, objective="data"), {"copy": COPY})
    with pytest.raises(ConfigError, match="takes no teacher"):
        data.train(runs, teacher=teacher, progress=False)


def test_init_noise_interpolates_between_the_copy_and_a_fresh_init():
    teacher = _teacher(steps=50)
    base = Trainer(M2, DISTILL, {"copy": COPY})
    runs = base.runs(seeds=[0, 1])
    fresh = base.init(runs).params
    for alpha in (0.0, 0.3, 1.0):
        got = Trainer(M2, dataclasses.replace(DISTILL, init_noise=alpha), {"copy": COPY}
                      ).state_from_params(teacher, runs).params
        for g, t, f in zip(*(jax.tree.leaves(x) for x in (got, teacher, fresh))):
            np.testing.assert_allclose(g, (1 - alpha) * t + alpha * f, rtol=1e-6, atol=1e-7)


def test_bad_distillation_configs_are_refused():
    with pytest.raises(ConfigError, match="init_noise"):
        TrainConfig(init_noise=1.5)
    with pytest.raises(ConfigError, match="objective"):
        TrainConfig(objective="teacher")
    with pytest.raises(ConfigError, match="not both"):
        TrainConfig(objective="distill", context="teacher")
    vec = make_task("wu_regression")
    vcfg = TransformerConfig(n_layers=1, d_model=16, n_heads=2, input_kind="vectors", output_kind="vectors",
                             d_input=vec.d_input, d_output=vec.d_output, max_seq_len=vec.seq_len)
    with pytest.raises(ConfigError, match="xent"):
        Trainer(vcfg, DISTILL, {"r": vec})
    assert "objective" not in TrainConfig().as_dict() and "init_noise" not in TrainConfig().as_dict()
    assert TrainConfig(objective="distill").as_dict()["objective"] == "distill"
