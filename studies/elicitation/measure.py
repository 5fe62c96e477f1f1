"""Soft prompts, hard prompts and fragility on every (model, target) pair; results cached per pair.

For model seed s and each pair of ``grid.pairs``: soft prompts of every length in ``lengths`` x
``prompt_seeds`` x variant (``VARIANT_PAIRS`` only: every (norm_bound, noise); others the
plain prompt), trained together as one vmapped program on the target's train split; each scored
on one eval-split batch of ``eval_batch`` inputs (``MEASURE_SEED``), with
  sens_{scale}  acc under random perturbations of each prompt vector of norm scale x its own
                (``n_draws`` draws; the same draws for every prompt of a pair)
  grad_norm     the norm of the loss gradient at the prompt (eval batch)
Hard prompts: the greedy token search of every length in ``hard_lengths`` over the whole
vocabulary. Unprompted: every model on every target (n_tokens = 0).
Cache entries (AnalysisCache): "prompts" and "prompt_curves" and "hard" per pair
``{kind}_s{seed}_{target}``; "unprompted" per model ``{kind}_s{seed}``. An entry is valid for its
model's run config (the nulls: their config, source and seed) and these settings.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from studies.elicitation.grid import TARGETS, VARIANT_PAIRS, model_config, pairs, positions, target
from studies.elicitation.presets import MEASURE_SEED, RANDOM_SEED, Preset
from toymodels.analyses import AnalysisCache
from toymodels.model import init_model
from toymodels.prompts import (
    PromptConfig,
    hard_prompt_search,
    perturbation_sensitivity,
    prompt_grad_norm,
    prompt_score,
    train_prompts,
)
from toymodels.store import load_models

CACHES = ("prompts", "prompt_curves", "hard", "unprompted")


def eval_batch(P: Preset, name: str):
    return jax.jit(target(P, name), static_argnums=(1, 2))(jax.random.key(MEASURE_SEED), P.eval_batch, "eval")


def _configs(P: Preset, kind: str, name: str) -> list[PromptConfig]:
    variants = P.variants if (kind, name) in VARIANT_PAIRS else P.variants[:1]
    return [PromptConfig(positions=positions(P), n_tokens=n, steps=P.prompt_steps, lr=P.prompt_lr,
                         batch_size=P.prompt_batch, seed=s, norm_bound=b, noise=z)
            for b, z in variants for s in range(P.prompt_seeds) for n in P.lengths]


def pair_rows(P: Preset, model, kind: str, name: str, seed: int, batch) -> dict[str, list[dict]]:
    """The "prompts", "prompt_curves" and "hard" rows of one (model, target) pair; ``batch`` is
    the target's ``eval_batch``."""
    label = {"kind": kind, "target": name, "seed": seed}
    results = train_prompts(model, target(P, name), _configs(P, kind, name), eval_batch=batch,
                            history=P.prompt_history)
    prompts, curves = [], []
    for i, r in enumerate(results):
        c = r.cfg
        run = {**label, "prompt_seed": c.seed, "n_tokens": c.n_tokens, "norm_bound": c.norm_bound, "noise": c.noise}
        sens = perturbation_sensitivity(model, batch, r.prompt_PD, c.n_tokens, c.positions, P.scales,
                                        jax.random.fold_in(jax.random.key(MEASURE_SEED), i), P.n_draws)
        prompts.append({**run, **r.score, "grad_norm": prompt_grad_norm(model, batch, r.prompt_PD, c.n_tokens,
                                                                          c.positions),
                        "prompt_norm": float(np.linalg.norm(r.prompt_PD[:c.n_tokens], axis=1).mean())
                        if c.n_tokens else 0.0,
                        **{f"sens_{s:g}": float(a) for s, a in zip(P.scales, sens["acc"])}})
        curves += [{**run, "step": int(t), "acc": float(a), "loss": float(lo)}
                   for t, a, lo in zip(r.history["step"], r.history["acc"], r.history["loss"])]
    hard = []
    for n in P.hard_lengths:
        h = hard_prompt_search(model, target(P, name), positions(P), n, seed=MEASURE_SEED, eval_batch=batch,
                               sweeps=P.hard_sweeps, batch_size=P.eval_batch)
        hard.append({**label, "n_tokens": n, **h.score, "search_acc": h.search_acc,
                     "tokens": " ".join(target(P, name).task.vocab.decode(h.tokens))})
    return {"prompts": prompts, "prompt_curves": curves, "hard": hard}


def unprompted_rows(P: Preset, model, kind: str, seed: int, batches: dict) -> list[dict]:
    no_prompt = np.zeros((P.prefix, P.d_model), np.float32)
    return [{"kind": kind, "target": t, "seed": seed, **prompt_score(model, b, no_prompt, 0, positions(P))}
            for t, b in batches.items()]


def shuffled(model, seed: int):
    """The model with each parameter tensor's entries randomly permuted: trained weight statistics
    (norms, value distributions) without their arrangement."""
    graphdef, state = nnx.split(model)
    rng = np.random.default_rng(seed)
    return nnx.merge(graphdef, jax.tree.map(
        lambda x: jnp.asarray(rng.permutation(np.asarray(x).reshape(-1)).reshape(x.shape)), state))


def _settings(P: Preset) -> dict:
    return {"seed": MEASURE_SEED, "preset": P, "targets": {t: target(P, t) for t in TARGETS}}


def measure(P: Preset, specs, out: Path, progress: bool = True) -> None:
    """Every missing cache entry, model seed by model seed."""
    caches = {c: AnalysisCache(out, c) for c in CACHES}
    by_id = {s.run_id: s for s in specs}
    batches = None
    for seed in range(P.seeds):
        cfg = model_config(P)
        ids = {k: f"{k}_s{seed}" for k in P.kinds}
        config = {k: {"run": by_id[i].config(), "settings": _settings(P)} for k, i in ids.items()}
        config["random"] = {"model": cfg, "seed": seed + RANDOM_SEED, "settings": _settings(P)}
        config["shuffled"] = {"source": config[P.kinds[0]], "seed": seed + RANDOM_SEED}
        todo_pairs = [(k, t) for k, t in pairs(P)
                      if any(caches[c].get(f"{k}_s{seed}_{t}", config[k]) is None for c in CACHES[:3])]
        todo_models = [k for k in config if caches["unprompted"].get(f"{k}_s{seed}", config[k]) is None]
        if not todo_pairs and not todo_models:
            continue
        trained = dict(zip(P.kinds, load_models(out, [by_id[ids[k]] for k in P.kinds])))
        models = {**trained, "random": init_model(cfg, seed + RANDOM_SEED),
                  "shuffled": shuffled(trained[P.kinds[0]], seed + RANDOM_SEED)}
        batches = batches or {t: eval_batch(P, t) for t in TARGETS}
        for k in todo_models:
            caches["unprompted"].put(f"{k}_s{seed}", config[k], unprompted_rows(P, models[k], k, seed, batches))
        for k, t in todo_pairs:
            if progress:
                print(f"elicitation: prompts for {k}_s{seed} -> {t}", flush=True)
            rows = pair_rows(P, models[k], k, t, seed, batches[t])
            for c in CACHES[:3]:
                caches[c].put(f"{k}_s{seed}_{t}", config[k], rows[c])


def cached_rows(out: Path) -> dict[str, list[dict]]:
    return {c: AnalysisCache(out, c).all_rows() for c in CACHES}
