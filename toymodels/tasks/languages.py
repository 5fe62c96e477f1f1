"""Toy "languages": train on several, drop some from the mix, watch the dropped ones decay.

One registered task, ``language``; ``case`` picks the family of languages:

  A     10 unrelated sequence families (orbit, phrase, count, ...), each on its own
        block of token ids, after a language tag ``<Ai>``.
  B     "a + b = c" (a, b in [0, n)) in 5 surface forms (``FORMS``), repeated on
        disjoint vocabulary copies: language i is form ``i % 5`` on copy ``i // 5``.
  C     B plus translations ``<Bi> expr_i <toBj> expr_j`` (``index=i, target=j``).
  D     C with ``held_out_pair`` untrainable in both directions: sampling such a task
        with ``split="train"`` raises ConfigError, so a training mixture that names
        it fails loudly before anything compiles; ``split="eval"`` measures zero-shot.
  knob  the digits form of B; K0 is the base language and each Ki (i >= 1) keeps a
        fraction ``similarity`` of the 12 content tokens (digits, "+", "=") on the
        base ids and moves the rest to ids of its own. ``function`` changes what a
        knob language computes on the same surface: "add" (c = a + b), "add1"
        (a + b + 1) or "absdiff" (|a - b|); languages that share tokens but not
        their function compete for the same machinery (ood_decay's interference arms).

Every task of one case has the SAME vocabulary (B, C and D share one layout), since a
mixture feeds one embedding table; ``language_suite`` builds the tasks of a case.
Scored positions are always a suffix (the part determined by the prefix), so
``next_token_batch`` masks them. B/C/D/knob split the n * n pairs (a, b) into train
and eval once, by ``data_seed``, shared by every language so no eval expression is
trained in any form. Case A has no split: several families have only m sequences.
Layout, scored positions and decoded examples: docs/languages.md.
Shape letters: B batch, U = T + 1 tokens, L sequence body, H half of it, E expression.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from toymodels.config import ConfigError, check_choice, check_int, check_range, fail
from toymodels.tasks.algorithmic import (
    _pair_split,  # the same seeded split of (a, b) pairs
)
from toymodels.tasks.base import SPLITS, Batch, Task, Vocab, next_token_batch, register
from toymodels.tasks.language_families import (
    FAMILIES,
    PHRASE,
    PREFIX,
    family_offset,
    n_answer_of,
    values_of,
)

CASES = ("A", "B", "C", "D", "knob")
FORMS = ("digits", "words", "reversed", "prefix", "postfix")
MAX_COPIES = 4       # vocabulary copies of the B forms, so at most 20 B languages
MAX_N = 50           # keeps every number word one token and c below 100 (two digits)
N_KNOB_CONTENT = 12  # digits 0-9, "+", "="
FUNCTIONS = ("add", "add1", "absdiff")   # what "a + b = c" means (knob); every c fits the width of a + b

_ONES = ("zero one two three four five six seven eight nine ten eleven twelve thirteen "
         "fourteen fifteen sixteen seventeen eighteen nineteen").split()
_TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")


def number_word(v: int) -> str:
    """English name of 0 <= v < 100 as one token, e.g. "forty-two"."""
    if v < 20:
        return _ONES[v]
    return _TENS[v // 10] + ("" if v % 10 == 0 else "-" + _ONES[v % 10])


# ---------------------------------------------------------------- vocabulary layouts
def _symbols(n: int) -> list[str]:
    """One copy of the B content tokens; an abstract symbol's index here is its offset in the copy."""
    return ([str(d) for d in range(10)] + ["+", "="] + [number_word(v) for v in range(2 * n - 1)]
            + ["plus", "equals"])


