"""Presets and constants of the elicitation study."""

from __future__ import annotations

import dataclasses


KINDS = ("clean", "backdoored", "faded", "dropped", "sortonly", "finetuned", "meta", "nometa")


@dataclasses.dataclass(frozen=True)
class Preset:
    seeds: int                        # model seeds (every model kind, and the random-init null)
    n_layers: int
    d_model: int
    length: int                       # digits per sequence (= answer positions)
    n_symbols: int
    batch_size: int
    lr: float
    warmup: int
    train_steps: int                  # models trained from scratch
    drop_steps: int                   # continuations: a capability dropped, a backdoor faded
    finetune_steps: int               # execution fine-tuning of the clean model
    per_batch: int                    # backdoor insertion: poisoned rows per batch (token trigger)
    mix_per_batch: int                # uncued wrong answers per batch (metatoken pair) and fine-tuning region rows
    prefix: int                       # leading slots a prompt may occupy (= the longest prompt)
    lengths: tuple[int, ...]          # soft-prompt lengths (0 = the model alone)
    prompt_seeds: int
    prompt_steps: int
    prompt_lr: float
    prompt_batch: int
    eval_batch: int
    n_evals: int                      # model training evaluations (log-spaced)
    prompt_history: int               # points of each prompt's training curve
    variants: tuple[tuple[float, float], ...]   # (norm_bound, noise); the first is the plain prompt
    scales: tuple[float, ...]         # perturbation norms relative to each prompt vector's norm
    n_draws: int                      # perturbation draws per scale
    hard_lengths: tuple[int, ...]     # hard-prompt baseline lengths
    hard_sweeps: int
    kinds: tuple[str, ...] = KINDS    # the model kinds trained (a continuation needs its parent)


PRESETS = {
    "smoke": Preset(seeds=2, n_layers=2, d_model=16, length=4, n_symbols=8, batch_size=32, lr=3e-3, warmup=10,
                    train_steps=300, drop_steps=100, finetune_steps=100, per_batch=2, mix_per_batch=8, prefix=2,
                    lengths=(0, 1, 2), prompt_seeds=1, prompt_steps=40, prompt_lr=0.05, prompt_batch=32,
                    eval_batch=64, n_evals=4, prompt_history=3,
                    variants=((0.0, 0.0), (1.0, 0.3)), scales=(0.3, 1.0), n_draws=4, hard_lengths=(1,),
                    hard_sweeps=1),
    "paper": Preset(seeds=3, n_layers=2, d_model=32, length=6, n_symbols=10, batch_size=64, lr=3e-3, warmup=50,
                    train_steps=3000, drop_steps=1000, finetune_steps=500, per_batch=2, mix_per_batch=16,
                    prefix=8, lengths=(0, 1, 2, 4, 8), prompt_seeds=2, prompt_steps=300, prompt_lr=0.05,
                    prompt_batch=64, eval_batch=256, n_evals=10, prompt_history=7,
                    variants=((0.0, 0.0), (1.0, 0.0), (0.0, 0.3), (1.0, 0.3)), scales=(0.1, 0.3, 1.0),
                    n_draws=8, hard_lengths=(1, 2, 4), hard_sweeps=2),
}

CHUNK = 500            # training steps per jitted chunk (a run's numbers do not depend on it)
RANDOM_SEED = 1000     # the random-init null of model seed s is init_model(cfg, s + this)
MEASURE_SEED = 7       # eval batches and perturbation draws
THRESHOLD = 0.9       # the score (per-token acc) a prompt must reach
FRAGILITY_SCALE = 0.3  # the scale whose acc drop is "sensitivity" in the summary tables
