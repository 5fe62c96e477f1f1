import jax
import jax.numpy as jnp
import numpy as np
import pytest

from toymodels.dictionaries import DictConfig, decode, encode, train_on_model
from toymodels.hooks import forward, patch, run_with_interventions
from toymodels.latent_attribution import ablated_logits, auroc, latent_attribution
from toymodels.model import TransformerConfig
from toymodels.tasks import make_task
from toymodels.train import Trainer
from toymodels.trainconfig import TrainConfig

TASK = make_task("sort", length=4, n_symbols=5)
MODEL = TransformerConfig(n_layers=2, d_model=16, n_heads=2, vocab_size=6, max_seq_len=8)
HOOK = "blocks.0.resid_post"
CFG = DictConfig(d_in=16, d_sae=32, k=3, lr=3e-3, steps=300, batch_size=128)


@pytest.fixture(scope="module")
def setup():
    trainer = Trainer(MODEL, TrainConfig(steps=200, batch_size=32, lr=3e-3, n_evals=1), {"sort": TASK})
    model = trainer.model(trainer.train(progress=False).state, 0)
    _, (d,) = train_on_model(model, HOOK, TASK.sample, [CFG], jax.random.key(0), 4096)
    batch = TASK.sample(jax.random.key(5), 64, split="eval")
    return model, d.params, batch


def _ablated_logits(model, params, batch, latent):
    """The model's logits with one latent of the spliced dictionary switched off (error kept)."""
    x = forward(model, batch.inputs, [HOOK])[1][HOOK]
    B, T, D = x.shape
    z = encode(params, x.reshape(-1, D), CFG)
    err = x.reshape(-1, D) - decode(params, z)
    value = (decode(params, z.at[:, np.asarray(latent)].set(0.0)) + err).reshape(B, T, D)
    return run_with_interventions(model, batch.inputs, {HOOK: patch(value)})


def test_a_model_against_itself_attributes_nothing(setup):
    model, params, batch = setup
    score, unsigned, kl = latent_attribution(model, forward(model, batch.inputs)[0], batch, HOOK, params, CFG)
    assert kl < 1e-6 and np.abs(score).max() < 1e-5 and np.abs(unsigned).max() < 1e-5 and score.shape == (CFG.d_sae,)


def test_the_latent_a_change_runs_through_ranks_first(setup):
    model, params, batch = setup
    x = forward(model, batch.inputs, [HOOK])[1][HOOK]
    z = np.asarray(encode(params, x.reshape(-1, 16), CFG))
    mass = np.abs(z).sum(0)
    for latent in np.argsort(-mass)[:3]:     # the three latents carrying the most activation
        other = _ablated_logits(model, params, batch, int(latent))
        score, unsigned, kl = latent_attribution(model, other, batch, HOOK, params, CFG)
        assert kl > 0 and int(np.argmax(score)) == latent and int(np.argmax(unsigned)) == latent
        assert (unsigned >= np.abs(score) - 1e-7).all()


def test_ablated_logits_switch_off_exactly_the_named_latents(setup):
    model, params, batch = setup
    np.testing.assert_allclose(ablated_logits(model, batch.inputs, HOOK, params, CFG, [4, 9]),
                               _ablated_logits(model, params, batch, [4, 9]), atol=1e-5)
    np.testing.assert_allclose(ablated_logits(model, batch.inputs, HOOK, params, CFG, []),
                               forward(model, batch.inputs)[0], atol=1e-4)


def test_bad_shapes_are_refused(setup):
    model, params, batch = setup
    with pytest.raises(ValueError, match="ft_logits_BTV"):
        latent_attribution(model, jnp.zeros((3, 3, 6)), batch, HOOK, params, CFG)
    with pytest.raises(ValueError, match="d_in"):
        latent_attribution(model, forward(model, batch.inputs)[0], batch, "blocks.0.attn.pattern", params, CFG)


def test_auroc_counts_ranks_and_ties():
    assert auroc([3, 2, 1, 0], [1, 1, 0, 0]) == 1.0
    assert auroc([0, 1, 2, 3], [1, 1, 0, 0]) == 0.0
    assert auroc([1, 1, 1, 1], [1, 0, 1, 0]) == 0.5
    assert np.isnan(auroc([1, 2], [0, 0]))
