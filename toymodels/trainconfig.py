"""``TrainConfig``: every training hyperparameter shared by the runs of one program.

Per-run values (seed, lr, weight decay, myopic beta) here are defaults; a set of
runs overrides them row by row (``toymodels.runs.make_runs``). Myopia is set here,
not on the model: training refuses ``TransformerConfig.myopic``, and a beta other
than 0 needs ``myopic=True`` (it would otherwise be ignored).
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Iterable, Literal, NamedTuple, get_args

import numpy as np

from toymodels.config import (
    INT32_MAX,
    ConfigError,
    check_bool,
    check_choice,
    check_int,
    check_range,
    check_seed,
    check_str,
    fail,
    set_field,
)

Context = Literal["live", "teacher", "none"]
CONTEXTS = get_args(Context)
Decay = Literal["all", "matrices"]
DECAYS = get_args(Decay)
Objective = Literal["data", "distill", "none"]
OBJECTIVES = get_args(Objective)
Precision = Literal["fp32", "bf16"]
PRECISIONS = get_args(Precision)
Optimizer = Literal["adamw", "sgd"]
OPTIMIZERS = get_args(Optimizer)
# Fields added after results and checkpoints were first written: ``as_dict`` leaves them out at
# their defaults, so a config that does not use them is described (saved, hashed) as before.
LATER_FIELDS = ("decay", "data_offset", "stop_when", "stop_every", "objective", "init_noise", "precision",
                "myopic_band", "optimizer", "displacement", "trainable_rows", "myopic_far")
# Fields added after analysis caches were keyed by the config's repr (toymodels.analyses.config_hash):
# ``repr`` leaves them out at their defaults, so every cached analysis stays valid.
REPR_LATER_FIELDS = ("optimizer", "displacement", "trainable_rows", "myopic_far")
MYOPIC_FAR = ("", "key", "value")
_STOP = re.compile(r"\s*(?P<task>.+)\.(?P<metric>[A-Za-z_]\w*)\s*(?P<op>>=|<=)\s*(?P<threshold>\S+)\s*")


class StopRule(NamedTuple):
    """A parsed ``stop_when``: a run stops once ``metric`` of ``task`` is ``op`` ``threshold``."""
    task: str
    metric: str
    op: str            # ">=" (accuracy-like) or "<=" (loss-like)
    threshold: float   # compared in float32, like the metric


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Training hyperparameters (seed, lr, weight_decay, myopic_beta: defaults each run may override)."""
    steps: int = 1000
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.1
    # What weight decay shrinks: "all" parameters, or only the weight matrices and embeddings
    # (parameters named W_*: W_E, W_pos, W_U, W_QKV, W_O, W_in, W_out), not biases nor
    # LayerNorm scales/biases, as most reference implementations do.
    decay: Decay = "all"
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
    # Where the run's data stream starts: step s draws its batch (and dropout) with key
    # fold_in(seed, data_offset + s). Trainer.continue_training sets it to where the trained
    # state's stream stopped, so a continuation never replays the batches already seen.
    data_offset: int = 0
    myopic: bool = False
    myopic_beta: float = 0.0
    # Band-limited myopia (myopic=True only): an attention link from a query at t to a key at
    # s with 0 < t - s <= myopic_band keeps its full gradient; links reaching further back get
    # myopic_beta's. 0 = myopic descent; >= the sequence length = vanilla. Per attention hop,
    # so through L layers a loss reaches between myopic_band and L * myopic_band positions back.
    myopic_band: int = 0
    # Which path of the links beyond the band keeps its full gradient anyway: "" (neither),
    # "key" (the score's gradient reaches the far key: keys learn from every query, values
    # only from queries within the band) or "value" (the reverse). A causal check of what
    # the band withholds; myopic=True only.
    myopic_far: str = ""
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
    # Train each run until a criterion: "TASK.METRIC>=X" (accuracy-like) or "TASK.METRIC<=X"
    # (loss-like) on the task's fixed eval set, checked every ``stop_every`` steps (step 0
    # included) inside the compiled loop. A run that meets it at step s keeps its params and
    # optimizer state of step s from then on (TrainResult.stop_step); training ends once every
    # run has stopped. "" = train every run all ``steps``.
    stop_when: str = ""
    stop_every: int = 50
    # What the loss matches: the batch's "data" targets, or a frozen teacher's next-token
    # distribution ("distill": KL(teacher || student) at the batch's scored positions; the
    # teacher, one per run with the student's architecture, is a RunSpec's ``teacher``), or
    # "none": no gradient at all, so AdamW changes the parameters by decoupled weight decay
    # alone (each decayed one times 1 - lr * wd per step: the pure-shrinkage control); the
    # data loss is still computed and reported.
    objective: Objective = "data"
    # A run started from given parameters (``init_from``, ``state_from_params``) starts from
    # (1 - init_noise) * those + init_noise * a fresh init of its seed: 0 = an exact copy,
    # 1 = a fresh init, in between a noised copy (shrink and perturb; UNDO, Lee et al. 2025).
    init_noise: float = 0.0
    # The training step's arithmetic: "fp32", or "bf16" mixed precision (the forward and backward
    # pass in bfloat16 on a bfloat16 copy of the parameters, the loss in float32; the parameters,
    # gradients and optimizer state stay float32). Evaluation always runs in float32.
    precision: Precision = "fp32"
    # The update rule: "adamw" (Adam's normalised step plus decoupled weight decay) or "sgd"
    # (plain gradient descent, no momentum: p - lr * (g + wd * p)). Both keep Adam's state
    # layout, so a run can switch rule from where another stopped (sgd leaves the state as is).
    optimizer: Optimizer = "adamw"
    # At every eval, metric "displacement" of task "train": the L2 distance of all parameters
    # from the run's starting parameters (its init, or its init_from's parameters after init_noise).
    displacement: bool = False
    # Of the parameters ``trainable`` selects, only these rows (indices along each one's first
    # axis: token ids of W_E, say) are trained; the rest stay bitwise as they were. () = all rows.
    trainable_rows: tuple[int, ...] = ()

    def __repr__(self) -> str:
        shown = (f for f in dataclasses.fields(self)
                 if f.name not in REPR_LATER_FIELDS or getattr(self, f.name) != f.default)
        return f"{type(self).__name__}({', '.join(f'{f.name}={getattr(self, f.name)!r}' for f in shown)})"

    def __post_init__(self):
        for f, lo in (("steps", 1), ("batch_size", 1), ("chunk_steps", 1), ("n_evals", 1),
                      ("eval_batch", 1), ("warmup_steps", 0), ("data_offset", 0), ("stop_every", 1),
                      ("myopic_band", 0)):
            set_field(self, f, check_int(f, getattr(self, f), lo))
        for f in ("seed", "eval_seed"):
            set_field(self, f, check_seed(f, getattr(self, f)))
        for f in ("myopic", "grad_diagnostics", "displacement"):
            set_field(self, f, check_bool(f, getattr(self, f)))
        # eps > 0: a parameter whose gradient is exactly 0 (the stopped key bias) would get 0/0.
        for f, lo, hi, lo_open, hi_open in (
                ("lr", 0.0, math.inf, True, False), ("weight_decay", 0.0, math.inf, False, False),
                ("min_lr_frac", 0.0, 1.0, False, False), ("b1", 0.0, 1.0, False, True),
                ("b2", 0.0, 1.0, False, True), ("eps", 0.0, math.inf, True, False),
                ("grad_clip", 0.0, math.inf, False, False), ("myopic_beta", 0.0, 1.0, False, False),
                ("init_noise", 0.0, 1.0, False, False)):
            set_field(self, f, check_range(f, getattr(self, f), lo, hi, lo_open=lo_open, hi_open=hi_open))
        check_choice("lr_schedule", self.lr_schedule, ("constant", "cosine"))
        check_choice("eval_spacing", self.eval_spacing, ("linear", "log"))
        if isinstance(self.eval_at, (str, bytes)) or not isinstance(self.eval_at, Iterable):
            fail("eval_at", self.eval_at, "must be a sequence of integer steps")
        set_field(self, "eval_at", tuple(check_int("eval_at step", s, 0) for s in self.eval_at))
        for s in self.eval_at:
            if s > self.steps:
                raise ConfigError(f"eval_at step {s} is beyond steps={self.steps}")
        if self.myopic_beta != 0.0 and not self.myopic:
            fail("myopic_beta", self.myopic_beta, "only myopic training uses a beta; set myopic=True "
                 "(or leave myopic_beta at its default 0.0)")
        if self.myopic_band and not self.myopic:
            fail("myopic_band", self.myopic_band, "only myopic training has a band; set myopic=True "
                 "(or leave myopic_band at its default 0)")
        check_choice("context", self.context, CONTEXTS)
        if self.myopic_band and self.context != "live":
            fail("myopic_band", self.myopic_band, f"needs context='live' (got {self.context!r}): the band "
                 "limits the gradient through the model's own past")
        check_choice("myopic_far", self.myopic_far, MYOPIC_FAR)
        if self.myopic_far and not (self.myopic and self.context == "live"):
            fail("myopic_far", self.myopic_far, "restores a path of myopic training's stopped links: needs "
                 f"myopic=True and context='live' (got myopic={self.myopic}, context={self.context!r})")
        check_choice("decay", self.decay, DECAYS)
        check_choice("objective", self.objective, OBJECTIVES)
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        if self.objective == "distill" and self.context == "teacher":
            raise ConfigError("objective='distill' with context='teacher' is not supported: a teacher is "
                              "either distilled from or read as context, not both")
        if self.data_offset + self.steps > INT32_MAX:
            fail("data_offset", self.data_offset, f"data_offset + steps must fit int32 (<= {INT32_MAX})")
        check_str("stop_when", self.stop_when)
        self.stop_rule()
        if self.grad_diagnostics and self.context != "live":
            raise ConfigError(f"grad_diagnostics needs context='live' (got {self.context!r}): the "
                              "off-diagonal gradient only exists when the past is the model's own")
        check_str("trainable", self.trainable)
        try:
            re.compile(self.trainable)
        except re.error as e:
            raise ConfigError(f"trainable={self.trainable!r} is not a valid regular expression: {e}") from None
        if isinstance(self.trainable_rows, (str, bytes)) or not isinstance(self.trainable_rows, Iterable):
            fail("trainable_rows", self.trainable_rows, "must be a sequence of row indices")
        rows = tuple(check_int("trainable_rows index", r, 0) for r in self.trainable_rows)
        if len(set(rows)) != len(rows):
            fail("trainable_rows", self.trainable_rows, "must not repeat a row")
        if rows and not self.trainable:
            fail("trainable_rows", self.trainable_rows, "needs trainable (the parameters whose rows train)")
        set_field(self, "trainable_rows", tuple(sorted(rows)))

    @property
    def needs_teacher(self) -> bool:
        """Whether training reads a frozen teacher (as context, or as the distillation target)."""
        return self.context == "teacher" or self.objective == "distill"

    def as_dict(self) -> dict:
        """The fields as a dict, a ``LATER_FIELDS`` one only where it differs from its default."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in LATER_FIELDS or getattr(self, f.name) != f.default}

    def stop_rule(self) -> StopRule | None:
        """``stop_when`` parsed (None when empty); which tasks and metrics exist is checked by
        ``toymodels.train.validate``."""
        if not self.stop_when:
            return None
        m = _STOP.fullmatch(self.stop_when)
        try:
            threshold = float(m["threshold"]) if m else math.nan
        except ValueError:
            threshold = math.nan
        if not math.isfinite(threshold):
            fail("stop_when", self.stop_when, "write TASK.METRIC>=X or TASK.METRIC<=X with a finite number X, "
                 "e.g. 'sort.acc>=0.99' or 'markov.loss<=2.1'")
        return StopRule(m["task"].strip(), m["metric"], m["op"], threshold)

    def eval_steps(self) -> np.ndarray:
        """Steps at which every task is evaluated (always includes 0 and ``steps``)."""
        if self.eval_spacing == "linear":
            pts = np.linspace(0, self.steps, self.n_evals + 1)
        else:
            pts = np.concatenate([[0], np.geomspace(1, self.steps, self.n_evals)])
        # geomspace(1, steps, 1) is [1]: add steps itself so the last step is always evaluated
        return np.unique(np.concatenate([np.round(pts), self.eval_at, [self.steps]]).astype(np.int64))
