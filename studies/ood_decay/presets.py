"""Presets and constants of the ood_decay study.

sizes: (label, n_layers, d_model); regs: (label, weight decay, dropout[, learning rate]),
the preset's lr where a point names none. The FIRST size and the FIRST regularisation
point make the base cell, the only one that runs every role and every replay fraction p.
Every other size (at the base regularisation) and every other regularisation point (at
the base size) runs pre + drop(p=0) only: that is all the half-life-vs-size and
half-life-vs-clock figures need, at a fifth of the cost. The paper preset has no such axes
(part 3 measures size and weight decay at matched convergence); the smoke preset keeps a
size axis so that the code path stays exercised.
steps: (phase 1, phase 2 = the decay window, phase 3 = relearning). Phase 3 has phase 1's
length so that relearning and first learning (the pre run) share one compiled program and
one horizon for the savings measures.
"""

from __future__ import annotations

import dataclasses

Size = tuple[str, int, int]


@dataclasses.dataclass(frozen=True)
class Sharing:
    """The sharing axis (``sharing.py``): knob languages whose X shares a fraction ``sharing`` of its
    content tokens with the kept languages, per arm (``ARMS``). Phase 1 trains the full mix until X's
    exact match on its trained pairs reaches CRITERION_EXACT (at most ``max_pre`` steps); the window
    after the drop is ``window`` steps with ``n_evals`` log-spaced evaluations. The controls (joint:
    X kept; never: X never seen) run ``control_window`` steps (0: the window), log-spaced too."""
    arms: tuple[str, ...]
    sharing: tuple[float, ...]
    seeds: int
    n_layers: int
    d_model: int
    n_languages: int          # with X; the two_task arm always has 2
    max_pre: int
    window: int
    n_evals: int
    lr: float = 3e-3
    batch_size: int = 32
    warmup: int = 50
    eval_batch: int = 256     # sampled with replacement from the 80 trained / 20 held-out pairs
    control_window: int = 0
    ladder: tuple[str, ...] = ()              # intervention-ladder rungs (ladder.RUNGS); () = no ladder
    ladder_sharing: tuple[float, ...] = ()    # the sharing values whose drop models climb it
    ladder_steps: int = 200                   # the budget of every rung, from drop and from never
    # > 0: an "early" run per cell, the drop run's first early_window steps (its checkpoint close
    # in time to pre), patched with the pre-drop model (patching.py); 0 = none
    early_window: int = 0
@dataclasses.dataclass(frozen=True)
class Persistence:
    """What makes a dropped X persist (``persistence.py``): one factor at a time around a base
    cell (``arm`` at ``sharing``, the first of ``sizes``, AdamW at its lr, no replay, no weight
    decay, phase 1 ending at the criterion). sizes: (label, n_layers, d_model, lr), lr one of
    ``tune_lrs`` (every size's phase 1 runs at each; persistence_tune.csv checks the choice)."""
    sizes: tuple[tuple[str, int, int, float], ...]
    tune_lrs: tuple[float, ...]
    extra: tuple[int, ...]        # phase-1 steps past the criterion
    lr2: tuple[float, ...]        # phase-2 learning rates (AdamW)
    sgd: tuple[float, ...]        # phase-2 learning rates of plain gradient descent
    replay: tuple[float, ...]     # fractions of X kept in phase 2
    wd_data: tuple[float, ...]    # phase-2 weight decay with the kept data
    wd_only: tuple[float, ...]    # weight decay with no data gradient (objective "none")
    seeds: int
    max_pre: int
    window: int
    n_evals: int
    arm: str = "same"
    sharing: float = 0.0
    n_languages: int = 3
    batch_size: int = 32
    warmup: int = 50
    eval_batch: int = 256


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
    sharing: Sharing | None = None   # the sharing axis and interference arms (part 2); None: not run
    persistence: Persistence | None = None   # what makes X persist (part 3); None: not run


