import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from toymodels.config import ConfigError, replace
from toymodels.hooks import Hooks, Intervention, patch, run_with_cache, run_with_interventions, steer
from toymodels.model import Transformer, TransformerConfig, init_model, param_count, residual_inputs


def _tokens(cfg, B=3, T=10, seed=0):
    return jax.random.randint(jax.random.key(seed), (B, T), 0, cfg.vocab_size)


def _embed_grad(model, x, t, **kw):
    """d(sum of outputs at position t) / d(embedding at every position): (B, T, D)."""
    D = model.cfg.d_model

    def f(v):
        out, _ = run_with_cache(model, x, (), interventions={"embed": steer(v)}, **kw)
        return out[:, t].sum()
    return jax.grad(f)(jnp.zeros((x.shape[0], x.shape[1], D)))


def test_param_count_matches_torch_peer_formula():
    cfg = TransformerConfig()  # the benchmark's tiny model
    L, D, V, T = cfg.n_layers, cfg.d_model, cfg.vocab_size, cfg.max_seq_len
    per_block = 4 * D + (3 * D * D + 3 * D) + (D * D + D) + (4 * D * D + 4 * D) + (4 * D * D + D)
    expected = V * D + T * D + L * per_block + 2 * D + D * V
    assert param_count(init_model(cfg, 0)) == expected


@pytest.mark.parametrize("changes", [{}, dict(input_kind="vectors", d_input=3, output_kind="vectors",
                                                d_output=2, use_bias=True, norm="none")])
def test_model_without_rngs_is_zero_with_the_random_init_structure(changes):
    cfg = TransformerConfig(n_layers=2, d_model=16, n_heads=2, vocab_size=7, max_seq_len=8, **changes)
    g0, s0 = nnx.split(Transformer(cfg, None), nnx.Param)
    g1, s1 = nnx.split(init_model(cfg, 0), nnx.Param)
    assert g0 == g1
    shapes = lambda s: jax.tree.map(lambda x: x.shape, s)
    assert shapes(s0) == shapes(s1)
    for path, var in nnx.to_flat_state(s0):
        want = 1.0 if path[-1] == "scale" else 0.0     # LayerNorm scales start at one
        assert np.all(np.asarray(var.get_value()) == want), path


@pytest.mark.parametrize("jit", [False, True])
def test_causal_by_gradient(tiny_cfg, jit):
    model = init_model(tiny_cfg, 1)
    x = _tokens(tiny_cfg)
    t = 4
    fn = jax.jit(lambda x: _embed_grad(model, x, t)) if jit else (lambda x: _embed_grad(model, x, t))
    g_BTD = fn(x)
    assert np.all(np.asarray(g_BTD[:, t + 1:]) == 0.0)
    assert np.all(np.abs(np.asarray(g_BTD[:, :t + 1])).sum(-1) > 0)


def test_jit_matches_eager(tiny_cfg):
    model = init_model(tiny_cfg, 2)
    x = _tokens(tiny_cfg)
    np.testing.assert_allclose(model(x), jax.jit(lambda x: model(x))(x), atol=1e-5)


def test_myopic_forward_equals_vanilla(tiny_cfg):
    model = init_model(tiny_cfg, 3)
    x = _tokens(tiny_cfg)
    # Eagerly the two forwards run the same float operations: bitwise equal.
    np.testing.assert_array_equal(np.asarray(model(x)), np.asarray(model(x, myopic=True)))
    # Under jit XLA may fuse the two programs' softmaxes differently: equal to ~1 ulp.
    vanilla = jax.jit(lambda x: model(x))(x)
    myopic = jax.jit(lambda x: model(x, myopic=True))(x)
    np.testing.assert_allclose(np.asarray(vanilla), np.asarray(myopic), rtol=0, atol=1e-6)


