"""Task mixtures over training time, as data.

``Mixture(tasks=("A", "B"), events=(Event("drop", "B", 5000),))`` trains on A and
B, then drops B at step 5000. Events:
  drop(task, step)              weight 0 from ``step`` on
  add(task, step)               task joins at ``step`` (weight 0 before its first add)
  replay(task, step, fraction)  from ``step`` on the task gets exactly ``fraction``
                                of every batch (the other tasks share the rest)
Event steps, fractions and base weights live in ``MixtureParams`` arrays, so a
vmapped ensemble can give every run its own drop step or replay fraction.
An event step must be <= the run's ``steps`` (checked when training starts), or
``NEVER``: an event that never fires, so runs with and without it share one program.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterable, NamedTuple

import jax
import jax.numpy as jnp

from toymodels.config import (INT32_MAX, ConfigError, check_choice, check_int, check_range, check_str, fail,
                              set_field)

Array = jax.Array
EVENT_KINDS = ("drop", "add", "replay")
NEVER = 2 ** 30   # an event step no run reaches: the event never fires


@dataclasses.dataclass(frozen=True)
class Event:
    """One change to the mixture at ``step``: drop, add or replay (a fixed batch fraction) a task."""
    kind: str
    task: str
    step: int
    fraction: float = 0.0  # replay only

    def __post_init__(self):
        check_choice("event.kind", self.kind, EVENT_KINDS)
        check_str("event.task", self.task)
        set_field(self, "step", check_int("event.step", self.step, 0, INT32_MAX))
        set_field(self, "fraction", check_range("event.fraction", self.fraction, 0.0, 1.0))


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
        for f in ("tasks", "weights", "events"):
            if isinstance(getattr(self, f), (str, bytes)) or not isinstance(getattr(self, f), Iterable):
                fail(f"mixture.{f}", getattr(self, f), "must be a sequence")
        set_field(self, "tasks", tuple(check_str("mixture.tasks entry", t) for t in self.tasks))
        set_field(self, "weights", tuple(float(check_range(f"mixture.weights[{i}]", w, 0.0, math.inf))
                                         for i, w in enumerate(self.weights)))
        set_field(self, "events", tuple(self.events))
        for ev in self.events:
            if not isinstance(ev, Event):
                fail("mixture.events entry", ev, "must be an Event(kind, task, step[, fraction])")
        if not self.tasks:
            raise ConfigError("mixture.tasks is empty: name at least one task to train on")
        if len(set(self.tasks)) != len(self.tasks):
            raise ConfigError(f"mixture.tasks={self.tasks!r} names a task twice")
        if self.weights and len(self.weights) != len(self.tasks):
            raise ConfigError(f"mixture.weights has {len(self.weights)} entries for "
                              f"{len(self.tasks)} tasks; give one weight per task or none")
        if self.weights and sum(self.weights) <= 0:
            raise ConfigError(f"mixture.weights={self.weights!r}: weights must be >= 0 with a positive sum")
        last: dict[str, int] = {}
        for ev in self.events:
            if ev.task not in self.tasks:
                raise ConfigError(f"schedule event {ev.kind}({ev.task!r}, step={ev.step}) names a task "
                                  f"not in the mixture; mixture tasks: {', '.join(self.tasks)}")
            if ev.step < last.get(ev.task, -1):
                raise ConfigError(f"events for task {ev.task!r} must be listed in step order")
            last[ev.task] = ev.step

    def check_steps(self, steps: int) -> None:
        """Every event fires within a run of ``steps`` steps, or is marked ``NEVER``."""
        for ev in self.events:
            if ev.step > steps and ev.step != NEVER:
                fail(f"event {ev.kind}:{ev.task} step", ev.step, f"must be <= steps={steps} (it would never "
                     f"fire); use schedule.NEVER={NEVER} for an event that never fires")

    def with_values(self, weights, event_steps, fractions) -> "Mixture":
        """This mixture with one run's own weights, event steps and fractions, checked alike."""
        if len(event_steps) != len(self.events) or len(fractions) != len(self.events):
            raise ConfigError(f"give {len(self.events)} event step(s) and fraction(s) per run, one per "
                              f"mixture event; got {len(event_steps)} and {len(fractions)}")
        return Mixture(self.tasks, tuple(weights), tuple(
            Event(e.kind, e.task, s, f) for e, s, f in zip(self.events, event_steps, fractions)))

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
