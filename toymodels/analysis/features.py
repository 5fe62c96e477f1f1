"""Ground truth for sparse dictionaries: planted sparse features, and how well a dictionary
recovers them.

Toy-models-of-superposition data (Elhage et al. 2022): F unit feature directions in R^D (F > D
allowed); an input is x = sum_i c_i f_i (+ Gaussian noise) with c_i = a_i * [feature i fires],
a_i > 0. As in SynthSAEBench (Chanin et al. 2026), features may co-fire in pairs, and form a
hierarchy in which a child fires only when its parent does.

Shape letters: N inputs, D dimensions, F true features, S dictionary latents, M matches.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import linear_sum_assignment

Array = jax.Array


@dataclasses.dataclass(frozen=True, eq=False)
class PlantedFeatures:
    """Feature i fires with probability p_F[i] (a child: given that its parent fires), with
    magnitude magnitude_F[i] * exp(magnitude_spread * N(0, 1)) (log-normal, always positive).
    In each pair (a, b) of pairs_P2, b copies a's firing with probability co_fire."""
    directions_FD: np.ndarray
    p_F: np.ndarray
    magnitude_F: np.ndarray
    magnitude_spread: float
    pairs_P2: np.ndarray
    co_fire: float
    parent_F: np.ndarray          # index of the parent, -1 for none
    noise_std: float

    @property
    def n_features(self) -> int:
        return self.directions_FD.shape[0]

    def sample(self, key: Array, n: int) -> tuple[Array, Array]:
        """(x (n, D), true coefficients c (n, F)), drawn on device in one jitted program."""
        return _sample(key, n, jnp.asarray(self.directions_FD), jnp.asarray(self.p_F, jnp.float32),
                       jnp.asarray(self.magnitude_F, jnp.float32), self.magnitude_spread, self.pairs_P2[:, 0],
                       self.pairs_P2[:, 1], self.co_fire, self.parent_F, self.noise_std)


@functools.partial(jax.jit, static_argnums=1)
def _sample(key, n: int, dirs_FD, p_F, mag_F, spread, pair_a, pair_b, co_fire, parent_F, noise_std):
    F, D = dirs_FD.shape
    k_fire, k_pair, k_mag, k_noise = jax.random.split(key, 4)
    fire_NF = jax.random.uniform(k_fire, (n, F)) < p_F[None]
    copy_NP = jax.random.uniform(k_pair, (n, pair_a.shape[0])) < co_fire   # (n, 0) when there are no pairs
    fire_NF = fire_NF.at[:, pair_b].set(jnp.where(copy_NP, fire_NF[:, pair_a], fire_NF[:, pair_b]))
    # parents are never children (depth one), so one pass suffices
    fire_NF = fire_NF & ((parent_F < 0)[None] | fire_NF[:, jnp.maximum(parent_F, 0)])
    c_NF = jnp.where(fire_NF, mag_F[None] * jnp.exp(spread * jax.random.normal(k_mag, (n, F))), 0.0)
    return c_NF @ dirs_FD + noise_std * jax.random.normal(k_noise, (n, D)), c_NF


def _check(name: str, ok: bool, allowed: str, value) -> None:
    if not ok:
        raise ValueError(f"{name}={value!r} is not allowed: {allowed}")


