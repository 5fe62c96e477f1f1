"""Task mixtures over training time, as data.

``Mixture(tasks=("A", "B"), events=(Event("drop", "B", 5000),))`` trains on A and
B, then drops B at step 5000. Events:
  drop(task, step)              weight 0 from ``step`` on
  add(task, step)               task joins at ``step`` (weight 0 before its first add)
  replay(task, step, fraction)  from ``step`` on the task gets exactly ``fraction``
                                of every batch (the other tasks share the rest)
Event steps, fractions and base weights live in ``MixtureParams`` arrays, so a
vmapped ensemble can give every run its own drop step or replay fraction.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from toymodels.config import ConfigError, check_choice, check_int, check_range

Array = jax.Array
EVENT_KINDS = ("drop", "add", "replay")


@dataclasses.dataclass(frozen=True)
class Event:
    """One change to the mixture at ``step``: drop, add or replay (a fixed batch fraction) a task."""
    kind: str
    task: str
    step: int
    fraction: float = 0.0  # replay only

    def __post_init__(self):
        check_choice("event.kind", self.kind, EVENT_KINDS)
        check_int("event.step", self.step, 0)
        check_range("event.fraction", self.fraction, 0.0, 1.0)


class MixtureParams(NamedTuple):
    """A mixture's numbers as arrays, so each run of a vmapped group can have its own."""
    weights: Array      # (n_tasks,) base weights
    event_steps: Array  # (n_events,) int32
    fractions: Array    # (n_events,) float32


@dataclasses.dataclass(frozen=True)
class Mixture:
    """Which tasks are trained on, with what weights, and the events that change that over time."""
    tasks: tuple[str, ...]
    weights: tuple[float, ...] = ()   # () = equal weights
    events: tuple[Event, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "tasks", tuple(self.tasks))
        object.__setattr__(self, "weights", tuple(float(w) for w in self.weights))
        object.__setattr__(self, "events", tuple(self.events))
        if not self.tasks:
            raise ConfigError("mixture.tasks is empty: name at least one task to train on")
        if len(set(self.tasks)) != len(self.tasks):
            raise ConfigError(f"mixture.tasks={self.tasks!r} names a task twice")
        if self.weights and len(self.weights) != len(self.tasks):
            raise ConfigError(f"mixture.weights has {len(self.weights)} entries for "
                              f"{len(self.tasks)} tasks; give one weight per task or none")
        if any(w < 0 for w in self.weights) or (self.weights and sum(self.weights) <= 0):
            raise ConfigError(f"mixture.weights={self.weights!r}: weights must be >= 0 with a positive sum")
        last: dict[str, int] = {}
        for ev in self.events:
            if ev.task not in self.tasks:
                raise ConfigError(f"schedule event {ev.kind}({ev.task!r}, step={ev.step}) names a task "
                                  f"not in the mixture; mixture tasks: {', '.join(self.tasks)}")
            if ev.step < last.get(ev.task, -1):
                raise ConfigError(f"events for task {ev.task!r} must be listed in step order")
            last[ev.task] = ev.step

    def params(self) -> MixtureParams:
        """The mixture's numbers as arrays (rows of the runs axis once stacked)."""
        w = self.weights or (1.0,) * len(self.tasks)
        return MixtureParams(jnp.asarray(w, jnp.float32),
                             jnp.asarray([e.step for e in self.events], jnp.int32).reshape(-1),
                             jnp.asarray([e.fraction for e in self.events], jnp.float32).reshape(-1))

    def probs(self, step, p: MixtureParams | None = None) -> Array:
        """Per-task sampling probabilities (n_tasks,) at ``step``; jit- and vmap-safe."""
        p = self.params() if p is None else p
        n = len(self.tasks)
        first_add = {}
        for ev in self.events:
            first_add.setdefault(ev.task, ev.kind == "add")
        w = [jnp.where(first_add.get(t, False), 0.0, p.weights[i]) for i, t in enumerate(self.tasks)]
        frac = [jnp.float32(-1.0)] * n
        for j, ev in enumerate(self.events):
            i = self.tasks.index(ev.task)
            on = step >= p.event_steps[j]
            new_w = {"drop": 0.0, "add": p.weights[i], "replay": 0.0}[ev.kind]
            new_f = p.fractions[j] if ev.kind == "replay" else -1.0
            w[i] = jnp.where(on, new_w, w[i])
            frac[i] = jnp.where(on, new_f, frac[i])
        w_T, f_T = jnp.stack(w), jnp.stack(frac)
        fixed = jnp.where(f_T >= 0, f_T, 0.0)
        free_total = w_T.sum()
        rest = jnp.clip(1.0 - fixed.sum(), 0.0, 1.0)
        probs = fixed + jnp.where(free_total > 0, w_T / jnp.maximum(free_total, 1e-30) * rest, 0.0)
        return probs / jnp.maximum(probs.sum(), 1e-30)
