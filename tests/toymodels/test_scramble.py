"""Function-preserving scrambles: outputs unchanged to float tolerance, weights visibly changed."""

import numpy as np
import pytest

from toymodels import scramble
from toymodels.compiler import compile_program, forward
from toymodels.params import build_model, model_params, param_shapes
from toymodels.config import ConfigError
from toymodels.model import TransformerConfig
from toymodels.rasp import library as lib

SCRAMBLES = [scramble.rotate_residual, scramble.permute_residual, scramble.permute_mlp_units,
             scramble.permute_heads, scramble.rescale_mlp_units, scramble.scramble]


@pytest.fixture(scope="module")
def compiled():
    m = compile_program(lib.make_shuffle_dyck2(), "(){}", 5)
    ids = m.encode([["BOS", *s] for s in ["(){}(", "({)}}", "{{}}(", ")(){}", "({})}"]])
    return m, ids


def _changed(a, b) -> float:
    pa, pb = model_params(a), model_params(b)
    return max(float(np.abs(pa[k] - pb[k]).max()) for k in pa)


@pytest.mark.parametrize("fn", SCRAMBLES, ids=lambda f: f.__name__)
def test_compiled_outputs_unchanged(compiled, fn):
    m, ids = compiled
    scrambled = fn(m.model, 1)
    assert np.abs(forward(scrambled, ids) - forward(m.model, ids)).max() < 1e-4
    assert _changed(scrambled, m.model) > 0.1
    decoded = m.decode(forward(scrambled, ids))
    assert decoded == m.run_batch([["BOS", *s] for s in ["(){}(", "({)}}", "{{}}(", ")(){}", "({})}"]])


def test_full_scramble_hides_the_one_hot_basis(compiled):
    m, _ = compiled
    w = model_params(scramble.scramble(m.model, 2))["W_E"]
    assert (np.abs(w) > 1e-3).mean() > 0.9            # dense, not one-hot


def random_model(cfg, seed=0):
    """A model with random weights everywhere (also LayerNorm scales and biases)."""
    rng = np.random.default_rng(seed)
    return build_model(cfg, {p: (1.0 if p.endswith("scale") else 0.0) + 0.3 * rng.standard_normal(s)
                             for p, s in param_shapes(cfg).items()})


@pytest.mark.parametrize("norm", ["none", "layernorm"])
def test_trained_style_models(norm):
    cfg = TransformerConfig(n_layers=2, d_model=16, n_heads=2, d_mlp=32, vocab_size=7, max_seq_len=8,
                            norm=norm, act="relu", use_bias=True, causal=True)
    model = random_model(cfg)
    ids = np.random.default_rng(0).integers(0, 7, (3, 8))
    ref = forward(model, ids)
    fns = [scramble.permute_residual, scramble.permute_mlp_units, scramble.permute_heads,
           scramble.rescale_mlp_units, scramble.scramble]
    if norm == "none":
        fns.append(scramble.rotate_residual)
    else:
        with pytest.raises(ConfigError, match="LayerNorm"):
            scramble.rotate_residual(model)
    for fn in fns:
        assert np.abs(forward(fn(model, 3), ids) - ref).max() < 1e-4, fn.__name__


def test_rescaling_needs_relu():
    cfg = TransformerConfig(n_layers=1, d_model=8, n_heads=2, vocab_size=5, max_seq_len=4, act="gelu")
    with pytest.raises(ConfigError, match="relu"):
        scramble.rescale_mlp_units(random_model(cfg))


@pytest.mark.parametrize("norm", ["none", "layernorm"])
def test_scramble_is_the_composition_of_the_single_scrambles(norm):
    cfg = TransformerConfig(n_layers=2, d_model=16, n_heads=2, d_mlp=32, vocab_size=7, max_seq_len=8,
                            norm=norm, act="relu", use_bias=True)
    model = random_model(cfg, 4)
    seeds = np.random.default_rng(5).integers(0, 2**31, 4).tolist()
    chained = (scramble.rotate_residual if norm == "none" else scramble.permute_residual)(model, seeds[0])
    chained = scramble.permute_mlp_units(chained, seeds[1])
    chained = scramble.permute_heads(chained, seeds[2])
    chained = scramble.rescale_mlp_units(chained, seeds[3])
    a, b = model_params(scramble.scramble(model, 5)), model_params(chained)
    assert all(np.array_equal(a[k], b[k]) for k in a)     # bitwise: same float32 rounding per step
