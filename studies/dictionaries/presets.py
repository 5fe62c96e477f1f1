"""Presets and constants of the dictionaries study."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Preset:
    seeds: int                       # model seeds (and synthetic-data seeds)
    n_layers: int                    # blocks whose residual streams the dictionaries read
    d_model: int
    length: int                      # digits per sequence
    n_symbols: int
    batch_size: int
    lr: float
    warmup: int
    train_steps: int                 # the normal model and every jointly trained one
    ft_steps: int                    # fine-tuning (altered reverse, and the clean-data null)
    n_evals: int                     # log-spaced evaluations of every training
    eval_batch: int
    d_sae: int                       # latents of a per-block dictionary on the model
    k: int                           # TopK: latents per row
    dict_steps: int
    dict_batch: int
    dict_lr: float
    n_acts: int                      # inputs (sequences x positions) of collected activations per block
    multipliers: tuple[int, ...]     # shared dictionary sizes, in units of d_sae (n_layers = matched total)
    joint_coeffs: tuple[float, ...]  # weights of the dictionaries' FVU in the model's loss (0 = the normal model)
    n_features: int                  # synthetic: true features
    d_synth: int                     # synthetic: dimensions
    p_fire: float                    # synthetic: firing probability of each feature
    drifts: tuple[float, ...]        # synthetic: how far a feature's direction turns from the first block to the last
    born: float                      # synthetic: share of features first written by a later block
    top: int                         # attribution: precision among the top this many latents
    joint_layouts: tuple[str, ...] = ("per_block", "shared")   # layouts trained jointly with the model


PRESETS = {
    "smoke": Preset(seeds=2, n_layers=3, d_model=16, length=4, n_symbols=6, batch_size=32, lr=3e-3, warmup=20,
                    train_steps=300, ft_steps=100, n_evals=4, eval_batch=64, d_sae=32, k=4, dict_steps=300,
                    dict_batch=128, dict_lr=3e-3, n_acts=4096, multipliers=(1, 2, 3), joint_coeffs=(0.0, 1.0),
                    n_features=24, d_synth=12, p_fire=0.08, drifts=(0.0, 1.0), born=0.25, top=5),
    "paper": Preset(seeds=3, n_layers=3, d_model=32, length=6, n_symbols=8, batch_size=64, lr=3e-3, warmup=50,
                    train_steps=4000, ft_steps=500, n_evals=12, eval_batch=256, d_sae=128, k=8, dict_steps=3000,
                    dict_batch=256, dict_lr=2e-3, n_acts=32768, multipliers=(1, 2, 3, 4, 6, 8),
                    joint_coeffs=(0.0, 0.1, 1.0), n_features=48, d_synth=16, p_fire=0.06, drifts=(0.0, 0.5, 1.0),
                    born=0.25, top=10),
}

MEASURE_SEED = 7          # activations, eval batches, synthetic samples
RANDOM_SEED = 1000        # the random-init floor of model seed s is init_model(cfg, s + this)
FIRES = 0.01              # a latent is "used" by a block when it fires on more than this share of its rows
SELECTIVE = 0.9           # a latent is reverse-selective when >= this share of its firings are on reverse rows
PLANT_FIRES = 0.05        # attribution's positive control switches off latents firing on >= this share of answer rows
EXPLAINED = 0.5           # a latent is explained by a known variable when |corr| >= this
SYNTH_K_SLACK = 1         # synthetic TopK: k = round(true L0) + this
