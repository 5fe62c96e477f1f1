import jax
import jax.numpy as jnp
import numpy as np
import pytest

from toymodels.hooks import Hooks, ablate, forward, mean_ablate, patch, run_with_cache, run_with_interventions, steer
from toymodels.model import init_model


@pytest.fixture
def model(tiny_cfg):
    return init_model(tiny_cfg, 0)


def _pair(cfg):
    clean = jax.random.randint(jax.random.key(1), (2, 8), 0, cfg.vocab_size)
    corrupt = clean.at[:, 2].set((clean[:, 2] + 1) % cfg.vocab_size)
    return clean, corrupt


def test_cache_returns_only_requested(model):
    x = jnp.zeros((1, 5), jnp.int32)
    _, cache = run_with_cache(model, x, ["blocks.0.resid_post", "blocks.*.attn.pattern"])
    assert sorted(cache) == ["blocks.0.attn.pattern", "blocks.0.resid_post", "blocks.1.attn.pattern"]
    assert cache["blocks.0.attn.pattern"].shape == (1, model.cfg.n_heads, 5, 5)
    _, none = run_with_cache(model, x)
    assert none == {}


def test_unknown_names_raise_with_valid_list(model):
    x = jnp.zeros((1, 5), jnp.int32)
    with pytest.raises(KeyError, match="valid names: embed"):
        run_with_cache(model, x, ["blocks.0.attn.patern"])
    with pytest.raises(KeyError, match="unknown activation"):
        run_with_interventions(model, x, {"blocks.9.resid_pre": ablate()})


@pytest.mark.parametrize("name", ["blocks.0.resid_post", "blocks.1.resid_pre", "blocks.1.resid_mid", "final"])
def test_patching_clean_residual_restores_clean_output(model, tiny_cfg, name):
    clean, corrupt = _pair(tiny_cfg)
    clean_out, cache = run_with_cache(model, clean, [name])
    assert np.abs(np.asarray(model(corrupt) - clean_out)).max() > 1e-4
    patched = run_with_interventions(model, corrupt, {name: patch(cache[name])})
    np.testing.assert_array_equal(np.asarray(patched), np.asarray(clean_out))


@pytest.mark.parametrize("name", ["blocks.0.attn.pattern", "blocks.0.attn.z", "blocks.1.attn.q"])
def test_patching_own_activation_is_a_no_op(model, tiny_cfg, name):
    clean, _ = _pair(tiny_cfg)
    out, cache = run_with_cache(model, clean, [name])
    np.testing.assert_array_equal(run_with_interventions(model, clean, {name: patch(cache[name])}), out)


def test_patch_at_positions_only_touches_those_positions(model, tiny_cfg):
    clean, corrupt = _pair(tiny_cfg)
    name = "blocks.0.resid_post"
    _, clean_cache = run_with_cache(model, clean, [name])
    _, out_cache = run_with_cache(model, corrupt, [name], interventions={name: patch(clean_cache[name], [2, 3])})
    _, corrupt_cache = run_with_cache(model, corrupt, [name])
    got = np.asarray(out_cache[name])
    np.testing.assert_array_equal(got[:, 2:4], np.asarray(clean_cache[name])[:, 2:4])
    np.testing.assert_array_equal(got[:, [0, 1, 4, 5, 6, 7]], np.asarray(corrupt_cache[name])[:, [0, 1, 4, 5, 6, 7]])


def test_zero_ablating_mlp_equals_zeroed_weights(tiny_cfg):
    model = init_model(tiny_cfg, 3)
    x = jax.random.randint(jax.random.key(2), (2, 6), 0, tiny_cfg.vocab_size)
    ablated = run_with_interventions(model, x, {"blocks.1.mlp.out": ablate()})
    model.blocks[1].mlp.W_out[...] = 0.0
    model.blocks[1].mlp.b_out[...] = 0.0
    np.testing.assert_allclose(ablated, model(x), atol=1e-6)


def test_mean_ablation_uses_given_mean(model, tiny_cfg):
    x = jax.random.randint(jax.random.key(2), (4, 6), 0, tiny_cfg.vocab_size)
    name = "blocks.0.mlp.post"
    _, cache = run_with_cache(model, x, [name])
    mean = cache[name].mean(0)
    _, got = run_with_cache(model, x, [name], interventions={name: mean_ablate(mean)})
    np.testing.assert_allclose(got[name], jnp.broadcast_to(mean, cache[name].shape), atol=1e-7)


def test_steering_final_shifts_logits_linearly(model, tiny_cfg):
    x = jnp.zeros((1, 4), jnp.int32)
    v = jax.random.normal(jax.random.key(4), (tiny_cfg.d_model,))
    base = model(x)
    steered = run_with_interventions(model, x, {"final": steer(v, positions=[3], coeff=2.0)})
    expect = np.asarray(base).copy()
    expect[:, 3] += 2.0 * np.asarray(v @ model.W_U[...])
    np.testing.assert_allclose(steered, expect, atol=1e-5)


