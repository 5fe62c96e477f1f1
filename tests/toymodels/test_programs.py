import jax
import jax.numpy as jnp
import numpy as np

from toymodels.model import TransformerConfig
from toymodels.programs import clear_program_caches, lr_factor, programs_built, sample_mixture
from toymodels.tasks import make_task
from toymodels.train import Trainer
from toymodels.trainconfig import TrainConfig

MODEL = TransformerConfig(n_layers=1, d_model=32, n_heads=2, vocab_size=16, max_seq_len=16)
MARKOV = make_task("markov", vocab_size=16, length=16)


def _max_param_diff(a, b):
    return max(float(jnp.abs(x - y).max()) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_cosine_schedule_after_warmup():
    tcfg = TrainConfig(steps=1000, lr_schedule="cosine", warmup_steps=10)
    f = [float(lr_factor(tcfg, jnp.int32(s))) for s in (0, 9, 10, 505, 1000)]
    np.testing.assert_allclose(f, [0.1, 1.0, 1.0, 0.5, 0.0], atol=1e-6)
    assert float(lr_factor(TrainConfig(), jnp.int32(500))) == 1.0


def test_sample_mixture_follows_probs():
    copy = make_task("copy", length=3, n_symbols=4)        # vocab 0..4, seq 6
    parity = make_task("parity", length=3)                 # seq 4, padded to 6
    probs = jnp.asarray([0.0, 1.0])
    b = sample_mixture([copy, parity], probs, jax.random.key(0), 64, 6)
    assert b.inputs.shape == (64, 6)
    np.testing.assert_array_equal(np.asarray(b.mask[:, 4:]), 0.0)   # padding is never scored
    np.testing.assert_array_equal(np.asarray(b.mask.sum(1)), 1.0)   # parity scores one token
    half = sample_mixture([copy, parity], jnp.asarray([0.5, 0.5]), jax.random.key(1), 2000, 6)
    frac_copy = float((half.mask.sum(1) == 3).mean())
    assert 0.45 < frac_copy < 0.55


def test_map_and_vmap_over_runs_agree():
    trainer = Trainer(MODEL, TrainConfig(steps=30, batch_size=8, n_evals=1), {"markov": MARKOV})
    runs = trainer.runs(seeds=[0, 1, 2], lr=[1e-3, 3e-3, 2e-3])
    params = {}
    for mode in ("map", "vmap"):
        state = trainer.init(runs)     # a chunk donates its input buffers: a fresh state each time
        params[mode], _, _ = trainer.programs(runs, execution=mode).chunk(state.params, state.opt, runs, None, 0, 30)
    assert _max_param_diff(params["map"], params["vmap"]) <= 1e-5


def test_runs_differing_only_in_per_run_values_share_one_program():
    clear_program_caches()
    trainer = Trainer(MODEL, TrainConfig(steps=2, n_evals=1), {"markov": MARKOV})
    first = trainer.programs(trainer.runs(seeds=[0, 1], lr=[1e-3, 2e-3]))
    other = Trainer(MODEL, TrainConfig(steps=2, n_evals=1, lr=5e-3, seed=4), {"markov": MARKOV})
    assert other.programs(other.runs(seeds=[2, 3])) is first
    assert programs_built() == 1
    clear_program_caches()
    assert programs_built() == 0
    assert trainer.programs(trainer.runs(seeds=[0, 1])) is not first   # rebuilt after a clear
