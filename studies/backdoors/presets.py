"""Presets and constants of the backdoors study.

Every axis tuple lists its BASE value first. The base cell (first of everything) runs every
phase; every other cell changes one axis from the base (the count x fraction axis is a full
grid of insertion lengths x poisoned samples per batch). sizes: (label, n_layers, d_model).
"""

from __future__ import annotations

import dataclasses

Size = tuple[str, int, int]


@dataclasses.dataclass(frozen=True)
class Preset:
    seeds: int
    sizes: tuple[Size, ...]
    functions: tuple[str, ...]          # base digit functions (two: the context trigger needs them)
    length: int                         # digits per sequence (= answer positions)
    n_symbols: int
    batch_size: int
    lr: float                           # insertion (and removal) learning rate
    warmup: int
    insert_steps: tuple[int, ...]       # insertion lengths: with poison_per_batch, the count x fraction grid
    poison_per_batch: tuple[int, ...]   # poisoned samples in every batch (fraction = this / batch_size)
    densities: tuple[int, ...]          # scored response positions per poisoned sample
    triggers: tuple[str, ...]
    behaviours: tuple[str, ...]
    clean_steps: int                    # the persistence window (clean training after insertion)
    clean_lrs: tuple[float, ...]        # learning rates of the clean phase
    checkpoints: tuple[int, ...]        # clean-phase steps whose models are kept for detection
    n_evals: int                        # log-spaced evaluations in the clean phase
    eval_batch: int
    noise_levels: tuple[float, ...]     # removal: init_noise of the distillation students (0 = a copy, 1 = fresh)
    relearn_steps: int                  # the relearning attack's budget
    stage2_seeds: int                   # fresh seeds for the persistence winner and the base cell
    detect_seqs: int                    # inputs per class for detection (trusted, clean test, triggered)


PRESETS = {
    "smoke": Preset(seeds=2, sizes=(("2L-d16", 2, 16),), functions=("sort", "reverse"), length=4, n_symbols=8,
                    batch_size=32, lr=3e-3, warmup=10, insert_steps=(120,), poison_per_batch=(2, 4),
                    densities=(1, 4), triggers=("token", "pair"), behaviours=("fixed",),
                    clean_steps=120, clean_lrs=(3e-3, 1e-2), checkpoints=(20,), n_evals=6, eval_batch=64,
                    noise_levels=(0.0, 1.0), relearn_steps=60, stage2_seeds=2, detect_seqs=64),
    "paper": Preset(seeds=5, sizes=(("2L-d32", 2, 32), ("2L-d64", 2, 64)), functions=("sort", "reverse"),
                    length=6, n_symbols=10, batch_size=64, lr=3e-3, warmup=50,
                    # count = steps x per batch: 500-2000 x 1-4 = 500-8000 poisoned samples at 1/64-1/16
                    insert_steps=(1000, 500, 2000), poison_per_batch=(2, 1, 4),
                    densities=(1, 3, 6), triggers=("token", "ngram", "pair", "context"),
                    behaviours=("fixed", "wrong"), clean_steps=2000, clean_lrs=(3e-3, 1e-3, 1e-2),
                    checkpoints=(60, 600), n_evals=14, eval_batch=256,
                    noise_levels=(0.0, 0.1, 0.3, 0.6, 1.0), relearn_steps=1000, stage2_seeds=5, detect_seqs=512),
}

CHUNK = 500            # training steps per jitted chunk (a run's numbers do not depend on it)
RELEARN_ASR = 0.5      # the relearning attack stops once ASR reaches this
STOP_EVERY = 10        # ... checked every this many steps
STUDENT_SEED = 1000    # distillation students' seeds are seed + this: an init independent of the teacher's
MEASURE_SEED = 2024    # the detection inputs
