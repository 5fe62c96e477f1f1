import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from toymodels.analysis.features import mean_max_cosine, planted_features
from toymodels.config import ConfigError
from toymodels.dictionaries import (
    DictConfig,
    dictionary_splice_scores,
    encode,
    heaviside,
    init_params,
    reconstruction_metrics,
    splice_scores,
    train_dictionaries,
    train_on_model,
)
from toymodels.hooks import forward
from toymodels.model import TransformerConfig
from toymodels.params import build_model, param_shapes
from toymodels.tasks import make_task

D, F, S = 16, 32, 64
# Planted features with true L0 = 32 * 0.08 ~ 2.6; a topk dictionary with k = 3 learns them.
RECOVER = DictConfig(d_in=D, d_sae=S, kind="topk", k=3, lr=1e-2, steps=600, batch_size=128, seed=0)
RELU = dataclasses.replace(RECOVER, kind="relu", l1_coeff=1e-2, steps=100)
# Tests share compiled programs: a program is fixed by group_key, k_max, use_aux, runs and chunk length.
CHUNK = 200


@pytest.fixture(scope="module")
def planted():
    feats = planted_features(0, F, D, p=0.08, magnitude_spread=0.3)
    x_ND, c_NF = feats.sample(jax.random.key(1), 8192)
    return feats, np.asarray(x_ND), np.asarray(c_NF)


@pytest.fixture(scope="module")
def recovered(planted):
    return train_dictionaries(planted[1], [RECOVER], chunk=CHUNK)[0]


def _eye_params(n: int, b_enc: float = 0.0, **extra):
    """A dictionary whose pre-activations are the inputs (plus b_enc)."""
    return {"W_enc": jnp.eye(n), "b_enc": jnp.full(n, b_enc), "W_dec": jnp.eye(n), "b_dec": jnp.zeros(n), **extra}


@pytest.mark.parametrize("field,value", [("d_in", 0), ("kind", "gated"), ("k", 65), ("k_aux", 65), ("lr", 0.0),
                                         ("bandwidth", -1.0), ("l1_coeff", -0.1), ("steps", 1.5),
                                         ("normalize_decoder", 1), ("seed", 2**40)])
def test_bad_configs_raise_naming_the_field(field, value):
    with pytest.raises(ConfigError, match=rf"^{field}="):
        dataclasses.replace(RECOVER, **{field: value})


def test_k_aux_defaults_to_half_d_in_and_k_is_free_for_relu():
    assert DictConfig(d_in=16, d_sae=64).k_aux == 8
    assert DictConfig(d_in=16, d_sae=4).k_aux == 4
    assert DictConfig(d_in=4, d_sae=2, kind="relu", k=10).k == 10   # unused by relu: not bounded by d_sae


def test_topk_keeps_exactly_k_largest_per_input():
    x_ND = jax.random.normal(jax.random.key(0), (8, 10))
    z_NS = encode(_eye_params(10, b_enc=10.0), x_ND, DictConfig(d_in=10, d_sae=10, kind="topk", k=3))
    assert ((z_NS > 0).sum(1) == 3).all()
    kept = jnp.sort(x_ND, axis=1)[:, -3:] + 10.0
    np.testing.assert_allclose(jnp.sort(z_NS, axis=1)[:, -3:], kept, rtol=1e-6)


def test_batchtopk_keeps_k_times_batch_over_the_batch():
    x_ND = jax.random.normal(jax.random.key(0), (8, 10)) * jnp.arange(1, 9)[:, None]   # rows of unequal scale
    z_NS = encode(_eye_params(10, b_enc=100.0), x_ND, DictConfig(d_in=10, d_sae=10, kind="batchtopk", k=3))
    per_row = (z_NS > 0).sum(1)
    assert per_row.sum() == 3 * 8 and len(set(per_row.tolist())) > 1   # k*B in all, not k per input
    np.testing.assert_allclose(jnp.sort(z_NS.ravel())[-24:], jnp.sort(x_ND.ravel())[-24:] + 100.0, rtol=1e-6)


def test_relu_and_jumprelu_are_nonnegative_and_zero_below_threshold():
    x_ND = jax.random.normal(jax.random.key(0), (64, 6))
    z_NS = encode(_eye_params(6), x_ND, DictConfig(d_in=6, d_sae=6, kind="relu"))
    np.testing.assert_array_equal(z_NS, jnp.maximum(x_ND, 0))
    theta_S = jnp.linspace(0.1, 1.0, 6)
    params = _eye_params(6, log_threshold=jnp.log(theta_S))
    z_NS = encode(params, x_ND, DictConfig(d_in=6, d_sae=6, kind="jumprelu"))
    above = x_ND > theta_S[None]
    assert (z_NS >= 0).all() and above.any() and (~above).any()
    np.testing.assert_array_equal(z_NS, jnp.where(above, x_ND, 0.0))


