import numpy as np
import pytest

from toymodels.analysis.similarity import (
    affine_r2,
    affine_r2_split,
    center,
    debiased_linear_cka,
    linear_cka,
    linear_probe_r2,
    mlp_r2,
    normalized_score,
    procrustes_distance,
    procrustes_map,
    r2_score,
    ridge_fit,
    weight_stats,
)


def _orthogonal(rng, n):
    Q, R = np.linalg.qr(rng.normal(size=(n, n)))
    return Q * np.sign(np.diag(R))


def test_orthogonal_scaled_translated_copy_is_identical_to_every_metric():
    rng = np.random.default_rng(0)
    X_NA = rng.normal(size=(500, 8))
    Q_AA = _orthogonal(rng, 8)
    Y_NA = 3.0 * X_NA @ Q_AA + rng.normal(size=(1, 8))
    assert abs(linear_cka(X_NA, Y_NA) - 1) < 1e-10
    assert abs(debiased_linear_cka(X_NA, Y_NA) - 1) < 1e-8
    assert procrustes_distance(X_NA, Y_NA) < 1e-6
    np.testing.assert_allclose(procrustes_map(X_NA, Y_NA), Q_AA, atol=1e-8)


def test_invertible_affine_map_is_perfectly_predictable_but_not_cka_identical():
    rng = np.random.default_rng(1)
    X_NA = rng.normal(size=(400, 6))
    # Strongly anisotropic: singular values 1 .. 100.
    M_AA = _orthogonal(rng, 6) @ np.diag(np.logspace(0, 2, 6)) @ _orthogonal(rng, 6)
    Y_NA = X_NA @ M_AA + rng.normal(size=(1, 6)) * 5
    for a, b in [(X_NA, Y_NA), (Y_NA, X_NA)]:
        r = affine_r2_split(a, b)
        assert r.overall > 1 - 1e-6
        assert np.all(r.per_output > 1 - 1e-6)
    assert affine_r2_split(X_NA, Y_NA, cv=0.2).overall > 1 - 1e-6
    assert linear_cka(X_NA, Y_NA) < 0.9
    assert procrustes_distance(X_NA, Y_NA) > 0.1


def test_independent_representations_score_near_zero():
    rng = np.random.default_rng(2)
    X_NA, Y_NB = rng.normal(size=(4000, 8)), rng.normal(size=(4000, 10))
    assert linear_cka(X_NA, Y_NB) < 0.02
    assert abs(debiased_linear_cka(X_NA, Y_NB)) < 0.05
    assert affine_r2_split(X_NA, Y_NB).overall < 0.02
    # The plain estimator is biased upward when N is comparable to the width; debiasing fixes it.
    X_NA, Y_NB = rng.normal(size=(60, 40)), rng.normal(size=(60, 40))
    assert linear_cka(X_NA, Y_NB) > 0.3
    assert abs(debiased_linear_cka(X_NA, Y_NB)) < 0.05


def test_debiased_cka_matches_gram_formula_and_linear_cka_for_large_n():
    def hsic1(K, L):  # Song et al. 2012, eq. (5), on explicit Grams
        n = len(K)
        K, L = K - np.diag(np.diag(K)), L - np.diag(np.diag(L))
        one = np.ones(n)
        return (np.trace(K @ L) + one @ K @ one * (one @ L @ one) / ((n - 1) * (n - 2))
                - 2 / (n - 2) * one @ K @ L @ one) / (n * (n - 3))

    rng = np.random.default_rng(3)
    X_NA, Y_NB = rng.normal(size=(7, 3)) + 2, rng.normal(size=(7, 5))
    K, L = center(X_NA) @ center(X_NA).T, center(Y_NB) @ center(Y_NB).T
    expected = hsic1(K, L) / np.sqrt(hsic1(K, K) * hsic1(L, L))
    assert debiased_linear_cka(X_NA, Y_NB) == pytest.approx(expected, abs=1e-12)
    assert isinstance(debiased_linear_cka(X_NA[:4], Y_NB[:4]), float)  # smallest N the estimator allows

    X_NA = rng.normal(size=(5000, 6))
    Y_NB = np.tanh(X_NA @ rng.normal(size=(6, 4))) + 0.5 * rng.normal(size=(5000, 4))
    assert debiased_linear_cka(X_NA, Y_NB) == pytest.approx(linear_cka(X_NA, Y_NB), abs=0.01)


