import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from toymodels import attribution as A
from toymodels.config import replace
from toymodels.hooks import ablate, forward, patch, run_with_cache, run_with_interventions, steer
from toymodels.model import init_model


def _model(cfg, seed=0):
    """Every parameter randomised (LayerNorm weights and biases too), so no term is trivially 0."""
    model = init_model(replace(cfg, init_std=0.3), seed)
    graphdef, state = nnx.split(model, nnx.Param)
    leaves, tree = jax.tree.flatten(state)
    keys = jax.random.split(jax.random.key(seed + 1), len(leaves))
    nnx.update(model, jax.tree.unflatten(tree, [x + 0.2 * jax.random.normal(k, x.shape)
                                                for x, k in zip(leaves, keys)]))
    return model


@pytest.fixture
def model(tiny_cfg):
    return _model(tiny_cfg)


def _x(cfg, B=3, T=7):
    return jax.random.randint(jax.random.key(2), (B, T), 0, cfg.vocab_size)


def test_logit_lens_is_the_model_with_later_blocks_removed(model, tiny_cfg):
    x, L = _x(tiny_cfg), tiny_cfg.n_layers
    lens_LBTV, labels = A.logit_lens(model, x)
    assert lens_LBTV.shape == (L + 1, 3, 7, tiny_cfg.vocab_size)
    assert labels == ["blocks.0.resid_pre", "blocks.1.resid_pre", "blocks.1.resid_post"]
    for l in range(L + 1):      # brute force: zero every later block's writes to the residual
        ivs = {f"blocks.{i}.{n}": ablate() for i in range(l, L) for n in ("attn.out", "mlp.out")}
        np.testing.assert_allclose(lens_LBTV[l], run_with_interventions(model, x, ivs), atol=1e-5)
    some, labels = A.logit_lens(model, x, layers=[-1, 0])
    assert labels == ["blocks.1.resid_post", "blocks.0.resid_pre"]
    np.testing.assert_array_equal(some, lens_LBTV[np.array([2, 0])])


@pytest.mark.parametrize("per_head", [False, True])
def test_components_sum_to_the_cached_residual_at_every_layer(model, tiny_cfg, per_head):
    x = _x(tiny_cfg)
    resid_LBTD, labels = A.accumulated_resid(model, x)
    _, cache = forward(model, x, labels)          # the jitted forward pass the tools read
    for l, name in enumerate(labels):
        np.testing.assert_array_equal(resid_LBTD[l], cache[name])
        comps_CBTD, comp_labels = A.decompose_resid(model, x, layer=l, per_head=per_head)
        assert comps_CBTD.shape == (len(comp_labels), 3, 7, tiny_cfg.d_model)
        np.testing.assert_allclose(comps_CBTD.sum(0), cache[name], atol=1e-5)
    assert comp_labels[:2] == ["embed", "pos_embed"] and comp_labels[-1] == "blocks.1.mlp.out"
    if per_head:
        assert comp_labels[2:7] == [f"blocks.0.attn.result[{h}]" for h in range(4)] + ["blocks.0.attn.b_O"]
    comps_CBD, _ = A.decompose_resid(model, x, layer=1, pos=-2, per_head=per_head)
    np.testing.assert_allclose(comps_CBD.sum(0), cache["blocks.1.resid_pre"][:, -2], atol=1e-5)
    resid_LBD, _ = A.accumulated_resid(model, x, pos=3)
    np.testing.assert_array_equal(resid_LBD, resid_LBTD[:, :, 3])


def _logit_diff(logits_BTV, a, b, t=-1):
    B = logits_BTV.shape[0]
    return logits_BTV[jnp.arange(B), t, a] - (0.0 if b is None else logits_BTV[jnp.arange(B), t, b])


@pytest.mark.parametrize("per", ["layer", "head"])
@pytest.mark.parametrize("use_b", [True, False])
def test_dla_sums_to_the_logit_difference(model, tiny_cfg, per, use_b):
    x = _x(tiny_cfg)
    a, b = np.array([1, 4, 7]), (np.array([2, 2, 9]) if use_b else None)
    dla_CB, labels = A.direct_logit_attribution(model, x, a, b, per=per)
    assert dla_CB.shape == (len(labels), 3) and labels[-1] == "final.bias"
    np.testing.assert_allclose(dla_CB.sum(0), _logit_diff(model(x), a, b), atol=1e-4)
    # every position at once, one pair of ids per (batch, position)
    a_BT = np.asarray(jax.random.randint(jax.random.key(3), (3, 7), 0, tiny_cfg.vocab_size))
    dla_CBT, _ = A.direct_logit_attribution(model, x, a_BT, 5 if use_b else None, per=per, pos=None)
    want = jnp.take_along_axis(model(x), a_BT[..., None], -1)[..., 0] - (model(x)[..., 5] if use_b else 0.0)
    np.testing.assert_allclose(dla_CBT.sum(0), want, atol=1e-4)


