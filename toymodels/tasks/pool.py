"""``pool``: a fixed, small training set of another task (few-example learning).

``make_task("pool", base=make_task("copy"), n=10)`` trains on the same ``n`` sequences of
``base`` over and over (drawn with replacement), e.g. to ask how much of a dropped
capability ten examples bring back. The pool is the base task's first ``n`` training
sequences under ``jax.random.key(seed)``: one pool per (base, n, seed), identical in every
run and every step. The eval split is the base task's own eval split, freshly sampled, so
evaluation measures generalisation beyond the pool.
"""

from __future__ import annotations

import dataclasses

import jax

from toymodels.config import check_choice, check_int, fail
from toymodels.tasks.base import SPLITS, Batch, Task, Vocab, register


@register
@dataclasses.dataclass(frozen=True)
class PoolTask(Task):
    name = "pool"

    base: Task | None = None
    n: int = 10
    seed: int = 0

    def __post_init__(self):
        if not isinstance(self.base, Task) or isinstance(self.base, PoolTask):
            fail("base", self.base, "must be a task (not a pool), e.g. make_task('copy')")
        check_int("n", self.n, 1)
        check_int("seed", self.seed, 0)

    # the base task's kind of data and loss, per instance
    @property
    def loss(self) -> str:
        return self.base.loss

    @property
    def input_kind(self) -> str:
        return self.base.input_kind

    @property
    def seq_len(self) -> int:
        return self.base.seq_len

    @property
    def vocab(self) -> Vocab:
        return self.base.vocab

    @property
    def d_input(self) -> int:
        return self.base.d_input

    @property
    def d_output(self) -> int:
        return self.base.d_output

    def examples(self) -> Batch:
        """The n sequences every training batch is drawn from."""
        return self.base.sample(jax.random.key(self.seed), self.n, split="train")

    def sample(self, key: jax.Array, batch_size: int, split: str = "train") -> Batch:
        check_choice("split", split, SPLITS)
        if split == "eval":
            return self.base.sample(key, batch_size, split="eval")
        pool = self.examples()
        idx_B = jax.random.randint(key, (batch_size,), 0, self.n)
        return Batch(*(x[idx_B] for x in pool))
