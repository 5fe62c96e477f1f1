"""Presets and the study's constants: programs, twin training budget, decompiler sizes."""

from __future__ import annotations

import dataclasses

from toymodels.config import ConfigError
from toymodels.rasp.catalogue import LIBRARY


@dataclasses.dataclass(frozen=True)
class Preset:
    library: tuple[str, ...]     # library programs (the first is the spectra showcase)
    n_fountain: int              # fountain programs: the first usable ones of the decompiler's held-out split
    widths: tuple[float, ...]    # twin residual / head / MLP widths, relative to the compiled net
    seeds: int                   # twin seeds per (program, width); also scrambles per program
    steps: int                   # twin training steps
    max_inputs: int              # table rows whose activations are compared
    mlp_steps: int               # steps of the MLP probe (nonlinear R^2)
    dec_programs: int            # fountain programs tried for the decompiler's dataset
    dec_extra_train: int         # more programs tried, training split only
    dec_eval: int                # held-out programs (also where the fountain twins come from)
    dec_weight_tokens: int       # weight-token cap of the decompiler's input
    dec_program_tokens: int      # program-token cap of its output
    dec_d_model: int
    dec_layers: int
    dec_steps: int
    dec_seeds: int
    fair_eval: int               # programs held out on the fair benchmark's function split
    fair_samples: int            # sampled decodings (and retrieved programs) per net for the execution check
    fair_checks: int             # inputs the execution check runs each net and candidate on
    iia_pairs: int               # (base, source) pairs of training inputs that fit each interchange subspace
    iia_test_pairs: int          # pairs of held-out inputs that score it
    iia_steps: int               # Adam steps of each subspace fit
    main: bool = True            # part "main": twins, token-split decompilers, their analyses, the causal test
    fair: bool = True            # part "fair": the fair benchmark's decompilers and analyses
    fair_twins: int = 0          # fair held-out programs whose twins (reference width) the fair decompilers read
    fair_wide_beam: int = 0      # a wider beam search for the "wide beam" methods (0: none); more candidates
                                 # than the other methods, so its budget is reported beside it

    def __post_init__(self):
        if self.fair_wide_beam and self.fair_wide_beam <= self.fair_samples + 1:
            raise ConfigError(f"fair_wide_beam={self.fair_wide_beam!r}: must be 0 (none) or wider than the "
                              f"{self.fair_samples + 1} beams of the beam methods (fair_samples + 1)")

    @property
    def ref_width(self) -> float:
        """The width of the per-position, MLP, partialled and null comparisons: 1x if run."""
        return 1.0 if 1.0 in self.widths else self.widths[0]


PRESETS = {
    # Every figure at low resolution in about 3 CPU minutes.
    "smoke": Preset(library=("reverse", "frac_prevs"), n_fountain=2, widths=(1.0,), seeds=2, steps=600,
                    max_inputs=256, mlp_steps=300,
                    dec_programs=120, dec_extra_train=0, dec_eval=16, dec_weight_tokens=64, dec_program_tokens=48,
                    dec_d_model=32, dec_layers=1, dec_steps=150, dec_seeds=2,
                    fair_eval=16, fair_samples=3, fair_checks=4, iia_pairs=128, iia_test_pairs=64, iia_steps=50,
                    fair_twins=2, fair_wide_beam=8),
    # CPU-sized: every library program (all compile at length 5), 30 fountain programs, and
    # the decompiler on the decompile task's default dataset (2000 fountain programs tried).
    # Its weight-token cap is 64, not the task's 128: the sequence is 113 positions instead
    # of 193, 3.5x cheaper a step on CPU, at the cost of the ~10% largest programs.
    "paper": Preset(library=tuple(LIBRARY), n_fountain=30, widths=(0.5, 1.0, 2.0), seeds=3, steps=2000,
                    max_inputs=512, mlp_steps=1000,
                    dec_programs=2000, dec_extra_train=8000, dec_eval=200, dec_weight_tokens=64,
                    dec_program_tokens=48, dec_d_model=64, dec_layers=2, dec_steps=4000, dec_seeds=3,
                    fair_eval=400, fair_samples=31, fair_checks=8,
                    iia_pairs=512, iia_test_pairs=512, iia_steps=200, fair_twins=20,
                    fair_wide_beam=128),
}

LENGTH = 5              # input tokens after BOS (shuffle_dyck2 is built for 4)
EVAL_FRAC = 0.25        # of a program's input table held out, at most MAX_EVAL rows
MAX_EVAL = 512
TWIN_LR = 1e-2          # one budget for every program: measured to fit reverse, sort,
TWIN_BATCH = 64         # is_palindrome, count_less_freq in 2000 steps on all 3 seeds
MATCH = 0.99            # held-out token accuracy at which a twin "matches" its program
MLP_HIDDEN = 64
ANCHORS = (  # decompilers of Tracr-compiled nets in the literature (their own program sets)
    ("TraDe exact match", "exact", 0.30, "Thurnherr & Riesen 2024 (arXiv 2410.00061)"),
    ("TraDe functionally equivalent", "equivalent", 0.73, "Thurnherr & Riesen 2024 (arXiv 2410.00061)"),
    ("meta-model fully correct", "exact", 0.60,
     "Langosco et al. 2024, 'Towards Meta-Models for Automated Interpretability' (1-9 op programs)"),
)
