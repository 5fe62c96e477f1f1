"""The task protocol: a frozen config with a pure-JAX ``sample``.

A task knows nothing about training. It provides
  * ``sample(key, batch_size, split="train") -> Batch`` (jit- and vmap-safe),
  * ``vocab`` (token strings, decode) for token tasks,
  * ``seq_len`` and ``loss`` ("xent" for tokens, "mse"/"huber" for vectors).
Metrics are shared (``metrics`` below) and computed on the scored positions only.
A task module registers its classes with ``register`` (re-exported by ``toymodels.tasks``,
whose ``make_task`` builds them by name).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import optax

from toymodels.config import ConfigError

Array = jax.Array


class Batch(NamedTuple):
    inputs: Array   # (B, T) int32 token ids, or (B, T, I) float32 vectors
    targets: Array  # (B, T) int32 token ids, or (B, T, O) float32 vectors
    mask: Array     # (B, T) float32, 1 where the position is scored


SPLITS = ("train", "eval")


def next_token_batch(x_BU: jax.Array, n_answer: int) -> Batch:
    """The next-token Batch of full sequences whose last ``n_answer`` tokens are the answer."""
    batch_size, n_tokens = x_BU.shape
    t_T = jnp.arange(n_tokens - 1)
    mask_T = (t_T >= n_tokens - 1 - n_answer).astype(jnp.float32)
    x_BU = x_BU.astype(jnp.int32)
    return Batch(x_BU[:, :-1], x_BU[:, 1:], jnp.broadcast_to(mask_T, (batch_size, n_tokens - 1)))


@dataclasses.dataclass(frozen=True)
class Vocab:
    tokens: tuple[str, ...]

    @property
    def size(self) -> int:
        return len(self.tokens)

    def decode(self, ids) -> list[str]:
        return [self.tokens[int(i)] for i in jnp.asarray(ids).reshape(-1)]

    def decode_str(self, ids, sep: str = " ") -> str:
        return sep.join(self.decode(ids))

    def encode(self, words: Sequence[str]) -> list[int]:
        index = {t: i for i, t in enumerate(self.tokens)}
        missing = [w for w in words if w not in index]
        if missing:
            raise KeyError(f"tokens not in vocabulary: {missing}")
        return [index[w] for w in words]


@dataclasses.dataclass(frozen=True)
class Task:
    """Base class. Subclasses are frozen dataclasses that validate in ``__post_init__``."""

    name: ClassVar[str] = "task"
    loss: ClassVar[str] = "xent"           # "xent" | "mse" | "huber"
    input_kind: ClassVar[str] = "tokens"   # "tokens" | "vectors"

    @property
    def seq_len(self) -> int:
        raise NotImplementedError

    @property
    def vocab(self) -> Vocab:
        raise NotImplementedError

    @property
    def d_input(self) -> int:     # vector tasks only
        return 0

    @property
    def d_output(self) -> int:    # vector tasks only
        return 0

    def sample(self, key: Array, batch_size: int, split: str = "train") -> Batch:
        """``split`` lets tasks with an enumerable input space keep eval inputs out of training."""
        raise NotImplementedError


def token_losses(outputs: Array, targets: Array, loss: str) -> Array:
    """Per-position loss (B, T) before masking."""
    if loss == "xent":
        return optax.softmax_cross_entropy_with_integer_labels(outputs, targets)
    if loss == "mse":
        return jnp.mean((outputs - targets) ** 2, axis=-1)
    if loss == "huber":
        return jnp.mean(optax.huber_loss(outputs, targets, delta=1.0), axis=-1)
    raise ValueError(f"loss={loss!r} is not allowed: choose 'xent', 'mse' or 'huber'")


def masked_mean(x_BT: Array, mask_BT: Array) -> Array:
    return jnp.sum(x_BT * mask_BT) / jnp.maximum(jnp.sum(mask_BT), 1.0)


def metrics(outputs: Array, batch: Batch, loss: str) -> dict[str, Array]:
    """Masked per-token loss; for token tasks also per-token accuracy and per-sequence exact match."""
    per_tok = token_losses(outputs, batch.targets, loss)
    out = {"loss": masked_mean(per_tok, batch.mask)}
    if loss == "xent":
        correct = (jnp.argmax(outputs, -1) == batch.targets).astype(jnp.float32)
        out["acc"] = masked_mean(correct, batch.mask)
        seq_ok = jnp.all((correct > 0) | (batch.mask == 0), axis=-1)
        has_scored = jnp.any(batch.mask > 0, axis=-1)
        out["exact"] = jnp.sum(seq_ok & has_scored) / jnp.maximum(jnp.sum(has_scored), 1)
    return out


TASKS: dict[str, type[Task]] = {}


def register(cls: type[Task]) -> type[Task]:
    """Class decorator: make a task constructible by its ``name``."""
    if cls.name in TASKS and TASKS[cls.name] is not cls:
        raise ValueError(f"task name {cls.name!r} is registered twice")
    TASKS[cls.name] = cls
    return cls


def make_task(name: str, **fields) -> Task:
    """Build a registered task, rejecting unknown names and fields with the valid choices."""
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; registered tasks: {', '.join(sorted(TASKS))}")
    cls = TASKS[name]
    valid = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(fields) - valid)
    if unknown:
        raise ConfigError(f"unknown field(s) {', '.join(unknown)} for task {name!r}; "
                          f"valid fields: {', '.join(sorted(valid)) or '(none)'}")
    return cls(**fields)
