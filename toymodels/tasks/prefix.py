"""``prefix``: another token task's sequences behind ``n`` leading slots (soft prompts, metatokens).

``make_task("prefix", base=make_task("backdoor"), n=4)`` gives every sequence of ``base`` four
leading slots. The slots hold no content, so a soft prompt (``toymodels.prompts``) can replace
them without overwriting any of the base task's tokens: a model trained on the prefixed task has
seen its content at the same positions a prompted run uses.

With ``meta`` set, the last slot is a metatoken "META:k" marking a property of each sample,
k = ``META_CLASSIFIERS[meta](base, x_BU)`` in {0, 1}, computed by a classifier on the data
itself, as in conditional pretraining (Korbak et al. 2023, "Pretraining Language Models with
Human Preferences"): the model learns the property's token along with the data and can later
be conditioned on it. Classifiers:
  * "behaviour" (a ``backdoor`` base): 1 where the row's answer differs from the clean answer
    f(digits), i.e. the row shows the poisoned behaviour, else 0.
With ``meta=""`` every slot holds "PAD".

The batch is exactly the next-token batch of the full sequence [prefix, base sequence]: inputs
are the n slots then the base inputs; the target at slot i is the input at slot i + 1 (at slot
n - 1, the base sequence's first token); the prefix is never scored. Sampling draws the base
batch with the same key, so the content of a batch equals the base task's batch. A classifier
sees the full base sequences, rebuilt as the base inputs plus the last target: this requires
the base task's targets to be its inputs shifted by one (true of every ``next_token_batch``
task, ``backdoor`` included).

The vocabulary is always the base vocabulary plus "PAD", "META:0", "META:1" (in that order),
whatever ``meta`` is, so models trained with and without metatokens share a vocabulary.
Shape letters as in ``toymodels.model``: B batch, N prefix slots, T = seq_len (N + the base's),
U = the base's seq_len + 1 (x_BU: full base sequences).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from toymodels.config import check_choice, check_int, fail, set_field
from toymodels.tasks.backdoor import BackdoorTask
from toymodels.tasks.base import SPLITS, Batch, Task, Vocab, register


def shows_behaviour(base: Task, x_BU: jax.Array) -> jax.Array:
    """(B,) int32: 1 where a backdoor row's answer (its last ``length`` tokens) differs from the
    clean answer f(digits) (TRIG counting as digit 0, the task's convention), else 0; jit-safe."""
    if not isinstance(base, BackdoorTask):
        fail("base", base, "the 'behaviour' classifier needs a backdoor task")
    x_BU = jnp.asarray(x_BU, jnp.int32)
    m, L = int(base.has_markers), base.length
    digits_BL = x_BU[:, m:m + L]
    digits_BL = jnp.where(digits_BL == base.trig_id, 0, digits_BL)
    fn_B = (x_BU[:, 0] - base.marker_id(0) if base.has_markers
            else jnp.zeros(x_BU.shape[:1], jnp.int32))
    clean_BL = base._answer(digits_BL, fn_B)
    return jnp.any(x_BU[:, -L:] != clean_BL, axis=1).astype(jnp.int32)


# name -> function(base task, full base sequences x_BU) -> (B,) int32 in {0, 1}
META_CLASSIFIERS: dict[str, Callable[[Task, jax.Array], jax.Array]] = {"behaviour": shows_behaviour}


@register
@dataclasses.dataclass(frozen=True)
class PrefixTask(Task):
    name = "prefix"

    base: Task | None = None   # a token task (input_kind "tokens", loss "xent"), not a prefix task
    n: int = 4                 # prefix slots
    meta: str = ""             # "" = every slot holds PAD; else a name from META_CLASSIFIERS

    def __post_init__(self):
        if (not isinstance(self.base, Task) or isinstance(self.base, PrefixTask)
                or self.base.input_kind != "tokens" or self.base.loss != "xent"):
            fail("base", self.base, "must be a token task (input_kind 'tokens', loss 'xent') that is "
                 "not itself a prefix task, e.g. make_task('backdoor')")
        set_field(self, "n", check_int("n", self.n, 1))
        check_choice("meta", self.meta, ("",) + tuple(META_CLASSIFIERS))
        if self.meta == "behaviour" and not isinstance(self.base, BackdoorTask):
            fail("meta", self.meta, f"'behaviour' needs a backdoor base task, got {self.base.name!r}")

    # ------------------------------------------------------------------ layout
    @property
    def seq_len(self) -> int:
        return self.base.seq_len + self.n

    @property
    def vocab(self) -> Vocab:
        return Vocab(self.base.vocab.tokens + ("PAD", "META:0", "META:1"))

    @property
    def pad_id(self) -> int:
        return self.base.vocab.size

    def meta_id(self, k: int) -> int:
        return self.pad_id + 1 + k

    # ------------------------------------------------------------------ sampling
    def sample(self, key: jax.Array, batch_size: int, split: str = "train") -> Batch:
        check_choice("split", split, SPLITS)
        b = self.base.sample(key, batch_size, split=split)
        B, N = b.inputs.shape[0], self.n
        prefix_BN = jnp.full((B, N), self.pad_id, jnp.int32)
        if self.meta:
            x_BU = jnp.concatenate([b.inputs, b.targets[:, -1:]], axis=1)
            k_B = META_CLASSIFIERS[self.meta](self.base, x_BU)
            prefix_BN = prefix_BN.at[:, -1].set(self.meta_id(0) + k_B)
        inputs_BT = jnp.concatenate([prefix_BN, b.inputs.astype(jnp.int32)], axis=1)
        targets_BT = jnp.concatenate([prefix_BN[:, 1:], b.inputs[:, :1].astype(jnp.int32),
                                      b.targets.astype(jnp.int32)], axis=1)
        mask_BT = jnp.concatenate([jnp.zeros((B, N), b.mask.dtype), b.mask], axis=1)
        return Batch(inputs_BT, targets_BT, mask_BT)
