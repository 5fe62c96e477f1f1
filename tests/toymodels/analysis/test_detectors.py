
import numpy as np
import pytest

from toymodels.analysis.detectors import (
    ContrastProbe,
    Detector,
    Mahalanobis,
    NotFittedError,
    SupervisedProbe,
    auroc,
    average_precision,
    detection_scores,
)


def _correlated(rng, n, d, cov_DD, shift_D=None):
    X = rng.multivariate_normal(np.zeros(d), cov_DD, size=n)
    return X if shift_D is None else X + shift_D


def _random_cov(rng, d):
    A = rng.normal(size=(d, d))
    return A @ A.T / d + 0.1 * np.eye(d)


def _brute_auroc(c, a):
    diff = a[:, None] - c[None, :]
    return float(np.mean((diff > 0) + 0.5 * (diff == 0)))


def _brute_ap(c, a):
    s = np.concatenate([c, a])
    y = np.concatenate([np.zeros(c.size), np.ones(a.size)])
    ap, prev_r = 0.0, 0.0
    for t in sorted(set(s.tolist()), reverse=True):
        sel = s >= t
        r, p = y[sel].sum() / y.sum(), y[sel].mean()
        ap += (r - prev_r) * p
        prev_r = r
    return ap


def test_mahalanobis_catches_a_planted_mean_shift_and_is_chance_on_clean():
    rng = np.random.default_rng(0)
    d = 16
    cov = _random_cov(rng, d)
    u = rng.normal(size=d)
    u /= np.linalg.norm(u)
    shift = 3.0 * np.sqrt(u @ cov @ u) * u          # 3 sd along u
    det = Mahalanobis().fit(_correlated(rng, 2000, d, cov))
    clean, shifted = _correlated(rng, 2000, d, cov), _correlated(rng, 2000, d, cov, shift)
    assert auroc(det.score(clean), det.score(shifted)) > 0.99
    same = _correlated(rng, 4000, d, cov)
    assert abs(auroc(det.score(clean), det.score(same)) - 0.5) < 0.05


def test_mahalanobis_beats_euclidean_when_the_covariance_matters():
    rng = np.random.default_rng(1)
    d = 4
    sd = np.array([3.0] * (d - 1) + [0.3])            # last direction has little variance
    trusted, clean = rng.normal(size=(1000, d)) * sd, rng.normal(size=(1000, d)) * sd
    shifted = rng.normal(size=(1000, d)) * sd + np.eye(d)[-1] * 1.5   # 5 sd along it
    maha = Mahalanobis().fit(trusted)
    mu = trusted.mean(0)
    euclid = [np.sum((x - mu) ** 2, axis=1) for x in (clean, shifted)]
    assert auroc(maha.score(clean), maha.score(shifted)) > 0.95
    assert auroc(*euclid) < 0.6


def test_mahalanobis_works_when_d_exceeds_n():
    # Rows near a 10-dimensional subspace of a 200-dimensional space, 50 trusted rows; the
    # triggered rows leave the subspace, which only a (shrunk) covariance can see.
    rng = np.random.default_rng(2)
    d, k, n = 200, 10, 50
    W_KD = rng.normal(size=(k, d))

    def rows(m, shift=0.0):
        off = rng.normal(size=d)
        off -= np.linalg.lstsq(W_KD.T, off, rcond=None)[0] @ W_KD   # orthogonal to the subspace
        return rng.normal(size=(m, k)) @ W_KD + 0.1 * rng.normal(size=(m, d)) + shift * off / np.linalg.norm(off)

    trusted = rows(n)
    with pytest.raises(ValueError, match="not positive definite"):
        Mahalanobis(shrinkage=0.0).fit(trusted)
    det = Mahalanobis().fit(trusted)
    clean, shifted = rows(300), rows(300, shift=3.0)
    s = det.score(clean)
    assert s.shape == (300,) and s.dtype == np.float64 and np.all(np.isfinite(s))
    assert auroc(s, det.score(shifted)) > 0.99


def test_mahalanobis_equals_the_inverse_formula():
    rng = np.random.default_rng(3)
    d = 6
    trusted = _correlated(rng, 500, d, _random_cov(rng, d))
    X = rng.normal(size=(20, d))
    mu, C = trusted.mean(0), np.cov(trusted, rowvar=False)
    expected = np.einsum("nd,de,ne->n", X - mu, np.linalg.inv(C), X - mu)
    np.testing.assert_allclose(Mahalanobis(shrinkage=0.0).fit(trusted).score(X), expected, rtol=1e-10)
    s = 0.3
    Cs = (1 - s) * C + s * np.trace(C) / d * np.eye(d)
    expected = np.einsum("nd,de,ne->n", X - mu, np.linalg.inv(Cs), X - mu)
    np.testing.assert_allclose(Mahalanobis(shrinkage=s).fit(trusted).score(X), expected, rtol=1e-10)


def test_auroc_and_ap_equal_brute_force_with_ties():
    rng = np.random.default_rng(4)
    for _ in range(200):
        c = rng.integers(0, 5, rng.integers(1, 12)).astype(float)
        a = rng.integers(0, 5, rng.integers(1, 12)).astype(float)
        assert auroc(c, a) == pytest.approx(_brute_auroc(c, a), abs=1e-12)
        assert average_precision(c, a) == pytest.approx(_brute_ap(c, a), abs=1e-12)