PRESETS = {
    "smoke": Preset(cases=("A", "B", "C", "D"), n_languages=3, seeds=2,
                    sizes=(("1L-d32", 1, 32), ("1L-d16", 1, 16)),
                    regs=(("wd0.1", 0.1, 0.0),),
                    ps=(0.0, 0.01), steps=(60, 60, 60),
                    lr=3e-3, batch_size=32, warmup=10, n_evals=(6, 8), eval_batch=32,
                    fewshot=(10, 10),
                    # one sharing value: 15 sweep groups (a compile each) fewer, under the 4-minute goal
                    sharing=Sharing(arms=("same", "interfere", "two_task"), sharing=(1.0,), seeds=2,
                                    n_layers=1, d_model=32, n_languages=3, max_pre=400, window=200, n_evals=6,
                                    warmup=10, eval_batch=64, ladder=("unembed",), ladder_sharing=(1.0,),
                                    ladder_steps=20, early_window=20),
                    persistence=Persistence(sizes=(("1L-d32", 1, 32, 3e-3), ("1L-d16", 1, 16, 1e-2)),
                                            tune_lrs=(3e-3, 1e-2), extra=(100,), lr2=(1e-3,), sgd=(0.03,),
                                            replay=(0.05,), wd_data=(0.1,), wd_only=(1.0,), seeds=2, max_pre=400,
                                            window=200, n_evals=6, warmup=10, eval_batch=64)),
    "paper": Preset(cases=("A", "B", "C", "D"), n_languages=5, seeds=5,
                    # the base cell only: size and weight decay are measured by part 3 (persistence), at
                    # matched convergence and against weight decay with no data; the part-1 axes were
                    # confounded by how well X was learned before the drop (docs/ood_decay.md)
                    sizes=(("1L-d32", 1, 32),), regs=(("wd0.1", 0.1, 0.0),),
                    ps=(0.0, 0.001, 0.01, 0.05), steps=(600, 2400, 600),
                    lr=3e-3, batch_size=32, warmup=50, n_evals=(16, 24), eval_batch=96,
                    fewshot=(10, 100),
                    sharing=Sharing(arms=("same", "interfere", "two_task"), sharing=(0.0, 0.25, 0.5, 0.75, 1.0),
                                    seeds=5, n_layers=1, d_model=32, n_languages=3, max_pre=6000, window=20000,
                                    n_evals=24, control_window=4000, early_window=100,
                                    ladder=("tag", "readout_bias", "unembed", "norms", "embed", "layer", "full"),
                                    ladder_sharing=(0.0, 0.5, 1.0), ladder_steps=200),
                    # lr per size: the fastest of tune_lrs to the criterion (persistence_tune_summary.csv)
                    persistence=Persistence(sizes=(("1L-d32", 1, 32, 1e-3), ("1L-d16", 1, 16, 3e-3),
                                                   ("1L-d64", 1, 64, 1e-3), ("1L-d128", 1, 128, 1e-3),
                                                   ("2L-d32", 2, 32, 3e-3), ("2L-d64", 2, 64, 1e-3)),
                                            tune_lrs=(3e-4, 1e-3, 3e-3, 1e-2), extra=(500, 2000, 8000),
                                            lr2=(3e-4, 3e-3, 1e-2), sgd=(1e-3, 3e-3, 0.01, 0.03, 0.1),
                                            replay=(0.001, 0.01, 0.05),
                                            wd_data=(0.1, 1.0), wd_only=(0.1, 1.0), seeds=5, max_pre=6000,
                                            window=10000, n_evals=24)),
}

CRITERION_EXACT = 0.95  # sharing: X's exact match on its trained pairs before the drop
CRITERION = 0.9        # relearning target: this fraction of X's exact match just before the drop
MIN_RANGE = 0.1        # a normalised recovery needs ceiling - floor >= this (else NaN: a ratio of noise)
CENSOR = 3.0           # fitted half-lives beyond this many decay windows count as not reached
NO_DECAY = 0.1         # a curve that got worse by less than this fraction of its start did not decay
MODULUS = 10           # a, b in [0, 10): two-digit sums, 20 held-out pairs (a, b)
A_LENGTH = 12
CHUNK = 500            # training steps per jitted chunk (a run's numbers do not depend on it)

# measurements of the final models (measure.py)
MEASURE_SEED = 2024
PROBE_SEQS = 256       # eval sequences of X
REFIT_SEQS = 64        # training sequences per mixture task for the readout refit
