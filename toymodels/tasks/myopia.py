"""Synthetic tasks for studying myopic training (Wu, Morris & Levine 2024, arXiv 2404.00859).

A myopic model computes, at each position, only what that position's own loss
rewards; "pre-caching" is computing there something that only a later loss needs.
  * ``wu_regression``: Wu et al.'s data D_p, where the pre-cached feature is sin(freq * x_n);
  * ``pair_count``: a token task where the useful feature at s depends on two tokens;
  * ``multiplication``: reversed-digit k x k products with optional filler tokens.
Shape letters as in ``toymodels.model``; U = T + 1 tokens of a full sequence.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from toymodels.config import check_choice, check_int, check_range, fail
from toymodels.tasks.base import SPLITS, Batch, Task, Vocab, next_token_batch, register


def wu_targets_numpy(x, z, n_terms: int, freq: float) -> np.ndarray:
    """Reference targets y (..., T) for inputs x, z (..., T), as a direct loop over positions."""
    x, z = np.asarray(x, np.float64), np.asarray(z, np.float64)
    y = np.zeros_like(x)
    for n in range(x.shape[-1]):
        past = np.zeros_like(x[..., n])
        for i in range(1, n_terms + 1):
            if n - i >= 0:
                past += np.sin(freq * x[..., n - i])
        y[..., n] = z[..., n] * past + (1 - z[..., n]) * x[..., n]
    return y


def held_out(h) -> jax.Array:
    """Whether an integer id (uint32) belongs to the eval split (~10 %): a murmur3 finaliser,
    so the split mixes all bits (a linear hash mod 10 would depend on the last digits only)."""
    h = jnp.asarray(h, jnp.uint32)
    h = (h ^ (h >> 16)) * jnp.uint32(0x85EBCA6B)
    h = (h ^ (h >> 13)) * jnp.uint32(0xC2B2AE35)
    return (h ^ (h >> 16)) % 10 == 0


def split_rows(draw, is_eval, split: str):
    """Rejection sampling: ``draw(i)`` -> a batch (a tuple of arrays, rows first); rows whose
    ``is_eval(*batch)`` disagrees with ``split`` are redrawn from ``draw(i + 1), ...``. Each row
    is uniform over its split, and its result depends on the key alone (extra rounds under
    vmap leave it alone)."""
    check_choice("split", split, SPLITS)
    want_eval = split == "eval"

    def redraw(state):
        i, rows = state
        bad_B = is_eval(*rows) != want_eval
        new = draw(i)
        return i + 1, tuple(jnp.where(bad_B.reshape((-1,) + (1,) * (r.ndim - 1)), n, r) for n, r in zip(new, rows))

    _, rows = lax.while_loop(lambda s: jnp.any(is_eval(*s[1]) != want_eval), redraw, (1, draw(0)))
    return rows


@register
@dataclasses.dataclass(frozen=True)
class WuRegressionTask(Task):
    """Inputs (x_n, z_n), target y_n = z_n * sum_{i=1..n_terms} sin(freq x_{n-i}) + (1 - z_n) x_n.

    x_n ~ N(0, 1), z_n ~ Bernoulli(p); terms before the sequence start are 0 and every
    position is scored. sin(freq x_n) is useless for y_n itself but needed by the next
    n_terms targets, so a model that computes it at n is pre-caching. ``split`` is
    validated but changes nothing: with continuous inputs train and eval sequences
    coincide with probability 0.
    """

    name = "wu_regression"
    loss = "huber"
    input_kind = "vectors"

    p: float = 1.0        # probability that a position's target is the sum of past features
    length: int = 64      # T
    n_terms: int = 10     # past positions summed
    freq: float = 10.0    # high frequency makes the feature hard to compute on the fly

    def __post_init__(self):
        check_range("p", self.p, 0.0, 1.0)
        check_int("length", self.length, 1)
        check_int("n_terms", self.n_terms, 1)
        check_range("freq", self.freq, 0.0, math.inf, lo_open=True, hi_open=True)

    @property
    def seq_len(self) -> int:
        return self.length

    @property
    def d_input(self) -> int:
        return 2

    @property
    def d_output(self) -> int:
        return 1

    def feature(self, inputs_BTI: jax.Array) -> jax.Array:
        """The pre-cacheable feature sin(freq * x_n), (B, T), for probes."""
        return jnp.sin(self.freq * inputs_BTI[..., 0])

    def sample(self, key: jax.Array, batch_size: int, split: str = "train") -> Batch:
        check_choice("split", split, SPLITS)
        kx, kz = jax.random.split(key)
        shape = (batch_size, self.length)
        x_BT = jax.random.normal(kx, shape, jnp.float32)
        z_BT = jax.random.bernoulli(kz, self.p, shape).astype(jnp.float32)
        feat_BT = jnp.sin(self.freq * x_BT)
        # Zeros in front stand for the terms before the start; reduce_window adds exactly,
        # where a banded matmul could run at reduced (TF32) precision on GPUs.
        padded_BP = jnp.concatenate([jnp.zeros((batch_size, self.n_terms), jnp.float32), feat_BT], axis=1)
        past_BT = lax.reduce_window(padded_BP, 0.0, lax.add, (1, self.n_terms), (1, 1), "VALID")[:, :-1]
        y_BT = z_BT * past_BT + (1.0 - z_BT) * x_BT
        return Batch(jnp.stack([x_BT, z_BT], axis=-1), y_BT[..., None],
                     jnp.ones(shape, jnp.float32))


@register
@dataclasses.dataclass(frozen=True)
class MultiplicationTask(Task):
    """``a_0..a_{k-1} * b_0..b_{k-1} = . . . c_0..c_{2k-1}``: digits least-significant first.

    a, b are uniform in [0, base^k) (leading zeros keep the length fixed), written in
    ``base`` (10 by default; base 4 makes 3x3-digit products small enough to learn on a
    CPU: 64 x 64 pairs, a 16-entry digit-product table instead of 100); F filler tokens
    "." give the model extra positions to compute in before the product; only the 2k
    product digits are scored. About 10% of the (a, b) pairs, picked by a fixed integer
    hash, form the eval split, so exact match on eval measures unseen pairs.
    """

    name = "multiplication"

    digits: int = 3   # k
    fillers: int = 0  # F
    base: int = 10

    def __post_init__(self):
        check_int("base", self.base, 2)
        if self.base ** 2 > 2**31:
            fail("base", self.base, "must be an integer in 2..46340: the products of 1-digit "
                 "numbers (base^2) must fit JAX's default int32")
        check_int("digits", self.digits, 1)
        if self.base ** (2 * self.digits) > 2**31:
            top = max(k for k in range(1, 32) if self.base ** (2 * k) <= 2**31)
            fail("digits", self.digits, f"must be an integer in 1..{top} for base {self.base}: pair ids "
                 "and products (base^(2k)) must fit JAX's default int32")
        check_int("fillers", self.fillers, 0)

    @property
    def seq_len(self) -> int:
        return 4 * self.digits + 1 + self.fillers

    @property
    def vocab(self) -> Vocab:
        return Vocab(tuple(str(i) for i in range(self.base)) + ("*", "=", "."))

    def is_eval(self, a, b) -> jax.Array:
        """Whether the pair (a, b) is held out (``held_out`` of its pair id)."""
        return held_out(jnp.asarray(a, jnp.uint32) * jnp.uint32(self.base ** self.digits) + jnp.asarray(b, jnp.uint32))

    def sample(self, key: jax.Array, batch_size: int, split: str = "train") -> Batch:
        n = self.base ** self.digits

        def draw(i):
            ka, kb = jax.random.split(jax.random.fold_in(key, i))
            return (jax.random.randint(ka, (batch_size,), 0, n, jnp.int32),
                    jax.random.randint(kb, (batch_size,), 0, n, jnp.int32))

        a_B, b_B = split_rows(draw, self.is_eval, split)
        k, base = self.digits, self.base
        place_K = base ** jnp.arange(k, dtype=jnp.int32)
        place_P = base ** jnp.arange(2 * k, dtype=jnp.int32)
        a_BK = (a_B[:, None] // place_K[None, :]) % base
        b_BK = (b_B[:, None] // place_K[None, :]) % base
        c_BP = ((a_B * b_B)[:, None] // place_P[None, :]) % base
        col = lambda tok, width: jnp.full((batch_size, width), tok, jnp.int32)
        times, equals, filler = base, base + 1, base + 2       # ids after the digits
        x_BU = jnp.concatenate([a_BK, col(times, 1), b_BK, col(equals, 1), col(filler, self.fillers), c_BP],
                               axis=1)
        return next_token_batch(x_BU, n_answer=2 * k)


@register
@dataclasses.dataclass(frozen=True)
class PairCountTask(Task):
    """``x_1 .. x_L = c``: c counts the s in 2..L with x_s == x_{s-1}; only c is scored.

    Pre-caching is necessary here. The feature that makes the answer easy, "does x_s
    equal x_{s-1}", depends on two tokens, and its only use is the final answer: the
    loss at s never rewards it, so only a model whose computation at s is shaped by the
    later loss (not a myopic one) learns to compute it there. A feature of one token
    would not do: attention over one-hot tokens reads any function of a single token
    linearly at the last position, so that needs no computation at earlier positions.
    Compare with the ``markov`` task, where next-token losses reward every position.
    """

    name = "pair_count"

    length: int = 16     # L
    n_symbols: int = 4   # symbols 0 .. n_symbols - 1; a pair matches with probability 1/n_symbols

    def __post_init__(self):
        check_int("length", self.length, 2)
        check_int("n_symbols", self.n_symbols, 2)

    @property
    def seq_len(self) -> int:
        return self.length + 1

    @property
    def vocab(self) -> Vocab:
        return Vocab(tuple(str(i) for i in range(self.n_symbols)) + ("=",)
                     + tuple(f"c{i}" for i in range(self.length)))

    def sample(self, key: jax.Array, batch_size: int, split: str = "train") -> Batch:
        # No held-out inputs: n_symbols ** length sequences make train/eval overlap negligible.
        check_choice("split", split, SPLITS)
        x_BL = jax.random.randint(key, (batch_size, self.length), 0, self.n_symbols, jnp.int32)
        count_B = jnp.sum(x_BL[:, 1:] == x_BL[:, :-1], axis=1, dtype=jnp.int32)
        eq_B1 = jnp.full((batch_size, 1), self.n_symbols, jnp.int32)
        x_BU = jnp.concatenate([x_BL, eq_B1, (self.n_symbols + 1 + count_B)[:, None]], axis=1)
        return next_token_batch(x_BU, n_answer=1)


@register
@dataclasses.dataclass(frozen=True)
class AdjacentPairTask(Task):
    """``x_1 .. x_L = a``: the L tokens hold k + 1 distinct symbols twice each (L = 2k + 2);
    exactly one symbol, a, has its two copies side by side, and a is the answer (scored alone).

    Like ``pair_count`` the useful feature, "x_s equals x_{s-1}", depends on two tokens
    and only the last position needs it, so only pre-caching computes it where it can be
    read. Unlike counting, reading it out is one attention lookup, so vanilla models learn
    it quickly. Every symbol present appears exactly twice, so token counts, which any
    model can read at the last position, narrow the answer to k + 1 candidates and no
    further: a model without the pairwise feature cannot beat ln(k + 1) nats, and a model
    without any context sits at ln(n_symbols). About 10 % of the sequences, by a fixed hash,
    form the eval split.
    """

    name = "adjacent_pair"

    length: int = 8       # L = 2k + 2, k >= 2 separated pairs
    n_symbols: int = 16   # symbols 0 .. n_symbols - 1; needs >= k + 1
    _CANDIDATES = 32      # random arrangements tried per sequence before the fixed fallback

    def __post_init__(self):
        check_int("length", self.length, 6)
        if self.length % 2:
            fail("length", self.length, "must be even (L = 2k + 2 tokens)")
        check_int("n_symbols", self.n_symbols, self.length // 2)

    @property
    def n_pairs(self) -> int:   # k, the separated pairs
        return self.length // 2 - 1

    @property
    def seq_len(self) -> int:
        return self.length + 1

    @property
    def vocab(self) -> Vocab:
        return Vocab(tuple(str(i) for i in range(self.n_symbols)) + ("=",))

    def is_eval(self, x_BU) -> jax.Array:
        """Whether a sequence is held out (``held_out`` of a hash of its L tokens): with L = 6
        there are only ~20k sequences, so a long run would otherwise train on its eval set."""
        x_BL = jnp.asarray(x_BU[:, :self.length], jnp.uint32)
        place_L = jnp.uint32(self.n_symbols) ** jnp.arange(self.length, dtype=jnp.uint32)   # wraps mod 2^32
        return held_out(jnp.sum(x_BL * place_L[None], axis=1, dtype=jnp.uint32))

    def sample(self, key: jax.Array, batch_size: int, split: str = "train") -> Batch:
        (x_BU,) = split_rows(lambda i: (self._draw(jax.random.fold_in(key, i), batch_size),), self.is_eval, split)
        return next_token_batch(x_BU, n_answer=1)

    def _draw(self, key: jax.Array, batch_size: int) -> jax.Array:
        k, B, C = self.n_pairs, batch_size, self._CANDIDATES
        U = 2 * k + 1   # units: 0 is the adjacent block "a a", u = 1..2k is one copy of b_{(u-1) % k}
        k_sym, k_perm = jax.random.split(key)
        sym_BS = jnp.argsort(jax.random.uniform(k_sym, (B, self.n_symbols)), axis=1)[:, :k + 1].astype(jnp.int32)
        order_BCU = jnp.argsort(jax.random.uniform(k_perm, (B, C, U)), axis=2)
        pos_BCU = jnp.argsort(order_BCU, axis=2)     # where each unit sits
        apart_BC = jnp.all(jnp.abs(pos_BCU[..., 1:k + 1] - pos_BCU[..., k + 1:]) > 1, axis=2)
        # The first arrangement whose separated pairs are all apart; else a b1..bk b1..bk
        # (apart for k >= 2), which a row needs with probability ~(1 - P(apart))^32.
        first_B = jnp.argmax(apart_BC, axis=1)
        fallback_U = jnp.arange(U, dtype=order_BCU.dtype)
        order_BU = jnp.where(jnp.any(apart_BC, axis=1)[:, None],
                             jnp.take_along_axis(order_BCU, first_B[:, None, None], axis=1)[:, 0], fallback_U)
        unit_sym_BU = jnp.concatenate([sym_BS[:, :1], sym_BS[:, 1:], sym_BS[:, 1:]], axis=1)
        block_B = jnp.argmax(order_BU == 0, axis=1)  # unit position of "a a"
        i_L = jnp.arange(self.length)
        src_BL = i_L[None, :] - (i_L[None, :] > block_B[:, None])   # the block's unit spans two tokens
        x_BL = jnp.take_along_axis(unit_sym_BU, jnp.take_along_axis(order_BU, src_BL, axis=1), axis=1)
        eq_B1 = jnp.full((B, 1), self.n_symbols, jnp.int32)
        return jnp.concatenate([x_BL, eq_B1, sym_BS[:, :1]], axis=1)
