"""Presets and constants of the ood_decay study.

sizes: (label, n_layers, d_model); regs: (label, weight decay, dropout[, learning rate]),
the preset's lr where a point names none. The FIRST size and the FIRST regularisation
point make the base cell, the only one that runs every role and every replay fraction p.
Every other size (at the base regularisation) and every other regularisation point (at
the base size) runs pre + drop(p=0) only: that is all the half-life-vs-size and
half-life-vs-clock figures need, at a fifth of the cost.
steps: (phase 1, phase 2 = the decay window, phase 3 = relearning). Phase 3 has phase 1's
length so that relearning and first learning (the pre run) share one compiled program and
one horizon for the savings measures.
"""

from __future__ import annotations

import dataclasses

Size = tuple[str, int, int]
Reg = tuple   # (label, weight decay, dropout) or (label, weight decay, dropout, learning rate)


@dataclasses.dataclass(frozen=True)
class Preset:
    cases: tuple[str, ...]
    n_languages: int
    seeds: int
    sizes: tuple[Size, ...]
    regs: tuple[Reg, ...]
    ps: tuple[float, ...]            # replay fractions of X in phase 2; must include 0
    steps: tuple[int, int, int]      # phase 1, phase 2 (decay window), phase 3 (relearning)
    lr: float
    batch_size: int
    warmup: int
    n_evals: tuple[int, int]         # evaluations in phases 1 and 3, in phase 2
    eval_batch: int
    fewshot: tuple[int, int] | None  # (examples of X, steps) from drop_p0 and from never2; None: no fewshot runs


PRESETS = {
    "smoke": Preset(cases=("A", "B", "C", "D"), n_languages=3, seeds=2,
                    sizes=(("1L-d32", 1, 32), ("1L-d16", 1, 16)),
                    regs=(("wd0.1", 0.1, 0.0),),
                    ps=(0.0, 0.01), steps=(60, 60, 60),
                    lr=3e-3, batch_size=32, warmup=10, n_evals=(6, 8), eval_batch=32,
                    fewshot=(10, 10)),
    "paper": Preset(cases=("A", "B", "C", "D"), n_languages=5, seeds=5,
                    # width at one layer (16, 32, 64) and depth at d32 (1, 2 layers): 5k-57k parameters
                    sizes=(("1L-d32", 1, 32), ("1L-d16", 1, 16), ("2L-d32", 2, 32), ("1L-d64", 1, 64)),
                    regs=(("wd0.1", 0.1, 0.0), ("wd0", 0.0, 0.0), ("wd1", 1.0, 0.0),
                          ("wd0.1+do0.1", 0.1, 0.1), ("wd0.1+lr1e-3", 0.1, 0.0, 1e-3)),
                    # ln2/(lr*wd) = 231 (wd 1) and 2310 (wd 0.1) steps: both inside the 2400-step window
                    ps=(0.0, 0.001, 0.01, 0.05), steps=(600, 2400, 600),
                    lr=3e-3, batch_size=32, warmup=50, n_evals=(16, 24), eval_batch=96,
                    fewshot=(10, 100)),
}

CRITERION = 0.9        # relearning target: this fraction of X's accuracy just before the drop
CENSOR = 3.0           # fitted half-lives beyond this many decay windows count as not reached
NO_DECAY = 0.1         # a curve that got worse by less than this fraction of its start did not decay
MODULUS = 10           # a, b in [0, 10): two-digit sums, 20 held-out pairs (a, b)
A_LENGTH = 12
CHUNK = 500            # training steps per jitted chunk (a run's numbers do not depend on it)

# measurements of the final models (measure.py)
MEASURE_SEED = 2024
PROBE_SEQS = 256       # eval sequences of X
REFIT_SEQS = 64        # training sequences per mixture task for the readout refit
