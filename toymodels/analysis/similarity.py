"""Representation similarity, affine/MLP predictability, linear probes and weight statistics.

Built to compare activations of compiled (Tracr-style) and trained transformers. Every
function takes activation matrices ``X_NA``, ``Y_NB`` whose rows are the same N inputs (or
token positions); A and B (the widths) may differ. Work is in float64 numpy except ``mlp_r2``.

- ``linear_cka``: Kornblith, Norouzi, Lee & Hinton (2019), "Similarity of Neural Network
  Representations Revisited", linear-kernel CKA = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)).
- ``debiased_linear_cka``: the same ratio with the unbiased HSIC estimator of Song, Smola,
  Gretton, Bedo & Borgwardt (2012, JMLR, "Feature Selection via Dependence Maximization"),
  as used for CKA by Nguyen, Raghu & Kornblith (2021) and Davari et al. (2022, "Reliability
  of CKA as a Similarity Measure in Deep Learning"); the plain estimator is biased upward
  when N is not much larger than the width.
- ``procrustes_distance``: orthogonal Procrustes distance on centred, unit-Frobenius data
  (Schönemann 1966; used as a shape metric by Williams et al. 2021 and Ding et al. 2021).
- ``weight_stats``: effective rank of Roy & Vetterli (2007), stable rank of Rudelson &
  Vershynin (2007).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax

# Relative to the mean eigenvalue of Xc^T Xc (see ``affine_r2``), so one grid fits any scale.
DEFAULT_ALPHAS = (1e-8, 1e-6, 1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)


@dataclass(frozen=True)
class R2Score:
    """Held-out R^2: ``overall`` = 1 - sum SSE / sum SST over non-constant outputs;
    ``per_output`` (B,) is NaN for outputs constant on the test rows; ``alpha`` is the
    chosen relative ridge penalty (None for the MLP)."""
    overall: float
    per_output: np.ndarray
    alpha: float | None = None


def _as_2d(X, name: str, min_rows: int = 1) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (N samples, features); got shape {X.shape}")
    if X.shape[0] < min_rows or X.shape[1] < 1:
        raise ValueError(f"{name} needs at least {min_rows} rows and 1 column; got shape {X.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{name} (shape {X.shape}) contains NaN or inf")
    return X


def _pair(X, Y, min_rows: int = 2, names=("X", "Y")) -> tuple[np.ndarray, np.ndarray]:
    X, Y = _as_2d(X, names[0], min_rows), _as_2d(Y, names[1], min_rows)
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"{names[0]} and {names[1]} must have the same number of rows (N); "
                         f"got {names[0]} {X.shape} and {names[1]} {Y.shape}")
    return X, Y


def center(X) -> np.ndarray:
    """Subtract the column means (X_NA -> X_NA)."""
    X = _as_2d(X, "X")
    return X - X.mean(axis=0, keepdims=True)


def linear_cka(X, Y) -> float:
    """Linear CKA (Kornblith et al. 2019) in [0, 1]; NaN if either side has no variance.

    Equals ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F); invariant to orthogonal maps,
    isotropic scaling and translation, but not to general invertible linear maps.
    """
    X, Y = _pair(X, Y)
    X_NA, Y_NB = center(X), center(Y)
    if X_NA.shape[0] < max(X_NA.shape[1], Y_NB.shape[1]):
        # Wide activations: the N x N Gram matrices are the smaller objects.
        K_NN, L_NN = X_NA @ X_NA.T, Y_NB @ Y_NB.T
        num, den = np.sum(K_NN * L_NN), np.linalg.norm(K_NN) * np.linalg.norm(L_NN)
    else:
        num = np.linalg.norm(Y_NB.T @ X_NA) ** 2
        den = np.linalg.norm(X_NA.T @ X_NA) * np.linalg.norm(Y_NB.T @ Y_NB)
    return float(num / den) if den > 0 else float("nan")


def _unbiased_hsic(X_NA: np.ndarray, Y_NB: np.ndarray) -> float:
    """Song et al. (2012) unbiased HSIC for linear kernels K = X X^T, L = Y Y^T.

    With K~, L~ the Grams with zeroed diagonals:
    [tr(K~L~) + 1'K~1 1'L~1 / ((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n(n-3)).
    Evaluated in feature space so memory is O(N (A + B) + A B), not O(N^2).
    """
    n = X_NA.shape[0]
    dk_N, dl_N = np.sum(X_NA**2, axis=1), np.sum(Y_NB**2, axis=1)
    tr_kl = np.linalg.norm(X_NA.T @ Y_NB) ** 2 - dk_N @ dl_N
    k1_N = X_NA @ X_NA.sum(axis=0) - dk_N  # K~ 1
    l1_N = Y_NB @ Y_NB.sum(axis=0) - dl_N  # L~ 1
    total = tr_kl + k1_N.sum() * l1_N.sum() / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * (k1_N @ l1_N)
    return float(total / (n * (n - 3)))


def debiased_linear_cka(X, Y) -> float:
    """CKA from the unbiased HSIC estimator; needs N >= 4. Near 0 for independent X, Y
    (can be slightly negative), close to ``linear_cka`` when N >> width. NaN if undefined."""
    X, Y = _pair(X, Y, min_rows=4)
    X_NA, Y_NB = center(X), center(Y)
    kk, ll = _unbiased_hsic(X_NA, X_NA), _unbiased_hsic(Y_NB, Y_NB)
    if kk <= 0 or ll <= 0:
        return float("nan")
    return float(_unbiased_hsic(X_NA, Y_NB) / np.sqrt(kk * ll))


def _unit(X: np.ndarray, name: str) -> np.ndarray:
    Xc = center(X)
    norm = np.linalg.norm(Xc)
    if norm == 0:
        raise ValueError(f"{name} (shape {X.shape}) is constant: Procrustes is undefined")
    return Xc / norm


def partial_out(X, Z) -> np.ndarray:
    """X (N, A) minus its least-squares fit on Z (N, C) plus an intercept: the part of X that
    is not a linear function of Z (e.g. with Z = ``activations.input_features``, what a layer
    holds beyond its token and position identity). The columns of Z may be collinear; an X
    that Z explains to float32 rounding comes back exactly zero."""
    X_NA, Z_NC = _pair(X, Z, names=("X", "Z"))
    Z1 = np.concatenate([Z_NC, np.ones((Z_NC.shape[0], 1))], axis=1)
    coef, *_ = np.linalg.lstsq(Z1, X_NA, rcond=None)
    R_NA = X_NA - Z1 @ coef
    # X that Z explains up to float32 rounding (all but 1e-5 of its spread) is made exactly
    # constant, so measures report it undefined rather than compare rounding noise
    if np.linalg.norm(R_NA) <= 1e-5 * np.linalg.norm(X_NA - X_NA.mean(0)):
        R_NA[:] = 0.0
    return R_NA


def procrustes_distance(X, Y) -> float:
    """min over orthogonal R of ||X~ R - Y~||_F, X~, Y~ centred with unit Frobenius norm.

    d^2 = 2 - 2 ||X~^T Y~||_* and d lies in [0, sqrt 2]. Different widths are compared as if
    the narrower side were zero-padded, which leaves the singular values of X~^T Y~ unchanged.
    """
    X, Y = _pair(X, Y)
    nuclear = np.linalg.svd(_unit(X, "X").T @ _unit(Y, "Y"), compute_uv=False).sum()
    return float(np.sqrt(max(2.0 - 2.0 * nuclear, 0.0)))


def procrustes_map(X, Y) -> np.ndarray:
    """R_AB with orthonormal rows or columns minimising ||X~ R - Y~||_F (X~, Y~ as in
    ``procrustes_distance``). If Y = s X Q + t for orthogonal Q, then R = Q. For A != B it is
    the zero-padded square solution with the padding rows/columns dropped."""
    X, Y = _pair(X, Y)
    U_AK, _, Vt_KB = np.linalg.svd(_unit(X, "X").T @ _unit(Y, "Y"), full_matrices=False)
    return U_AK @ Vt_KB


def _ridge_path(X_NA: np.ndarray, Y_NB: np.ndarray, alphas) -> list[tuple[np.ndarray, np.ndarray]]:
    """(W_AB, b_B) for each absolute penalty; the intercept is not penalised. One SVD serves
    every alpha; alpha = 0 gives the minimum-norm least-squares solution."""
    x_A, y_B = X_NA.mean(axis=0), Y_NB.mean(axis=0)
    U_NK, s_K, Vt_KA = np.linalg.svd(X_NA - x_A, full_matrices=False)
    UtY_KB = U_NK.T @ (Y_NB - y_B)
    keep_K = s_K > (s_K.max(initial=0.0) * max(X_NA.shape) * np.finfo(np.float64).eps)
    out = []
    for a in alphas:
        shrink_K = np.where(keep_K, s_K / np.where(keep_K, s_K**2 + a, 1.0), 0.0)
        W_AB = Vt_KA.T @ (shrink_K[:, None] * UtY_KB)
        out.append((W_AB, y_B - x_A @ W_AB))
    return out


def ridge_fit(X, Y, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Affine ridge regression Y ~ X W + b minimising ||Y - X W - b||^2 + alpha ||W||_F^2
    (alpha absolute, intercept unpenalised). Returns (W_AB, b_B)."""
    X, Y = _pair(X, Y, min_rows=1)
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0; got {alpha}")
    return _ridge_path(X, Y, [alpha])[0]


def _scale(X_NA: np.ndarray) -> float:
    """Mean eigenvalue of Xc^T Xc, which turns relative alphas into absolute ones."""
    return max(np.linalg.norm(X_NA - X_NA.mean(axis=0)) ** 2 / X_NA.shape[1], np.finfo(float).tiny)


def r2_score(Y_true, Y_pred) -> R2Score:
    """R^2 against the mean of ``Y_true``; constant columns are NaN and left out of overall."""
    Y_true, Y_pred = _pair(Y_true, Y_pred, names=("Y_true", "Y_pred"))
    if Y_true.shape != Y_pred.shape:
        raise ValueError(f"Y_true {Y_true.shape} and Y_pred {Y_pred.shape} must match")
    sst_B = np.sum((Y_true - Y_true.mean(axis=0)) ** 2, axis=0)
    sse_B = np.sum((Y_true - Y_pred) ** 2, axis=0)
    # Exact test: activations that are constant are usually exactly constant (dead units).
    live_B = np.ptp(Y_true, axis=0) > 0
    per_B = np.full(sst_B.shape, np.nan)
    per_B[live_B] = 1.0 - sse_B[live_B] / sst_B[live_B]
    overall = 1.0 - sse_B[live_B].sum() / sst_B[live_B].sum() if live_B.any() else float("nan")
    return R2Score(float(overall), per_B)


def _train_test(X_train, Y_train, X_test, Y_test):
    X_train, Y_train = _pair(X_train, Y_train, names=("X_train", "Y_train"))
    X_test, Y_test = _pair(X_test, Y_test, names=("X_test", "Y_test"))
    if X_train.shape[1] != X_test.shape[1] or Y_train.shape[1] != Y_test.shape[1]:
        raise ValueError(f"train and test widths differ: X_train {X_train.shape}, X_test {X_test.shape}, "
                         f"Y_train {Y_train.shape}, Y_test {Y_test.shape}")
    return X_train, Y_train, X_test, Y_test


def _select_alpha(X_NA, Y_NB, alphas, cv, seed) -> float:
    n = X_NA.shape[0]
    perm = np.random.default_rng(seed).permutation(n)
    if isinstance(cv, float) and 0 < cv < 1:
        n_val = round(cv * n)
        folds = [perm[:n_val]]
    elif isinstance(cv, int) and cv >= 2:
        folds = np.array_split(perm, cv)
    else:
        raise ValueError(f"cv must be an int >= 2 (k-fold) or a float in (0, 1) (held-out fraction); got {cv!r}")
    if any(len(f) < 1 or n - len(f) < 2 for f in folds):
        raise ValueError(f"too few training rows ({n}) for cv={cv!r}")
    sse = np.zeros(len(alphas))
    for val in folds:
        fit = np.setdiff1d(perm, val)
        scale = _scale(X_NA[fit])
        for i, (W_AB, b_B) in enumerate(_ridge_path(X_NA[fit], Y_NB[fit], [a * scale for a in alphas])):
            sse[i] += np.sum((Y_NB[val] - X_NA[val] @ W_AB - b_B) ** 2)
    return float(alphas[int(np.argmin(sse))])


def affine_r2(X_train, Y_train, X_test, Y_test, alphas=DEFAULT_ALPHAS, cv: float = 5,
              seed: int = 0) -> R2Score:
    """Test R^2 of affine ridge regression X -> Y.

    ``alphas`` are relative: each is multiplied by tr(Xc^T Xc) / A of the rows being fitted,
    so the grid does not depend on activation scale or N. One alpha, shared by all outputs,
    is chosen on the train rows by k-fold CV (``cv`` int) or a held-out fraction (``cv``
    float) minimising pooled SSE, then refit on all train rows.
    """
    X_train, Y_train, X_test, Y_test = _train_test(X_train, Y_train, X_test, Y_test)
    alphas = tuple(float(a) for a in alphas)
    if not alphas or min(alphas) < 0:
        raise ValueError(f"alphas must be non-empty and >= 0; got {alphas}")
    alpha = alphas[0] if len(alphas) == 1 else _select_alpha(X_train, Y_train, alphas, cv, seed)
    W_AB, b_B = _ridge_path(X_train, Y_train, [alpha * _scale(X_train)])[0]
    return replace(r2_score(Y_test, X_test @ W_AB + b_B), alpha=alpha)


def _split(X_NA, Y_NB, test_frac: float, seed: int):
    X_NA, Y_NB = _pair(X_NA, Y_NB)
    if not 0 < test_frac < 1:
        raise ValueError(f"test_frac must be in (0, 1); got {test_frac}")
    perm = np.random.default_rng(seed).permutation(X_NA.shape[0])
    n_test = round(test_frac * len(perm))
    te, tr = perm[:n_test], perm[n_test:]
    return X_NA[tr], Y_NB[tr], X_NA[te], Y_NB[te]


def affine_r2_split(X, Y, test_frac: float = 0.25, seed: int = 0, **kwargs) -> R2Score:
    """``affine_r2`` on a seeded random row split; ``kwargs`` go to ``affine_r2``."""
    return affine_r2(*_split(X, Y, test_frac, seed), seed=seed, **kwargs)


def linear_probe_r2(acts, target, test_frac: float = 0.25, seed: int = 0) -> float:
    """Overall test R^2 of an affine ridge probe from ``acts`` (N, A) to ``target`` (N,) or
    (N, K), with the fixed convention: 25% held out, 5-fold CV over ``DEFAULT_ALPHAS``."""
    target = np.asarray(target, dtype=np.float64)
    target_NK = target[:, None] if target.ndim == 1 else target
    return affine_r2_split(acts, target_NK, test_frac=test_frac, seed=seed).overall


def refit_readout_accuracy(Z_train, y_train, Z_test, y_test, alpha: float = 1e-3) -> float:
    """Test accuracy of a new linear readout (weights and bias) fit to frozen features by
    ridge regression onto one-hot classes and decoded by argmax: a converged unembedding in
    closed form (``alpha`` is relative to the features' mean eigenvalue), to tell a
    capability that is gone from one that is only gated at the output."""
    classes, y = np.unique(y_train, return_inverse=True)
    Zc = Z_train - Z_train.mean(axis=0)
    scale = max(float(np.sum(Zc ** 2)) / Z_train.shape[1], 1e-30)
    W, b = ridge_fit(Z_train, np.eye(len(classes))[y], alpha * scale)
    pred = classes[np.argmax(Z_test @ W + b, axis=1)]
    return float(np.mean(pred == np.asarray(y_test)))


def normalized_score(score, chance, ceiling):
    """(score - chance) / (ceiling - chance): 0 at a random-init model, 1 at the reference.
    NaN where ceiling == chance. Broadcasts over arrays."""
    score, chance, ceiling = (np.asarray(v, dtype=np.float64) for v in (score, chance, ceiling))
    gap = ceiling - chance
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(gap != 0, (score - chance) / np.where(gap != 0, gap, 1.0), np.nan)
    return float(out) if out.ndim == 0 else out


def _mlp(params, X_NA):
    h_NH = jax.nn.relu(X_NA @ params["W1"] + params["b1"][None, :])
    return h_NH @ params["W2"] + params["b2"][None, :]


@partial(jax.jit, static_argnames=("hidden", "steps", "lr", "weight_decay"))
def _train_mlp(key, X_NA, Y_NB, *, hidden, steps, lr, weight_decay):
    k1, k2 = jax.random.split(key)
    A, B = X_NA.shape[1], Y_NB.shape[1]
    params = {"W1": jax.random.normal(k1, (A, hidden)) * jnp.sqrt(2.0 / A), "b1": jnp.zeros(hidden),
              "W2": jax.random.normal(k2, (hidden, B)) * jnp.sqrt(1.0 / hidden), "b2": jnp.zeros(B)}
    # Decay only the weights: shrinking biases would bias every prediction toward 0.
    opt = optax.adamw(lr, weight_decay=weight_decay, mask={k: k[0] == "W" for k in params})

    def step(carry, _):
        p, s = carry
        g = jax.grad(lambda q: jnp.mean((_mlp(q, X_NA) - Y_NB) ** 2))(p)
        u, s = opt.update(g, s, p)
        return (optax.apply_updates(p, u), s), None

    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), None, length=steps)
    return params


