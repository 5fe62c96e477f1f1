import jax
import numpy as np

from toymodels.analysis.losses import position_losses
from toymodels.model import TransformerConfig, init_model
from toymodels.tasks import make_task
from toymodels.tasks.base import token_losses


def test_position_losses_are_the_masked_mean_per_position():
    task = make_task("sort", length=4, n_symbols=6)
    model = init_model(TransformerConfig(n_layers=1, d_model=16, n_heads=2, vocab_size=task.vocab.size,
                                         max_seq_len=task.seq_len), 0)
    batch = task.sample(jax.random.key(0), 8)
    loss_T, count_T = position_losses(model, batch, task.loss)
    per = np.asarray(token_losses(model(batch.inputs), batch.targets, task.loss))
    mask = np.asarray(batch.mask)
    np.testing.assert_array_equal(count_T, mask.sum(0))
    scored = mask.sum(0) > 0
    np.testing.assert_allclose(np.asarray(loss_T)[scored], (per * mask).sum(0)[scored] / mask.sum(0)[scored],
                               rtol=1e-5)
    assert np.all(np.asarray(loss_T)[~scored] == 0)
