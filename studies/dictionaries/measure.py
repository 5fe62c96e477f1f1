"""Per model seed: layouts (synthetic ground truth and the normal model), latent meanings across
blocks, and fine-tuning attribution; results cached per seed.

Dictionaries are TopK (AuxK on), trained on ``n_acts`` rows per block, scored on a fresh
evaluation draw of the same size. Layouts (``toymodels.dictionary_blocks``), each with k latents
per row it reads:
  per_block      one dictionary of S latents per block (total L * S)
  shared         one dictionary of m * S latents for all blocks' rows, m in ``multipliers``
  crosscoder     one dictionary of m * S latents (m = 1 and L) reading all blocks' residuals of
                 a position at once and writing all of them (L0 counted per position, not per block)
Synthetic data: ``block_features`` (F true features in d dims, each present from its block on,
turned by ``drift`` between the first and the last block), S = F, k = round(F p) + 1; the
recovery metric is the mean over blocks of the mean max |cos| of the block's true directions to
the decoder rows that write that block. The model: residuals after each block (resid_post) of
``normal_s{seed}``, S = ``d_sae``, k = ``k``; no ground truth, reconstruction only.

Meanings (the shared dictionary of m = L): for each latent used by two blocks (fires on more
than FIRES of both blocks' rows), the correlation over positions of its activations in the two
blocks ("cofire") and the cosine between its effects on the output in the two blocks ("effect":
the mean change in next-token log-probs when its decoder row, times its mean activation in that
block, is added to the block's residual); nulls: the same with a random other latent used by the
second block. Usage: per block, the latents it uses and those it uses that the block before did not.

Attribution (per block, the per-block dictionary): scores of ``toymodels.latent_attribution``
of the altered model's and the refit model's outputs against the normal model's, on the eval
batch; targets: reverse-selective latents (>= SELECTIVE of the firings on answer positions are
reverse rows, and fire on >= FIRES of them). Positive control ("planted"): the normal model with
``top`` random latents that fire on >= PLANT_FIRES of the answer rows switched off, targets those
latents. AUROC and precision among the ``top`` scores, for the signed score (switching the latent
off moves the model towards FT) and the unsigned one (abs_: the loss depends on it), against the
base rate (the precision of a random ranking).
"""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from studies.dictionaries.grid import model_config, task
from studies.dictionaries.presets import FIRES, MEASURE_SEED, PLANT_FIRES, SELECTIVE, SYNTH_K_SLACK, Preset
from toymodels.analyses import AnalysisCache
from toymodels.analysis.features import mean_max_cosine
from toymodels.dictionaries import DictConfig, encode, train_dictionaries
from toymodels.dictionary_blocks import (block_activations, block_features, block_stream, block_truth,
                                         crosscoder_rows, layout_metrics, shared_rows, split_blocks)
from toymodels.hooks import forward, run_with_interventions, steer
from toymodels.latent_attribution import ablated_logits, auroc, latent_attribution
from toymodels.store import load_models

CACHES = ("layouts", "usage", "meanings", "attribution")


def dict_config(P: Preset, d_in: int, d_sae: int, k: int, seed: int) -> DictConfig:
    return DictConfig(d_in=d_in, d_sae=d_sae, kind="topk", k=k, lr=P.dict_lr, steps=P.dict_steps,
                      batch_size=P.dict_batch, seed=seed, dead_after=P.dict_batch * 50)


