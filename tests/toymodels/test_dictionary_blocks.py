import dataclasses

import jax
import numpy as np
import pytest

from toymodels.analysis.features import mean_max_cosine
from toymodels.dictionaries import DictConfig, train_dictionaries
from toymodels.dictionary_blocks import (block_activations, block_stream, block_features, block_truth, crosscoder_rows,
                                         latent_block_stats, layout_metrics, shared_rows, split_blocks, union_truth)
from toymodels.hooks import forward
from toymodels.model import TransformerConfig, init_model
from toymodels.tasks import make_task

TASK = make_task("sort", length=4, n_symbols=5)
MODEL = TransformerConfig(n_layers=3, d_model=8, n_heads=2, vocab_size=6, max_seq_len=8)
D, F = 16, 32
CFG = DictConfig(d_in=D, d_sae=F, kind="topk", k=3, lr=1e-2, steps=600, batch_size=128, seed=0)


def test_block_activations_are_every_blocks_stream_of_the_same_inputs():
    model = init_model(MODEL, 0)
    x = block_activations(model, TASK.sample, jax.random.key(2), 100, batch_size=8)
    assert x.shape == (3, 100, 8)
    inputs = jax.jit(TASK.sample, static_argnums=1)(jax.random.fold_in(jax.random.key(2), 0), 8).inputs
    _, cache = forward(model, inputs, [f"blocks.{b}.resid_post" for b in range(3)])
    for b in range(3):   # the first batch's rows, block by block
        np.testing.assert_array_equal(x[b, :64], np.asarray(cache[f"blocks.{b}.resid_post"]).reshape(-1, 8))
    np.testing.assert_array_equal(block_stream(model, inputs), x[:, :64])
    with pytest.raises(ValueError, match="site"):
        block_activations(model, TASK.sample, jax.random.key(2), 10, site="attn.out")
    with pytest.raises(ValueError, match="n_inputs"):
        block_activations(model, TASK.sample, jax.random.key(2), 0)
    # each block's input stream is the previous block's output, drawn from the same inputs
    pre = block_activations(model, TASK.sample, jax.random.key(2), 100, site="resid_pre", batch_size=8)
    np.testing.assert_allclose(pre[1:], x[:-1], rtol=1e-6, atol=1e-6)


def test_resid_mid_needs_an_mlp():
    attn_only = init_model(dataclasses.replace(MODEL, n_layers=1, d_mlp=0), 0)
    with pytest.raises(ValueError, match="resid_mid"):
        block_activations(attn_only, TASK.sample, jax.random.key(2), 10, site="resid_mid")


def test_row_layouts():
    x = np.random.default_rng(0).normal(size=(3, 5, 4)).astype(np.float32)
    s, c = shared_rows(x), crosscoder_rows(x)
    assert s.shape == (15, 4) and c.shape == (5, 12)
    np.testing.assert_array_equal(s[5:10], x[1])
    for b in range(3):
        np.testing.assert_array_equal(c[:, 4 * b:4 * (b + 1)], x[b])
    W = np.arange(2 * 12).reshape(2, 12)
    np.testing.assert_array_equal(split_blocks(W, 3)[1], W[:, 4:8])
    with pytest.raises(ValueError, match="x_LND"):
        shared_rows(x[0])
    with pytest.raises(ValueError, match="n_blocks"):
        split_blocks(W, 5)


@pytest.fixture(scope="module")
def one_block():
    bf = block_features(0, F, D, 1, p=0.08, magnitude_spread=0.3)
    x, _ = bf.sample(jax.random.key(1), 8192)
    return bf, np.asarray(x)


def test_a_shared_dictionary_over_one_block_is_a_per_block_one(one_block):
    bf, x = one_block
    cfg = dataclasses.replace(CFG, steps=100)
    shared = train_dictionaries(shared_rows(x), [cfg])[0].params
    per = train_dictionaries(x[0], [cfg])[0].params
    for n in per:
        np.testing.assert_array_equal(np.asarray(shared[n]), np.asarray(per[n]))
    cross = train_dictionaries(crosscoder_rows(x), [cfg])[0].params
    m = [layout_metrics(p, cfg, x, arm)[0] for p, arm in (([per], "per_block"), (shared, "shared"),
                                                         (cross, "crosscoder"))]
    assert m[0] == m[1] == m[2]
    with pytest.raises(ValueError, match="layout"):
        layout_metrics(shared, cfg, x, "diagonal")


