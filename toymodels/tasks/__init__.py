"""Task registry: ``make_task("copy", seq_len=16)``; ``TASKS`` lists every registered name."""

from __future__ import annotations

import dataclasses

from toymodels.config import ConfigError
from toymodels.tasks.base import Batch, Task, Vocab, masked_mean, metrics, token_losses

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


# Importing the task modules registers them.
from toymodels.tasks import algorithmic, languages, markov, myopia, parity, pool, rasp_io, text  # noqa: E402,F401
from toymodels.decompile import task as _decompile_task  # noqa: E402,F401

__all__ = ["Batch", "Task", "Vocab", "TASKS", "register", "make_task", "metrics",
           "masked_mean", "token_losses"]