def planted_features(seed, n_features: int, d: int, *, p=0.05, magnitude=1.0, magnitude_spread: float = 0.0,
                     n_pairs: int = 0, co_fire: float = 0.9, n_parents: int = 0, children_per_parent: int = 2,
                     child_p: float = 0.5, noise_std: float = 0.0) -> PlantedFeatures:
    """F = n_features random unit directions in R^d and how they fire.

    ``seed``: an int or a PRNG key. ``p`` and ``magnitude``: scalars or (F,) arrays. Layout:
    features [0, n_parents) are parents, each followed in [n_parents, n_parents * (1 +
    children_per_parent)) by its children (firing with probability ``child_p`` when it does);
    the next 2 * n_pairs features form pairs (i, i + 1) that co-fire; the rest are independent.
    """
    _check("n_features", isinstance(n_features, (int, np.integer)) and n_features >= 1, "an integer >= 1", n_features)
    _check("d", isinstance(d, (int, np.integer)) and d >= 1, "an integer >= 1", d)
    p_F, mag_F = (np.full(n_features, float(v)) if np.ndim(v) == 0 else np.array(v, float) for v in (p, magnitude))
    _check("p", p_F.shape == (n_features,) and np.all((p_F >= 0) & (p_F <= 1)),
           f"probabilities in [0, 1], a scalar or shape ({n_features},)", p)
    _check("magnitude", mag_F.shape == (n_features,) and np.all(np.isfinite(mag_F) & (mag_F > 0)),
           f"positive, a scalar or shape ({n_features},)", magnitude)
    for name, v in (("magnitude_spread", magnitude_spread), ("noise_std", noise_std)):
        _check(name, np.isfinite(v) and v >= 0, "a finite number >= 0", v)
    for name, v in (("co_fire", co_fire), ("child_p", child_p)):
        _check(name, 0 <= v <= 1, "a probability in [0, 1]", v)
    for name, v in (("n_pairs", n_pairs), ("n_parents", n_parents), ("children_per_parent", children_per_parent)):
        _check(name, isinstance(v, (int, np.integer)) and v >= 0, "an integer >= 0", v)
    n_tree = n_parents * (1 + children_per_parent)
    _check("n_pairs", n_tree + 2 * n_pairs <= n_features,
           f"n_parents * (1 + children_per_parent) + 2 * n_pairs must be <= n_features={n_features}", n_pairs)
    # drawn in numpy (no compile); a key seeds it through its raw bits
    entropy = int(seed) if isinstance(seed, (int, np.integer)) else np.asarray(jax.random.key_data(seed))
    dirs_FD = np.random.default_rng(entropy).normal(size=(n_features, d))
    dirs_FD /= np.linalg.norm(dirs_FD, axis=1, keepdims=True)
    parent_F = np.full(n_features, -1)
    for j in range(n_parents):
        kids = n_parents + j * children_per_parent + np.arange(children_per_parent)
        parent_F[kids] = j
        p_F[kids] = child_p
    pairs = n_tree + 2 * np.arange(n_pairs)
    return PlantedFeatures(dirs_FD.astype(np.float32), p_F, mag_F, float(magnitude_spread),
                           np.stack([pairs, pairs + 1], 1).astype(int), float(co_fire), parent_F, float(noise_std))


# -- recovery metrics ----------------------------------------------------------------------------

def _matrix(name: str, a, cols: int | None = None) -> np.ndarray:
    a = np.asarray(a, np.float64)
    _check(name, a.ndim == 2 and a.shape[0] >= 1 and (cols is None or a.shape[1] == cols) and np.isfinite(a).all(),
           "a finite 2-D array with at least one row" + (f" and {cols} columns" if cols is not None else ""),
           f"<array of shape {a.shape}>")
    return a


def abs_cosines(W_dec_SD, true_FD) -> np.ndarray:
    """|cos| (F, S) between every true feature and every latent's decoder row (zero rows: 0)."""
    true_FD = _matrix("true_FD", true_FD)
    W_SD = _matrix("W_dec_SD", W_dec_SD, true_FD.shape[1])
    def unit(m):
        n = np.linalg.norm(m, axis=1, keepdims=True)
        return m / np.where(n == 0, 1, n)
    return np.abs(unit(true_FD) @ unit(W_SD).T)


def mean_max_cosine(W_dec_SD, true_FD) -> float:
    """Mean over true features of the largest |cos| to any latent's decoder row."""
    return float(abs_cosines(W_dec_SD, true_FD).max(1).mean())


