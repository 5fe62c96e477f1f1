"""Algorithmic tasks: copy, reverse, sort and modular addition.

Layout shared by every token task: a full sequence x_BU (U = T + 1 tokens) is cut
into ``inputs = x[:, :-1]`` and next-token ``targets = x[:, 1:]``, and ``mask`` is 1
where the TARGET is an answer token. The prompt is context only, so loss and
accuracy measure the answer alone.
Shape letters as in ``toymodels.model``, plus L = digits per sequence.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from toymodels.config import ConfigError, check_choice, check_int, check_range
from toymodels.tasks.base import SPLITS, Batch, Task, Vocab, next_token_batch, register

@dataclasses.dataclass(frozen=True)
class _DigitsTask(Task):
    """``d_1 .. d_L SEP a_1 .. a_L`` where the answer a is a function of the digits d."""

    length: int = 8      # L, digits per sequence
    n_symbols: int = 10  # digits are 0 .. n_symbols - 1

    def __post_init__(self):
        check_int("length", self.length, 1)
        check_int("n_symbols", self.n_symbols, 2)

    @property
    def seq_len(self) -> int:
        return 2 * self.length

    @property
    def vocab(self) -> Vocab:
        return Vocab(tuple(str(i) for i in range(self.n_symbols)) + ("SEP",))

    def answer(self, digits_BL: jax.Array) -> jax.Array:
        raise NotImplementedError

    def sample(self, key: jax.Array, batch_size: int, split: str = "train") -> Batch:
        # No held-out inputs: n_symbols ** length sequences make train/eval overlap negligible.
        check_choice("split", split, SPLITS)
        digits_BL = jax.random.randint(key, (batch_size, self.length), 0, self.n_symbols, jnp.int32)
        sep_B1 = jnp.full((batch_size, 1), self.n_symbols, jnp.int32)
        x_BU = jnp.concatenate([digits_BL, sep_B1, self.answer(digits_BL)], axis=1)
        return next_token_batch(x_BU, n_answer=self.length)


@register
@dataclasses.dataclass(frozen=True)
class CopyTask(_DigitsTask):
    name = "copy"

    def answer(self, digits_BL):
        return digits_BL


@register
@dataclasses.dataclass(frozen=True)
class ReverseTask(_DigitsTask):
    name = "reverse"

    def answer(self, digits_BL):
        return digits_BL[:, ::-1]


@register
@dataclasses.dataclass(frozen=True)
class SortTask(_DigitsTask):
    name = "sort"

    def answer(self, digits_BL):
        return jnp.sort(digits_BL, axis=1)


@functools.lru_cache(maxsize=16)
def _pair_split(p: int, n_train: int, data_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted pair ids ``a * p + b`` of the train and eval splits (read-only, cached)."""
    perm = np.random.default_rng(data_seed).permutation(p * p).astype(np.int32)
    train, held_out = np.sort(perm[:n_train]), np.sort(perm[n_train:])
    train.setflags(write=False)
    held_out.setflags(write=False)
    return train, held_out


@register
@dataclasses.dataclass(frozen=True)
class ModularAdditionTask(Task):
    """``a + b = c`` with c = (a + b) mod p; only c is scored.

    The p * p ordered pairs are split once, by ``data_seed``, into train and eval
    pairs, so eval accuracy measures generalisation to unseen pairs (grokking).
    """

    name = "modular_addition"

    p: int = 59               # small enough for CPU; 113 is the usual grokking modulus
    train_frac: float = 0.8   # fraction of the p * p pairs in the train split
    data_seed: int = 0        # seeds the split, not the batches

    def __post_init__(self):
        check_int("p", self.p, 2)
        check_range("train_frac", self.train_frac, 0.0, 1.0, lo_open=True, hi_open=True)
        check_int("data_seed", self.data_seed, 0)
        if not 0 < self.n_train < self.p * self.p:
            raise ConfigError(
                f"train_frac={self.train_frac!r} leaves the train or eval split of the "
                f"{self.p * self.p} pairs empty: choose train_frac so both get at least one pair")

    @property
    def n_train(self) -> int:
        return round(self.train_frac * self.p * self.p)

    @property
    def seq_len(self) -> int:
        return 4  # a + b =

    @property
    def vocab(self) -> Vocab:
        return Vocab(tuple(str(i) for i in range(self.p)) + ("+", "="))

    def pair_ids(self, split: str) -> np.ndarray:
        """Sorted ids ``a * p + b`` of every pair in ``split``."""
        check_choice("split", split, SPLITS)
        train, held_out = _pair_split(self.p, self.n_train, self.data_seed)
        return train if split == "train" else held_out

    def sample(self, key: jax.Array, batch_size: int, split: str = "train") -> Batch:
        ids = jnp.asarray(self.pair_ids(split))
        return self._batch(ids[jax.random.randint(key, (batch_size,), 0, ids.shape[0])])

    def full_batch(self, split: str = "eval") -> Batch:
        """Every pair of ``split`` once, for exact (not sampled) split accuracy."""
        return self._batch(jnp.asarray(self.pair_ids(split)))

    def _batch(self, pair_B: jax.Array) -> Batch:
        a_B, b_B = pair_B // self.p, pair_B % self.p
        plus_B, eq_B = jnp.full_like(a_B, self.p), jnp.full_like(a_B, self.p + 1)
        x_BU = jnp.stack([a_B, plus_B, b_B, eq_B, (a_B + b_B) % self.p], axis=1)
        return next_token_batch(x_BU, n_answer=1)