def test_an_exact_dictionary_explains_all_variance():
    x = np.abs(np.random.default_rng(1).normal(size=(2, 64, 4))).astype(np.float32)
    cfg = DictConfig(d_in=4, d_sae=6, kind="relu")   # two spare latents that never fire
    params = {"W_enc": np.eye(4, 6, dtype=np.float32), "b_enc": np.zeros(6, np.float32),
              "W_dec": np.eye(6, 4, dtype=np.float32), "b_dec": np.zeros(4, np.float32)}
    for row in layout_metrics(params, cfg, x, "shared"):
        assert abs(row["explained_variance"] - 1) < 1e-6 and row["mse"] < 1e-12
    cross = dataclasses.replace(cfg, d_in=8, d_sae=8)
    eye8 = {"W_enc": np.eye(8, dtype=np.float32), "b_enc": np.zeros(8, np.float32),
            "W_dec": np.eye(8, dtype=np.float32), "b_dec": np.zeros(8, np.float32)}
    rows = layout_metrics(eye8, cross, x, "crosscoder")
    assert rows[0]["l0"] == rows[1]["l0"] and all(abs(r["explained_variance"] - 1) < 1e-6 for r in rows)


def test_block_features_drift_birth_and_shared_coefficients():
    same = block_features(0, F, D, 3)
    np.testing.assert_array_equal(same.directions_LFD[0], same.directions_LFD[2])
    assert same.present_LF.all()
    turned = block_features(0, F, D, 3, drift=1.0, born=0.25)
    cos = np.abs((turned.directions_LFD[0] * turned.directions_LFD[2]).sum(1))
    assert cos.max() < 1e-6
    p = turned.present_LF
    assert (p[1:] >= p[:-1]).all() and p[-1].all() and p[0].sum() == F - 8
    x, c = turned.sample(jax.random.key(0), 500)
    for b in range(3):
        np.testing.assert_allclose(x[b], (np.asarray(c) * p[b][None]) @ turned.directions_LFD[b], atol=1e-5)
    noisy = block_features(0, F, D, 3, drift=0.5, born=0.25, noise_std=0.1)
    xn, cn = noisy.sample(jax.random.key(0), 500)
    noise = np.stack([xn[b] - (np.asarray(cn) * noisy.present_LF[b][None]) @ noisy.directions_LFD[b]
                      for b in range(3)])
    assert 0.08 < noise.std() < 0.12 and abs(np.corrcoef(noise[0].ravel(), noise[1].ravel())[0, 1]) < 0.1
    assert union_truth(turned).shape == (p.sum(), D) and block_truth(turned, 0).shape == (F - 8, D)
    for bad in (dict(drift=1.5), dict(born=1.0)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            block_features(0, F, D, 3, **bad)


def test_per_block_dictionaries_recover_their_blocks_and_a_shared_one_needs_more_latents():
    bf = block_features(0, F, D, 2, drift=1.0, p=0.08, magnitude_spread=0.3)
    x, _ = bf.sample(jax.random.key(1), 8192)
    x = np.asarray(x)
    for b in range(2):
        params = train_dictionaries(x[b], [CFG])[0].params
        assert mean_max_cosine(params["W_dec"], block_truth(bf, b)) >= 0.9
    small, big = train_dictionaries(shared_rows(x), [CFG, dataclasses.replace(CFG, d_sae=2 * F)])
    assert mean_max_cosine(big.params["W_dec"], union_truth(bf)) > mean_max_cosine(small.params["W_dec"],
                                                                                   union_truth(bf)) + 0.05


def test_latent_block_stats():
    x = np.abs(np.random.default_rng(2).normal(size=(1, 256, 4))).astype(np.float32)
    x3 = np.repeat(x, 3, 0)   # every block the same stream
    cfg = DictConfig(d_in=4, d_sae=6, kind="relu")
    rng = np.random.default_rng(3)
    params = {"W_enc": rng.normal(size=(4, 6)).astype(np.float32), "b_enc": np.zeros(6, np.float32),
              "W_dec": rng.normal(size=(6, 4)).astype(np.float32), "b_dec": np.zeros(4, np.float32)}
    st = latent_block_stats(params, cfg, x3)
    assert st["freq_LS"].shape == (3, 6) and st["cofire_SLL"].shape == (6, 3, 3)
    assert ((st["freq_LS"] >= 0) & (st["freq_LS"] <= 1)).all()
    ok = ~np.isnan(st["cofire_SLL"])
    assert ok.any() and np.allclose(st["cofire_SLL"][ok], 1.0)
    params["b_enc"][5] = -100.0   # latent 5 never fires: its correlations are undefined
    st = latent_block_stats(params, cfg, x3)
    assert np.isnan(st["cofire_SLL"][5]).all() and (st["freq_LS"][:, 5] == 0).all()
    assert (st["mean_act_LS"][:, 5] == 0).all() and (st["mean_act_LS"] >= 0).all()
    live = ~np.isnan(st["cofire_SLL"][:, 0, 0])
    assert live.any() and (st["cofire_SLL"][live][:, [0, 1, 2], [0, 1, 2]] == 1.0).all()


def test_latent_block_stats_on_different_streams():
    rng = np.random.default_rng(4)
    x = np.abs(rng.normal(size=(2, 512, 3))).astype(np.float32)
    x[1, :, 0] = rng.permutation(x[0, :, 0])   # block 1's coordinate 0 is independent of block 0's
    cfg = DictConfig(d_in=3, d_sae=3, kind="relu")
    eye = {"W_enc": np.eye(3, dtype=np.float32), "b_enc": np.zeros(3, np.float32),
           "W_dec": np.eye(3, dtype=np.float32), "b_dec": np.zeros(3, np.float32)}
    st = latent_block_stats(eye, cfg, x)
    np.testing.assert_allclose(st["cofire_SLL"][0, 0, 1], np.corrcoef(x[0, :, 0], x[1, :, 0])[0, 1], rtol=1e-5)
    np.testing.assert_allclose(st["mean_act_LS"], x.mean(1), rtol=1e-5)   # x > 0: every latent always fires
    assert (st["freq_LS"] == 1).all()


def _eye(n: int) -> dict:
    return {"W_enc": np.eye(n, dtype=np.float32), "b_enc": np.zeros(n, np.float32),
            "W_dec": np.eye(n, dtype=np.float32), "b_dec": np.zeros(n, np.float32)}


@pytest.mark.parametrize("call,name", [
    (lambda: layout_metrics(_eye(4), DictConfig(d_in=4, d_sae=4, kind="relu"), np.ones((2, 3, 4)), "crosscoder"),
     "d_in"),
    (lambda: layout_metrics([_eye(4)], DictConfig(d_in=4, d_sae=4, kind="relu"), np.ones((2, 3, 4)), "per_block"),
     "per_block"),
    (lambda: layout_metrics(_eye(3), DictConfig(d_in=4, d_sae=4, kind="relu"), np.ones((2, 3, 4)), "shared"),
     "params"),
    (lambda: layout_metrics(_eye(4), DictConfig(d_in=4, d_sae=4, kind="relu"), np.ones((3, 4)), "shared"), "x_LND"),
    (lambda: latent_block_stats(_eye(4), DictConfig(d_in=4, d_sae=4, kind="relu"), np.ones((2, 3, 5))), "d_in"),
    (lambda: block_features(-1, F, D, 3), "seed"),
    (lambda: block_features(0, F, D, 0), "n_blocks"),
    (lambda: block_features(0, F, D, 1, born=0.5), "born"),
    (lambda: block_features(0, F, 1, 2, drift=0.5), "drift"),
    (lambda: block_features(0, 0, D, 2), "n_features"),
    (lambda: block_truth(block_features(0, F, D, 2), 2), "block"),
])
def test_bad_inputs_raise_naming_the_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()
