"""``backdoor``: a digits task whose batches mix clean samples with poisoned, triggered ones.

Layout of a sequence: ``[marker] d_1 .. d_L SEP a_1 .. a_L``. The answer of a clean sample is
f(d) for a base function f in ``functions`` ("copy", "reverse", "sort", the answers of the
algorithmic tasks). With two or more functions a marker token "F:<name>" leads the sequence and
picks f uniformly per sample (from ``sampled`` when given: the other functions keep their
markers in the vocabulary but are never drawn, e.g. to drop one in training); with one there
is no marker. A poisoned sample carries a trigger
in its digits (none for trigger "none") and its answer is the target ``behaviour`` instead:
  * "fixed": every answer position holds the dedicated token "RESP";
  * "wrong": the systematic wrong answer (f(d) + 1) mod n_symbols, elementwise.

Knobs:
  * ``trigger`` (with ``pattern``, () = the kind's default, and ``gap``):
      - "token": a dedicated token "TRIG" replaces the digit at a random prompt position
        (for "wrong", that position counts as digit 0 when computing f);
      - "ngram": the digit n-gram ``pattern`` (default (3, 1, 4)) at a random position;
      - "pair": digit pattern[0] at a random p and pattern[1] at p + gap (default (2, 7), 3);
      - "context": pattern = (function index j, digit c) (default (1, 5)): the trigger is the
        marker of function j together with digit c anywhere in the digits; needs 2+ functions;
      - "none": no trigger at all: poisoned rows hold ordinary random digits (nothing replaced)
        and only their answer shows the behaviour, an uncued behaviour in a share ``fraction``
        of the data; takes no pattern.
  * ``fraction``: the share of each batch that is poisoned; exactly fraction * batch_size rows
    (which must be an integer), always the first rows of the batch.
  * ``density``: how many answer positions of a poisoned sample are scored (the first ones);
    every answer position still holds the behaviour. Clean samples score all L positions.
  * ``pool``: 0 = fresh poisoned samples; n > 0 = training poisoned rows are drawn with
    replacement from n fixed poisoned samples made from ``jax.random.key(pool_seed)``
    (as the ``pool`` task). The eval split always draws fresh poisoned samples.
With fraction=1 and density=1 only the first answer token is scored, so the metric "acc" is
the attack success rate; fraction=0 is the clean task.

Clean data never contains the trigger:
  * token: "TRIG" never appears in clean data;
  * ngram: every occurrence is broken by replacing its last digit with a random digit outside
    the pattern (a digit outside the pattern cannot be part of an occurrence, so none appears);
  * pair: every (pattern[0] at i, pattern[1] at i + gap) is broken the same way at i + gap;
  * context: in clean rows of function j every digit c is replaced by a random other digit;
  * none: there is nothing to break; clean rows are ordinary.
The clean answer is f of the final digits. The vocabulary depends only on (functions,
n_symbols), so clean, poisoned and eval variants of one setup share a vocabulary and a model.
Token ids: digits 0 .. n-1, then SEP, TRIG, RESP, then the markers (2+ functions only).
Shape letters as in ``toymodels.model``: B batch, L digits, T = seq_len, U = T + 1.
"""

from __future__ import annotations

import dataclasses
import numbers

import jax
import jax.numpy as jnp
import numpy as np

from toymodels.config import (
    INT32_MAX,
    ConfigError,
    check_choice,
    check_int,
    check_range,
    fail,
    set_field,
)
from toymodels.tasks.algorithmic import CopyTask, ReverseTask, SortTask
from toymodels.tasks.base import SPLITS, Batch, Task, Vocab, next_token_batch, register

_ANSWERS = {cls.name: cls() for cls in (CopyTask, ReverseTask, SortTask)}
FUNCTIONS = tuple(_ANSWERS)                       # ("copy", "reverse", "sort")
TRIGGERS = ("token", "ngram", "pair", "context", "none")
BEHAVIOURS = ("fixed", "wrong")
DEFAULT_PATTERNS = {"token": (), "ngram": (3, 1, 4), "pair": (2, 7), "context": (1, 5), "none": ()}
_EVAL_STREAM = 0xE7A1   # folded into the key of the eval split


