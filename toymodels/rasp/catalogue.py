"""Named RASP programs: the library programs (``LIBRARY``) and fountain programs by seed.

    program, vocab, max_seq_len = resolve_program("sort@8", accept=None)
    program, vocab, max_seq_len = resolve_program("fountain:3:4", accept=compiler.accepts)

A name is a library program (``LIBRARY``), or ``fountain:<seed>`` / ``fountain:<seed>:<n_ops>``
for a random program of ``toymodels.rasp.fountain`` over ("a", "b", "c"); a suffix ``@<n>``
sets the max_seq_len the program is built for (e.g. ``"sort@8"`` for length up to 8). For
fountain programs it is part of the seed: the fountain accepts a program only if it runs
(and passes ``accept``) at every length up to max_seq_len, so ``fountain:3@8`` need not be
``fountain:3`` run longer. ``toymodels.tasks.rasp_io.resolve_program`` resolves names with
the compiler's check, which is what every task and study means by a fountain name.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from toymodels.config import ConfigError
from toymodels.rasp import fountain, rasp
from toymodels.rasp import library as lib
from toymodels.rasp.rasp import SOp

FOUNTAIN_VOCAB = ("a", "b", "c")
FOUNTAIN_MAX_SEQ_LEN = 5
FOUNTAIN_N_OPS = 6

_ABC = ("a", "b", "c")
_PARENS = ("(", ")", "x")

# name -> (builder of the program given max_seq_len, vocab, default max_seq_len). Vocabularies
# and lengths follow Tracr's examples (the size table in docs/rasp.md).
LIBRARY: dict[str, tuple[Callable[[int], SOp], tuple, int]] = {
    "length": (lambda n: lib.make_length(), _ABC, 5),
    "reverse": (lambda n: lib.make_reverse(rasp.tokens), _ABC, 5),
    "hist": (lambda n: lib.make_hist(), _ABC, 5),
    "sort": (lambda n: lib.make_sort(rasp.tokens, rasp.tokens, max_seq_len=n, min_key=1), (1, 2, 3), 5),
    "sort_unique": (lambda n: lib.make_sort_unique(rasp.tokens, rasp.tokens), (1, 2, 3, 4, 5), 5),
    "sort_freq": (lambda n: lib.make_sort_freq(n), _ABC, 5),
    "frac_prevs": (lambda n: lib.make_frac_prevs(rasp.tokens == "a"), _ABC, 5),
    "pair_balance": (lambda n: lib.make_pair_balance(rasp.tokens, "(", ")"), _PARENS, 5),
    "shuffle_dyck": (lambda n: lib.make_shuffle_dyck(["()"]), _PARENS, 5),
    "shuffle_dyck2": (lambda n: lib.make_shuffle_dyck2(), ("(", ")", "{", "}"), 4),
    "count_less_freq": (lambda n: lib.make_count_less_freq(2), ("a", "b", "c", "d"), 5),
    "count": (lambda n: lib.make_count(rasp.tokens, "a"), _ABC, 5),
    "running_count": (lambda n: lib.make_running_count(rasp.tokens, "a"), _ABC, 5),
    "detect_pattern": (lambda n: lib.detect_pattern(rasp.tokens, "abc"), _ABC, 5),
    "shift_by": (lambda n: lib.shift_by(1, rasp.tokens), _ABC, 5),
    "first": (lambda n: lib.make_first(rasp.tokens), _ABC, 5),
    "last": (lambda n: lib.make_last(rasp.tokens), _ABC, 5),
    "mean": (lambda n: lib.make_mean(rasp.tokens == "a"), _ABC, 5),
    "is_palindrome": (lambda n: lib.make_is_palindrome(rasp.tokens), _ABC, 5),
}


def unknown_program(name, why: str = "") -> ConfigError:
    """The error for a name that is not a catalogue program, listing the valid names."""
    return ConfigError(f"program={name!r} is not a known RASP program{why}: choose one of "
                       f"{', '.join(sorted(LIBRARY))}, or 'fountain:<seed>' / "
                       "'fountain:<seed>:<n_ops>', optionally with '@<max_seq_len>'")


@functools.cache
def resolve_program(name: str, *, accept: fountain.Accept | None) -> tuple[SOp, tuple, int]:
    """(program, vocab, max_seq_len) for a program name (module docstring); ``accept`` is
    the fountain's acceptance check for ``fountain:`` names (``toymodels.compiler.accepts``).

    Cached, so one name (and check) always gives the same SOp object (labels, compiled nets
    and tables all refer to it).
    """
    if not isinstance(name, str):
        raise unknown_program(name)
    base, _, suffix = name.partition("@")
    max_len = None
    if suffix:
        if not suffix.isdigit() or int(suffix) < 1:
            raise unknown_program(name, f" ('@{suffix}' must be a positive integer max_seq_len)")
        max_len = int(suffix)
    if base in LIBRARY:
        build, vocab, default_len = LIBRARY[base]
        max_len = max_len or default_len
        return build(max_len), vocab, max_len
    parts = base.split(":")
    if parts[0] == "fountain" and len(parts) in (2, 3) and all(p.isdigit() for p in parts[1:]):
        max_len = max_len or FOUNTAIN_MAX_SEQ_LEN
        n_ops = int(parts[2]) if len(parts) == 3 else FOUNTAIN_N_OPS
        try:
            program = fountain.generate(int(parts[1]), n_ops=n_ops, vocab=FOUNTAIN_VOCAB,
                                        max_seq_len=max_len, accept=accept)
        except RuntimeError as e:
            raise unknown_program(name, f" ({e})") from None
        return program, FOUNTAIN_VOCAB, max_len
    raise unknown_program(name)
