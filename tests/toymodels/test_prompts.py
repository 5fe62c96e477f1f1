"""Soft prompts over a frozen model: frozen weights, elicitation, ensembles, bounds, baselines."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from toymodels.config import ConfigError
from toymodels.hooks import forward
from toymodels.model import Transformer, TransformerConfig
from toymodels.prompts import (
    PromptConfig,
    embed_norm,
    hard_prompt_search,
    perturbation_sensitivity,
    prompt_grad_norm,
    prompt_score,
    train_prompts,
)
from toymodels.tasks.base import Batch

T, V, TARGET = 6, 8, 3
POSITIONS = (0, 1, 2)
CFG = TransformerConfig(n_layers=1, d_model=16, n_heads=2, vocab_size=V, max_seq_len=T)


def random_model(seed, std=1.0):
    """A random-init model whose matrices NumPy draws with standard deviation ``std``."""
    # NumPy, not init_model: its eager draws compile one XLA program per shape (~4 s on one core).
    # std 1, not 0.02: at 0.02 a 1-layer random model's logits barely depend on its inputs, so no
    # prompt could move them and elicitation would measure nothing.
    model = Transformer(CFG, None)
    rng = np.random.default_rng(seed)
    nnx.update(model, jax.tree.map(lambda x: jnp.asarray(rng.normal(0.0, std, x.shape), jnp.float32)
                                   if x.ndim >= 2 else x, nnx.state(model, nnx.Param)))
    return model


def always_target(key, batch_size):
    """Random tokens; the behaviour is answering TARGET at the last three positions."""
    # tokens from a hash of the key's bits: threefry's randint costs ~0.5 s of XLA compile per use
    d = jax.random.key_data(key).astype(jnp.uint32)
    h_BT = jnp.arange(batch_size * T, dtype=jnp.uint32).reshape(batch_size, T) * jnp.uint32(2654435761) + d[0]
    h_BT = (h_BT ^ (h_BT >> 15) ^ d[1]) * jnp.uint32(0x45D9F3B)
    x_BT = ((h_BT ^ (h_BT >> 16)) % V).astype(jnp.int32)
    mask_BT = jnp.broadcast_to((jnp.arange(T) >= 3).astype(jnp.float32), (batch_size, T))
    return Batch(x_BT, jnp.full((batch_size, T), TARGET, jnp.int32), mask_BT)


draw = jax.jit(always_target, static_argnums=1)


def own_metrics(model, batch, inputs=None):
    """The frozen model's acc, exact and loss through the ordinary forward pass, scored in NumPy."""
    logits_BTV, _ = forward(model, batch.inputs if inputs is None else inputs)
    logits_BTV = np.asarray(logits_BTV, np.float64)
    y_BT, m_BT = np.asarray(batch.targets), np.asarray(batch.mask) > 0
    z_BTV = logits_BTV - logits_BTV.max(-1, keepdims=True)
    logp_BTV = z_BTV - np.log(np.exp(z_BTV).sum(-1, keepdims=True))
    nll_BT = -np.take_along_axis(logp_BTV, y_BT[..., None], -1)[..., 0]
    ok_BT = logits_BTV.argmax(-1) == y_BT
    return {"acc": ok_BT[m_BT].mean(), "exact": (ok_BT | ~m_BT).all(-1).mean(), "loss": nll_BT[m_BT].mean()}


def _cfg(**kw):
    return PromptConfig(**{"positions": POSITIONS, "steps": 40, "lr": 0.1, "batch_size": 32, **kw})


@pytest.fixture(scope="module")
def trained():
    model = random_model(0)
    before = [np.array(x) for x in jax.tree.leaves(nnx.state(model))]
    ev = draw(jax.random.key(99), 128)
    cfgs = [_cfg(n_tokens=0), _cfg(n_tokens=3), _cfg(n_tokens=3, norm_bound=0.5, seed=1, lr=0.2)]
    ensemble = train_prompts(model, always_target, cfgs, eval_batch=ev)
    alone = train_prompts(model, always_target, [cfgs[1]], eval_batch=ev)[0]
    return model, before, ev, ensemble, alone


