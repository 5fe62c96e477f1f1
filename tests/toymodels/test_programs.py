import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from toymodels.config import ConfigError
from toymodels.model import TransformerConfig, abstract_model
from toymodels.params import param_paths
from toymodels.programs import clear_program_caches, lr_factor, param_masks, programs_built, sample_mixture
from toymodels.schedule import NEVER
from toymodels.tasks import make_task
from toymodels.train import Trainer
from toymodels.trainconfig import TrainConfig

MODEL = TransformerConfig(n_layers=1, d_model=32, n_heads=2, vocab_size=16, max_seq_len=16)
MARKOV = make_task("markov", vocab_size=16, length=16)
MATRICES = {"W_E", "W_pos", "W_U", "W_QKV", "W_O", "W_in", "W_out"}


@dataclasses.dataclass(frozen=True)
class _Unscored(type(MARKOV)):
    """Markov sequences with no scored position: every gradient is exactly zero."""
    name = "unscored"

    def sample(self, key, batch_size, split="train"):
        b = super().sample(key, batch_size, split)
        return b._replace(mask=jnp.zeros_like(b.mask))


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


def test_matrices_decay_masks_the_weight_matrices_and_embeddings_only():
    vectors = dataclasses.replace(MODEL, input_kind="vectors", d_input=2, output_kind="vectors", d_output=1)
    for cfg in (MODEL, vectors):
        abstract = abstract_model(cfg)[1]
        paths = param_paths(abstract)
        trained, decayed = param_masks(TrainConfig(decay="matrices", trainable="W_U"), abstract)
        assert [p for p, d in zip(paths, decayed) if d] == [p for p in paths if p.split(".")[-1] in MATRICES]
        assert [p for p, t in zip(paths, trained) if t] == ["W_U"]
        assert all(param_masks(TrainConfig(), abstract)[1])


@pytest.mark.parametrize("decay", ["all", "matrices"])
def test_with_zero_gradients_one_step_only_decays_the_chosen_parameters(decay):
    unscored = _Unscored(**dataclasses.asdict(MARKOV))
    trainer = Trainer(MODEL, TrainConfig(steps=1, batch_size=4, n_evals=1, lr=0.1, weight_decay=0.5, decay=decay),
                      {"u": unscored})
    runs = trainer.runs()
    # Random values everywhere: biases and LayerNorm biases start at 0, where decay is invisible.
    params = jax.tree.map(lambda x: jax.random.normal(jax.random.key(1), x.shape), trainer.init(runs).params)
    start = trainer.state_from_params(params, runs)
    got, _, _ = trainer.programs(runs).chunk(start.params, start.opt, runs, None, 0, 1)
    for path, p, g in zip(param_paths(params), jax.tree.leaves(params), jax.tree.leaves(got)):
        if decay == "all" or path.split(".")[-1] in MATRICES:
            np.testing.assert_allclose(g, p * (1 - 0.1 * 0.5), rtol=1e-6, err_msg=path)
        else:
            np.testing.assert_array_equal(g, p, err_msg=path)   # biases, LayerNorm: untouched


def test_matrices_decay_without_weight_decay_equals_all_decay_bit_for_bit():
    params = {}
    for decay in ("all", "matrices"):
        trainer = Trainer(MODEL, TrainConfig(steps=10, batch_size=8, n_evals=1, decay=decay), {"markov": MARKOV})
        state = trainer.init(runs := trainer.runs(seeds=[0, 0], weight_decay=[0.0, 0.3]))
        params[decay], _, _ = trainer.programs(runs).chunk(state.params, state.opt, runs, None, 0, 10)
    first = [lambda x, i=i: x[i] for i in (0, 1)]
    assert _max_param_diff(jax.tree.map(first[0], params["all"]), jax.tree.map(first[0], params["matrices"])) == 0
    assert _max_param_diff(jax.tree.map(first[1], params["all"]), jax.tree.map(first[1], params["matrices"])) > 1e-6


def test_chunk_until_stops_runs_alike_under_map_and_vmap():
    tcfg = TrainConfig(steps=30, batch_size=8, n_evals=1, stop_when="markov.loss<=2.45", stop_every=10)
    trainer = Trainer(MODEL, tcfg, {"markov": MARKOV})
    runs = trainer.runs(seeds=[0, 0, 0], lr=[3e-3, 1e-3, 3e-4])
    batch = trainer.eval_sets()["markov"]
    out = {}
    for mode in ("map", "vmap"):
        state = trainer.init(runs)
        out[mode] = trainer.programs(runs, execution=mode).chunk_until(
            state.params, state.opt, runs, None, 0, 30, jnp.full(3, NEVER, jnp.int32), batch)
    assert out["map"][3].tolist() == out["vmap"][3].tolist() == [10, 20, NEVER]
    assert _max_param_diff(out["map"][0], out["vmap"][0]) <= 1e-5
    state = trainer.init(runs)
    plain, _, _ = trainer.programs(runs, execution="map").chunk(state.params, state.opt, runs, None, 0, 30)
    run = [lambda x, i=i: x[i] for i in range(3)]
    # A run that never stops trains as without a criterion (up to the rounding of another compile).
    assert _max_param_diff(jax.tree.map(run[2], plain), jax.tree.map(run[2], out["map"][0])) <= 1e-6
    assert _max_param_diff(jax.tree.map(run[0], plain), jax.tree.map(run[0], out["map"][0])) > 1e-4
    assert Trainer(MODEL, TrainConfig(steps=30), {"markov": MARKOV}).programs(runs).chunk_until is None


def test_trainable_rows_train_only_those_rows_and_all_rows_equal_the_whole_parameter():
    tcfg = TrainConfig(steps=10, batch_size=8, n_evals=1, lr=1e-2, weight_decay=0.1, trainable="W_E")
    got = {}
    for rows in ((), (3, 5), tuple(range(MODEL.vocab_size))):
        trainer = Trainer(MODEL, dataclasses.replace(tcfg, trainable_rows=rows), {"markov": MARKOV})
        state = trainer.init(runs := trainer.runs(seeds=[0]))
        before = jax.tree.map(np.array, state.params)   # the chunk donates its input buffers
        got[rows], _, _ = trainer.programs(runs).chunk(state.params, state.opt, runs, None, 0, 10)
    for path, p, g in zip(param_paths(before), jax.tree.leaves(before), jax.tree.leaves(got[(3, 5)])):
        if path != "W_E":
            np.testing.assert_array_equal(g, p, err_msg=path)
            continue
        moved = np.any(np.asarray(g != p), axis=(0, 2))   # (runs, vocab, d_model): which rows moved
        assert moved.tolist() == [i in (3, 5) for i in range(MODEL.vocab_size)]
    assert _max_param_diff(got[()], got[tuple(range(MODEL.vocab_size))]) == 0


@pytest.mark.parametrize("tcfg, match", [
    (dict(trainable_rows=(3,)), r"needs trainable"),
    (dict(trainable="W_E", trainable_rows=(3, 3)), r"must not repeat a row"),
    (dict(trainable="W_E", trainable_rows=(-1,)), r"trainable_rows index=-1"),
    (dict(trainable="W_E", trainable_rows="3"), r"must be a sequence of row indices"),
])
def test_bad_trainable_rows_are_refused(tcfg, match):
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**tcfg)


def test_trainable_rows_past_a_parameter_are_refused_before_compiling():
    with pytest.raises(ConfigError, match=r"trainable_rows=\(16,\) reaches past W_E's 16 rows.*rows 0..15"):
        Trainer(MODEL, TrainConfig(trainable="W_E", trainable_rows=(16,)), {"markov": MARKOV})