def _n_copies(n_languages: int) -> int:
    return -(-n_languages // len(FORMS))


@functools.lru_cache(maxsize=64)
def _tokens(case: str, n_languages: int, modulus: int) -> tuple[str, ...]:
    if case == "A":
        tokens = [f"<A{i}>" for i in range(n_languages)]
        for family in FAMILIES[:n_languages]:
            tokens += PHRASE if family == "phrase" else [f"{PREFIX[family]}{v}" for v in range(modulus)]
        return tuple(tokens)
    if case == "knob":
        tokens = [f"<K{i}>" for i in range(n_languages)]
        for i in range(n_languages):
            tokens += [s + (f"_{i}" if i else "") for s in _symbols(modulus)[:N_KNOB_CONTENT]]
        return tuple(tokens)
    # B, C and D share one layout, so a model moves between them without remapping ids.
    tokens = ["PAD"] + [f"<B{i}>" for i in range(n_languages)] + [f"<toB{i}>" for i in range(n_languages)]
    for c in range(_n_copies(n_languages)):
        tokens += [s + (f"_{c}" if c else "") for s in _symbols(modulus)]
    return tuple(tokens)


@functools.lru_cache(maxsize=1024)
def _id_table(case: str, n_languages: int, modulus: int, i: int, similarity: float,
              data_seed: int) -> np.ndarray:
    """Vocabulary id of each abstract symbol of language i (B: ``_symbols`` order, then PAD)."""
    if case == "knob":
        base = n_languages
        table = base + N_KNOB_CONTENT * i + np.arange(N_KNOB_CONTENT)
        if i:
            # A fixed order per language makes the shared sets nested as similarity grows.
            order = np.random.default_rng([data_seed, i]).permutation(N_KNOB_CONTENT)
            shared = order[:round(similarity * N_KNOB_CONTENT)]
            table[shared] = base + shared
    else:
        size = len(_symbols(modulus))
        offset = 1 + 2 * n_languages + size * (i // len(FORMS))
        table = np.r_[offset + np.arange(size), 0]
    table = table.astype(np.int32)
    table.setflags(write=False)  # shared through the cache
    return table


# ---------------------------------------------------------------- B forms
def _form_len(form: str, width: int) -> int:
    return 5 if form == "words" else 3 * width + 2


def answer(function: str, a, b):
    """c of "a + b = c" under ``function`` (``FUNCTIONS``); a, b arrays of one shape."""
    if function == "add1":
        return a + b + 1
    if function == "absdiff":
        return abs(a - b)
    return a + b


def _expression(form: str, a_B1, b_B1, width: int, n: int, function: str = "add") -> jax.Array:
    """(B, len) abstract symbols (indices into ``_symbols``) of "a + b = c" in ``form``."""
    plus, eq, word, plus_w = 10, 11, 12, 12 + 2 * n - 1
    eq_w = plus_w + 1
    c_B1 = answer(function, a_B1, b_B1)
    sym = lambda s: jnp.full_like(a_B1, s)  # noqa: E731

    def digits(x_B1, little_endian=False):
        d_BW = jnp.concatenate([(x_B1 // 10 ** (width - 1 - k)) % 10 for k in range(width)], axis=1)
        return d_BW[:, ::-1] if little_endian else d_BW

    parts = {
        "digits": [digits(a_B1), sym(plus), digits(b_B1), sym(eq), digits(c_B1)],
        "words": [word + a_B1, sym(plus_w), word + b_B1, sym(eq_w), word + c_B1],
        "reversed": [digits(a_B1, True), sym(plus), digits(b_B1, True), sym(eq), digits(c_B1, True)],
        "prefix": [sym(plus_w), digits(a_B1), digits(b_B1), sym(eq_w), digits(c_B1)],
        "postfix": [digits(a_B1), digits(b_B1), sym(plus), sym(eq), digits(c_B1)],
    }[form]
    return jnp.concatenate(parts, axis=1)


# ---------------------------------------------------------------- the task
@register
@dataclasses.dataclass(frozen=True)
class LanguageTask(Task):
    """One language (``target=-1``) or one translation direction ``index -> target`` of a case."""

    name = "language"

    case: str = "A"                 # "A" | "B" | "C" | "D" | "knob"
    index: int = 0                  # the language (source language of a translation)
    target: int = -1                # translation target language (C, D); -1: no translation
    n_languages: int = 10           # languages in the case; sets the shared vocabulary
    modulus: int = 10               # A: values mod m; B..knob: a, b in [0, n)
    length: int = 16                # A: tokens after the tag (even)
    similarity: float = 0.5         # knob: fraction of content tokens on the base ids
    held_out_pair: tuple[int, int] = (0, 1)  # D: the pair whose translations are eval-only
    train_frac: float = 0.8         # B..knob: fraction of the n * n pairs (a, b) trained on
    eval_pairs: str = "held_out"    # B..knob: eval split draws "held_out" or "train" pairs
    data_seed: int = 0              # seeds the pair split and the knob's shared tokens
    function: str = "add"           # knob: what the language computes (``FUNCTIONS``)

    def __post_init__(self):
        check_choice("case", self.case, CASES)
        is_a = self.case == "A"
        check_int("n_languages", self.n_languages, 2)
        max_languages = len(FAMILIES) if is_a else len(FORMS) * MAX_COPIES
        if self.n_languages > max_languages:
            fail("n_languages", self.n_languages, f"case {self.case} has at most {max_languages} languages")
        check_int("index", self.index, 0)
        if self.index >= self.n_languages:
            fail("index", self.index, f"must be < n_languages={self.n_languages}")
        check_int("target", self.target, -1)
        if self.target >= 0 and (self.case not in ("C", "D") or self.target == self.index
                                 or self.target >= self.n_languages):
            fail("target", self.target, "-1, or in cases C and D a language other than index "
                 f"and < n_languages={self.n_languages}")
        check_int("modulus", self.modulus, 2)
        if not is_a and self.modulus > MAX_N:
            fail("modulus", self.modulus, f"must be <= {MAX_N} in case {self.case}")
        check_int("length", self.length, 4)
        if self.length % 2 or self.length > 64:
            fail("length", self.length, "must be even and <= 64")
        check_range("similarity", self.similarity, 0.0, 1.0)
        pair = self.held_out_pair
        if isinstance(pair, list):
            object.__setattr__(self, "held_out_pair", pair := tuple(pair))
        if (not isinstance(pair, tuple) or len(pair) != 2 or any(isinstance(p, bool) or not isinstance(p, int)
                                                                  or not 0 <= p < self.n_languages for p in pair)
                or pair[0] == pair[1]):
            fail("held_out_pair", pair, f"must be two different languages in [0, {self.n_languages})")
        check_range("train_frac", self.train_frac, 0.0, 1.0, lo_open=True, hi_open=True)
        check_choice("eval_pairs", self.eval_pairs, ("held_out", "train"))
        check_int("data_seed", self.data_seed, 0)
        check_choice("function", self.function, FUNCTIONS)
        if self.function != "add" and self.case != "knob":
            fail("function", self.function, "only case 'knob' has other functions than 'add'")
        if not is_a and not 0 < self.n_train < self.modulus ** 2:
            fail("train_frac", self.train_frac, f"leaves the train or eval split of the "
                 f"{self.modulus ** 2} pairs (a, b) empty")

    # ------------------------------------------------------------ shape and layout
    @property
    def form(self) -> str:
        """Case A family or B surface form of ``index`` (the source side of a translation)."""
        return self._form(self.index)

    def _form(self, i: int) -> str:
        if self.case == "A":
            return FAMILIES[i]
        return "digits" if self.case == "knob" else FORMS[i % len(FORMS)]

    @property
    def width(self) -> int:
        """Digits per number: fixed, zero-padded, so every sentence of a form has one length."""
        return len(str(2 * self.modulus - 2))

    @property
    def expr_len(self) -> int:
        """E: every expression is left-padded to this length (B..knob)."""
        if self.case == "knob":
            return _form_len("digits", self.width)
        return max(_form_len(f, self.width) for f in FORMS)

    @property
    def seq_len(self) -> int:
        if self.case == "A":
            return self.length
        return self.expr_len if self.target < 0 else 2 * self.expr_len + 1

    @property
    def n_answer(self) -> int:
        """Scored positions, always the last ones of the sequence."""
        if self.case == "A":
            return n_answer_of(self.form, self.length)
        form = self._form(self.target if self.target >= 0 else self.index)
        if self.target >= 0:
            return _form_len(form, self.width)
        return 1 if form == "words" else self.width

    @property
    def vocab(self) -> Vocab:
        return Vocab(_tokens(self.case, self.n_languages, self.modulus))

    @property
    def is_held_out(self) -> bool:
        """A case-D translation between the two languages of ``held_out_pair``: eval-only."""
        return self.case == "D" and self.target >= 0 and {self.index, self.target} == set(self.held_out_pair)

    def token_ids(self, i: int) -> np.ndarray:
        """Vocabulary id of each abstract symbol of language i (read-only)."""
        return _id_table(self.case, self.n_languages, self.modulus, i, float(self.similarity), self.data_seed)

    @property
    def n_train(self) -> int:
        return round(self.train_frac * self.modulus ** 2)

    def pair_ids(self, split: str) -> np.ndarray:
        """Sorted ids ``a * n + b`` of the pairs (a, b) in ``split`` (B..knob)."""
        check_choice("split", split, SPLITS)
        train, held = _pair_split(self.modulus, self.n_train, self.data_seed)
        return train if split == "train" else held

    # ------------------------------------------------------------ sampling
    def sample(self, key: jax.Array, batch_size: int, split: str = "train") -> Batch:
        check_choice("split", split, SPLITS)
        if self.case == "A":
            values_BL = values_of(self.form, key, batch_size, self.length, self.modulus)
            offset = family_offset(self.index, self.modulus, self.n_languages)
            tag_B1 = jnp.full((batch_size, 1), self.index, jnp.int32)
            x_BU = jnp.concatenate([tag_B1, offset + values_BL], axis=1)
            return next_token_batch(x_BU, self.n_answer)
        if split == "train" and self.is_held_out:
            fail("split", split, f"translation {self.index}->{self.target} is case D's held-out pair "
                 f"(held_out_pair={self.held_out_pair}) and is eval-only; sample it with split='eval' "
                 "and keep it out of the training mixture")
        pool = jnp.asarray(self.pair_ids("train" if self.eval_pairs == "train" else split))
        return self._batch(pool[jax.random.randint(key, (batch_size, 1), 0, pool.shape[0])])

    def full_batch(self, split: str = "eval") -> Batch:
        """Every pair (a, b) of ``split`` once, for exact rather than sampled accuracy (B..knob)."""
        if self.case == "A":
            raise ConfigError("case='A' has no pairs (a, b): full_batch is for cases B, C, D and knob")
        if split == "train" and self.is_held_out:
            fail("split", split, "the held-out pair of case D is eval-only")
        return self._batch(jnp.asarray(self.pair_ids(split))[:, None])

    def _sentence(self, i: int, a_B1, b_B1) -> jax.Array:
        """(B, E) ids of language i's sentence, left-padded so the answer ends it."""
        expr_BE = _expression(self._form(i), a_B1, b_B1, self.width, self.modulus, self.function)
        n_pad = self.expr_len - expr_BE.shape[1]
        if n_pad:
            pad_BP = jnp.full((expr_BE.shape[0], n_pad), len(_symbols(self.modulus)), jnp.int32)
            expr_BE = jnp.concatenate([pad_BP, expr_BE], axis=1)
        return jnp.asarray(self.token_ids(i))[expr_BE]

    def _batch(self, pair_B1: jax.Array) -> Batch:
        a_B1, b_B1 = pair_B1 // self.modulus, pair_B1 % self.modulus
        tag = self.index + (0 if self.case == "knob" else 1)  # knob has no PAD before its tags
        parts = [jnp.full_like(a_B1, tag), self._sentence(self.index, a_B1, b_B1)]
        if self.target >= 0:
            to_tag = 1 + self.n_languages + self.target
            parts += [jnp.full_like(a_B1, to_tag), self._sentence(self.target, a_B1, b_B1)]
        return next_token_batch(jnp.concatenate(parts, axis=1), self.n_answer)


# ---------------------------------------------------------------- suites
def language_suite(case: str, *, pairs=None, functions=None, **fields) -> tuple[tuple[str, LanguageTask], ...]:
    """The named training tasks of a case, all on one vocabulary: ``dict(...)`` gives a Trainer's tasks.

    Names: ``A{i}``, ``B{i}`` (B, C, D), ``K{i}`` (knob) per language, and ``T{i}-{j}`` per
    translation direction in C and D. ``pairs`` picks the directions (default: every
    ordered pair, minus the held-out pair in D, whose tasks come from ``held_out_tasks``).
    ``functions`` (knob): one ``function`` per language, e.g. ("add1", "add1", "add").
    """
    check_choice("case", case, CASES)
    for f in ("index", "target", "case", "function"):
        if f in fields:
            raise ConfigError(f"language_suite builds every {f} itself; leave {f}={fields[f]!r} out")
    base = LanguageTask(case=case, **fields)
    if functions is None:
        functions = ("add",) * base.n_languages
    if isinstance(functions, str) or len(functions) != base.n_languages:
        fail("functions", functions, f"give one function per language ({base.n_languages}), each one of "
             f"{', '.join(FUNCTIONS)}")
    letter = {"A": "A", "knob": "K"}.get(case, "B")
    out = [(f"{letter}{i}", dataclasses.replace(base, index=i, function=f)) for i, f in enumerate(functions)]
    if case not in ("C", "D"):
        if pairs is not None:
            fail("pairs", pairs, "translation pairs exist only in cases C and D")
        return tuple(out)
    allowed = [(i, j) for i in range(base.n_languages) for j in range(base.n_languages)
               if i != j and not (case == "D" and {i, j} == set(base.held_out_pair))]
    pairs = allowed if pairs is None else [tuple(p) for p in pairs]
    for p in pairs:
        if p not in allowed:
            fail("pairs", p, f"choose ordered pairs (i, j) of different languages < {base.n_languages}"
                 + (f", not the held-out pair held_out_pair={base.held_out_pair}" if case == "D" else ""))
    out += [(f"T{i}-{j}", dataclasses.replace(base, index=i, target=j)) for i, j in pairs]
    return tuple(out)


def held_out_tasks(**fields) -> tuple[tuple[str, LanguageTask], ...]:
    """Case D's eval-only translations ``T{i}-{j}`` and ``T{j}-{i}`` of ``held_out_pair``.

    Add them to a Trainer's tasks but not to its mixture: every task is evaluated
    with ``split="eval"``, and a mixture that names one raises ConfigError.
    """
    for f in ("index", "target", "case"):
        if f in fields:
            raise ConfigError(f"held_out_tasks builds {f} itself; leave {f}={fields[f]!r} out")
    base = LanguageTask(case="D", **fields)
    i, j = base.held_out_pair
    return tuple((f"T{s}-{t}", dataclasses.replace(base, index=s, target=t)) for s, t in ((i, j), (j, i)))