def fit_layouts(P: Preset, x_LND: np.ndarray, d_sae: int, k: int, seed: int) -> dict:
    """(arm, m) -> (params, cfg); per_block params are a list of L dictionaries."""
    L, _, D = x_LND.shape
    per = [train_dictionaries(x_LND[b], [dict_config(P, D, d_sae, k, seed)])[0].params for b in range(L)]
    fits = {("per_block", 1): (per, dict_config(P, D, d_sae, k, seed))}
    shared = [dict_config(P, D, m * d_sae, k, seed) for m in P.multipliers]
    for m, r in zip(P.multipliers, train_dictionaries(shared_rows(x_LND), shared)):
        fits[("shared", m)] = (r.params, r.cfg)
    cross = [dict_config(P, L * D, m * d_sae, k, seed) for m in sorted({1, L})]
    for r in train_dictionaries(crosscoder_rows(x_LND), cross):
        fits[("crosscoder", r.cfg.d_sae // d_sae)] = (r.params, r.cfg)
    return fits


def _decoder_of(arm: str, params, block: int, L: int) -> np.ndarray:
    if arm == "per_block":
        return np.asarray(params[block]["W_dec"])
    if arm == "shared":
        return np.asarray(params["W_dec"])
    return np.asarray(split_blocks(params["W_dec"], L)[block])


def layout_rows(fits: dict, x_LND: np.ndarray, d_sae: int, truth=None, **label) -> list[dict]:
    L = x_LND.shape[0]
    rows = []
    for (arm, m), (params, cfg) in fits.items():
        for b, met in enumerate(layout_metrics(params, cfg, x_LND, arm)):
            mmcs = mean_max_cosine(_decoder_of(arm, params, b, L), truth[b]) if truth is not None else float("nan")
            rows.append({**label, "arm": arm, "mult": m, "total_latents": (L if arm == "per_block" else m) * d_sae,
                         "block": b, "explained_variance": met["explained_variance"], "mse": met["mse"],
                         "l0": met["l0"], "mmcs": mmcs})
    return rows


def synthetic_rows(P: Preset, seed: int) -> list[dict]:
    k = int(round(P.n_features * P.p_fire)) + SYNTH_K_SLACK
    rows = []
    for drift in P.drifts:
        bf = block_features(seed, P.n_features, P.d_synth, P.n_layers, drift=drift, born=P.born, p=P.p_fire)
        x_train, _ = bf.sample(jax.random.key(seed), P.n_acts)
        x_eval, _ = bf.sample(jax.random.fold_in(jax.random.key(seed), MEASURE_SEED), P.n_acts)
        fits = fit_layouts(P, np.asarray(x_train), P.n_features, k, seed)
        truth = [block_truth(bf, b) for b in range(P.n_layers)]
        rows += layout_rows(fits, np.asarray(x_eval), P.n_features, truth, source="synthetic", drift=drift, seed=seed)
    return rows


def eval_batch(P: Preset):
    return task(P).sample(jax.random.key(MEASURE_SEED), P.eval_batch, split="eval")


def _acts(model, P: Preset, key) -> np.ndarray:
    return block_activations(model, task(P).sample, key, P.n_acts)


def usage_meaning_rows(P: Preset, model, fit, x_LND: np.ndarray, batch, seed: int) -> tuple[list, list]:
    """Usage rows (per block) and meaning rows (per latent and block pair, with their nulls)."""
    params, cfg = fit
    L = x_LND.shape[0]
    z_LNS = np.stack([np.asarray(encode(params, x_LND[b], cfg)) for b in range(L)])
    used_LS = (z_LNS > 0).mean(1) > FIRES
    usage = [{"seed": seed, "block": b, "used": int(used_LS[b].sum()),
              "new": int((used_LS[b] & ~used_LS[b - 1]).sum()) if b else int(used_LS[b].sum()),
              "only_here": int((used_LS[b] & (used_LS.sum(0) == 1)).sum()), "latents": cfg.d_sae} for b in range(L)]
    effects_LSV = _effects(P, model, params, z_LNS, used_LS, batch)
    rng = np.random.default_rng(MEASURE_SEED + seed)
    rows = []
    for a in range(L):
        for b in range(a + 1, L):
            both = np.flatnonzero(used_LS[a] & used_LS[b])
            for s in both:
                others = np.setdiff1d(np.flatnonzero(used_LS[b]), [s])
                o = int(rng.choice(others)) if len(others) else s
                rows.append({"seed": seed, "block_a": a, "block_b": b, "latent": int(s),
                             "cofire": _corr(z_LNS[a, :, s], z_LNS[b, :, s]),
                             "effect_cos": _cos(effects_LSV[a, s], effects_LSV[b, s]),
                             "null_cofire": _corr(z_LNS[a, :, s], z_LNS[b, :, o]),
                             "null_effect_cos": _cos(effects_LSV[a, s], effects_LSV[b, o])})
    return usage, rows


def _corr(u, v) -> float:
    return float(np.corrcoef(u, v)[0, 1]) if u.std() > 0 and v.std() > 0 else float("nan")


def _cos(u, v) -> float:
    n = np.linalg.norm(u) * np.linalg.norm(v)
    return float(u @ v / n) if n > 0 else float("nan")


def _effects(P: Preset, model, params, z_LNS, used_LS, batch) -> np.ndarray:
    """(L, S, V) mean change of next-token log-probs at the scored positions when latent s's decoder
    row times its mean activation in block b is added to block b's residual (zeros where unused)."""
    L, _, S = z_LNS.shape
    mask = jnp.asarray(batch.mask, jnp.float32)
    clean = jax.nn.log_softmax(forward(model, batch.inputs)[0], -1)
    W = jnp.asarray(params["W_dec"])
    out = np.zeros((L, S, clean.shape[-1]), np.float32)
    for b in range(L):
        idx = np.flatnonzero(used_LS[b])
        if not len(idx):
            continue
        fired = np.where(z_LNS[b] > 0, z_LNS[b], np.nan)
        scale = jnp.asarray(np.nanmean(fired[:, idx], 0), jnp.float32)
        out[b, idx] = np.asarray(_effect_fn(model, f"blocks.{b}.resid_post", batch.inputs, clean, mask,
                                            W[idx] * scale[:, None]))
    return out


@functools.partial(jax.jit, static_argnames=("graphdef", "name"))
def _effects_of(graphdef, state, name: str, inputs, clean, mask, vectors_KD):
    def one(v):
        logits = run_with_interventions(nnx.merge(graphdef, state), inputs, {name: steer(v)})
        logp = jax.nn.log_softmax(logits, -1)
        return jnp.sum((logp - clean) * mask[..., None], (0, 1)) / jnp.maximum(mask.sum(), 1.0)
    return jax.lax.map(one, vectors_KD)


def _effect_fn(model, name, inputs, clean, mask, vectors_KD):
    """Effects of each row of vectors_KD, padded to a power of two so few shapes compile."""
    K = vectors_KD.shape[0]
    padded = jnp.zeros((1 << (K - 1).bit_length(), vectors_KD.shape[1]), vectors_KD.dtype).at[:K].set(vectors_KD)
    graphdef, state = nnx.split(model)
    return _effects_of(graphdef, state, name, inputs, clean, mask, padded)[:K]


def attribution_rows(P: Preset, models: dict, fit, x_eval_LND, batch, seed: int) -> list[dict]:
    per, cfg = fit
    reverse = np.asarray(batch.inputs[:, 0]) == task(P).vocab.encode(["F:reverse"])[0]
    rng = np.random.default_rng(MEASURE_SEED + seed)
    ft_logits = {ft: forward(models[ft], batch.inputs)[0] for ft in ("altered", "refit")}   # every block's target
    answer = np.asarray(batch.mask) > 0
    rows = []
    for b in range(P.n_layers):
        z = np.asarray(encode(per[b], x_eval_LND[b], cfg)).reshape(*batch.inputs.shape, -1) > 0
        f_rev, f_sort = z[reverse][answer[reverse]].mean(0), z[~reverse][answer[~reverse]].mean(0)
        fires = f_rev + f_sort
        target = (f_rev >= FIRES) & (f_rev >= SELECTIVE * np.where(fires > 0, fires, np.inf))
        alive = fires > 0
        hook = f"blocks.{b}.resid_post"
        strong = np.flatnonzero((fires >= PLANT_FIRES) & alive)   # switching one off changes the output
        planted = rng.choice(strong, min(P.top, len(strong)), replace=False)
        for ft in ("altered", "refit", "planted"):
            other = ft_logits.get(ft)
            if ft == "planted":   # positive control: the normal model with ``top`` random live latents off
                other = ablated_logits(models["normal"], batch.inputs, hook, per[b], cfg, planted)
                target = np.isin(np.arange(cfg.d_sae), planted)
            signed, unsigned, kl = latent_attribution(models["normal"], other, batch, hook, per[b], cfg)
            t = target[alive]
            row = {"seed": seed, "block": b, "ft": ft, "kl": kl, "n_alive": int(alive.sum()), "n_target": int(t.sum()),
                   "base_rate": float(t.mean()) if len(t) else float("nan")}
            for name, score in (("", signed), ("abs_", unsigned)):
                top = np.argsort(-score[alive], kind="stable")[:P.top]
                row |= {f"{name}auroc": auroc(score[alive], t),
                        f"{name}precision_top": float(t[top].mean()) if len(top) else float("nan")}
            rows.append(row)
    return rows


def settings(P: Preset, *fields: str) -> dict:
    """What a cache entry depends on: the task, the measurement seed and these preset fields."""
    return {"seed": MEASURE_SEED, "task": task(P), **{f: getattr(P, f) for f in fields}}


DICT_FIELDS = ("n_layers", "d_model", "eval_batch", "d_sae", "k", "dict_steps", "dict_batch", "dict_lr", "n_acts")
SECTIONS = {"layouts": DICT_FIELDS + ("multipliers", "n_features", "d_synth", "p_fire", "drifts", "born"),
            "usage": DICT_FIELDS + ("multipliers",), "meanings": DICT_FIELDS + ("multipliers",),
            "attribution": DICT_FIELDS + ("top",)}


def measure(P: Preset, specs, out: Path, progress: bool = True) -> None:
    """Every missing cache entry, model seed by model seed."""
    caches = {c: AnalysisCache(out, c) for c in CACHES}
    by_id = {s.run_id: s for s in specs}
    for seed in range(P.seeds):
        ids = {k: f"{k}_s{seed}" for k in ("normal", "altered", "refit")}
        runs = {k: by_id[i].config() for k, i in ids.items()}
        config = {c: {"runs": runs, "settings": settings(P, *SECTIONS[c])} for c in CACHES}
        key = f"s{seed}"
        todo = [c for c in CACHES if caches[c].get(key, config[c]) is None]
        if not todo:
            continue
        if progress:
            print(f"dictionaries: layouts, meanings and attribution of seed {seed}", flush=True)
        models = dict(zip(ids, load_models(out, [by_id[i] for i in ids.values()])))
        x_train = _acts(models["normal"], P, jax.random.key(seed))
        batch = eval_batch(P)
        x_eval = block_stream(models["normal"], batch.inputs)
        fits = fit_layouts(P, x_train, P.d_sae, P.k, seed)
        if "layouts" in todo:
            caches["layouts"].put(key, config["layouts"], synthetic_rows(P, seed) + layout_rows(
                fits, x_eval, P.d_sae, source="model", drift="-", seed=seed))
        if "usage" in todo or "meanings" in todo:
            usage, meanings = usage_meaning_rows(P, models["normal"], fits[("shared", P.n_layers)], x_eval, batch,
                                                 seed)
            caches["usage"].put(key, config["usage"], usage)
            caches["meanings"].put(key, config["meanings"], meanings)
        if "attribution" in todo:
            caches["attribution"].put(key, config["attribution"], attribution_rows(
                P, models, fits[("per_block", 1)], x_eval, batch, seed))


def cached_rows(out: Path) -> dict[str, list[dict]]:
    return {c: AnalysisCache(out, c).all_rows() for c in CACHES}


__all__ = ["CACHES", "DICT_FIELDS", "cached_rows", "dict_config", "fit_layouts", "measure", "model_config",
           "settings"]
