"""Dictionaries trained jointly with the model (``toymodels.joint``); results cached per layout.

For each layout (per_block, shared) and each coeff in ``joint_coeffs`` (0 = the dictionaries
train alongside a model that never feels them: the normal model, exactly), every model seed as
one program. Per run, at the end:
  loss, acc       the model's own eval loss and answer accuracy (its plateau: the curves show it)
  joint_fvu       the jointly trained dictionaries' fraction of variance unexplained, mean over blocks
  posthoc_ev      a fresh per-block dictionary (the post-hoc setting of ``measure``) trained on the
                  frozen model's residuals: explained variance on the eval batch, mean over blocks
  explained       of that fresh dictionary's live latents, the share whose activations correlate
                  |r| >= EXPLAINED with one known variable of the position (its token, position,
                  the function marker, the answer token): latents explained by the data
A random-init model of the same shape is the floor of the post-hoc columns (coeff "-").
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import numpy as np

from studies.dictionaries.grid import model_config, task, train_config
from studies.dictionaries.measure import DICT_FIELDS, dict_config, eval_batch, settings
from studies.dictionaries.presets import EXPLAINED, RANDOM_SEED, Preset
from toymodels.analyses import AnalysisCache
from toymodels.analysis.features import correlations
from toymodels.dictionaries import encode, train_dictionaries
from toymodels.dictionary_blocks import block_activations, block_stream, layout_metrics
from toymodels.joint import JointConfig, train_joint
from toymodels.model import init_model

CACHES = ("joint", "joint_curves")


def known_variables(batch, vocab_size: int) -> np.ndarray:
    """(B*T, F) indicators of each position's token, position, function marker and answer token."""
    x, y = np.asarray(batch.inputs), np.asarray(batch.targets)
    B, T = x.shape
    cols = [np.eye(vocab_size)[x.reshape(-1)], np.tile(np.eye(T), (B, 1)),
            np.eye(vocab_size)[np.repeat(x[:, 0], T)], np.eye(vocab_size)[np.clip(y, 0, vocab_size - 1).reshape(-1)]]
    c = np.concatenate(cols, 1)
    return c[:, c.std(0) > 0]


def posthoc(P: Preset, model, seed: int, batch) -> dict:
    """A fresh per-block dictionary on the frozen model: mean EV over blocks and explained share."""
    x_train = block_activations(model, task(P).sample, jax.random.key(seed), P.n_acts)
    x_eval = block_stream(model, batch.inputs)
    cfg = dict_config(P, P.d_model, P.d_sae, P.k, seed)
    params = [train_dictionaries(x_train[b], [cfg])[0].params for b in range(P.n_layers)]
    ev = [m["explained_variance"] for m in layout_metrics(params, cfg, x_eval, "per_block")]
    c = known_variables(batch, model.cfg.vocab_size)
    shares = []
    for b in range(P.n_layers):
        z = np.asarray(encode(params[b], x_eval[b], cfg))
        alive = (z > 0).any(0)
        if alive.any():
            shares.append(float((np.abs(correlations(z[:, alive], c)).max(1) >= EXPLAINED).mean()))
    return {"posthoc_ev": float(np.mean(ev)), "explained": float(np.mean(shares)) if shares else float("nan")}


def layout_rows(P: Preset, layout: str) -> tuple[list[dict], list[dict]]:
    mcfg = model_config(P)
    jcfg = JointConfig(dataclasses.replace(dict_config(P, P.d_model, P.d_sae, P.k, 0), steps=1), layout)
    res = train_joint(mcfg, train_config(P, P.train_steps), {"data": task(P)}, jcfg, seeds=range(P.seeds),
                      coeffs=P.joint_coeffs)
    h = res.history
    batch = eval_batch(P)
    rows, curves = [], []
    for e, (seed, coeff) in enumerate(zip(res.seeds, res.coeffs)):
        label = {"layout": layout, "coeff": round(coeff, 6), "seed": seed}   # float32 on the device
        curves += [{**label, "step": int(t), "loss": float(h["loss"][i, e]), "acc": float(h["acc"][i, e]),
                    "joint_fvu": float(h["fvu"][i, e].mean())} for i, t in enumerate(h["step"])]
        rows.append({**label, "loss": float(h["loss"][-1, e]), "acc": float(h["acc"][-1, e]),
                     "joint_fvu": float(h["fvu"][-1, e].mean()), **posthoc(P, res.models[e], seed, batch)})
    return rows, curves


def random_rows(P: Preset) -> list[dict]:
    batch = eval_batch(P)
    return [{"layout": "random_init", "coeff": "-", "seed": s, "loss": float("nan"), "acc": float("nan"),
             "joint_fvu": float("nan"), **posthoc(P, init_model(model_config(P), s + RANDOM_SEED), s, batch)}
            for s in range(P.seeds)]


def measure_joint(P: Preset, out: Path, progress: bool = True) -> None:
    caches = {c: AnalysisCache(out, c) for c in CACHES}
    config = settings(P, *DICT_FIELDS, "seeds", "batch_size", "lr", "warmup", "train_steps", "n_evals",
                      "joint_coeffs", "length", "n_symbols")
    for layout in P.joint_layouts:
        if caches["joint"].get(layout, config) is None or caches["joint_curves"].get(layout, config) is None:
            if progress:
                print(f"dictionaries: joint training, {layout}", flush=True)
            rows, curves = layout_rows(P, layout)
            caches["joint_curves"].put(layout, config, curves)
            caches["joint"].put(layout, config, rows)
    if caches["joint"].get("random_init", config) is None:
        caches["joint"].put("random_init", config, random_rows(P))


def cached_joint(out: Path) -> dict[str, list[dict]]:
    return {c: AnalysisCache(out, c).all_rows() for c in CACHES}
