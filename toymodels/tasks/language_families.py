"""Case A of the toy languages (``languages.py``): unrelated sequence families, each on its
own block of token ids after a language tag. Shape letters as there: B batch, L sequence body,
H half of it."""

from __future__ import annotations

import jax
import jax.numpy as jnp

FAMILIES = ("orbit", "phrase", "count", "alternate", "fibonacci", "bounce", "palindrome",
            "sorted", "shift", "copy")
PREFIX = {"orbit": "orb", "count": "cnt", "alternate": "alt", "fibonacci": "fib", "bounce": "bnc",
          "palindrome": "pal", "sorted": "srt", "shift": "shf", "copy": "cpy"}
PHRASE = ("the", "cat", "sat", "down")


def family_offset(family_index: int, modulus: int, n_languages: int) -> int:
    blocks = [len(PHRASE) if f == "phrase" else modulus for f in FAMILIES[:family_index]]
    return n_languages + sum(blocks)


def n_answer_of(family: str, length: int) -> int:
    """Tokens after which the rest is determined: 1 start, 2 seeds, or the random first half."""
    if family in ("orbit", "phrase", "count"):
        return length - 1
    if family in ("palindrome", "sorted", "copy"):
        return length // 2
    return length - 2  # alternate, fibonacci, bounce (start + direction), shift (start + step)


def values_of(family: str, key: jax.Array, batch_size: int, length: int, m: int) -> jax.Array:
    """(B, L) values in [0, m) (phrase: word indices) of one family."""
    k_x, k_y, k_h = jax.random.split(key, 3)
    t_1L = jnp.arange(length, dtype=jnp.int32)[None, :]
    x_B1 = jax.random.randint(k_x, (batch_size, 1), 0, m, jnp.int32)
    half_BH = jax.random.randint(k_h, (batch_size, length // 2), 0, m, jnp.int32)
    if family == "orbit":  # x -> 2x + 1 unrolls to 2^t (x0 + 1) - 1, so no scan is needed
        pow2_1L = jnp.asarray([[pow(2, t, m) for t in range(length)]], jnp.int32)
        return (pow2_1L * (x_B1 + 1) - 1) % m
    if family == "phrase":
        return (jax.random.randint(k_x, (batch_size, 1), 0, len(PHRASE), jnp.int32) + t_1L) % len(PHRASE)
    if family == "count":
        return (x_B1 + t_1L) % m
    if family == "alternate":  # b = a + 1 .. a + m - 1 keeps b != a
        b_B1 = (x_B1 + jax.random.randint(k_y, (batch_size, 1), 1, m, jnp.int32)) % m
        return jnp.where(t_1L % 2 == 0, x_B1, b_B1)
    if family == "fibonacci":  # x_t = F_{t-1} x_0 + F_t x_1 (mod m)
        fa, fb = [1, 0], [0, 1]
        while len(fa) < length:
            fa.append((fa[-1] + fa[-2]) % m)
            fb.append((fb[-1] + fb[-2]) % m)
        y_B1 = jax.random.randint(k_y, (batch_size, 1), 0, m, jnp.int32)
        fa_1L, fb_1L = jnp.asarray([fa[:length]], jnp.int32), jnp.asarray([fb[:length]], jnp.int32)
        return (fa_1L * x_B1 + fb_1L * y_B1) % m
    if family == "bounce":  # a triangle wave 0 .. m-1 .. 0 from a random phase
        period = 2 * (m - 1)
        p_BL = (jax.random.randint(k_x, (batch_size, 1), 0, period, jnp.int32) + t_1L) % period
        return jnp.minimum(p_BL, period - p_BL)
    if family == "palindrome":
        return jnp.concatenate([half_BH, half_BH[:, ::-1]], axis=1)
    if family == "sorted":
        return jnp.concatenate([half_BH, jnp.sort(half_BH, axis=1)], axis=1)
    if family == "shift":
        return (x_B1 + jax.random.randint(k_y, (batch_size, 1), 0, m, jnp.int32) * t_1L) % m
    return jnp.concatenate([half_BH, half_BH], axis=1)  # copy
