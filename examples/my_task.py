"""A task defined outside the library: ``b_1 .. b_L SEP m``, where m is the majority bit.

Importing this module registers the task, after which ``make_task("majority", length=9)``
and every trainer, sweep and study accept it like a shipped task.
"""

import dataclasses

import jax
import jax.numpy as jnp

from toymodels.config import ConfigError, check_choice, check_int
from toymodels.tasks import SPLITS, Batch, Task, Vocab, next_token_batch, register

SEP = 2  # token id after the bits "0" (0) and "1" (1)


@register
@dataclasses.dataclass(frozen=True)
class MajorityTask(Task):
    name = "majority"

    length: int = 7  # L, bits per sequence (odd, so there is no tie)

    def __post_init__(self):
        check_int("length", self.length, 1)
        if self.length % 2 == 0:
            raise ConfigError(f"length must be odd (no ties), got {self.length}")

    @property
    def seq_len(self) -> int:       # model input positions: L bits and SEP
        return self.length + 1

    @property
    def vocab(self) -> Vocab:
        return Vocab(("0", "1", "SEP"))

    def sample(self, key: jax.Array, batch_size: int, split: str = "train") -> Batch:
        check_choice("split", split, SPLITS)
        bits_BL = jax.random.bernoulli(key, shape=(batch_size, self.length)).astype(jnp.int32)
        sep_B1 = jnp.full((batch_size, 1), SEP, jnp.int32)
        majority_B1 = (2 * jnp.sum(bits_BL, axis=1, keepdims=True) > self.length).astype(jnp.int32)
        x_BU = jnp.concatenate([bits_BL, sep_B1, majority_B1], axis=1)
        return next_token_batch(x_BU, n_answer=1)   # inputs x[:-1], targets x[1:], only m scored
