import jax
import numpy as np
import pytest

from toymodels.config import replace
from toymodels.hooks import patch, run_with_cache, run_with_interventions
from toymodels.model import init_model
from toymodels.patching import patch_sweep


@pytest.fixture
def model(tiny_cfg):
    return init_model(replace(tiny_cfg, init_std=0.3), 0)


def _pair(cfg, T=6):
    clean = jax.random.randint(jax.random.key(1), (3, T), 0, cfg.vocab_size)
    return clean, clean.at[:, 2].set((clean[:, 2] + 1) % cfg.vocab_size)


def metric(logits_BTV):
    return (logits_BTV[:, -1, 3] - logits_BTV[:, -1, 5]).mean()


@pytest.mark.parametrize("names", ["resid_pre", "attn.out", "mlp.post", "attn.pattern", "resid_post"])
def test_every_layer_position_entry_is_that_patch_done_alone(model, tiny_cfg, names):
    clean, corrupt = _pair(tiny_cfg)
    values_LT, clean_m, corrupt_m = patch_sweep(model, clean, corrupt, metric, names)
    assert values_LT.shape == (tiny_cfg.n_layers, 6)
    np.testing.assert_allclose(clean_m, metric(model(clean)), atol=1e-5)
    np.testing.assert_allclose(corrupt_m, metric(model(corrupt)), atol=1e-5)
    _, cache = run_with_cache(model, clean, [f"blocks.*.{names}"])
    for l in range(tiny_cfg.n_layers):
        n = f"blocks.{l}.{names}"
        for t in range(6):
            alone = metric(run_with_interventions(model, corrupt, {n: patch(cache[n], positions=[t])}))
            np.testing.assert_allclose(values_LT[l, t], alone, atol=1e-5, err_msg=f"{n} at {t}")


@pytest.mark.parametrize("names", ["attn.z", "attn.result", "attn.pattern"])
def test_every_head_entry_is_that_patch_done_alone(model, tiny_cfg, names):
    clean, corrupt = _pair(tiny_cfg)
    values_LH, _, _ = patch_sweep(model, clean, corrupt, metric, names, over="head")
    assert values_LH.shape == (tiny_cfg.n_layers, tiny_cfg.n_heads)
    _, clean_cache = run_with_cache(model, clean, [f"blocks.*.{names}"])
    _, corrupt_cache = run_with_cache(model, corrupt, [f"blocks.*.{names}"])
    axis = 1 if names == "attn.pattern" else 2
    for l in range(tiny_cfg.n_layers):
        n = f"blocks.{l}.{names}"
        for h in range(tiny_cfg.n_heads):       # the corrupted run's activation with head h's taken from clean
            value = np.array(corrupt_cache[n])
            idx = (slice(None),) * axis + (h,)
            value[idx] = np.asarray(clean_cache[n])[idx]
            alone = metric(run_with_interventions(model, corrupt, {n: patch(value)}))
            np.testing.assert_allclose(values_LH[l, h], alone, atol=1e-5, err_msg=f"{n} head {h}")


def test_patching_the_last_residual_restores_the_clean_metric(model, tiny_cfg):
    clean, corrupt = _pair(tiny_cfg)
    L = tiny_cfg.n_layers
    values_LT, clean_m, corrupt_m = patch_sweep(model, clean, corrupt, metric, "resid_post")
    assert abs(clean_m - corrupt_m) > 1e-2
    np.testing.assert_allclose(values_LT[L - 1, -1], clean_m, atol=1e-5)  # the metric reads position -1
    np.testing.assert_allclose(values_LT[L - 1, :-1], corrupt_m, atol=1e-5)
    n = f"blocks.{L - 1}.resid_post"
    _, cache = run_with_cache(model, clean, [n])
    np.testing.assert_allclose(metric(run_with_interventions(model, corrupt, {n: patch(cache[n])})),
                               clean_m, atol=1e-5)


def test_a_sweep_is_one_program_and_batches_agree(model, tiny_cfg):
    clean, corrupt = _pair(tiny_cfg)
    calls = []

    def counted(logits):
        calls.append(1)
        return metric(logits)
    values_LT, _, _ = patch_sweep(model, clean, corrupt, counted)
    assert len(calls) == 3    # traced once for the vmapped runs, once per baseline; not L x T times
    chunked, _, _ = patch_sweep(model, clean, corrupt, metric, batch_size=5)
    np.testing.assert_allclose(chunked, values_LT, atol=1e-5)


@pytest.mark.parametrize("kw, match", [
    (dict(over="neuron"), r"over='neuron': use 'layer_pos' or 'head'"),
    (dict(names="resid_pre", over="head"), r"names='resid_pre' cannot be patched over 'head'; allowed: attn.k"),
    (dict(names="resid_prev"), r"names='resid_prev' cannot be patched .*allowed: .*resid_pre"),
])
def test_bad_arguments_raise_naming_what_is_allowed(model, tiny_cfg, kw, match):
    clean, corrupt = _pair(tiny_cfg)
    with pytest.raises(ValueError, match=match):
        patch_sweep(model, clean, corrupt, metric, **kw)
    with pytest.raises(ValueError, match=r"same shape"):
        patch_sweep(model, clean, corrupt[:, :5], metric)
    with pytest.raises(ValueError, match=r"vocab_size=16"):
        patch_sweep(model, clean, corrupt.at[0, 0].set(16), metric)