def mlp_r2(X_train, Y_train, X_test, Y_test, hidden: int = 128, steps: int = 2000, lr: float = 1e-3,
           weight_decay: float = 1e-4, seed: int = 0) -> R2Score:
    """Test R^2 of a one-hidden-layer ReLU MLP (full-batch AdamW, float32), inputs and outputs
    standardised with train statistics. Compare with ``affine_r2`` to see how much of Y a
    nonlinear map explains beyond an affine one."""
    X_train, Y_train, X_test, Y_test = _train_test(X_train, Y_train, X_test, Y_test)
    mx_A, my_B = X_train.mean(axis=0), Y_train.mean(axis=0)
    # Constant columns get unit scale rather than a division by zero.
    sx_A, sy_B = (np.where(s > 0, s, 1.0) for s in (X_train.std(axis=0), Y_train.std(axis=0)))
    params = _train_mlp(jax.random.key(seed), jnp.asarray((X_train - mx_A) / sx_A, jnp.float32),
                        jnp.asarray((Y_train - my_B) / sy_B, jnp.float32),
                        hidden=hidden, steps=steps, lr=lr, weight_decay=weight_decay)
    pred_NB = np.asarray(_mlp(params, jnp.asarray((X_test - mx_A) / sx_A, jnp.float32)), np.float64)
    return r2_score(Y_test, pred_NB * sy_B + my_B)


def weight_stats(W) -> dict:
    """Frobenius norm, sparsity (fraction of |w| < 1e-6 max|w|; 1 for an all-zero matrix),
    descending singular values, effective rank exp(H(s / sum s)) (Roy & Vetterli 2007) and
    stable rank ||W||_F^2 / ||W||_2^2 (Rudelson & Vershynin 2007), both 0 for W = 0."""
    W = _as_2d(W, "W")
    wmax = np.abs(W).max()
    s = np.linalg.svd(W, compute_uv=False)
    if wmax == 0:
        return {"frobenius": 0.0, "sparsity": 1.0, "singular_values": s, "effective_rank": 0.0,
                "stable_rank": 0.0}
    p = s[s > 0] / s.sum()
    return {"frobenius": float(np.linalg.norm(W)),
            "sparsity": float(np.mean(np.abs(W) < 1e-6 * wmax)),
            "singular_values": s,
            "effective_rank": float(np.exp(-np.sum(p * np.log(p)))),
            "stable_rank": float(np.sum(s**2) / s[0] ** 2)}
