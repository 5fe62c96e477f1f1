"""Config validation shared by every frozen config dataclass.

Every config checks itself in ``__post_init__`` so a bad value fails with one
clear message (field, value, what is allowed) before anything is compiled.
The checks accept NumPy scalars and return plain Python values, which configs
store (``set_field``) so they stay JSON-able and hashable.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Iterable

import numpy as np

INT32_MIN, INT32_MAX = -2**31, 2**31 - 1   # PRNG seeds travel as int32 rows of the runs axis


class ConfigError(ValueError):
    """A config field holds a value that is not allowed."""


def fail(field: str, value: Any, allowed: str) -> None:
    """Raise the ConfigError that names the field, its value and what is allowed."""
    raise ConfigError(f"{field}={value!r} is not allowed: {allowed}")


def set_field(cfg: Any, field: str, value: Any) -> None:
    """Store a checked (normalised) value on a frozen dataclass."""
    object.__setattr__(cfg, field, value)


def check_choice(field: str, value: Any, choices: Iterable[Any]) -> None:
    """``value`` is one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        fail(field, value, "choose one of " + ", ".join(repr(c) for c in choices))


def check_bool(field: str, value: Any) -> bool:
    """``value`` is a bool (NumPy's included); returns a Python bool."""
    if not isinstance(value, (bool, np.bool_)):
        fail(field, value, "must be True or False")
    return bool(value)


def check_str(field: str, value: Any) -> str:
    """``value`` is a string."""
    if not isinstance(value, str):
        fail(field, value, "must be a string")
    return value


def check_int(field: str, value: Any, minimum: int = 1, maximum: int | None = None,
              why: str = "") -> int:
    """``value`` is an integer (Python or NumPy, not a bool) in [minimum, maximum]; returns an int."""
    allowed = (f"must be an integer >= {minimum}" if maximum is None
               else f"must be an integer in [{minimum}, {maximum}]") + (f" ({why})" if why else "")
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        fail(field, value, allowed)
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        fail(field, value, allowed)
    return value


def check_seed(field: str, value: Any) -> int:
    """A PRNG seed: an integer in the int32 range."""
    return check_int(field, value, INT32_MIN, INT32_MAX, "seeds must fit the int32 PRNG seed range")


def check_range(field: str, value: Any, lo: float, hi: float, *, lo_open: bool = False,
                hi_open: bool = False) -> float:
    """``value`` is a finite real number (Python or NumPy, not a bool) in [lo, hi], either end
    open when asked; returns it as a Python float (an int stays an int)."""
    interval = f"{'(' if lo_open or lo == -math.inf else '['}{lo}, {hi}{')' if hi_open or hi == math.inf else ']'}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        fail(field, value, f"must be a finite number in {interval}")
    value = int(value) if isinstance(value, numbers.Integral) else float(value)
    if not math.isfinite(value):
        fail(field, value, f"must be a finite number in {interval}")
    below = value <= lo if lo_open else value < lo
    above = value >= hi if hi_open else value > hi
    if below or above:
        fail(field, value, f"must be in {interval}")
    return value


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
