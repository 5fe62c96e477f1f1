"""Next-token prediction on a fixed random Markov chain (the speed-benchmark task).

The chain is the one ``peers/torch_toygpt.py`` trains on, built bit-for-bit the
same way, so JAX and PyTorch runs share data distribution and loss floor.
Shape letters as in ``toymodels.model``; U = T + 1 tokens before the shift.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from toymodels.config import check_choice, check_int, check_range
from toymodels.tasks.base import SPLITS, Batch, Task, Vocab, next_token_batch, register


@functools.lru_cache(maxsize=16)
def _chain(vocab_size: int, data_seed: int, temperature: float) -> tuple[np.ndarray, float]:
    """Transition table (V, V) float64 and entropy rate, exactly as the torch peer computes them.

    Cached on the config scalars so the task dataclass itself stays small and hashable.
    """
    rng = np.random.default_rng(data_seed)
    logits_VV = rng.standard_normal((vocab_size, vocab_size)) * temperature
    probs_VV = np.exp(logits_VV - logits_VV.max(1, keepdims=True))
    probs_VV /= probs_VV.sum(1, keepdims=True)
    pi_V = np.full(vocab_size, 1.0 / vocab_size)
    for _ in range(1000):
        pi_V = pi_V @ probs_VV
    row_h_V = -(probs_VV * np.log(np.clip(probs_VV, 1e-30, None))).sum(1)
    probs_VV.setflags(write=False)  # shared by every caller through the cache
    return probs_VV, float(pi_V @ row_h_V)


@register
@dataclasses.dataclass(frozen=True)
class MarkovTask(Task):
    """First token uniform, then ``length`` transitions of the chain; every position is scored."""

    name = "markov"

    vocab_size: int = 64
    length: int = 64          # T, the number of input positions
    data_seed: int = 1234     # seeds the transition table, not the batches
    temperature: float = 2.0  # logit scale: higher = peakier rows = lower entropy rate

    def __post_init__(self):
        check_int("vocab_size", self.vocab_size, 2)
        check_int("length", self.length, 1)
        check_int("data_seed", self.data_seed, 0)
        check_range("temperature", self.temperature, 0.0, math.inf, hi_open=True)

    @property
    def seq_len(self) -> int:
        return self.length

    @property
    def vocab(self) -> Vocab:
        return Vocab(tuple(str(i) for i in range(self.vocab_size)))

    @property
    def transition_probs(self) -> np.ndarray:
        """(V, V) float64, row i = P(next | current = i); read-only."""
        return _chain(self.vocab_size, self.data_seed, self.temperature)[0]

    @property
    def entropy_rate(self) -> float:
        """Nats per token under the stationary distribution: the loss floor."""
        return _chain(self.vocab_size, self.data_seed, self.temperature)[1]

    def sample(self, key: jax.Array, batch_size: int, split: str = "train") -> Batch:
        check_choice("split", split, SPLITS)
        cdf_VV = np.cumsum(self.transition_probs, axis=1)
        cdf_VV[:, -1] = 1.0  # so u < 1 always lands in a row, whatever the rounding
        cdf_VV = jnp.asarray(cdf_VV, jnp.float32)
        key_first, key_steps = jax.random.split(key)
        first_B = jax.random.randint(key_first, (batch_size,), 0, self.vocab_size, jnp.int32)
        u_TB1 = jax.random.uniform(key_steps, (self.length, batch_size, 1))

        # Inverse-CDF sampling: exact in distribution (to float32 resolution, ~1e-7 per
        # transition, like categorical) and ~25x faster on CPU than categorical per step,
        # because the randomness is drawn once and each step is a gather and a compare.
        def step(prev_B, u_B1):
            next_B = jnp.sum(cdf_VV[prev_B] <= u_B1, axis=-1, dtype=jnp.int32)
            return next_B, next_B

        _, rest_TB = lax.scan(step, first_B, u_TB1)
        x_BU = jnp.concatenate([first_B[:, None], rest_TB.T], axis=1)
        return next_token_batch(x_BU, n_answer=self.length)
