"""Twin comparisons: a scrambled compiled net is the same representation, a random net is not."""

from __future__ import annotations

import math

import numpy as np
import pytest

from toymodels.analysis import twins
from toymodels.analysis.activations import collect
from toymodels.model import init_model
from toymodels.schedule import Mixture
from toymodels.scramble import rotate_residual, scramble
from toymodels.tasks import make_task
from toymodels.train import TrainConfig, validate

LAYERS = ["blocks.0.resid_pre", "blocks.0.resid_mid", "blocks.0.resid_post",
          "blocks.1.resid_mid", "blocks.1.resid_post"]   # collect's default for reverse


@pytest.fixture(scope="module")
def reverse():
    """(task, compiled net, inputs, activations of compiled / scrambled / random-init nets)."""
    task = make_task("rasp_io", program="reverse", length=5, n_eval=64)
    compiled = task.compile()
    inputs = np.concatenate([task.full_batch(s).inputs for s in ("train", "eval")])
    acts = {name: collect(model, inputs, positions="non_bos") for name, model in [
        ("compiled", compiled.model), ("scrambled", scramble(compiled.model, 1)),
        ("random", init_model(compiled.cfg, 0))]}
    return task, compiled, inputs, acts


def test_scrambled_compiled_net_is_the_same_representation(reverse):
    _, _, _, acts = reverse
    rows = twins.compare(acts["compiled"], acts["scrambled"])
    assert [r["layer_a"] for r in rows] == LAYERS
    for r in rows:
        assert r["cka"] == pytest.approx(1.0, abs=1e-6), r
        assert r["debiased_cka"] == pytest.approx(1.0, abs=1e-6), r
        assert r["procrustes"] < 1e-4, r
        assert r["affine_r2_a_to_b"] == pytest.approx(1.0, abs=1e-6), r
        assert r["affine_r2_b_to_a"] == pytest.approx(1.0, abs=1e-6), r


def test_random_init_net_scores_clearly_lower(reverse):
    _, _, _, acts = reverse
    rows = twins.compare(acts["compiled"], acts["random"])
    for r in rows:
        assert r["cka"] < 0.95 and r["debiased_cka"] < 0.95 and r["procrustes"] > 0.2, r
    # A random net holds tokens and positions linearly but not their reversal.
    assert rows[-1]["affine_r2_b_to_a"] < 0.95


def test_mlp_r2_is_optional(reverse):
    _, _, _, acts = reverse
    pair = [("blocks.1.resid_post", "blocks.1.resid_post")]
    (row,) = twins.compare(acts["compiled"], acts["scrambled"], pairs=pair, mlp=True,
                           hidden=16, steps=200, lr=1e-2)
    assert 0.5 < row["mlp_r2_a_to_b"] <= 1.0
    assert "mlp_r2_a_to_b" not in twins.compare(acts["compiled"], acts["scrambled"], pairs=pair)[0]


def test_variable_r2_of_compiled_net_against_itself(reverse):
    _, compiled, _, acts = reverse
    rows = twins.variable_r2(acts["compiled"], compiled, acts["compiled"])
    final = {r["sop"]: r for r in rows if r["layer"] == "blocks.1.resid_post"}
    # Every non-fused node; length.attn is 1/6 everywhere at one input length.
    assert set(final) == {"tokens", "indices", "length.attn", "opp_idx", "opp_idx-1", "reverse"}
    assert not final["length.attn"]["varies"] and math.isnan(final["length.attn"]["r2_to_sop"])
    for r in rows:
        if r["varies"]:
            assert r["r2_to_sop"] == pytest.approx(1.0, abs=1e-9), r
    materialized = [r for r in final.values() if r["kind"] != "virtual" and r["sop"] != "length.attn"]
    assert len(materialized) == 4 and all(r["varies"] for r in materialized)
    # Not computed before its layer: the embedding holds no reversal.
    (embed,) = [r for r in rows if r["layer"] == "blocks.0.resid_pre" and r["sop"] == "reverse"]
    assert not embed["varies"]


def test_variable_r2_sees_through_a_scramble(reverse):
    _, compiled, _, acts = reverse
    rows = twins.variable_r2(acts["scrambled"], compiled, acts["compiled"], sops=["reverse", "opp_idx"])
    varying = [r for r in rows if r["varies"]]
    # opp_idx exists from block 0's MLP on, reverse from block 1's attention on.
    assert {(r["layer"], r["sop"]) for r in varying} == {
        *((layer, "opp_idx") for layer in LAYERS[2:]), *((layer, "reverse") for layer in LAYERS[3:])}
    assert all(r["r2_to_sop"] == pytest.approx(1.0, abs=1e-6) for r in varying)
    assert all(0 < r["r2_from_sop"] < 1 for r in varying)


def test_weight_summary(reverse):
    _, compiled, _, _ = reverse
    rows = {r["name"]: r for r in twins.weight_summary(compiled.model)}
    for name in ("W_E", "W_pos", "W_U", "blocks.0.attn.W_Q", "blocks.0.attn.W_O",
                 "blocks.0.attn.head0.QK", "blocks.1.attn.head0.OV", "blocks.0.mlp.W_in"):
        assert name in rows
    assert rows["blocks.0.attn.W_Q"]["shape"] == (compiled.d_model, compiled.cfg.n_heads * compiled.cfg.head_dim)
    assert rows["W_E"]["sparsity"] > 0.9   # one-hot embeddings
    rotated = {r["name"]: r for r in twins.weight_summary(rotate_residual(compiled.model, 3))}
    assert rotated["W_E"]["sparsity"] < 0.5
    for name in ("W_E", "blocks.0.attn.head0.QK", "blocks.1.attn.head0.OV"):
        np.testing.assert_allclose(rotated[name]["singular_values"], rows[name]["singular_values"],
                                   atol=1e-4)


@pytest.mark.parametrize("program", ["reverse", "frac_prevs"])
def test_twin_config_fits_the_task(program):
    task = make_task("rasp_io", program=program, length=5, n_eval=64)
    compiled = task.compile()
    for width in (0.5, 1.0, 2.0):
        cfg = twins.twin_config(compiled, width)
        assert cfg.n_layers == compiled.n_layers and not cfg.causal
        assert cfg.d_model == max(1, round(width * compiled.d_model))
        validate(cfg, TrainConfig(), {"twin": task}, Mixture(("twin",)))
    assert twins.twin_config(compiled, norm="layernorm").norm == "layernorm"
