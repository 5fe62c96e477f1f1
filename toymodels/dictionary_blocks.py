"""Dictionaries over the residual streams of several blocks: per block, shared, crosscoder.

Shape letters: L blocks, N inputs, D d_model, S latents, F true features, X = L * D.
Layouts, each trained with ``toymodels.dictionaries.train_dictionaries`` on rows laid out here:
  per_block   one dictionary per block, on that block's rows x[l] (N, D)
  shared      one dictionary for all blocks, on ``shared_rows`` (L * N, D), block-major
  crosscoder  one dictionary on ``crosscoder_rows`` (N, X): each latent reads every block's
              residual of an input and writes all of them (an acausal crosscoder, Lindsey et al. 2024)
Ground truth across blocks: ``block_features`` plants sparse features (``analysis.features``)
whose directions turn from block to block (``drift``) and some of which appear only from a later
block on (``born``), with the same coefficients in every block that carries them.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from toymodels.analysis.features import PlantedFeatures, planted_features
from toymodels.config import check_int
from toymodels.dictionaries import DictConfig, decode, encode
from toymodels.hooks import forward

Array = jax.Array
LAYOUTS = ("per_block", "shared", "crosscoder")
SITES = ("resid_pre", "resid_mid", "resid_post")


def block_activations(model, sample: Callable, key: Array, n_inputs: int, site: str = "resid_post",
                      batch_size: int = 64) -> np.ndarray:
    """(L, n_inputs, D): ``blocks.{l}.{site}`` of every block from the same inputs, every
    position of batches drawn by ``sample(key, batch_size)`` (a task's ``sample``)."""
    check_int("n_inputs", n_inputs, 1)
    check_int("batch_size", batch_size, 1)
    if model.cfg.n_layers < 1:
        raise ValueError(f"model has n_layers={model.cfg.n_layers}: block_activations needs at least one block")
    if site not in SITES or (site == "resid_mid" and not model.cfg.mlp_dim):
        raise ValueError(f"site={site!r} is not allowed: one of {', '.join(SITES)} (resid_mid needs an MLP)")
    names = [f"blocks.{b}.{site}" for b in range(model.cfg.n_layers)]
    draw = jax.jit(sample, static_argnums=1)
    chunks: list[np.ndarray] = []
    got = 0
    while got < n_inputs:
        _, cache = forward(model, draw(jax.random.fold_in(key, len(chunks)), batch_size).inputs, names)
        chunks.append(np.stack([np.asarray(cache[n]).reshape(-1, cache[n].shape[-1]) for n in names]))
        got += chunks[-1].shape[1]
    return np.concatenate(chunks, 1)[:, :n_inputs]


def block_stream(model, inputs, site: str = "resid_post") -> np.ndarray:
    """(L, B * T, D): ``blocks.{l}.{site}`` of every block on these inputs, from one forward pass."""
    names = [f"blocks.{b}.{site}" for b in range(model.cfg.n_layers)]
    _, cache = forward(model, inputs, names)
    return np.stack([np.asarray(cache[n]).reshape(-1, cache[n].shape[-1]) for n in names])


def _blocks(x_LND) -> np.ndarray:
    x = np.asarray(x_LND, np.float32)
    if x.ndim != 3 or 0 in x.shape:
        raise ValueError(f"x_LND must be a non-empty (L, N, D) array; got shape {x.shape}")
    return x


def shared_rows(x_LND) -> np.ndarray:
    """(L * N, D): every block's rows, block-major."""
    x = _blocks(x_LND)
    return x.reshape(-1, x.shape[2])


def crosscoder_rows(x_LND) -> np.ndarray:
    """(N, L * D): each input's residuals of all blocks side by side, block-major."""
    x = _blocks(x_LND)
    return x.transpose(1, 0, 2).reshape(x.shape[1], -1)


def split_blocks(W_SX, n_blocks: int) -> np.ndarray:
    """(L, S, D): a crosscoder decoder (S, L * D) cut into the rows that write each block."""
    W = np.asarray(W_SX)
    check_int("n_blocks", n_blocks, 1)
    if W.ndim != 2 or W.shape[1] % n_blocks:
        raise ValueError(f"W_SX must be (S, L * D) with L = n_blocks={n_blocks}; got shape {W.shape}")
    return W.reshape(W.shape[0], n_blocks, -1).transpose(1, 0, 2)


def _dictionary(name: str, params, cfg: DictConfig) -> None:
    """A dictionary's W_enc and W_dec must match cfg's (d_in, d_sae)."""
    shapes = {"W_enc": (cfg.d_in, cfg.d_sae), "W_dec": (cfg.d_sae, cfg.d_in)}
    if not isinstance(params, dict) or any(np.shape(params.get(n)) != sh for n, sh in shapes.items()):
        got = {n: np.shape(params[n]) for n in shapes if n in params} if isinstance(params, dict) else type(params)
        raise ValueError(f"{name} must be a dictionary with W_enc {shapes['W_enc']} and W_dec {shapes['W_dec']} "
                         f"(cfg's d_in, d_sae); got {got}")


def _recon(params, x_ND, cfg: DictConfig) -> tuple[np.ndarray, np.ndarray]:
    z = encode(params, jnp.asarray(x_ND), cfg)
    return np.asarray(decode(params, z)), np.asarray(z)


def _metrics(x_ND: np.ndarray, xh_ND: np.ndarray, z_NS: np.ndarray) -> dict[str, float]:
    resid = xh_ND.astype(np.float64) - x_ND
    var = np.sum((x_ND - x_ND.mean(0)) ** 2, dtype=np.float64)
    return {"explained_variance": float(1 - np.sum(resid ** 2) / var) if var > 0 else float("nan"),
            "mse": float(np.mean(resid ** 2)), "l0": float((z_NS > 0).sum(-1).mean())}


def layout_metrics(params, cfg: DictConfig, x_LND, layout: str) -> list[dict]:
    """Per block l: explained_variance, mse (as ``reconstruction_metrics``) and l0 of the layout's
    reconstruction of x[l]. per_block: ``params`` is a list of L dictionaries; crosscoder: l0 is
    the latents firing per input (one latent fires for every block at once)."""
    x = _blocks(x_LND)
    L, N, D = x.shape
    if layout not in LAYOUTS:
        raise ValueError(f"layout={layout!r} is not allowed: one of {', '.join(LAYOUTS)}")
    want = L * D if layout == "crosscoder" else D
    if cfg.d_in != want:
        raise ValueError(f"a {layout} dictionary on (L={L}, N, D={D}) activations needs d_in={want}; got {cfg.d_in}")
    if layout == "per_block":
        if not isinstance(params, (list, tuple)) or len(params) != L:
            raise ValueError(f"per_block params must be a list of L={L} dictionaries")
        for b, p in enumerate(params):
            _dictionary(f"params[{b}]", p, cfg)
        return [{"block": b, **_metrics(x[b], *_recon(params[b], x[b], cfg))} for b in range(L)]
    _dictionary("params", params, cfg)
    if layout == "shared":
        return [{"block": b, **_metrics(x[b], *_recon(params, x[b], cfg))} for b in range(L)]
    xh, z = _recon(params, crosscoder_rows(x), cfg)
    xh_LND = xh.reshape(N, L, D).transpose(1, 0, 2)
    return [{"block": b, **_metrics(x[b], xh_LND[b], z)} for b in range(L)]


def latent_block_stats(params, cfg: DictConfig, x_LND) -> dict[str, np.ndarray]:
    """For one shared dictionary: freq_LS (share of block l's rows where latent s fires),
    mean_act_LS (its mean activation where it fires; 0 where never), cofire_SLL (correlation
    over inputs of its activations in blocks a and b; NaN where constant in either, 1 on the
    diagonal where defined)."""
    x = _blocks(x_LND)
    if cfg.d_in != x.shape[2]:
        raise ValueError(f"a shared dictionary on (L, N, D={x.shape[2]}) activations needs d_in={x.shape[2]}; "
                         f"got {cfg.d_in}")
    _dictionary("params", params, cfg)
    z = np.stack([_recon(params, x[b], cfg)[1] for b in range(x.shape[0])]).astype(np.float64)   # (L, N, S)
    fires = z > 0
    freq = fires.mean(1)
    mean_act = np.where(fires.any(1), z.sum(1) / np.maximum(fires.sum(1), 1), 0.0)
    c = z - z.mean(1, keepdims=True)
    norm = np.sqrt((c ** 2).sum(1))                                      # (L, S)
    with np.errstate(invalid="ignore", divide="ignore"):
        cof = np.einsum("ans,bns->sab", c, c) / (norm.T[:, :, None] * norm.T[:, None, :])
    diag = np.arange(x.shape[0])
    cof[:, diag, diag] = 1.0   # rounding aside, a stream correlates 1 with itself
    cof[np.broadcast_to((norm.T == 0)[:, :, None] | (norm.T == 0)[:, None, :], cof.shape)] = np.nan
    return {"freq_LS": freq, "mean_act_LS": mean_act, "cofire_SLL": cof}


@dataclasses.dataclass(frozen=True, eq=False)
class BlockFeatures:
    """Planted features across L blocks: ``base`` fixes which fire and how strongly (its
    directions are block 0's); feature f is written into block l along directions_LFD[l, f]
    where present_LF[l, f]."""
    base: PlantedFeatures
    directions_LFD: np.ndarray
    present_LF: np.ndarray

    def sample(self, key: Array, n: int) -> tuple[Array, Array]:
        """(x_LND, c_NF): the same coefficients c in every block; x_l = (c * present_l) @ directions_l
        plus the base's noise, drawn independently per block."""
        k_c, k_noise = jax.random.split(key)
        _, c_NF = dataclasses.replace(self.base, noise_std=0.0).sample(k_c, n)
        x = jnp.einsum("nf,lf,lfd->lnd", c_NF, jnp.asarray(self.present_LF, jnp.float32),
                       jnp.asarray(self.directions_LFD))
        if self.base.noise_std:
            x = x + self.base.noise_std * jax.random.normal(k_noise, x.shape)
        return x, c_NF


def block_features(seed: int, n_features: int, d: int, n_blocks: int, *, drift: float = 0.0, born: float = 0.0,
                   **planted_kw) -> BlockFeatures:
    """F planted features over ``n_blocks`` blocks. Feature f's direction in block l is
    unit(cos(a_l) u_f + sin(a_l) w_fl), a_l = drift * (pi / 2) * l / (L - 1), w_fl a random unit
    vector orthogonal to u_f (drift 1: the last block's direction is orthogonal to the first's).
    The last round(born * F) features are written only from a block drawn in 1..L-1 onward."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed={seed!r} is not allowed: an integer >= 0")
    check_int("n_blocks", n_blocks, 1)
    if not isinstance(drift, (int, float, np.number)) or not 0.0 <= drift <= 1.0:
        raise ValueError(f"drift={drift!r} is not allowed: a number in [0, 1]")
    if not isinstance(born, (int, float, np.number)) or not 0.0 <= born < 1.0:
        raise ValueError(f"born={born!r} is not allowed: a share in [0, 1)")
    if born > 0 and n_blocks < 2:
        raise ValueError(f"born={born!r} is not allowed with n_blocks=1: a feature is born in a block 1..L-1")
    if drift > 0 and isinstance(d, (int, np.integer)) and d < 2:
        raise ValueError(f"drift={drift!r} is not allowed with d={d}: turning a direction needs d >= 2")
    base = planted_features(seed, n_features, d, **planted_kw)
    rng = np.random.default_rng([int(seed), 1])
    u = base.directions_FD.astype(np.float64)
    dirs = np.empty((n_blocks, n_features, d))
    for b in range(n_blocks):
        w = rng.normal(size=(n_features, d))
        w -= (w * u).sum(1, keepdims=True) * u
        n = np.linalg.norm(w, axis=1, keepdims=True)
        w /= np.where(n == 0, 1, n)   # zero only when d = 1 (then drift = 0 and w is unused)
        a = drift * (np.pi / 2) * b / max(n_blocks - 1, 1)
        dirs[b] = np.cos(a) * u + np.sin(a) * w
        dirs[b] /= np.linalg.norm(dirs[b], axis=1, keepdims=True)
    present = np.ones((n_blocks, n_features), bool)
    late = int(round(born * n_features))
    if late and n_blocks > 1:
        start = rng.integers(1, n_blocks, size=late)
        present[:, n_features - late:] = np.arange(n_blocks)[:, None] >= start[None]
    return BlockFeatures(base, dirs.astype(np.float32), present)


def block_truth(bf: BlockFeatures, block: int) -> np.ndarray:
    """(F_l, D): the directions of the features present in ``block``."""
    L = bf.present_LF.shape[0]
    if isinstance(block, bool) or not isinstance(block, (int, np.integer)) or not 0 <= block < L:
        raise ValueError(f"block={block!r} is not allowed: an integer in [0, {L - 1}]")
    return bf.directions_LFD[block][bf.present_LF[block]]


def union_truth(bf: BlockFeatures) -> np.ndarray:
    """(sum_l F_l, D): every (feature, block) direction present: what a shared dictionary must cover."""
    return np.concatenate([block_truth(bf, b) for b in range(bf.present_LF.shape[0])])
