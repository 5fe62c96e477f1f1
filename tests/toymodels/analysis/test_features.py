import dataclasses

import jax
import numpy as np
import pytest

from toymodels.analysis.features import (
    correlations,
    feature_recovery,
    match_features,
    mcc,
    mean_max_cosine,
    planted_features,
    recovery_report,
)


@pytest.fixture(scope="module")
def feats():
    # 2 parents with 2 children each (features 0..5), 3 co-firing pairs (6..11), 8 independent
    return planted_features(0, 20, 8, p=0.1, magnitude=2.0, magnitude_spread=0.2, n_pairs=3, co_fire=1.0,
                            n_parents=2, children_per_parent=2, child_p=0.5, noise_std=0.0)


@pytest.fixture(scope="module")
def drawn(feats):
    x_ND, c_NF = feats.sample(jax.random.key(1), 20000)
    return np.asarray(x_ND), np.asarray(c_NF)


def test_directions_are_unit_and_inputs_are_their_sparse_sums(feats, drawn):
    x_ND, c_NF = drawn
    assert feats.directions_FD.shape == (20, 8)   # more features than dimensions
    np.testing.assert_allclose(np.linalg.norm(feats.directions_FD, axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(x_ND, c_NF @ feats.directions_FD, rtol=1e-5, atol=1e-5)
    assert (c_NF >= 0).all() and (c_NF[c_NF > 0] > 0.5).all()
    assert abs((c_NF[:, 12:] > 0).mean() - 0.1) < 0.01               # independent features fire with p


def test_children_fire_only_with_their_parent_and_pairs_co_fire(feats, drawn):
    fire = drawn[1] > 0
    np.testing.assert_array_equal(feats.parent_F[:6], [-1, -1, 0, 0, 1, 1])
    for child, parent in ((2, 0), (3, 0), (4, 1), (5, 1)):
        assert not (fire[:, child] & ~fire[:, parent]).any()
        assert abs(fire[fire[:, parent], child].mean() - 0.5) < 0.05   # child_p given the parent
    for a in (6, 8, 10):                                                # co_fire = 1: identical firing
        np.testing.assert_array_equal(fire[:, a], fire[:, a + 1])


def test_noise_and_sampling_are_reproducible(feats):
    noisy = dataclasses.replace(feats, noise_std=0.1)   # same shapes as the fixture's draw: no new compile
    x1, c1 = noisy.sample(jax.random.key(0), 20000)
    x2, _ = noisy.sample(jax.random.key(0), 20000)
    np.testing.assert_array_equal(x1, x2)
    assert np.std(np.asarray(x1 - c1 @ feats.directions_FD)) == pytest.approx(0.1, rel=0.05)
    by_key = planted_features(jax.random.key(3), 6, 4).directions_FD
    np.testing.assert_array_equal(by_key, planted_features(jax.random.key(3), 6, 4).directions_FD)
    assert not np.array_equal(by_key, planted_features(jax.random.key(4), 6, 4).directions_FD)


@pytest.mark.parametrize("kwargs,name", [({"n_features": 0}, "n_features"), ({"p": 1.5}, "p"),
                                         ({"p": np.full(3, 0.1)}, "p"), ({"magnitude": -1.0}, "magnitude"),
                                         ({"co_fire": 2.0}, "co_fire"), ({"noise_std": -1.0}, "noise_std"),
                                         ({"n_pairs": 5, "n_parents": 2}, "n_pairs")])
def test_bad_arguments_raise_naming_them(kwargs, name):
    args = {"n_features": 10, "d": 4} | kwargs
    with pytest.raises(ValueError, match=rf"^{name}="):
        planted_features(0, args.pop("n_features"), args.pop("d"), **args)


def test_mean_max_cosine_is_one_on_itself_and_low_on_random_directions(feats):
    true_FD = feats.directions_FD
    assert mean_max_cosine(true_FD, true_FD) == pytest.approx(1.0)
    assert mean_max_cosine(-2 * true_FD[::-1], true_FD) == pytest.approx(1.0)   # sign and scale free
    rand = planted_features(99, 20, 8).directions_FD
    assert mean_max_cosine(rand, true_FD) < 0.85
    with pytest.raises(ValueError, match="^W_dec_SD="):
        mean_max_cosine(true_FD[:, :5], true_FD)


@pytest.mark.parametrize("method", ["hungarian", "greedy"])
def test_a_permuted_copy_is_recovered_perfectly(feats, method):
    true_FD = feats.directions_FD
    perm = np.random.default_rng(0).permutation(20)
    matches = match_features(true_FD[perm], true_FD, 0.99, method)
    assert len(matches) == 20 and (perm[matches[:, 0]] == matches[:, 1]).all()
    assert feature_recovery(true_FD[perm], true_FD, 0.99, method) == {
        "precision": 1.0, "recall": 1.0, "f1": 1.0, "n_matched": 20}
    # extra dead latents: precision drops unless only live latents count
    padded = np.concatenate([true_FD[perm], np.zeros((20, 8))])
    assert feature_recovery(padded, true_FD, 0.99, method)["precision"] == 0.5
    assert feature_recovery(padded, true_FD, 0.99, method, alive_S=np.arange(40) < 20)["f1"] == 1.0


def test_hungarian_matches_more_pairs_than_greedy():
    # features at angles 0 and 0.3; latent A (0.1) fits both, latent B (-0.4) only feature 0.
    # Greedy gives A feature 0 and leaves feature 1 unmatched; Hungarian pairs A-1 and B-0.
    unit = lambda a: np.stack([np.cos(a), np.sin(a)], 1)  # noqa: E731
    true_FD, W_SD = unit(np.array([0.0, 0.3])), unit(np.array([0.1, -0.4]))
    assert len(match_features(W_SD, true_FD, 0.9, "greedy")) == 1
    assert len(match_features(W_SD, true_FD, 0.9, "hungarian")) == 2


def test_mcc_by_hand():
    z_NS = np.array([[0.0, 1.0], [2.0, 0.0], [1.0, 1.0], [0.0, 3.0]])
    c_NF = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0], [3.0, 0.0]])
    r = lambda a, b: np.corrcoef(a, b)[0, 1]  # noqa: E731
    np.testing.assert_allclose(correlations(z_NS, c_NF), [[r(z_NS[:, s], c_NF[:, f]) for f in range(2)]
                                                          for s in range(2)])
    by_hand = (r(z_NS[:, 1], c_NF[:, 0]) + r(z_NS[:, 0], c_NF[:, 1])) / 2   # the better assignment here
    assert by_hand > (r(z_NS[:, 0], c_NF[:, 0]) + r(z_NS[:, 1], c_NF[:, 1])) / 2
    assert mcc(z_NS, c_NF) == pytest.approx(by_hand)
    assert mcc(z_NS, c_NF, [[0, 0]]) == pytest.approx(r(z_NS[:, 0], c_NF[:, 0]))
    assert mcc(z_NS, np.ones((4, 2)), [[0, 0]]) == 0.0                      # a constant column
    with pytest.raises(ValueError, match="^c_NF="):
        mcc(z_NS, c_NF[:3])


def test_recovery_report_of_the_truth(feats, drawn):
    report = recovery_report(feats.directions_FD, feats.directions_FD, drawn[1], drawn[1])
    assert report["mean_max_cosine"] == pytest.approx(1.0) and report["f1"] == 1.0
    assert report["mcc"] == pytest.approx(1.0)