def test_myopic_gradient_cuts_earlier_positions(tiny_cfg):
    model = init_model(tiny_cfg, 4)
    x = _tokens(tiny_cfg)
    t = 6
    for name in ("embed", "blocks.1.resid_pre"):
        def grad_at(myopic):
            def f(v):
                out, _ = run_with_cache(model, x, (), interventions={name: steer(v)}, myopic=myopic)
                return optax.softmax_cross_entropy_with_integer_labels(out[:, t], x[:, t]).sum()
            return np.asarray(jax.grad(f)(jnp.zeros((3, x.shape[1], tiny_cfg.d_model))))
        g_my, g_van = grad_at(True), grad_at(False)
        assert np.all(g_my[:, :t] == 0.0), name                 # earlier positions: exactly zero
        assert np.abs(g_my[:, t]).sum() > 0, name                # own position still shaped
        assert np.all(np.abs(g_van[:, :t]).sum(-1) > 0), name    # vanilla reaches back


def test_myopic_gradient_is_the_present_positions_parameter_gradient(tiny_cfg):
    """For the loss at one position t, myopic descent's gradient is dL_t/dtheta_t: the
    vanilla gradient with every layer's keys and values at earlier positions (the
    computation done there, weights included) held constant."""
    model = init_model(tiny_cfg, 7)
    x = _tokens(tiny_cfg)
    t, T = 6, x.shape[1]
    kv = [f"blocks.{i}.attn.{n}" for i in range(tiny_cfg.n_layers) for n in ("k", "v")]
    _, cache = run_with_cache(model, x, kv)
    frozen = {n: patch(cache[n], positions=jnp.arange(T) < t) for n in kv}
    graphdef, params = nnx.split(model, nnx.Param)

    def grads(**kw):
        def loss(p):
            out, _ = run_with_cache(nnx.merge(graphdef, p), x, (), **kw)
            return optax.softmax_cross_entropy_with_integer_labels(out[:, t], x[:, (t + 1) % T]).sum()
        return np.concatenate([np.ravel(g) for g in jax.tree.leaves(jax.grad(loss)(params))])
    g_my, g_frozen, g_van = grads(myopic=True), grads(interventions=frozen), grads()
    np.testing.assert_allclose(g_my, g_frozen, atol=1e-6)
    assert np.abs(g_my - g_van).max() > 1e-4


def _param_grads_tree(model, x, **kw):
    graphdef, params = nnx.split(model, nnx.Param)

    def loss(p):
        out = nnx.merge(graphdef, p)(x, **kw)
        return optax.softmax_cross_entropy_with_integer_labels(out[:, :-1], x[:, 1:]).mean()
    return jax.grad(loss)(params)


def _param_grads(model, x, **kw):
    return np.concatenate([np.ravel(g) for g in jax.tree.leaves(_param_grads_tree(model, x, **kw))])


def test_myopic_beta_blends_gradients(tiny_cfg):
    model = init_model(tiny_cfg, 5)
    x = _tokens(tiny_cfg)
    g_van = _param_grads(model, x)
    g0 = _param_grads(model, x, myopic=True, myopic_beta=0.0)
    np.testing.assert_allclose(_param_grads(model, x, myopic=True, myopic_beta=1.0), g_van, atol=1e-6)
    assert np.abs(g0 - g_van).max() > 1e-4  # the myopic gradient really differs
    # beta scales each link through a past position, so with one layer (one link per
    # path) the gradient is exactly the linear blend; deeper paths scale as beta**k.
    one = init_model(dataclasses.replace(tiny_cfg, n_layers=1), 5)
    h0, h1 = (_param_grads(one, x, myopic=True, myopic_beta=b) for b in (0.0, 1.0))
    np.testing.assert_allclose(_param_grads(one, x, myopic=True, myopic_beta=0.25),
                               0.75 * h0 + 0.25 * h1, atol=1e-6)


def test_past_resid_of_own_states_equals_vanilla(tiny_cfg):
    model = init_model(tiny_cfg, 6)
    x = _tokens(tiny_cfg)
    names = [f"blocks.{i}.resid_pre" for i in range(tiny_cfg.n_layers)]
    out, cache = run_with_cache(model, x, names)
    past = jnp.stack([cache[n] for n in names])
    np.testing.assert_allclose(model(x, past_resid=past), out, atol=1e-6)
    # Zeroed past states change the outputs (the no-context baseline)
    assert np.abs(np.asarray(model(x, past_resid=jnp.zeros_like(past)) - out)).max() > 1e-4