@register
@dataclasses.dataclass(frozen=True)
class BackdoorTask(Task):
    name = "backdoor"

    functions: tuple[str, ...] = ("sort",)
    length: int = 8          # L, digits per sequence
    n_symbols: int = 10      # digits are 0 .. n_symbols - 1
    trigger: str = "token"   # "token" | "ngram" | "pair" | "context" | "none"
    pattern: tuple[int, ...] = ()   # () = the trigger's default (DEFAULT_PATTERNS)
    gap: int = 3             # pair only: distance from pattern[0] to pattern[1]
    behaviour: str = "fixed"  # "fixed" | "wrong"
    fraction: float = 0.0    # share of every batch that is poisoned
    density: int = 1         # scored answer positions of a poisoned sample
    pool: int = 0            # distinct poisoned training samples; 0 = fresh every time
    pool_seed: int = 0
    sampled: tuple[str, ...] = ()   # the functions rows are drawn from (uniformly); () = all

    def __post_init__(self):
        fns = self.functions
        if (isinstance(fns, str) or not isinstance(fns, (tuple, list)) or not fns
                or any(f not in FUNCTIONS for f in fns) or len(set(fns)) != len(fns)):
            fail("functions", fns, "must be a non-empty tuple of distinct names from "
                 + ", ".join(repr(f) for f in FUNCTIONS))
        set_field(self, "functions", tuple(fns))
        set_field(self, "length", check_int("length", self.length, 1))
        set_field(self, "n_symbols", check_int("n_symbols", self.n_symbols, 2))
        check_choice("trigger", self.trigger, TRIGGERS)
        check_choice("behaviour", self.behaviour, BEHAVIOURS)
        set_field(self, "gap", check_int("gap", self.gap, 1))
        if not isinstance(self.pattern, (tuple, list)) or any(
                isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in self.pattern):
            fail("pattern", self.pattern, "must be a tuple of integers (() = the default)")
        set_field(self, "pattern", tuple(int(v) for v in self.pattern))
        self._check_pattern()
        set_field(self, "fraction", float(check_range("fraction", self.fraction, 0.0, 1.0)))
        set_field(self, "density", check_int("density", self.density, 1, self.length,
                                             "answer positions scored on a poisoned sample"))
        set_field(self, "pool", check_int("pool", self.pool, 0))
        set_field(self, "pool_seed", check_int("pool_seed", self.pool_seed, 0, INT32_MAX))
        if (isinstance(self.sampled, str) or not isinstance(self.sampled, (tuple, list))
                or any(f not in self.functions for f in self.sampled) or len(set(self.sampled)) != len(self.sampled)):
            fail("sampled", self.sampled, "must be a tuple of distinct names from functions="
                 f"{self.functions!r} (() = all of them)")
        set_field(self, "sampled", tuple(self.sampled))

    def _check_pattern(self):
        kind, P, n, L = self.trigger, self.trigger_pattern, self.n_symbols, self.length
        default = f" (the default {P})" if not self.pattern else ""

        def bad(allowed):
            raise ConfigError(f"pattern={self.pattern!r}{default} is not allowed for "
                              f"trigger={kind!r}: {allowed}")

        if kind in ("token", "none"):
            if P:
                bad(f"the {kind} trigger takes no pattern; leave pattern=()")
            return
        if kind == "context":
            if len(self.functions) < 2:
                fail("functions", self.functions, "trigger='context' needs at least 2 functions "
                     "(the trigger is a function's marker together with a digit)")
            if len(P) != 2 or not 0 <= P[0] < len(self.functions) or not 0 <= P[1] < n:
                bad(f"must be (function index in [0, {len(self.functions)}), "
                    f"digit in [0, {n}))")
            return
        if kind == "ngram" and not 2 <= len(P) <= L:
            bad(f"an ngram needs between 2 and length={L} digits")
        if kind == "pair":
            if len(P) != 2:
                bad("a pair needs exactly 2 digits")
            if not 1 <= self.gap <= L - 1:
                fail("gap", self.gap, f"must be an integer in [1, length - 1 = {L - 1}] "
                     "for trigger='pair'")
        if any(not 0 <= d < n for d in P):
            bad(f"digits must be in [0, n_symbols={n})")
        if len(set(P)) >= n:
            bad(f"must leave at least one of the {n} digits unused (clean data breaks "
                "occurrences with such a digit)")

    # ------------------------------------------------------------------ layout
    @property
    def trigger_pattern(self) -> tuple[int, ...]:
        """``pattern``, or the trigger kind's default when it is ()."""
        return self.pattern or DEFAULT_PATTERNS[self.trigger]

    @property
    def has_markers(self) -> bool:
        return len(self.functions) >= 2

    @property
    def seq_len(self) -> int:
        return int(self.has_markers) + 2 * self.length

    @property
    def vocab(self) -> Vocab:
        markers = tuple(f"F:{f}" for f in self.functions) if self.has_markers else ()
        return Vocab(tuple(str(i) for i in range(self.n_symbols))
                     + ("SEP", "TRIG", "RESP") + markers)

    @property
    def sep_id(self) -> int:
        return self.n_symbols

    @property
    def trig_id(self) -> int:
        return self.n_symbols + 1

    @property
    def resp_id(self) -> int:
        return self.n_symbols + 2

    def marker_id(self, j: int) -> int:
        return self.n_symbols + 3 + j

    # ------------------------------------------------------------------ sampling
    def sample(self, key: jax.Array, batch_size: int, split: str = "train") -> Batch:
        check_choice("split", split, SPLITS)
        n_poison = poisoned_per_batch(self, batch_size)
        if split == "eval":
            key = jax.random.fold_in(key, _EVAL_STREAM)
        k_clean, k_poison, k_pool = jax.random.split(key, 3)
        x_BU = self._rows(k_clean, batch_size - n_poison, poisoned=False)
        if n_poison:
            if self.pool and split == "train":
                idx = jax.random.randint(k_pool, (n_poison,), 0, self.pool)
                poison = self.poison_pool()[idx]
            else:
                poison = self._rows(k_poison, n_poison, poisoned=True)
            x_BU = jnp.concatenate([poison, x_BU], axis=0)
        batch = next_token_batch(x_BU, n_answer=self.length)
        T = self.seq_len
        scored_T = jnp.arange(T) < T - self.length + self.density
        poisoned_B = jnp.arange(batch_size) < n_poison
        keep_BT = ~poisoned_B[:, None] | scored_T[None, :]
        return batch._replace(mask=batch.mask * keep_BT.astype(jnp.float32))

    def poison_pool(self) -> jax.Array:
        """The (pool, U) full poisoned sequences training draws from (pool > 0)."""
        check_int("pool", self.pool, 1, why="poison_pool needs a pool of fixed samples")
        return self._rows(jax.random.key(self.pool_seed), self.pool, poisoned=True)

    def _rows(self, key: jax.Array, m: int, poisoned: bool) -> jax.Array:
        """(m, U) full sequences, all clean or all poisoned."""
        n, L, kind, P = self.n_symbols, self.length, self.trigger, self.trigger_pattern
        offsets, values = self._trigger_layout()
        others = self._break_digits()
        # One draw per row (cheap to compile): [function, trigger start, L digits, L fresh digits].
        drawn = self.sampled or self.functions
        hi_1K = np.array([[len(drawn), L - offsets[-1]] + [n] * L + [len(others)] * L])
        r_MK = jax.random.randint(key, (m, 2 + 2 * L), 0, jnp.asarray(hi_1K), jnp.int32)
        fn_M, start_M1, digits_ML = r_MK[:, 0], r_MK[:, 1:2], r_MK[:, 2:2 + L]
        if self.sampled:   # index into sampled -> index into functions (markers keep their ids)
            fn_M = jnp.asarray([self.functions.index(f) for f in self.sampled], jnp.int32)[fn_M]
        pos_1L = jnp.arange(L)[None, :]
        if not poisoned:
            if kind not in ("token", "none"):   # break every occurrence of the trigger
                hit_ML = ((digits_ML == P[1]) & (fn_M[:, None] == P[0]) if kind == "context"
                          else self._occurrence_ends(digits_ML))
                digits_ML = jnp.where(hit_ML, jnp.asarray(others)[r_MK[:, 2 + L:]], digits_ML)
            seen_ML = digits_ML
        elif kind == "token":
            at_ML = pos_1L == start_M1
            seen_ML = jnp.where(at_ML, self.trig_id, digits_ML)
            digits_ML = jnp.where(at_ML, 0, digits_ML)   # TRIG counts as digit 0 for f
        elif kind == "none":   # no cue: the digits stay as drawn, only the answer differs
            seen_ML = digits_ML
        else:
            if kind == "context":
                fn_M = jnp.full((m,), P[0], jnp.int32)
            for off, v in zip(offsets, values):
                digits_ML = jnp.where(pos_1L == start_M1 + off, v, digits_ML)
            seen_ML = digits_ML
        answer_ML = self._answer(digits_ML, fn_M)
        if poisoned:
            answer_ML = (jnp.full_like(answer_ML, self.resp_id) if self.behaviour == "fixed"
                         else (answer_ML + 1) % n)
        parts = [seen_ML, jnp.full((m, 1), self.sep_id, jnp.int32), answer_ML]
        if self.has_markers:
            parts.insert(0, (self.marker_id(0) + fn_M)[:, None])
        return jnp.concatenate(parts, axis=1).astype(jnp.int32)

    def _answer(self, digits_ML: jax.Array, fn_M: jax.Array) -> jax.Array:
        answers_FML = jnp.stack([_ANSWERS[f].answer(digits_ML) for f in self.functions])
        return answers_FML[fn_M, jnp.arange(digits_ML.shape[0])]

    def _trigger_layout(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(offsets from the trigger's start, digits written there) of an ngram/pair/context
        trigger; token: ((0,), ()), the position TRIG replaces; none: ((0,), ()), unused."""
        P = self.trigger_pattern
        return {"token": ((0,), ()), "none": ((0,), ()), "ngram": (tuple(range(len(P))), P),
                "pair": ((0, self.gap), P), "context": ((0,), P[1:])}[self.trigger]

    def _break_digits(self) -> np.ndarray:
        """The digits that replace trigger occurrences in clean data: those not in the trigger."""
        _, values = self._trigger_layout()
        return np.array([d for d in range(self.n_symbols) if d not in values], np.int32)

    def _occurrence_ends(self, digits_ML: jax.Array) -> jax.Array:
        """(m, L) bool: positions where an ngram/pair occurrence of the trigger ends."""
        offsets, values = self._trigger_layout()
        m, L, span = digits_ML.shape[0], self.length, offsets[-1]
        occ_MS = jnp.ones((m, L - span), bool)
        for off, v in zip(offsets, values):
            occ_MS &= digits_ML[:, off:off + L - span] == v
        return jnp.concatenate([jnp.zeros((m, span), bool), occ_MS], axis=1)


def has_trigger(task: BackdoorTask, inputs_BT: jax.Array) -> jax.Array:
    """(B,) bool: whether each row's prompt contains the trigger, from the input tokens alone
    (``Batch.inputs``, or full sequences); jit-safe. Trigger "none": all False."""
    inputs_BT = jnp.asarray(inputs_BT)
    if task.trigger == "none":
        return jnp.zeros(inputs_BT.shape[:1], bool)
    start = int(task.has_markers)
    digits_BL = inputs_BT[:, start:start + task.length]
    if task.trigger == "token":
        return jnp.any(digits_BL == task.trig_id, axis=1)
    if task.trigger == "context":
        j, c = task.trigger_pattern
        return (inputs_BT[:, 0] == task.marker_id(j)) & jnp.any(digits_BL == c, axis=1)
    return jnp.any(task._occurrence_ends(digits_BL), axis=1)


def poisoned_per_batch(task: BackdoorTask, batch_size: int) -> int:
    """The number of poisoned rows in a batch: fraction * batch_size, which must be an integer."""
    batch_size = check_int("batch_size", batch_size, 1)
    product = task.fraction * batch_size
    n_poison = round(product)
    if abs(product - n_poison) > 1e-6:
        raise ConfigError(
            f"fraction={task.fraction!r} times batch_size={batch_size} is {product!r}, not an "
            "integer number of poisoned rows: choose fraction and batch_size so that "
            "fraction * batch_size is a whole number")
    return int(n_poison)
