"""Config validation shared by every frozen config dataclass.

Every config checks itself in ``__post_init__`` so a bad value fails with one
clear message (field, value, what is allowed) before anything is compiled.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable


class ConfigError(ValueError):
    """A config field holds a value that is not allowed."""


def fail(field: str, value: Any, allowed: str) -> None:
    """Raise the ConfigError that names the field, its value and what is allowed."""
    raise ConfigError(f"{field}={value!r} is not allowed: {allowed}")


def check_choice(field: str, value: Any, choices: Iterable[Any]) -> None:
    """``value`` is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        fail(field, value, "choose one of " + ", ".join(repr(c) for c in choices))


def check_int(field: str, value: Any, minimum: int = 1) -> None:
    """``value`` is an int (not a bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        fail(field, value, f"must be an integer >= {minimum}")
    if value < minimum:
        fail(field, value, f"must be an integer >= {minimum}")


def check_range(field: str, value: Any, lo: float, hi: float, *, lo_open: bool = False,
                hi_open: bool = False) -> None:
    """``value`` is a number (not NaN) in [lo, hi], either end open when asked."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        fail(field, value, f"must be a number in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}")
    if value != value:  # NaN compares false with everything
        fail(field, value, "must be a number, not NaN")
    below = value <= lo if lo_open else value < lo
    above = value >= hi if hi_open else value > hi
    if below or above:
        fail(field, value, f"must be in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}")


def replace(cfg: Any, **changes: Any) -> Any:
    """``dataclasses.replace`` that names the valid fields when given an unknown one."""
    names = {f.name for f in dataclasses.fields(cfg)}
    unknown = sorted(set(changes) - names)
    if unknown:
        raise ConfigError(
            f"unknown field(s) {', '.join(unknown)} for {type(cfg).__name__}; "
            f"valid fields: {', '.join(sorted(names))}")
    return dataclasses.replace(cfg, **changes)


def to_dict(cfg: Any) -> dict:
    """A JSON-ready dict of a (possibly nested) config dataclass."""
    return dataclasses.asdict(cfg)