@pytest.mark.parametrize("changes", [
    dict(d_mlp=0), dict(norm="none", act="relu"), dict(tie_embeddings=True), dict(pos_embed=False),
    dict(causal=False), dict(use_bias=False), dict(d_head=5),
    dict(input_kind="vectors", d_input=3, output_kind="vectors", d_output=2),
])
def test_variants_forward_and_name_every_activation(tiny_cfg, changes):
    cfg = replace(tiny_cfg, **changes)
    model = init_model(cfg, 0)
    x = (jax.random.normal(jax.random.key(0), (2, 7, 3)) if cfg.input_kind == "vectors"
         else _tokens(cfg, 2, 7))
    out, cache = run_with_cache(model, x, ["*"])
    assert out.shape == (2, 7, cfg.d_output if cfg.output_kind == "vectors" else cfg.vocab_size)
    assert sorted(cache) == sorted(model.hook_names())
    assert np.all(np.isfinite(np.asarray(out)))


def test_dropout_only_with_key(tiny_cfg):
    model = init_model(dataclasses.replace(tiny_cfg, dropout=0.5), 0)
    x = _tokens(tiny_cfg)
    np.testing.assert_array_equal(model(x), model(x))
    a = model(x, key=jax.random.key(0))
    b = model(x, key=jax.random.key(1))
    assert np.abs(np.asarray(a - b)).max() > 1e-3
    np.testing.assert_allclose(model(x, key=jax.random.key(0), dropout_rate=0.0), model(x), atol=1e-6)


@pytest.mark.parametrize("bad, match", [
    (dict(d_model=30, n_heads=4), "not divisible by n_heads"),
    (dict(norm="rms"), "norm='rms'"),
    (dict(act="swish"), "act='swish'"),
    (dict(n_layers=-1), "n_layers"),
    (dict(dropout=1.0), "dropout"),
    (dict(myopic_beta=2.0), "myopic_beta"),
    (dict(input_kind="vectors"), "d_input"),
    (dict(output_kind="vectors", tie_embeddings=True, d_output=2), "tie_embeddings"),
    (dict(init_std=float("nan")), r"init_std=nan is not allowed: must be a finite number"),
    (dict(ln_eps=-1e-5), r"ln_eps=-1e-05 is not allowed"),
    (dict(pos_embed="yes"), r"pos_embed='yes' is not allowed: must be True or False"),
])
def test_bad_config_raises_clear_error(bad, match):
    with pytest.raises(ConfigError, match=match):
        TransformerConfig(**bad)


def test_unknown_field_lists_valid_fields(tiny_cfg):
    with pytest.raises(ConfigError, match="valid fields: .*d_model"):
        replace(tiny_cfg, d_modle=64)


def test_too_long_sequence_raises(tiny_cfg):
    model = init_model(tiny_cfg, 0)
    with pytest.raises(ConfigError, match="max_seq_len"):
        model(jnp.zeros((1, tiny_cfg.max_seq_len + 1), jnp.int32))


def test_key_bias_neither_changes_outputs_nor_trains(tiny_cfg):
    model = init_model(tiny_cfg, 7)
    x = _tokens(tiny_cfg)
    before = model(x)
    model.blocks[0].attn.b_QKV[1] = 0.5   # softmax is shift-invariant per query
    np.testing.assert_allclose(model(x), before, atol=1e-5)
    g = _param_grads_tree(model, x)
    assert np.all(np.asarray(g["blocks"][0]["attn"]["b_QKV"][...])[1] == 0.0)
    assert np.abs(np.asarray(g["blocks"][0]["attn"]["b_QKV"][...])[0]).max() > 0


def test_own_past_states_reproduce_the_forward_pass():
    cfg = TransformerConfig(n_layers=2, d_model=16, n_heads=2, vocab_size=8, max_seq_len=8)
    model = init_model(cfg, 0)
    x = jax.random.randint(jax.random.key(1), (4, 6), 0, 8)
    np.testing.assert_allclose(model(x, past_resid=residual_inputs(model, x)), model(x), atol=1e-6)