def test_interventions_compose_with_jit_and_vmap(model, tiny_cfg):
    x = jnp.zeros((1, 4), jnp.int32)
    vs = jax.random.normal(jax.random.key(5), (3, tiny_cfg.d_model))
    f = jax.jit(jax.vmap(lambda v: run_with_interventions(model, x, {"blocks.1.resid_pre": steer(v)})))
    batched = f(vs)
    for i in range(3):
        np.testing.assert_allclose(batched[i], run_with_interventions(
            model, x, {"blocks.1.resid_pre": steer(vs[i])}), atol=1e-5)


def test_failed_call_leaves_no_hook_behind(model):
    x = jnp.zeros((1, 4), jnp.int32)
    with pytest.raises(Exception):
        run_with_interventions(model, x, {"embed": patch(jnp.zeros((9, 9, 9)))})
    np.testing.assert_array_equal(run_with_interventions(model, x, {}), model(x))


def test_position_ablation_of_pos_embed_masks_a_position_not_a_feature(model, tiny_cfg):
    # pos_embed is (T, D), without a batch axis: positions index its first axis.
    x = _pair(tiny_cfg)[0]
    T = x.shape[1]
    _, clean = run_with_cache(model, x, ["pos_embed", "embed"])
    for name in ("pos_embed", "embed"):
        _, got = run_with_cache(model, x, [name], interventions={name: ablate(positions=[2])})
        want = np.array(clean[name])
        want[..., 2, :] = 0.0           # position 2 (second-to-last axis), every feature
        np.testing.assert_array_equal(got[name], want)
    # the position mask also works as a bool mask of length T
    mask = np.arange(T) == 2
    _, got = run_with_cache(model, x, ["pos_embed"], interventions={"pos_embed": ablate(positions=mask)})
    assert not np.asarray(got["pos_embed"])[2].any() and np.asarray(got["pos_embed"])[3].any()


def test_position_steering_of_final_touches_only_that_position(model, tiny_cfg):
    x = _pair(tiny_cfg)[0]
    vec = jnp.ones(tiny_cfg.d_model)
    _, clean = run_with_cache(model, x, ["final"])
    _, got = run_with_cache(model, x, ["final"], interventions={"final": steer(vec, positions=[1])})
    diff = np.asarray(got["final"] - clean["final"])
    np.testing.assert_allclose(diff[:, 1], np.ones_like(diff[:, 1]), atol=1e-6)
    assert not np.delete(diff, 1, axis=1).any()


@pytest.mark.parametrize("name, positions, T", [
    ("blocks.0.resid_post", [8], 8), ("blocks.0.resid_post", [-9], 8), ("blocks.0.attn.pattern", [2, 30], 8),
    ("pos_embed", [8], 8)])
def test_out_of_range_positions_raise_naming_the_activation_and_T(model, name, positions, T):
    x = jnp.zeros((2, T), jnp.int32)
    with pytest.raises(IndexError, match=rf"intervention on '{name}': position -?\d+ is out of range for T={T}"):
        run_with_interventions(model, x, {name: ablate(positions)})
    run_with_interventions(model, x, {name: ablate([0, T - 1, -T])})   # the edges are fine


def test_a_mask_of_the_wrong_length_raises(model):
    with pytest.raises(IndexError, match=r"'final': a position mask must have shape \(5,\)"):
        run_with_interventions(model, jnp.zeros((1, 5), jnp.int32), {"final": ablate(np.ones(4, bool))})


def test_traced_positions_are_not_checked(model):
    x = jnp.zeros((1, 5), jnp.int32)
    f = jax.jit(lambda p: run_with_interventions(model, x, {"final": ablate(p)}))
    np.testing.assert_allclose(f(jnp.array([1])), run_with_interventions(model, x, {"final": ablate([1])}),
                               atol=1e-6)


@pytest.mark.parametrize("bad", [16, -1])
def test_token_ids_out_of_range_raise_instead_of_nan_logits(model, bad):
    x = jnp.zeros((2, 5), jnp.int32).at[1, 3].set(bad)
    with pytest.raises(ValueError, match=rf"token ids must be in \[0, vocab_size=16\); got {bad}"):
        model(x)
    with pytest.raises(ValueError, match="vocab_size=16"):
        run_with_cache(model, x, ["final"])
    with pytest.raises(ValueError, match="vocab_size=16"):
        forward(model, x, ["final"])


def test_wants_names_cached_or_edited():
    hooks = Hooks(["blocks.*.attn.result"], {"blocks.0.attn.z": ablate()})
    assert hooks.wants("blocks.1.attn.result") and hooks.caches("blocks.1.attn.result")
    assert hooks.wants("blocks.0.attn.z") and hooks.edits("blocks.0.attn.z")
    assert not hooks.wants("blocks.1.attn.z") and not Hooks().wants("final")


@pytest.mark.parametrize("positions", [None, [1, 3]])
def test_patching_masked_attention_scores_gives_no_nan(model, tiny_cfg, positions):
    # masked scores are -inf: 0 * -inf would be NaN, so a replaced value must not be multiplied
    x = _pair(tiny_cfg)[0]
    name = "blocks.0.attn.scores"
    out, cache = run_with_cache(model, x, [name])
    np.testing.assert_array_equal(run_with_interventions(model, x, {name: patch(cache[name], positions)}), out)
    assert np.all(np.isfinite(np.asarray(run_with_interventions(model, x, {name: ablate(positions)}))))