def test_zero_tokens_change_nothing_and_weights_stay_frozen(trained):
    model, before, ev, ensemble, _ = trained
    own = own_metrics(model, ev)
    r0 = ensemble[0]
    for m in ("acc", "exact", "loss"):
        np.testing.assert_allclose(r0.score[m], own[m], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(r0.history[m], own[m], rtol=1e-6, atol=1e-7)
    # any vectors at all: with n_tokens 0 none of them reaches the model
    junk_PD = 100.0 * np.ones((len(POSITIONS), CFG.d_model), np.float32)
    assert prompt_score(model, ev, junk_PD, 0, POSITIONS) == pytest.approx(own, rel=1e-6, abs=1e-7)
    for b, a in zip(before, jax.tree.leaves(nnx.state(model))):
        np.testing.assert_array_equal(b, np.asarray(a))


def test_soft_prompt_elicits_the_behaviour(trained):
    model, _, ev, ensemble, _ = trained
    base, r3 = ensemble[0].score, ensemble[1]
    assert r3.score["acc"] > base["acc"] + 0.5
    assert r3.score["loss"] < base["loss"] - 1.0
    assert r3.history["loss"][-1] < r3.history["loss"][0]
    assert list(r3.history["step"]) == [0, 10, 20, 30, 40] and r3.train_loss.shape == (40,)
    # the returned prompt, patched in again, gives the reported score
    again = prompt_score(model, ev, r3.prompt_PD, 3, POSITIONS)
    assert again == pytest.approx(r3.score, rel=1e-5, abs=1e-6)


def test_ensemble_member_equals_the_run_alone(trained):
    _, _, _, ensemble, alone = trained
    # vmapped over 3 runs or 1, XLA sums in another order, and Adam amplifies those ulps step by
    # step (3e-4 after these 40 steps, 0.15 after 120): hence the few training steps
    np.testing.assert_allclose(ensemble[1].prompt_PD, alone.prompt_PD, rtol=1e-3, atol=2e-3)
    np.testing.assert_allclose(ensemble[1].train_loss, alone.train_loss, rtol=1e-3, atol=5e-4)
    assert ensemble[1].score == pytest.approx(alone.score, rel=1e-3, abs=1e-3)


def test_norm_bound_is_respected(trained):
    model, _, _, ensemble, _ = trained
    bounded, free = ensemble[2], ensemble[1]
    limit = bounded.cfg.norm_bound * embed_norm(model) + 1e-5
    assert np.all(np.linalg.norm(bounded.prompt_PD, axis=1) <= limit)
    assert np.linalg.norm(free.prompt_PD, axis=1).max() > limit   # the bound did bind


def test_zero_noise_is_bitwise_the_run_without_it(trained):
    model, _, ev, _, alone = trained
    # the same ensemble size as ``alone``: one program, so any difference would be the noise's
    r = train_prompts(model, always_target, [_cfg(n_tokens=3, noise=0.0)], eval_batch=ev)[0]
    np.testing.assert_array_equal(r.prompt_PD, alone.prompt_PD)
    np.testing.assert_array_equal(r.train_loss, alone.train_loss)
    assert r.score == alone.score


def test_training_noise_changes_the_prompt_deterministically(trained):
    model, _, ev, ensemble, alone = trained
    a, b = (train_prompts(model, always_target, [_cfg(n_tokens=3, noise=0.5)], eval_batch=ev)[0] for _ in range(2))
    np.testing.assert_array_equal(a.prompt_PD, b.prompt_PD)
    np.testing.assert_array_equal(a.train_loss, b.train_loss)
    assert not np.allclose(a.prompt_PD, alone.prompt_PD, atol=1e-3)
    assert a.score["acc"] > ensemble[0].score["acc"] + 0.5   # a noisy prompt still elicits the behaviour
    # the noise is in the training loss only: step 0 trains on another loss, but the eval of the
    # same initial prompt (history step 0) is the noiseless run's
    assert a.train_loss[0] != alone.train_loss[0]
    for m in ("acc", "exact", "loss"):
        assert a.history[m][0] == alone.history[m][0]


def _fd_slope(model, ev, p_PD, u_PD, eps=1e-2):
    """Central finite-difference derivative of the eval loss along u_PD, all three slots used."""
    up, down = (prompt_score(model, ev, p_PD + s * eps * u_PD, 3, POSITIONS)["loss"] for s in (1, -1))
    return (up - down) / (2 * eps)


def test_prompt_grad_norm_matches_finite_differences(trained):
    model, _, ev, ensemble, _ = trained
    p_PD = ensemble[0].prompt_PD.astype(np.float64)   # trained with n_tokens 0: still its initial vectors
    assert prompt_grad_norm(model, ev, p_PD, 0, POSITIONS) == 0.0
    assert prompt_grad_norm(model, ev, p_PD, 1, POSITIONS) > 0.0
    norm = prompt_grad_norm(model, ev, p_PD, 3, POSITIONS)
    u_PD = np.random.default_rng(0).normal(size=p_PD.shape)
    assert abs(_fd_slope(model, ev, p_PD, u_PD / np.linalg.norm(u_PD))) <= norm * 1.01
    # the gradient by finite differences, one coordinate at a time; along it the slope is the norm
    g_PD = np.zeros_like(p_PD)
    for i in np.ndindex(p_PD.shape):
        e_PD = np.zeros_like(p_PD)
        e_PD[i] = 1.0
        g_PD[i] = _fd_slope(model, ev, p_PD, e_PD)
    assert np.linalg.norm(g_PD) == pytest.approx(norm, rel=1e-2)
    assert _fd_slope(model, ev, p_PD, g_PD / np.linalg.norm(g_PD)) == pytest.approx(norm, rel=1e-2)


CANDIDATES = (1, 3, 5, 7)


def written(inputs_BT, tokens, at):
    """Inputs with tokens[i] in every row at position at[i]."""
    x_BT = np.array(inputs_BT)
    x_BT[:, list(at)] = np.asarray(tokens)[None]
    return jnp.asarray(x_BT)


def test_hard_prompt_search_single_slot_is_exhaustive():
    model = random_model(1)
    ev = draw(jax.random.key(5), 128)
    hp = hard_prompt_search(model, always_target, POSITIONS, 1, seed=3, eval_batch=ev, batch_size=128,
                            candidates=list(CANDIDATES))
    assert hp.tokens.shape == (1,) and int(hp.tokens[0]) in CANDIDATES
    # one slot, one sweep over every candidate: greedy is exhaustive, so it finds the best token
    search = draw(jax.random.key(3), 128)
    accs = [own_metrics(model, search, written(search.inputs, [v], [0]))["acc"] for v in CANDIDATES]
    assert hp.search_acc == pytest.approx(max(accs), abs=1e-6)
    assert accs[CANDIDATES.index(int(hp.tokens[0]))] == pytest.approx(max(accs), abs=1e-6)
    direct = own_metrics(model, ev, written(ev.inputs, hp.tokens, [0]))
    assert hp.score == pytest.approx(direct, rel=1e-5, abs=1e-6)


def test_hard_prompt_search_ends_coordinatewise_optimal():
    model = random_model(1)
    ev = draw(jax.random.key(5), 128)
    hp = hard_prompt_search(model, always_target, POSITIONS, 2, seed=4, eval_batch=ev, sweeps=4,
                            batch_size=128, candidates=list(CANDIDATES))
    assert hp.tokens.shape == (2,) and set(hp.tokens.tolist()) <= set(CANDIDATES)
    search = draw(jax.random.key(4), 128)
    assert own_metrics(model, search, written(search.inputs, hp.tokens, [0, 1]))["acc"] == pytest.approx(
        hp.search_acc, abs=1e-6)
    for slot in range(2):   # no single-slot change improves it
        for v in CANDIDATES:
            tokens = hp.tokens.copy()
            tokens[slot] = v
            assert own_metrics(model, search, written(search.inputs, tokens, [0, 1]))["acc"] <= hp.search_acc + 1e-6
    direct = own_metrics(model, ev, written(ev.inputs, hp.tokens, [0, 1]))
    assert hp.score == pytest.approx(direct, rel=1e-5, abs=1e-6)


def test_perturbation_at_scale_zero_is_the_unperturbed_score(trained):
    model, _, ev, ensemble, _ = trained
    p = ensemble[1].prompt_PD
    out = perturbation_sensitivity(model, ev, p, 3, POSITIONS, [0.0, 0.5, 2.0], jax.random.key(0), 4)
    assert out["acc"].shape == (3,) and list(out["scale"]) == [0.0, 0.5, 2.0]
    clean = prompt_score(model, ev, p, 3, POSITIONS)
    for m in ("acc", "exact", "loss"):
        assert out[m][0] == pytest.approx(clean[m], rel=1e-5, abs=1e-6)
    assert out["loss"][2] > out["loss"][0]   # a prompt pushed far off its vector loses the behaviour


@pytest.mark.parametrize("kw, field", [
    ({"positions": (0, 1), "n_tokens": 3}, "n_tokens"),
    ({"norm_bound": -1.0}, "norm_bound"),
    ({"positions": (0, 0)}, "positions"),
    ({"positions": ()}, "positions"),
    ({"init": "random"}, "init"),
    ({"lr": 0.0}, "lr"),
    ({"noise": -1.0}, "noise"),
])
def test_bad_config_names_the_field(kw, field):
    with pytest.raises(ConfigError, match=field):
        PromptConfig(**kw)


def test_bad_calls_name_the_field():
    model = random_model(0)
    with pytest.raises(ConfigError, match="positions"):   # T = 6 inputs
        train_prompts(model, always_target, [PromptConfig(positions=(1, 6), steps=1)])
    with pytest.raises(ConfigError, match="steps"):
        train_prompts(model, always_target, [PromptConfig(steps=1), PromptConfig(steps=2)])
    ev = draw(jax.random.key(0), 128)
    with pytest.raises(ConfigError, match="positions"):
        prompt_score(model, ev, np.zeros((1, CFG.d_model)), 1, (T,))
    with pytest.raises(ConfigError, match="candidates"):
        hard_prompt_search(model, always_target, (0,), 1, seed=0, eval_batch=ev, candidates=[V])


def test_hard_prompt_search_finds_a_planted_trigger():
    # a tiny model trained with a planted trigger (TRIG among the digits -> answer RESP); asked for
    # RESP on inputs without it, the search over the whole vocabulary writes TRIG at the slot
    from toymodels.tasks import make_task
    from toymodels.train import Trainer
    from toymodels.trainconfig import TrainConfig

    kw = dict(functions=("sort",), length=3, n_symbols=4)
    poisoned = make_task("backdoor", trigger="token", fraction=0.5, **kw)
    wanted = make_task("backdoor", trigger="none", fraction=1.0, **kw)   # no trigger, RESP scored
    cfg = TransformerConfig(n_layers=1, d_model=16, n_heads=2, vocab_size=poisoned.vocab.size,
                            max_seq_len=poisoned.seq_len)
    trainer = Trainer(cfg, TrainConfig(steps=300, batch_size=32, lr=1e-2, n_evals=1), {"mix": poisoned})
    model = trainer.model(trainer.train(progress=False).state, run=0)
    ev = wanted.sample(jax.random.key(1), 128, split="eval")
    assert prompt_score(model, ev, np.zeros((1, 16), np.float32), 0, (1,))["acc"] < 0.1
    hp = hard_prompt_search(model, wanted.sample, (1,), 1, seed=0, eval_batch=ev)
    assert int(hp.tokens[0]) == poisoned.trig_id and hp.score["acc"] > 0.9