def test_no_context_output_ignores_earlier_tokens():
    cfg = TransformerConfig(n_layers=2, d_model=16, n_heads=2, vocab_size=8, max_seq_len=8)
    model = init_model(cfg, 0)
    x = jax.random.randint(jax.random.key(1), (4, 6), 0, 8)
    y = x.at[:, :-1].set((x[:, :-1] + 3) % 8)       # change every token but the last
    zeros = jnp.zeros((2, 4, 6, 16))
    out_x, out_y = model(x, past_resid=zeros), model(y, past_resid=zeros)
    np.testing.assert_allclose(out_x[:, -1], out_y[:, -1], atol=1e-6)
    assert not np.allclose(model(x)[:, -1], model(y)[:, -1], atol=1e-3)   # with context it does not


class _Recording(Hooks):
    def __call__(self, name, x):
        self.seen = getattr(self, "seen", []) + [name]
        return super().__call__(name, x)


@pytest.mark.parametrize("jit", [False, True])
def test_per_head_results_are_opt_in_and_leave_the_outputs_bitwise(tiny_cfg, jit):
    model = init_model(replace(tiny_cfg, init_std=0.3), 8)
    for i, block in enumerate(model.blocks):
        block.attn.b_O[...] = jax.random.normal(jax.random.key(i), (tiny_cfg.d_model,))
    x = _tokens(tiny_cfg)
    run = lambda names: run_with_cache(model, x, names)
    run = jax.jit(run, static_argnums=0) if jit else run
    plain, _ = run(("blocks.*.attn.out",))
    out, cache = run(("blocks.*.attn.result", "blocks.*.attn.out"))
    np.testing.assert_array_equal(np.asarray(out), np.asarray(plain))
    for i in range(tiny_cfg.n_layers):
        r_BTHD = cache[f"blocks.{i}.attn.result"]
        assert r_BTHD.shape == (3, 10, tiny_cfg.n_heads, tiny_cfg.d_model)
        np.testing.assert_allclose(r_BTHD.sum(2) + model.blocks[i].attn.b_O[...][None, None],
                                   cache[f"blocks.{i}.attn.out"], atol=1e-5)
    hooks = _Recording()
    model(x, hooks=hooks)                     # nothing asked: no per-head outputs computed
    assert "blocks.0.attn.z" in hooks.seen and not any(n.endswith(".result") for n in hooks.seen)


def test_editing_head_results_edits_the_attention_output(tiny_cfg):
    model = init_model(replace(tiny_cfg, init_std=0.3), 9)
    x = _tokens(tiny_cfg)
    z_off = Intervention(jnp.ones((1, 1, tiny_cfg.n_heads, 1)).at[0, 0, 1].set(0.0), 0.0)   # head 1 off
    by_z = run_with_interventions(model, x, {"blocks.0.attn.z": z_off})
    by_result = run_with_interventions(model, x, {"blocks.0.attn.result": z_off})
    np.testing.assert_allclose(by_result, by_z, atol=1e-5)
    assert np.abs(np.asarray(by_z - model(x))).max() > 1e-3
    _, cache = run_with_cache(model, x, ["blocks.1.attn.result"])
    own = run_with_interventions(model, x, {"blocks.1.attn.result": patch(cache["blocks.1.attn.result"])})
    np.testing.assert_allclose(own, model(x), atol=1e-5)


def test_layernorm_scales_are_the_inverse_standard_deviations(tiny_cfg):
    model = init_model(replace(tiny_cfg, init_std=0.3), 10)
    x = _tokens(tiny_cfg)
    names = ["blocks.1.resid_post", "blocks.1.resid_mid", "final.rstd", "blocks.1.ln2.rstd", "blocks.0.ln1.rstd"]
    _, cache = run_with_cache(model, x, names)
    for resid, scale in (("blocks.1.resid_post", "final.rstd"), ("blocks.1.resid_mid", "blocks.1.ln2.rstd")):
        want = 1.0 / np.sqrt(np.var(np.asarray(cache[resid], np.float64), -1, keepdims=True) + tiny_cfg.ln_eps)
        assert cache[scale].shape == (3, 10, 1)
        np.testing.assert_allclose(cache[scale], want, rtol=1e-5)
    # norm="none" (compiled RASP nets): no norm, so no scale names
    bare = init_model(replace(tiny_cfg, norm="none"), 0)
    assert not [n for n in bare.hook_names() if n.endswith(".rstd")]
    with pytest.raises(KeyError, match="no activation matches 'final.rstd'"):
        run_with_cache(bare, x, ["final.rstd"])