def test_jumprelu_gradients_follow_the_straight_through_formula():
    # pre = x; theta = 0.5; eps = 0.1: (pre - theta) / eps = (-2, 0.2, 4, -0.4), so K = (0, 1, 0, 1)
    x = jnp.array([[0.3, 0.52, 0.9, 0.46]])
    w = jnp.array([[1.0, 2.0, 3.0, 4.0]])
    cfg = DictConfig(d_in=4, d_sae=4, kind="jumprelu", bandwidth=0.1)
    lt = jnp.full(4, math.log(0.5))

    def f(x, lt):
        return jnp.sum(w * encode(_eye_params(4, log_threshold=lt), x, cfg))
    np.testing.assert_allclose(encode(_eye_params(4, log_threshold=lt), x, cfg), [[0, 0.52, 0.9, 0]], rtol=1e-6)
    d_x, d_lt = jax.grad(f, argnums=(0, 1))(x, lt)
    np.testing.assert_allclose(d_x, [[0, 2, 3, 0]])                  # H(pre - theta) * w
    # d/dtheta = -(theta / eps) K w = (0, -10, 0, -20); d/dlog theta = theta * that
    np.testing.assert_allclose(d_lt, [0, -5, 0, -10], rtol=1e-5)
    # the L0 step: d/dpre = 0, d/dtheta = -(1 / eps) K w = (0, -20, 0, -40)
    d_pre, d_theta = jax.grad(lambda p, t: jnp.sum(w * heaviside(p, t, jnp.float32(0.1))), argnums=(0, 1))(
        x, jnp.full((1, 4), 0.5))
    np.testing.assert_allclose(d_pre, 0.0)
    np.testing.assert_allclose(d_theta, [[0, -20, 0, -40]], rtol=1e-5)


def test_topk_recovers_planted_feature_directions(planted, recovered):
    feats, x_ND, _ = planted
    assert mean_max_cosine(recovered.params["W_dec"], feats.directions_FD) >= 0.95
    m = reconstruction_metrics(recovered.params, x_ND[:2048], RECOVER)
    assert m["l0"] <= 3 and m["explained_variance"] > 0.8 and 0 <= m["dead_fraction"] < 1
    assert recovered.history["loss"].shape == (RECOVER.steps,)
    assert recovered.history["loss"][-50:].mean() < recovered.history["loss"][:50].mean() / 2
    np.testing.assert_allclose(jnp.linalg.norm(recovered.params["W_dec"], axis=1), 1.0, rtol=1e-5)


def test_an_ensemble_member_equals_the_same_config_trained_alone(planted):
    # Per-run k, lr, seed and aux_coeff in one vmapped program (in chunks of 100 steps), and a relu
    # config in its own group. Alone and batched matmuls round differently (~1e-9 a step); over
    # many steps a flipped top-k choice can grow that, so the runs are 200 steps long.
    ens = dataclasses.replace(RECOVER, steps=CHUNK)
    cfgs = [dataclasses.replace(ens, k=2, lr=3e-3, seed=7, aux_coeff=0.0), ens, RELU]
    together = train_dictionaries(planted[1], cfgs, chunk=100)
    for t, c in zip(together, cfgs):
        alone = train_dictionaries(planted[1], [c], chunk=CHUNK)[0]
        assert t.cfg == alone.cfg == c
        for name in alone.params:
            np.testing.assert_allclose(t.params[name], alone.params[name], rtol=1e-4, atol=1e-5, err_msg=name)
        np.testing.assert_allclose(t.history["loss"], alone.history["loss"], rtol=1e-4)
        np.testing.assert_array_equal(t.since_fired_S, alone.since_fired_S)


def test_aux_loss_revives_latents_killed_at_init(planted):
    # Half the latents start with a ~0 encoder and b_enc = -2: topk never selects them, so the
    # reconstruction never trains them and only AuxK can. (The ensemble test's program: no new compile.)
    cfg = dataclasses.replace(RECOVER, dead_after=1280)
    p0 = init_params(cfg, jax.random.key(3))
    p0["W_enc"] = p0["W_enc"].at[:, 32:].multiply(1e-4)
    p0["b_enc"] = p0["b_enc"].at[32:].set(-2.0)
    off, on = train_dictionaries(planted[1], [dataclasses.replace(cfg, aux_coeff=0.0), cfg], params0=[p0, p0],
                                 chunk=100)
    never_S = off.since_fired_S == cfg.steps * cfg.batch_size   # the counter: tokens since last fired
    assert never_S[32:].all() and not never_S[:32].any()
    assert off.history["n_dead"][-1] >= 32 and on.history["n_dead"][-1] < off.history["n_dead"][-1]
    dead = [reconstruction_metrics(r.params, planted[1][:2048], cfg)["dead_fraction"] for r in (off, on)]
    assert dead[0] >= 0.5 and dead[1] < dead[0]