def test_ap_small_cases_by_hand():
    # Descending: a(3), {c, a}(2), c(1): thresholds 3 -> R .5 P 1; 2 -> R 1 P 2/3.
    assert average_precision([2.0, 1.0], [3.0, 2.0]) == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert auroc([2.0, 1.0], [3.0, 2.0]) == pytest.approx((1 + 1 + 0.5 + 1) / 4)
    # Everything tied: one threshold, P = prevalence.
    assert average_precision([1.0] * 3, [1.0]) == pytest.approx(0.25)
    assert auroc([1.0] * 3, [1.0]) == 0.5


def test_perfect_and_reversed_separation():
    c, a = np.arange(10.0), np.arange(10.0) + 100
    assert auroc(c, a) == 1.0 and average_precision(c, a) == 1.0
    assert auroc(a, c) == 0.0


def test_contrast_probe_catches_shift_along_its_direction_only():
    rng = np.random.default_rng(5)
    d = 32
    u = np.zeros(d)
    u[0] = 1.0
    w = np.zeros(d)
    w[1] = 1.0
    base = rng.normal(size=(64, d))              # generic pairs: same input, answers differ along u
    pos = base + 1.5 * u + 0.1 * rng.normal(size=(64, d))
    neg = base - 1.5 * u + 0.1 * rng.normal(size=(64, d))
    probe = ContrastProbe(pos, neg).fit(rng.normal(size=(500, d)))
    clean = rng.normal(size=(1000, d))
    along, ortho = rng.normal(size=(1000, d)) + 3.0 * u, rng.normal(size=(1000, d)) + 3.0 * w
    assert auroc(probe.score(clean), probe.score(along)) > 0.95
    assert abs(auroc(probe.score(clean), probe.score(ortho)) - 0.5) < 0.06
    assert abs(probe.score(clean).mean()) < 0.15          # centred on the trusted projection
    # Sign convention: swapping the pair's sides makes the shifted rows look clean.
    flipped = ContrastProbe(neg, pos).fit(clean)
    assert auroc(flipped.score(clean), flipped.score(along)) < 0.05


def test_supervised_probe_separates_held_out_rows():
    rng = np.random.default_rng(6)
    d = 20
    cov = _random_cov(rng, d)
    shift = rng.normal(size=d)
    shift *= 2.0 / np.linalg.norm(shift)
    clean, trig = _correlated(rng, 1200, d, cov), _correlated(rng, 400, d, cov, shift)
    probe = SupervisedProbe().fit(clean[:600], trig[:200])
    assert probe.result.success
    assert auroc(probe.score(clean[600:]), probe.score(trig[200:])) > 0.99
    assert isinstance(probe, Detector)


def test_detection_scores_intervals():
    rng = np.random.default_rng(7)

    def scores(n):
        return rng.normal(size=n), rng.normal(size=n) + 1.0

    small, large = detection_scores(*scores(100)), detection_scores(*scores(2000))
    for r in (small, large):
        for m in ("auroc", "average_precision"):
            assert 0.0 <= r[f"{m}_lo"] <= r[m] <= r[f"{m}_hi"] <= 1.0
            assert r[f"{m}_lo"] < r[f"{m}_hi"]
    for m in ("auroc", "average_precision"):
        assert large[f"{m}_hi"] - large[f"{m}_lo"] < 0.5 * (small[f"{m}_hi"] - small[f"{m}_lo"])
    assert (large["n_clean"], large["n_anomalous"]) == (2000, 2000)
    perfect = detection_scores(np.zeros(50), np.ones(20))
    assert perfect["auroc_lo"] == perfect["auroc_hi"] == perfect["average_precision_lo"] == 1.0


def test_detection_scores_point_estimates_are_the_plain_metrics_and_reproducible():
    rng = np.random.default_rng(8)
    c, a = rng.normal(size=1000), rng.normal(size=1000) + 0.5
    r = detection_scores(c, a, n_boot=1000)
    assert r["auroc"] == auroc(c, a) and r["average_precision"] == average_precision(c, a)
    assert detection_scores(c, a, seed=3) == detection_scores(c, a, seed=3)


def test_errors_name_the_problem():
    rng = np.random.default_rng(9)
    X = rng.normal(size=(10, 4))
    det = Mahalanobis().fit(X)
    with pytest.raises(ValueError, match=r"X_ND must have D = 4"):
        det.score(rng.normal(size=(3, 5)))
    bad = X.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="trusted_ND.*NaN"):
        Mahalanobis().fit(bad)
    with pytest.raises(ValueError, match="scores_anomalous is empty"):
        auroc([1.0, 2.0], [])
    with pytest.raises(ValueError, match="scores_clean is empty"):
        detection_scores([], [1.0])
    with pytest.raises(ValueError, match="scores_clean.*NaN"):
        average_precision([np.nan], [1.0])
    with pytest.raises(ValueError, match="before fit"):
        Mahalanobis().score(X)
    with pytest.raises(NotFittedError):
        ContrastProbe(X, X + 1).score(X)
    with pytest.raises(ValueError, match="equal counts"):
        ContrastProbe(X, X[:5])
    with pytest.raises(ValueError, match="negative_ND must have D = 4"):
        ContrastProbe(X, rng.normal(size=(10, 3)))
    with pytest.raises(ValueError, match="anomalous_ND must have D = 4"):
        SupervisedProbe().fit(X, rng.normal(size=(5, 3)))
    with pytest.raises(ValueError, match="anomalous_ND needs at least 1 row"):
        SupervisedProbe().fit(X, np.zeros((0, 4)))
    with pytest.raises(ValueError, match="2-D"):
        Mahalanobis().fit(X[0])
    with pytest.raises(ValueError, match="at least 2 row"):
        Mahalanobis().fit(X[:1])
    with pytest.raises(ValueError, match="shrinkage must be in"):
        Mahalanobis(shrinkage=2.0)
