"""``TrainConfig``: every training hyperparameter shared by the runs of one program.

Per-run values (seed, lr, weight decay, myopic beta) here are defaults; a set of
runs overrides them row by row (``toymodels.runs.make_runs``).
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Literal, get_args

import numpy as np

from toymodels.config import ConfigError, check_choice, check_int, check_range

Context = Literal["live", "teacher", "none"]
CONTEXTS = get_args(Context)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Training hyperparameters (seed, lr, weight_decay, myopic_beta: defaults each run may override)."""
    steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 0
    lr_schedule: Literal["constant", "cosine"] = "constant"   # learning-rate shape after warmup
    min_lr_frac: float = 0.0        # cosine floor, as a fraction of lr
    b1: float = 0.9
    b2: float = 0.95
    eps: float = 1e-8
    grad_clip: float = 0.0          # global-norm clip; 0 = off
    chunk_steps: int = 500          # most steps between two host syncs
    n_evals: int = 20
    eval_spacing: Literal["linear", "log"] = "linear"   # eval grid from 0 to steps
    eval_at: tuple[int, ...] = ()   # extra eval steps (e.g. a dense grid after a mixture event)
    eval_batch: int = 256
    eval_seed: int = 12345
    seed: int = 0
    myopic: bool = False
    myopic_beta: float = 0.0
    trainable: str = ""             # regex over parameter paths (e.g. "W_U"); "" = train all
    # Where attention reads its off-diagonal keys/values from: "live" (the model's own
    # states), "teacher" (a frozen teacher's residual streams: local-myopic training,
    # Wu et al. 2024) or "none" (zeros: the no-context "transformer bigram" baseline).
    # Training and evaluation both use it.
    context: Context = "live"
    # At every eval, the gradient of each task's eval loss split into its myopic part and
    # the off-diagonal rest (vanilla - myopic): metrics offdiag_ratio (norm ratio) and
    # offdiag_cos (cosine between the two).
    grad_diagnostics: bool = False

    def __post_init__(self):
        for f in ("steps", "batch_size", "chunk_steps", "n_evals", "eval_batch"):
            check_int(f, getattr(self, f), 1)
        check_int("warmup_steps", self.warmup_steps, 0)
        check_range("lr", self.lr, 0.0, math.inf, lo_open=True)
        check_range("weight_decay", self.weight_decay, 0.0, math.inf)
        check_choice("lr_schedule", self.lr_schedule, ("constant", "cosine"))
        check_range("min_lr_frac", self.min_lr_frac, 0.0, 1.0)
        check_range("b1", self.b1, 0.0, 1.0, hi_open=True)
        check_range("b2", self.b2, 0.0, 1.0, hi_open=True)
        check_range("grad_clip", self.grad_clip, 0.0, math.inf)
        check_choice("eval_spacing", self.eval_spacing, ("linear", "log"))
        object.__setattr__(self, "eval_at", tuple(self.eval_at))
        for s in self.eval_at:
            check_int("eval_at step", s, 0)
            if s > self.steps:
                raise ConfigError(f"eval_at step {s} is beyond steps={self.steps}")
        check_range("myopic_beta", self.myopic_beta, 0.0, 1.0)
        check_choice("context", self.context, CONTEXTS)
        if self.grad_diagnostics and self.context != "live":
            raise ConfigError(f"grad_diagnostics needs context='live' (got {self.context!r}): the "
                              "off-diagonal gradient only exists when the past is the model's own")
        try:
            re.compile(self.trainable)
        except re.error as e:
            raise ConfigError(f"trainable={self.trainable!r} is not a valid regular expression: {e}") from None

    def eval_steps(self) -> np.ndarray:
        """Steps at which every task is evaluated (always includes 0 and ``steps``)."""
        if self.eval_spacing == "linear":
            pts = np.linspace(0, self.steps, self.n_evals + 1)
        else:
            pts = np.concatenate([[0], np.geomspace(1, self.steps, self.n_evals)])
        return np.unique(np.concatenate([np.round(pts), self.eval_at]).astype(np.int64))
