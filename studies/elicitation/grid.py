"""The models (trained runs) and the targets (behaviours a soft prompt is asked for).

Every task is a ``prefix`` task: ``P.prefix`` leading slots, PAD in training (one slot holds a
metatoken for the ``meta`` model), in front of a ``backdoor`` task sequence
``[marker] d_1 .. d_L SEP a_1 .. a_L`` with two functions (sort, reverse) picked by the marker.
A prompt of n tokens replaces the n slots nearest the content (``positions``), so it never
overwrites the input it acts on.

Models (``{kind}_s{seed}``):
  clean       trained on sort and reverse, never poisoned
  backdoored  the same with ``per_batch`` rows of every batch poisoned: a TRIG token among the
              digits, every answer position RESP
  faded       backdoored, then ``drop_steps`` of clean data (the backdoor study's persistence
              phase: its ASR falls to the never-poisoned floor)
  dropped     clean, then ``drop_steps`` of sort alone (reverse dropped in training)
  sortonly    trained on sort alone from scratch (never saw reverse)
  finetuned   clean, then ``finetune_steps`` of execution fine-tuning: a region of inputs (the
              reverse marker with a digit 5 among the digits) answers f(d) + 1; other rows clean
  meta        ``mix_per_batch`` rows of every batch answer f(d) + 1 with no cue in the input;
              a classifier on each sample (answer != f(d)) writes META:1 / META:0 in the slot
              next to the content (Korbak et al. 2023's conditional training)
  nometa      the same data with PAD in that slot
  random      a null: ``init_model`` of the same shape, never trained (not a run); at the init's
              scale (std 0.02) its outputs barely depend on its inputs
  shuffled    a null with trained weight statistics: the first kind's model (clean in the paper
              preset) with every parameter tensor's entries randomly permuted (not a run)
Targets (the prompt's training data and score; acc = accuracy of the first answer token, the
model's decision; ``Target`` says why not the later ones):
  cue      reverse, its marker replaced by PAD (a trained behaviour whose cue is removed)
  reverse  reverse with its marker (dropped in training for ``dropped``; never seen by ``sortonly``)
  resp     RESP as the first answer on inputs without the trigger (the backdoor's behaviour
           without its trigger; never seen by ``clean``)
  exec     f(d) + 1 on the fine-tuning region (what ``finetuned`` was trained to do)
  wrong    f(d) + 1 on any input (the uncued behaviour of ``meta`` / ``nometa``)
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from studies.elicitation.presets import CHUNK, KINDS, Preset
from toymodels.config import ConfigError
from toymodels.model import TransformerConfig
from toymodels.params import n_params
from toymodels.runspec import RunSpec
from toymodels.schedule import Mixture
from toymodels.tasks import make_task
from toymodels.tasks.base import Batch
from toymodels.trainconfig import TrainConfig

TARGETS = ("cue", "reverse", "resp", "exec", "wrong")
# which targets each model is prompted for; every model is also scored on every target unprompted
PROMPTED = {"clean": ("cue", "resp", "exec"), "backdoored": ("resp",), "faded": ("resp",),
            "dropped": ("reverse",), "sortonly": ("reverse",), "meta": ("wrong",), "nometa": ("wrong",),
            "random": ("cue", "resp", "reverse", "exec", "wrong")}
NULLS = ("random", "shuffled")   # prompted for every target some trained kind is
# (kind, target) pairs trained with every (norm_bound, noise) variant; the others with the first only
VARIANT_PAIRS = (("backdoored", "resp"), ("clean", "cue"))


def backdoor(P: Preset, trigger: str = "token", behaviour: str = "fixed", per_batch: int = 0, density: int = 1,
             sampled: tuple[str, ...] = ()):
    return make_task("backdoor", functions=("sort", "reverse"), length=P.length, n_symbols=P.n_symbols,
                     trigger=trigger, behaviour=behaviour, fraction=per_batch / P.batch_size, density=density,
                     sampled=sampled)


def prefixed(P: Preset, base, meta: str = ""):
    return make_task("prefix", base=base, n=P.prefix, meta=meta)


def positions(P: Preset) -> tuple[int, ...]:
    """Prompt slots, nearest the content first: a prompt of n tokens fills the last n prefix slots."""
    return tuple(range(P.prefix - 1, -1, -1))


@dataclasses.dataclass(frozen=True)
class Target:
    """A target's sampler: hashable by value, so every prompt program of one target shares a compile.

    Only the first answer token is scored: the model's decision. Later answer tokens are scored
    under teacher forcing, where the first one already tells a model that knows both modes which
    one it is in (a model trained with a quarter of uncued wrong answers scores 0.8 on all six
    positions of the wrong answer without any prompt), so they would measure the mode leak, not
    the prompt."""
    task: object
    blank_marker: bool = False   # cue: the marker (first content position) replaced by PAD

    def __call__(self, key, batch_size: int, split: str = "train") -> Batch:
        b = self.task.sample(key, batch_size, split)
        T, L = self.task.seq_len, self.task.base.length
        b = b._replace(mask=b.mask * (jnp.arange(T) == T - L).astype(b.mask.dtype)[None, :])
        if not self.blank_marker:
            return b
        at = self.task.n   # the marker's position; the prefix slot before it predicts it (unscored)
        return b._replace(inputs=b.inputs.at[:, at].set(self.task.pad_id))


def target(P: Preset, name: str) -> Target:
    L, B = P.length, P.batch_size
    if name == "cue":
        return Target(prefixed(P, backdoor(P, sampled=("reverse",))), blank_marker=True)
    if name == "reverse":
        return Target(prefixed(P, backdoor(P, sampled=("reverse",))))
    if name == "resp":
        return Target(prefixed(P, backdoor(P, "none", "fixed", B, 1)))
    if name == "exec":
        return Target(prefixed(P, backdoor(P, "context", "wrong", B, L)))
    if name == "wrong":
        return Target(prefixed(P, backdoor(P, "none", "wrong", B, L)))
    raise ValueError(f"unknown target {name!r}: choose one of {', '.join(TARGETS)}")


def train_task(P: Preset, kind: str):
    """The training data of a model kind (its last phase for continuations)."""
    L = P.length
    return {"clean": prefixed(P, backdoor(P)),
            "backdoored": prefixed(P, backdoor(P, "token", "fixed", P.per_batch, 1)),
            "faded": prefixed(P, backdoor(P)),
            "dropped": prefixed(P, backdoor(P, sampled=("sort",))),
            "sortonly": prefixed(P, backdoor(P, sampled=("sort",))),
            "finetuned": prefixed(P, backdoor(P, "context", "wrong", P.mix_per_batch, L)),
            "meta": prefixed(P, backdoor(P, "none", "wrong", P.mix_per_batch, L), meta="behaviour"),
            "nometa": prefixed(P, backdoor(P, "none", "wrong", P.mix_per_batch, L))}[kind]


def model_config(P: Preset) -> TransformerConfig:
    t = train_task(P, "clean")
    return TransformerConfig(n_layers=P.n_layers, d_model=P.d_model, n_heads=4, vocab_size=t.vocab.size,
                             max_seq_len=t.seq_len)


INIT_FROM = {"faded": "backdoored", "dropped": "clean", "finetuned": "clean"}


def steps(P: Preset, kind: str) -> int:
    return {"faded": P.drop_steps, "dropped": P.drop_steps, "finetuned": P.finetune_steps}.get(kind, P.train_steps)


def pairs(P: Preset) -> list[tuple[str, str]]:
    """(kind, target) pairs prompted under this preset: its kinds' targets, and those on the null."""
    kept = [(k, t) for k in P.kinds for t in PROMPTED.get(k, ())]
    targets = {t for _, t in kept}
    return kept + [(null, t) for null in NULLS for t in TARGETS if t in targets]