def test_linear_cka_by_hand():
    X = np.array([[1.0, 0], [0, 1], [-1, 0], [0, -1]])
    # X^T X = 2I, Y^T X = diag(2, 4), Y^T Y = diag(2, 8): 20 / sqrt(8 * 68).
    assert linear_cka(X, X @ np.diag([1.0, 2.0])) == pytest.approx(20 / np.sqrt(544), abs=1e-12)

    rng = np.random.default_rng(4)
    X, Y = rng.normal(size=(4, 2)) + 1, rng.normal(size=(4, 3))
    H = np.eye(4) - np.ones((4, 4)) / 4
    hsic = lambda K, L: np.trace(K @ H @ L @ H)
    K, L = X @ X.T, Y @ Y.T
    assert linear_cka(X, Y) == pytest.approx(hsic(K, L) / np.sqrt(hsic(K, K) * hsic(L, L)), abs=1e-12)
    # The Gram-space branch (N < width) must agree with the feature-space one.
    Xw, Yw = rng.normal(size=(5, 9)), rng.normal(size=(5, 7))
    H = np.eye(5) - np.ones((5, 5)) / 5
    K, L = Xw @ Xw.T, Yw @ Yw.T
    assert linear_cka(Xw, Yw) == pytest.approx(hsic(K, L) / np.sqrt(hsic(K, K) * hsic(L, L)), abs=1e-12)


def test_nonlinear_map_is_explained_by_mlp_not_affine():
    rng = np.random.default_rng(5)
    X_NA = rng.uniform(-1, 1, size=(1000, 4))
    Y_NB = np.stack([X_NA[:, 0] * X_NA[:, 1], X_NA[:, 2] * X_NA[:, 3], np.sin(3 * X_NA[:, 0])], axis=1)
    aff = affine_r2(X_NA[:750], Y_NB[:750], X_NA[750:], Y_NB[750:]).overall
    mlp = mlp_r2(X_NA[:750], Y_NB[:750], X_NA[750:], Y_NB[750:], hidden=64, steps=1000).overall
    assert mlp > 0.85
    assert mlp - aff > 0.3


def test_procrustes_handles_width_mismatch():
    rng = np.random.default_rng(6)
    X_NA = rng.normal(size=(300, 3))
    Y_NB = np.concatenate([2 * X_NA @ _orthogonal(rng, 3), np.zeros((300, 2))], axis=1) + 1
    assert procrustes_distance(X_NA, Y_NB) < 1e-6
    R_AB = procrustes_map(X_NA, Y_NB)
    assert R_AB.shape == (3, 5)
    np.testing.assert_allclose(R_AB @ R_AB.T, np.eye(3), atol=1e-10)
    Xn, Yn = center(X_NA) / np.linalg.norm(center(X_NA)), center(Y_NB) / np.linalg.norm(center(Y_NB))
    np.testing.assert_allclose(Xn @ R_AB, Yn, atol=1e-8)

    Z_NC = rng.normal(size=(300, 7))
    d = procrustes_distance(X_NA, Z_NC)
    assert 0.5 < d <= np.sqrt(2)
    assert d == pytest.approx(procrustes_distance(Z_NC, X_NA), abs=1e-12)


def test_constant_target_column_gives_finite_overall_r2():
    rng = np.random.default_rng(7)
    X_NA = rng.normal(size=(200, 4))
    Y_NB = np.concatenate([X_NA @ rng.normal(size=(4, 2)), np.full((200, 1), 3.0)], axis=1)
    r = affine_r2_split(X_NA, Y_NB)
    assert r.overall > 1 - 1e-6
    assert np.isnan(r.per_output[2]) and np.all(np.isfinite(r.per_output[:2]))
    m = mlp_r2(X_NA[:150], Y_NB[:150], X_NA[150:], Y_NB[150:], hidden=16, steps=50)
    assert np.isfinite(m.overall) and np.isnan(m.per_output[2])
    assert np.isnan(r2_score(np.ones((5, 1)), np.zeros((5, 1))).overall)


def test_ridge_fit_matches_normal_equations_with_free_intercept():
    rng = np.random.default_rng(8)
    X_NA, Y_NB = rng.normal(size=(50, 3)) + 4, rng.normal(size=(50, 2))
    alpha = 7.0
    Xa = np.concatenate([X_NA, np.ones((50, 1))], axis=1)
    P = alpha * np.diag([1.0, 1, 1, 0])
    Wb = np.linalg.solve(Xa.T @ Xa + P, Xa.T @ Y_NB)
    W_AB, b_B = ridge_fit(X_NA, Y_NB, alpha)
    np.testing.assert_allclose(W_AB, Wb[:3], atol=1e-10)
    np.testing.assert_allclose(b_B, Wb[3], atol=1e-10)