def test_training_rejects_bad_inputs(planted):
    with pytest.raises(ValueError, match="x_ND"):
        train_dictionaries(planted[1][:, :5], [RECOVER])
    with pytest.raises(ValueError, match="params0"):
        train_dictionaries(planted[1], [RECOVER], params0=[{"W_enc": np.zeros((3, 3))}])
    with pytest.raises(FloatingPointError, match="non-finite"):   # the ensemble test's relu program
        train_dictionaries(np.full_like(planted[1], np.nan), [RELU])


def test_reconstruction_metrics_by_hand():
    x_ND = np.array([[1.0, -1.0, 2.0], [-2.0, -1.0, 0.5], [3.0, -1.0, 1.0], [-1.0, -3.0, -2.0]])
    m = reconstruction_metrics(_eye_params(3), x_ND, DictConfig(d_in=3, d_sae=3, kind="relu"))
    resid = np.maximum(x_ND, 0) - x_ND
    assert m["l0"] == pytest.approx(5 / 4)
    assert m["mse"] == pytest.approx((resid ** 2).mean())
    assert m["explained_variance"] == pytest.approx(1 - (resid ** 2).sum() / ((x_ND - x_ND.mean(0)) ** 2).sum())
    assert m["dead_fraction"] == pytest.approx(1 / 3)      # latent 1 never fires
    assert m["dense_fraction"] == pytest.approx(2 / 3)     # latents 0 and 2 fire on > 10 % of inputs


@pytest.fixture(scope="module")
def lm():
    """A random 1-layer model (weights drawn in numpy: no eager init) and a copy-task batch."""
    task = make_task("copy", length=4)
    cfg = TransformerConfig(n_layers=1, d_model=16, n_heads=2, vocab_size=11, max_seq_len=8)
    rng = np.random.default_rng(0)
    model = build_model(cfg, {p: rng.normal(0, 0.5, s) for p, s in param_shapes(cfg).items()})
    return model, task, task.sample(jax.random.key(0), 4)


def test_ce_and_kl_scores_are_one_for_a_perfect_splice_and_zero_for_ablation(lm):
    model, _, batch = lm
    hook = "blocks.0.resid_post"
    perfect = splice_scores(model, batch, hook, lambda x: x)
    assert abs(perfect["ce_loss_ablated"] - perfect["ce_loss_clean"]) > 0.01   # a real denominator
    assert perfect["ce_loss_score"] == pytest.approx(1.0, abs=1e-4)
    assert perfect["kl_div_score"] == pytest.approx(1.0, abs=1e-4)
    ablated = splice_scores(model, batch, hook, jnp.zeros_like)
    assert ablated["ce_loss_score"] == pytest.approx(0.0, abs=1e-4)
    assert ablated["kl_div_score"] == pytest.approx(0.0, abs=1e-4)
    # an identity dictionary through the real encode/decode: z = ReLU(x + 100), x_hat = z - 100
    params = _eye_params(16) | {"b_dec": jnp.full(16, -100.0)}
    scores = dictionary_splice_scores(model, batch, hook, params, DictConfig(d_in=16, d_sae=16, kind="relu"))
    assert scores["ce_loss_score"] == pytest.approx(1.0, abs=1e-3)
    assert scores["kl_div_score"] == pytest.approx(1.0, abs=1e-3)


def test_collect_activations_from_a_task_sampler_and_train(lm):
    model, task, _ = lm
    key = jax.random.key(5)
    # the recovery test's program, on a table of the same size: no new compile
    x_ND, (trained,) = train_on_model(model, "blocks.0.resid_post", task.sample, [RECOVER], key, 8192, chunk=CHUNK)
    assert x_ND.shape == (8192, 16) and trained.cfg == RECOVER and np.isfinite(trained.history["loss"]).all()
    inputs = jax.jit(task.sample, static_argnums=1)(jax.random.fold_in(key, 0), 64).inputs
    _, cache = forward(model, inputs, ["blocks.0.resid_post"])
    np.testing.assert_allclose(x_ND[:512], np.asarray(cache["blocks.0.resid_post"]).reshape(-1, 16), rtol=1e-5)