def match_features(W_dec_SD, true_FD, threshold: float = 0.9,
                   method: Literal["hungarian", "greedy"] = "hungarian") -> np.ndarray:
    """One-to-one (latent, feature) pairs (M, 2) with |cos| >= threshold. Hungarian: the most
    pairs, then the largest total |cos|; greedy: take the best remaining pair while one is left."""
    _check("threshold", 0 <= threshold <= 1, "a cosine in [0, 1]", threshold)
    _check("method", method in ("hungarian", "greedy"), "'hungarian' or 'greedy'", method)
    cos_FS = abs_cosines(W_dec_SD, true_FD)
    ok_FS = cos_FS >= threshold
    if method == "hungarian":
        # a gap larger than any sum of cosines makes the count of pairs come first
        f, s = linear_sum_assignment(np.where(ok_FS, min(cos_FS.shape) + 1 + cos_FS, 0.0), maximize=True)
        keep = ok_FS[f, s]
        return np.stack([s[keep], f[keep]], 1).astype(int)
    pairs, used_f, used_s = [], set(), set()
    for flat in np.argsort(-cos_FS, axis=None, kind="stable"):
        f, s = divmod(int(flat), cos_FS.shape[1])
        if not ok_FS[f, s]:
            break
        if f not in used_f and s not in used_s:
            pairs.append((s, f))
            used_f.add(f)
            used_s.add(s)
    return np.asarray(pairs, int).reshape(-1, 2)


def feature_recovery(W_dec_SD, true_FD, threshold: float = 0.9, method: Literal["hungarian", "greedy"] = "hungarian",
                     alive_S=None) -> dict[str, float]:
    """Precision (matched / latents counted), recall (matched / features) and F1 of a
    ``match_features`` matching; ``alive_S`` (bool mask): count and match only those latents."""
    W_SD = _matrix("W_dec_SD", W_dec_SD)
    alive = np.ones(len(W_SD), bool) if alive_S is None else np.asarray(alive_S, bool)
    _check("alive_S", alive.shape == (len(W_SD),), f"a bool mask of shape ({len(W_SD)},)", f"<shape {alive.shape}>")
    n_true = _matrix("true_FD", true_FD).shape[0]
    matched = len(match_features(W_SD[alive], true_FD, threshold, method)) if alive.any() else 0
    precision = matched / max(int(alive.sum()), 1)
    recall = matched / n_true
    f1 = 2 * precision * recall / (precision + recall) if matched else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "n_matched": matched}


def correlations(z_NS, c_NF) -> np.ndarray:
    """Pearson correlation (S, F) of every latent's activations with every true coefficient
    over the N inputs; a constant column correlates 0 with everything."""
    z = _matrix("z_NS", z_NS)
    c = _matrix("c_NF", c_NF)
    _check("c_NF", len(c) == len(z), f"as many rows as z_NS ({len(z)})", f"<array of shape {c.shape}>")
    z, c = z - z.mean(0), c - c.mean(0)
    nz, nc = np.linalg.norm(z, axis=0), np.linalg.norm(c, axis=0)
    return (z.T @ c) / np.where(nz == 0, 1, nz)[:, None] / np.where(nc == 0, 1, nc)[None]


def mcc(z_NS, c_NF, matches_M2=None) -> float:
    """Mean Pearson correlation of matched (latent, feature) pairs: ``matches_M2`` as given (e.g.
    ``match_features``), or by default the one-to-one matching of largest total correlation
    (the sparse-coding literature's MCC). No pairs: 0."""
    corr_SF = correlations(z_NS, c_NF)
    if matches_M2 is None:
        s, f = linear_sum_assignment(corr_SF, maximize=True)
    else:
        m = np.asarray(matches_M2, int).reshape(-1, 2)
        s, f = m[:, 0], m[:, 1]
        _check("matches_M2", (s >= 0).all() and (s < corr_SF.shape[0]).all() and (f >= 0).all()
               and (f < corr_SF.shape[1]).all(), "(latent, feature) index pairs in range", matches_M2)
    return float(corr_SF[s, f].mean()) if len(s) else 0.0


def recovery_report(W_dec_SD, true_FD, z_NS, c_NF, threshold: float = 0.9) -> dict[str, float]:
    """mean_max_cosine, precision/recall/f1 of the cosine matching, and mcc on its pairs."""
    matches = match_features(W_dec_SD, true_FD, threshold)
    return {"mean_max_cosine": mean_max_cosine(W_dec_SD, true_FD), **feature_recovery(W_dec_SD, true_FD, threshold),
            "mcc": mcc(z_NS, c_NF, matches)}
