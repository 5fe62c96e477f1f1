import dataclasses

import jax
import numpy as np
import pytest

from toymodels.analysis.features import mean_max_cosine
from toymodels.dictionaries import DictConfig, train_dictionaries
from toymodels.dictionary_blocks import (block_activations, block_features, block_truth, crosscoder_rows,
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
    with pytest.raises(ValueError, match="site"):
        block_activations(model, TASK.sample, jax.random.key(2), 10, site="attn.out")


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
    cfg = DictConfig(d_in=4, d_sae=4, kind="relu")
    params = {"W_enc": np.eye(4, dtype=np.float32), "b_enc": np.zeros(4, np.float32),
              "W_dec": np.eye(4, dtype=np.float32), "b_dec": np.zeros(4, np.float32)}
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
    assert cos.max() < 1e-5
    p = turned.present_LF
    assert (p[1:] >= p[:-1]).all() and p[-1].all() and p[0].sum() == F - 8
    x, c = turned.sample(jax.random.key(0), 500)
    for b in range(3):
        np.testing.assert_allclose(x[b], (np.asarray(c) * p[b][None]) @ turned.directions_LFD[b], atol=1e-5)
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