@pytest.mark.parametrize("component, per", [("blocks.1.mlp.out", "layer"), ("blocks.0.attn.out", "layer"),
                                            ("blocks.1.attn.result[2]", "head"), ("embed", "layer")])
def test_dla_is_the_effect_of_removing_a_component_from_the_final_residual(model, tiny_cfg, component, per):
    """Brute force: subtract the component from the last residual, with the final norm's scale
    frozen at its clean value (what makes the readout linear); the logit difference drops by its DLA."""
    x, a, b = _x(tiny_cfg), 3, 11
    dla_CB, labels = A.direct_logit_attribution(model, x, a, b, per=per)
    name, _, head = component.partition("[")
    logits, cache = run_with_cache(model, x, ["final.rstd", name])
    c_BTD = cache[name][:, :, int(head[0])] if head else cache[name]
    ablated = run_with_interventions(model, x, {"final.rstd": patch(cache["final.rstd"]),
                                                "blocks.1.resid_post": steer(-c_BTD)})
    got = _logit_diff(logits, a, b) - _logit_diff(ablated, a, b)
    np.testing.assert_allclose(dla_CB[labels.index(component)], got, atol=1e-4)


@pytest.mark.parametrize("changes", [dict(norm="none", act="relu"), dict(use_bias=False, tie_embeddings=True),
                                     dict(d_mlp=0, pos_embed=False)])
def test_dla_and_lens_on_variants(tiny_cfg, changes):
    model = _model(replace(tiny_cfg, **changes), 4)
    x = _x(model.cfg)
    dla_CB, labels = A.direct_logit_attribution(model, x, 0, 1, per="head", pos=2)
    np.testing.assert_allclose(dla_CB.sum(0), _logit_diff(model(x), 0, 1, t=2), atol=1e-4)
    np.testing.assert_allclose(A.logit_lens(model, x)[0][-1], model(x), atol=1e-5)
    assert ("final.rstd" in model.hook_names()) == (model.cfg.norm != "none")


def test_lens_on_a_vector_output_model(tiny_cfg):
    model = _model(replace(tiny_cfg, output_kind="vectors", d_output=3), 5)
    x = _x(tiny_cfg)
    np.testing.assert_allclose(A.logit_lens(model, x)[0][-1], model(x), atol=1e-5)
    dla_CB, _ = A.direct_logit_attribution(model, x, 2, 0)
    np.testing.assert_allclose(dla_CB.sum(0), _logit_diff(model(x), 2, 0), atol=1e-4)


@pytest.mark.parametrize("call, exc, match", [
    (lambda m, x: A.logit_lens(m, x, layers=[3]), IndexError, r"layer 3 is out of range .* \(allowed: 0..2, or -3..-1"),
    (lambda m, x: A.decompose_resid(m, x, layer=-4), IndexError, r"layer -4 is out of range"),
    (lambda m, x: A.decompose_resid(m, x, layer=1.0), IndexError, r"layer 1.0 is out of range"),
    (lambda m, x: A.accumulated_resid(m, x, pos=7), IndexError, r"position 7 is out of range for T=7 .*-7..6"),
    (lambda m, x: A.direct_logit_attribution(m, x, 16), ValueError, r"tokens_a must be in \[0, 16\)"),
    (lambda m, x: A.direct_logit_attribution(m, x, 1, -1), ValueError, r"tokens_b must be in \[0, 16\) .*got -1"),
    (lambda m, x: A.direct_logit_attribution(m, x, [1, 2]), ValueError, r"shape \(2,\) does not broadcast"),
    (lambda m, x: A.direct_logit_attribution(m, x, 1.5), ValueError, r"integer token ids"),
    (lambda m, x: A.direct_logit_attribution(m, x, 1, per="neuron"), ValueError, r"use 'layer' or 'head'"),
    (lambda m, x: A.direct_logit_attribution(m, x, 1, pos=-8), IndexError, r"position -8 is out of range"),
])
def test_bad_arguments_raise_naming_what_is_allowed(model, tiny_cfg, call, exc, match):
    with pytest.raises(exc, match=match):
        call(model, _x(tiny_cfg))
