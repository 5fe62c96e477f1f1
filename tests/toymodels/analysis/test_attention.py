import numpy as np
import pytest

from toymodels.analysis.attention import mass_by_distance
from toymodels.hooks import forward
from toymodels.model import TransformerConfig, init_model


def test_uniform_causal_attention_spreads_each_query_evenly():
    T = 6
    pattern = np.tril(np.ones((T, T))) / np.arange(1, T + 1)[:, None]   # query t: 1/(t+1) on keys 0..t
    mass = mass_by_distance(pattern[None, None], min_query=2)[0]
    # queries 2..5: distance d carries 1/(t+1) where t >= d, else 0
    want = [np.mean([1 / (t + 1) if t >= d else 0.0 for t in range(2, T)]) for d in range(T)]
    np.testing.assert_allclose(mass, want)
    assert mass.sum() == pytest.approx(1.0)


def test_attention_to_the_previous_token_is_all_at_distance_one():
    T = 5
    pattern = np.zeros((2, 3, T, T))
    pattern[:, :, 0, 0] = 1.0
    for t in range(1, T):
        pattern[:, :, t, t - 1] = 1.0
    mass = mass_by_distance(pattern, min_query=1)
    np.testing.assert_array_equal(mass, np.tile([0, 1, 0, 0, 0], (3, 1)))


def test_a_model_s_patterns_sum_to_one_per_query_at_every_layer():
    cfg = TransformerConfig(n_layers=2, d_model=16, n_heads=2, vocab_size=7, max_seq_len=9)
    model = init_model(cfg, 0)
    tokens = np.random.default_rng(0).integers(0, 7, (4, 9))
    _, cache = forward(model, tokens, ("blocks.*.attn.pattern",))
    for name in ("blocks.0.attn.pattern", "blocks.1.attn.pattern"):
        mass = mass_by_distance(cache[name], min_query=3)
        assert mass.shape == (2, 9)
        np.testing.assert_allclose(mass.sum(-1), 1.0, rtol=1e-5)


def test_bad_shapes_and_query_ranges_are_refused():
    with pytest.raises(ValueError, match=r"\(B, H, T, S\)"):
        mass_by_distance(np.zeros((3, 4, 4)))
    with pytest.raises(ValueError, match="min_query=4"):
        mass_by_distance(np.zeros((1, 1, 4, 4)), min_query=4)