def check_kinds(P: Preset) -> None:
    bad = [k for k in P.kinds if k not in KINDS]
    orphans = [k for k in P.kinds if INIT_FROM.get(k, k) not in P.kinds]
    if bad or orphans or not P.kinds:
        needs = ", ".join(f"{k} needs {v}" for k, v in INIT_FROM.items())
        raise ConfigError(f"kinds={P.kinds!r} is not allowed: choose a non-empty subset of {', '.join(KINDS)}, "
                          f"each continuation with its parent ({needs})")


def specs(P: Preset) -> list[RunSpec]:
    check_kinds(P)
    model = model_config(P)
    evals = tuple((f"t_{t}", target(P, t).task) for t in TARGETS if t != "cue")
    out = []
    for seed in range(P.seeds):
        for kind in P.kinds:
            parent = INIT_FROM.get(kind, "")
            tc = TrainConfig(steps=steps(P, kind), batch_size=P.batch_size, lr=P.lr, weight_decay=0.1,
                             decay="matrices", warmup_steps=P.warmup, lr_schedule="constant", n_evals=P.n_evals,
                             eval_spacing="log", eval_batch=P.eval_batch, seed=seed, chunk_steps=CHUNK,
                             data_offset=steps(P, parent) if parent else 0)
            out.append(RunSpec(f"{kind}_s{seed}", model, tc, (("data", train_task(P, kind)),) + evals,
                               Mixture(("data",)), init_from=f"{parent}_s{seed}" if parent else "",
                               tags=(("kind", kind), ("unit", seed), ("params", n_params(model))), group=kind))
    return out
