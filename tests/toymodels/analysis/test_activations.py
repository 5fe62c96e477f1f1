"""Activation tables: rows are run_with_cache's activations at the chosen positions, batch-major."""

from __future__ import annotations

import numpy as np
import pytest

from toymodels.analysis.activations import collect, default_layers
from toymodels.hooks import run_with_cache
from toymodels.model import TransformerConfig, init_model


@pytest.fixture(scope="module")
def model():
    cfg = TransformerConfig(n_layers=2, d_model=16, n_heads=2, d_mlp=32, vocab_size=7, max_seq_len=6)
    return init_model(cfg, 0)


@pytest.fixture(scope="module")
def inputs():
    return np.random.default_rng(0).integers(0, 7, (9, 6)).astype(np.int32)


def test_default_layers_are_the_residual_stream(model):
    assert default_layers(model) == ["blocks.0.resid_pre", "blocks.0.resid_mid", "blocks.0.resid_post",
                                     "blocks.1.resid_mid", "blocks.1.resid_post"]


@pytest.mark.parametrize("positions, pos", [("all", [0, 1, 2, 3, 4, 5]), ("non_bos", [1, 2, 3, 4, 5]),
                                            ([4, 0], [4, 0]), (-1, [5])])
def test_rows_are_the_cached_activations_at_the_positions(model, inputs, positions, pos):
    names = ["blocks.0.resid_pre", "blocks.1.mlp.post", "final"]
    acts = collect(model, inputs, names, positions=positions, batch_size=4)   # 3 chunks
    _, cache = run_with_cache(model, inputs, names)
    assert list(acts) == names
    for name in names:
        want = np.asarray(cache[name], np.float32)[:, pos]
        want = want.reshape(len(inputs) * len(pos), -1)   # (input, position) rows, batch-major
        assert acts[name].dtype == np.float32 and acts[name].shape == want.shape
        np.testing.assert_allclose(acts[name], want, rtol=1e-6, atol=1e-6)


def test_default_layers_and_bad_positions(model, inputs):
    assert list(collect(model, inputs)) == default_layers(model)
    for bad in ("middle", [6], [[1, 2]]):
        with pytest.raises(ValueError, match="positions"):
            collect(model, inputs, positions=bad)


@pytest.mark.parametrize("positions", ["all", "non_bos", [2, 5]])
def test_input_features_are_one_hot_token_and_position_in_the_rows_of_collect(model, inputs, positions):
    from toymodels.analysis.activations import input_features
    from toymodels.analysis.similarity import affine_r2_split, partial_out

    Z = input_features(inputs, 7, positions)
    acts = collect(model, inputs, ["blocks.0.resid_pre", "blocks.1.resid_post"], positions)
    assert Z.shape == (len(acts["blocks.0.resid_pre"]), 7 + 6)
    assert (Z.sum(1) == 2).all() and (Z[:, :7].argmax(1) == acts_tokens(inputs, positions)).all()
    # the embedding is token embedding + position embedding: a linear function of Z
    embed = acts["blocks.0.resid_pre"]
    assert not partial_out(embed, Z).any()
    assert affine_r2_split(Z, embed).overall > 0.999
    assert np.abs(partial_out(acts["blocks.1.resid_post"], Z)).max() > 1e-3
    with pytest.raises(ValueError, match="token ids span 0..6: expected 0..5"):
        input_features(inputs, 6)


def acts_tokens(inputs, positions):
    pos = {"all": np.arange(6), "non_bos": np.arange(1, 6)}.get(positions) if isinstance(positions, str) \
        else np.asarray(positions)
    return inputs[:, pos].reshape(-1)
