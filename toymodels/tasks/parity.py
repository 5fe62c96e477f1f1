"""Parity: ``b_1 .. b_L SEP p`` with p = (b_1 + ... + b_L) mod 2; only p is scored.

The template for adding a task: a registered frozen dataclass that validates its
fields, declares ``seq_len`` and ``vocab``, and samples a Batch with pure JAX
(so it works under jit and vmap). Import its module in ``tasks/__init__.py``.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from toymodels.config import check_choice, check_int
from toymodels.tasks.base import SPLITS, Batch, Task, Vocab, next_token_batch, register

SEP = 2  # token id after the bits "0" and "1"


@register
@dataclasses.dataclass(frozen=True)
class ParityTask(Task):
    name = "parity"

    length: int = 8  # L, bits per sequence

    def __post_init__(self):
        check_int("length", self.length, 1)

    @property
    def seq_len(self) -> int:
        return self.length + 1

    @property
    def vocab(self) -> Vocab:
        return Vocab(("0", "1", "SEP"))

    def sample(self, key: jax.Array, batch_size: int, split: str = "train") -> Batch:
        check_choice("split", split, SPLITS)
        bits_BL = jax.random.bernoulli(key, shape=(batch_size, self.length)).astype(jnp.int32)
        sep_B1 = jnp.full((batch_size, 1), SEP, jnp.int32)
        parity_B1 = jnp.sum(bits_BL, axis=1, keepdims=True) % 2
        x_BU = jnp.concatenate([bits_BL, sep_B1, parity_B1], axis=1)
        return next_token_batch(x_BU, n_answer=1)
