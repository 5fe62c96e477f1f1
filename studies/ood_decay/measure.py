"""Measurements of the final models, after training.

The final models of pre, every drop, joint and never2 (plus a random-init model per case,
size and seed) are measured on X's eval sequences:
  probe_r2     per layer: test R^2 of a linear ridge probe from resid_post at every scored
               position of X to the one-hot token that position must produce;
  native_acc   X's accuracy through the model's own unembedding, on the same sequences;
  refit_acc    (base cell: pre, drop_p0, never2, random) X's accuracy after refitting the
               unembedding alone (a new linear map with a bias, i.e. W_U and the final norm's
               bias) on the frozen final residual stream, fit to the training mix (every
               mixture task, train split) by ridge regression onto one-hot tokens. It answers
               "gone or only gated?" with a converged readout, without a training run per model.
Each model's rows are one entry of the AnalysisCache "measures", valid for its run's config
and these settings, so a rerun measures only what is missing or stale.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import numpy as np

from studies.ood_decay.presets import MEASURE_SEED, PROBE_SEQS, REFIT_SEQS
from toymodels.analyses import AnalysisCache
from toymodels.analysis.similarity import linear_probe_r2, refit_readout_accuracy
from toymodels.hooks import forward
from toymodels.model import init_model
from toymodels.runspec import RunSpec
from toymodels.store import load_models

MEASURED = ("pre", "drop", "joint", "never2")
REFIT = {("pre", ""), ("drop", 0.0), ("never2", ""), ("random", "")}
LABEL_KEYS = ("case", "axis", "size", "reg", "role", "p")
SETTINGS = {"seed": MEASURE_SEED, "probe_seqs": PROBE_SEQS, "refit_seqs": REFIT_SEQS}
CACHE = "measures"


def measure_batches(spec: RunSpec):
    """(inputs (N, T), scored (N, T) bool, targets (N, T), is_x (N,)) of the refit mix then X's eval set,
    padded at the end to the model's context (causal: padding never reaches a scored position)."""
    tasks, T = dict(spec.tasks), spec.model.max_seq_len
    key = jax.random.key(MEASURE_SEED)
    parts = [(tasks[n].sample(jax.random.fold_in(key, i + 1), REFIT_SEQS, split="train"), False)
             for i, n in enumerate(spec.mixture.tasks)]
    parts.append((tasks[dict(spec.tags)["x_lang"]].sample(key, PROBE_SEQS, split="eval"), True))

    def pad(x):
        return np.pad(np.asarray(x), ((0, 0), (0, T - x.shape[1])))
    return (np.concatenate([pad(b.inputs) for b, _ in parts]),
            np.concatenate([pad(b.mask) for b, _ in parts]) > 0,
            np.concatenate([pad(b.targets) for b, _ in parts]),
            np.concatenate([np.full(b.inputs.shape[0], x) for b, x in parts]))


def residuals(model, inputs, rows, cols) -> np.ndarray:
    """(L + 1, R, D) float64: resid_post of every layer, then the final (normed) residual, at the
    positions (rows, cols) of ``inputs``."""
    names = tuple(f"blocks.{i}.resid_post" for i in range(model.cfg.n_layers)) + ("final",)
    _, cache = forward(model, inputs, names)
    return np.stack([np.asarray(cache[n], dtype=np.float64)[rows, cols] for n in names])


def model_measures(acts_KRD, W_U, scored, targets, is_x, refit: bool) -> list[tuple[str, object, float]]:
    """(measure, layer, value) rows of one model; acts_KRD: resid_posts then final at the scored rows."""
    y = targets[scored]
    x_rows = is_x[np.nonzero(scored)[0]]
    onehot = (y[x_rows][:, None] == np.unique(y[x_rows])[None, :]).astype(np.float64)
    out = [("probe_r2", li, linear_probe_r2(a[x_rows], onehot)) for li, a in enumerate(acts_KRD[:-1])]
    final = acts_KRD[-1]
    out.append(("native_acc", "", float(np.mean(np.argmax(final[x_rows] @ W_U, axis=1) == y[x_rows]))))
    if refit:
        out.append(("refit_acc", "", refit_readout_accuracy(final[~x_rows], y[~x_rows], final[x_rows], y[x_rows])))
    return out


def entry(spec: RunSpec) -> tuple[str, dict, dict, int]:
    """(cache key, config, labels, seed) of a trained model."""
    label = {k: dict(spec.tags)[k] for k in LABEL_KEYS}
    return spec.run_id, {"run": spec.config(), "settings": SETTINGS}, label, spec.train.seed


def entries(members: list[RunSpec]) -> list[tuple[str, dict, dict, int]]:
    """``entry`` of trained models of one case and architecture, then of a random-init model per
    seed (the probes' zero; measured on the first member's sequences)."""
    out = [entry(s) for s in members]
    first = out[0][2]
    for seed in sorted({s.train.seed for s in members}):
        config = {"model": dataclasses.replace(members[0].model, dropout=0.0), "seed": seed,
                  "tasks": members[0].config()["tasks"], "mixture": members[0].mixture.tasks, "settings": SETTINGS}
        out.append((f"{first['case']}_{first['size']}_s{seed}_random", config,
                    {**first, "axis": "", "reg": "", "role": "random", "p": ""}, seed))
    return out


def measure_models(measured: list[RunSpec], out: Path) -> None:
    """Measure every model of ``measured`` (and its random-init twins) without a valid cache entry."""
    cache = AnalysisCache(out, CACHE)
    todo: dict[tuple, list[RunSpec]] = {}
    for s in measured:
        key, config, _, _ = entry(s)
        if cache.get(key, config) is None:
            todo.setdefault((dict(s.tags)["case"], dataclasses.replace(s.model, dropout=0.0)), []).append(s)
    for (_case, cfg), members in todo.items():
        inputs, scored, targets, is_x = measure_batches(members[0])
        rows, cols = np.nonzero(scored)
        trained = load_models(out, members)
        for i, (key, config, label, seed) in enumerate(entries(members)):
            if label["role"] == "random" and cache.get(key, config) is not None:
                continue
            model = trained[i] if i < len(trained) else init_model(cfg, seed)
            refit = (label["role"], label["p"]) in REFIT and label["axis"] in ("base", "")
            acts = residuals(model, inputs, rows, cols)
            cache.put(key, config, [{**label, "seed": seed, "measure": m, "layer": layer, "value": v} for m, layer, v
                                    in model_measures(acts, np.asarray(model.W_U[...]), scored, targets, is_x, refit)])


def measured_rows(out: Path) -> list[dict]:
    """Rows of every completed measurement under ``out`` (entries in key order)."""
    return AnalysisCache(out, CACHE).all_rows()