def test_linear_probe_on_vector_and_scalar_targets():
    rng = np.random.default_rng(9)
    acts_NA = rng.normal(size=(300, 10))
    assert linear_probe_r2(acts_NA, acts_NA @ rng.normal(size=10) + 2) > 1 - 1e-6
    assert linear_probe_r2(acts_NA, acts_NA[:, :3] * 2) > 1 - 1e-6
    assert linear_probe_r2(acts_NA, rng.normal(size=300)) < 0.05


def test_normalized_score_hand_values():
    assert normalized_score(0.5, 0.2, 0.8) == pytest.approx(0.5)
    assert normalized_score(0.2, 0.2, 0.8) == 0.0
    assert normalized_score(0.8, 0.2, 0.8) == pytest.approx(1.0)
    assert normalized_score(0.9, 0.2, 0.8) == pytest.approx(7 / 6)
    assert np.isnan(normalized_score(0.5, 0.3, 0.3))
    np.testing.assert_allclose(normalized_score(np.array([0.0, 1.0, 2.0]), 0.0, 2.0), [0, 0.5, 1])


def test_weight_stats_on_diagonal_matrix():
    s = weight_stats(np.diag([3.0, 2.0, 1.0, 0.0]))
    np.testing.assert_allclose(s["singular_values"], [3, 2, 1, 0], atol=1e-12)
    assert s["frobenius"] == pytest.approx(np.sqrt(14))
    assert s["sparsity"] == pytest.approx(13 / 16)
    p = np.array([3, 2, 1]) / 6
    assert s["effective_rank"] == pytest.approx(np.exp(-np.sum(p * np.log(p))))
    assert s["stable_rank"] == pytest.approx(14 / 9)
    assert weight_stats(np.eye(5))["effective_rank"] == pytest.approx(5)
    z = weight_stats(np.zeros((2, 3)))
    assert z["sparsity"] == 1.0 and z["effective_rank"] == 0.0


def test_bad_shapes_raise_naming_the_shapes():
    rng = np.random.default_rng(10)
    X, Y = rng.normal(size=(10, 3)), rng.normal(size=(9, 3))
    for fn in (linear_cka, debiased_linear_cka, procrustes_distance, procrustes_map, affine_r2_split):
        with pytest.raises(ValueError, match=r"\(10, 3\).*\(9, 3\)"):
            fn(X, Y)
    with pytest.raises(ValueError, match=r"2-D.*\(10,\)"):
        linear_cka(X[:, 0], X)
    with pytest.raises(ValueError, match=r"at least 4 rows.*\(3, 3\)"):
        debiased_linear_cka(X[:3], X[:3])
    with pytest.raises(ValueError, match=r"X_test \(5, 2\)"):
        affine_r2(X, X, X[:5, :2], X[:5])
    with pytest.raises(ValueError, match=r"NaN"):
        linear_cka(np.full((4, 2), np.nan), X[:4])
    with pytest.raises(ValueError, match=r"2-D.*\(2, 2, 2\)"):
        weight_stats(np.zeros((2, 2, 2)))


def test_refit_readout_recovers_a_linearly_decodable_label():
    from toymodels.analysis.similarity import refit_readout_accuracy
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    Z = np.eye(3)[y] @ rng.normal(size=(3, 8)) + 0.05 * rng.normal(size=(300, 8))
    assert refit_readout_accuracy(Z[:200], y[:200], Z[200:], y[200:]) == 1.0
    noise = rng.normal(size=(300, 8))
    assert refit_readout_accuracy(noise[:200], y[:200], noise[200:], y[200:]) < 0.6


def test_partial_out_leaves_what_the_covariates_cannot_explain():
    from toymodels.analysis.similarity import partial_out

    rng = np.random.default_rng(0)
    Z = rng.integers(0, 2, size=(300, 4)).astype(float)
    Z = np.concatenate([Z, Z[:, :1] + Z[:, 1:2]], axis=1)      # collinear columns are fine
    noise = rng.normal(size=(300, 3))
    X = Z @ rng.normal(size=(5, 3)) + 2.0 + noise
    R = partial_out(X, Z)
    # the residual is orthogonal to Z and the intercept, and is noise's own residual
    np.testing.assert_allclose(np.concatenate([Z, np.ones((300, 1))], 1).T @ R, 0, atol=1e-8)
    np.testing.assert_allclose(R, partial_out(noise, Z), atol=1e-8)
    assert linear_cka(R, noise) > 0.9
    # a matrix explained up to rounding comes back exactly zero (constant: measures call it undefined)
    assert not partial_out(Z @ rng.normal(size=(5, 2)) - 1.0, Z).any()
    assert np.isnan(linear_cka(partial_out(Z[:, :2], Z), noise))
    with pytest.raises(ValueError, match="same number of rows"):
        partial_out(X, Z[:10])
