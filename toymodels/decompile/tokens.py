"""RASP programs as token sequences: the decompiler's target language.

    toks = program_tokens(fountain.generate(3, accept=accepts))   # ['Map', 'f:x>0', 'indices', 'cat', ...]
    prog = parse_program(toks)                    # evaluates like the original
    print(format_program(toks))                   # one "v3 = Map(f:x+1, v1) cat" per line

One line per SOp, in post-order from the output (an SOp's inputs first, in argument
order), so line i defines v_i and the last line is the output. No "v_i =" tokens:
they would be predictable from the line count and only inflate token accuracy.

  Map <f> <x> <enc>                       f in MAP_FUNCTIONS ("f:x+1", "f:x=='a'", ...)
  SequenceMap <g> <x> <y> <enc>           g in PAIR_FUNCTIONS ("g:x+y", "g:join", ...)
  LinearSequenceMap <#a> <#b> <x> <y> <enc>
  Full <#c> <enc>
  Aggregate <sel> <x> <enc>               default None (cat) / 0 (num), as the fountain's
  SelectorWidth <sel> <enc>
  sel := Select <keys> <queries> <cmp> | And <sel> <sel> | Or <sel> <sel>

x, y, keys, queries are ``tokens``, ``indices``, ``length`` or an earlier ``v_i``; enc
is ``cat`` / ``num``; cmp a ``Comparison`` name; #c a constant from CONSTANTS.

Functions are named by a lookup table keyed on the fountain's own function objects
(its typed tables, and the code objects of the lambdas it builds per call), and a
name parses back to a function with that same code, so tokens(parse(tokens(p))) ==
tokens(p). ``sel & sel`` with shared keys/queries (or a Full side) is merged by
``rasp.selector_and`` into one Select with an anonymous predicate; it is written as
the And of the two Selects it was made from (a Full side becomes its own ``Full``
line), and parsing replays the same merge.
"""

from __future__ import annotations

import re
import types

from toymodels.rasp import fountain, rasp
from toymodels.rasp.rasp import Comparison

MAX_VARS = 32
FOUNTAIN_VOCAB = ("a", "b", "c")   # the token values "f:x==<v>" maps can compare with
CONSTANTS = (-1, 0, 0.5, 1, 2, 3)
SPECIALS = ("<pad>", "<sep>", "<eos>")
PAD, SEP, EOS = range(3)
OPS = ("Map", "SequenceMap", "LinearSequenceMap", "Full", "Aggregate", "SelectorWidth",
       "Select", "And", "Or")
ENCODINGS = ("cat", "num")
PRIMITIVES = {"tokens": rasp.tokens, "indices": rasp.indices, "length": rasp.length}


class ParseError(ValueError):
    """A token sequence is not a program of this language."""


def _lambdas(fn, varnames) -> list[types.CodeType]:
    return [c for c in fn.__code__.co_consts
            if isinstance(c, types.CodeType) and c.co_name == "<lambda>" and c.co_varnames == varnames]


_TOKEN_EQ, = _lambdas(fountain._Gen._step, ("t", "v"))     # lambda t, v=v: t == v
_GT_HALF, = _lambdas(fountain._Gen.finish, ("x",))          # lambda x: x > 0.5
_JOIN, = _lambdas(fountain._Gen.finish, ("x", "y"))         # (_code(x) + _code(y)) % 3
_WRAPS = set(_lambdas(rasp._merge_selects, ("k", "q", "p", "c")))
_MERGED, = _lambdas(rasp._merge_selects, ("k", "q"))
_AND, = _lambdas(rasp.selector_and, ("a", "b"))
_OR, = _lambdas(rasp.selector_or, ("a", "b"))


def _key(f):
    # Builtins (int, max) are singletons; a lambda is its code plus bound defaults.
    code = getattr(f, "__code__", None)
    return ("obj", f) if code is None else ("code", code, f.__defaults__)


def _rebuild(code, defaults=None):
    """A function with the fountain's own code object, so it looks the name up again."""
    return types.FunctionType(code, vars(fountain), None, defaults)


def _table(entries) -> tuple[dict[str, object], dict]:
    by_name, by_key = {}, {}
    for name, f in entries:
        by_name.setdefault(name, f)   # same names across tables are the same function
        by_key[_key(f)] = name
    return by_name, by_key


MAP_FUNCTIONS, _MAP_KEYS = _table(
    [(f"f:{n}", f) for _, _, n, f in fountain.MAPS + fountain.NUM_MAPS + fountain.TO_NUM]
    + [("f:int(x)", int), ("f:x>0.5", _rebuild(_GT_HALF))]
    + [(f"f:x=={v!r}", _rebuild(_TOKEN_EQ, (v,))) for v in FOUNTAIN_VOCAB])
PAIR_FUNCTIONS, _PAIR_KEYS = _table(
    [(f"g:{n}", f) for *_, n, f in fountain.PAIRS] + [("g:join", _rebuild(_JOIN))])
VARS = tuple(f"v{i}" for i in range(1, MAX_VARS + 1))
VOCAB: tuple[str, ...] = (SPECIALS + OPS + ENCODINGS + tuple(c.name for c in Comparison)
                          + tuple(PRIMITIVES) + VARS + tuple(MAP_FUNCTIONS)
                          + tuple(PAIR_FUNCTIONS) + tuple(f"#{c}" for c in CONSTANTS))
TOKEN_ID = {t: i for i, t in enumerate(VOCAB)}


def _const(value) -> str:
    for c in CONSTANTS:
        if isinstance(value, (int, float)) and value == c:
            return f"#{c}"
    raise ValueError(f"constant {value!r} is not in CONSTANTS={CONSTANTS}")


def _name(table: dict, f, what: str) -> str:
    try:
        return table[_key(f)]
    except (KeyError, TypeError):
        raise ValueError(f"{what} function {f!r} is not one of the fountain's named functions") from None


def _unwrap(keys, queries, pred):
    """Undoes _merge_selects' constant folding: (keys, queries, predicate) of the original
    Select, a folded Full side coming back as a fresh Full."""
    while getattr(pred, "__code__", None) in _WRAPS:
        inner, c = pred.__defaults__
        # Probe which side was folded: the wrapper calls inner(c, q) or inner(k, c).
        if pred("K", "Q", p=lambda k, q: (k, q), c="C")[0] == "C":
            keys = rasp.Full(c)
        else:
            queries = rasp.Full(c)
        pred = inner
    return keys, queries, pred


class _Writer:
    def __init__(self):
        self.tokens: list[str] = []
        self.ref: dict[int, str] = {}

    def sop(self, s: rasp.SOp) -> str:
        """The reference token of ``s``, writing its line (and its inputs' lines) if new."""
        for name, prim in PRIMITIVES.items():
            if s is prim:
                return name
        if id(s) in self.ref:
            return self.ref[id(s)]
        enc = "num" if rasp.is_numerical(s) else "cat"
        if isinstance(s, rasp.Map):
            line = ["Map", _name(_MAP_KEYS, s.f, "Map"), self.sop(s.inner)]
        elif isinstance(s, rasp.LinearSequenceMap):
            line = ["LinearSequenceMap", _const(s.fst_fac), _const(s.snd_fac),
                    self.sop(s.fst), self.sop(s.snd)]
        elif isinstance(s, rasp.SequenceMap):
            line = ["SequenceMap", _name(_PAIR_KEYS, s.f, "SequenceMap"),
                    self.sop(s.fst), self.sop(s.snd)]
        elif isinstance(s, rasp.Full):
            line = ["Full", _const(s.fill)]
        elif isinstance(s, rasp.Aggregate):
            if s.default != (0 if enc == "num" else None):
                raise ValueError(f"Aggregate {s.label}: default {s.default!r} is not the fountain's")
            line = ["Aggregate", *self.selector(s.selector), self.sop(s.sop)]
        elif isinstance(s, rasp.SelectorWidth):
            line = ["SelectorWidth", *self.selector(s.selector)]
        else:
            # ValueError, like every other way of falling outside the language.
            raise ValueError(f"{s!r}: {type(s).__name__} is not in the token language")  # noqa: TRY004
        if len(self.ref) == MAX_VARS:
            raise ValueError(f"program has more than MAX_VARS={MAX_VARS} SOps")
        self.tokens += line + [enc]
        self.ref[id(s)] = VARS[len(self.ref)]
        return self.ref[id(s)]

    def selector(self, sel: rasp.Selector) -> list[str]:
        if isinstance(sel, rasp.Select):
            return self.select(sel.keys, sel.queries, sel.predicate)
        if isinstance(sel, (rasp.SelectorAnd, rasp.SelectorOr)):
            op = "And" if isinstance(sel, rasp.SelectorAnd) else "Or"
            return [op, *self.selector(sel.fst), *self.selector(sel.snd)]
        raise ValueError(f"{sel!r}: {type(sel).__name__} is not in the token language")

    def select(self, keys, queries, pred) -> list[str]:
        if isinstance(pred, Comparison):
            return ["Select", self.sop(keys), self.sop(queries), pred.name]
        if getattr(pred, "__code__", None) is not _MERGED:
            raise ValueError(f"Select predicate {pred!r} is neither a Comparison nor a merge")
        cells = dict(zip(_MERGED.co_freevars, (c.cell_contents for c in pred.__closure__)))
        op = {_AND: "And", _OR: "Or"}[cells["combine"].__code__]
        return [op, *self.select(*_unwrap(keys, queries, cells["p1"])),
                *self.select(*_unwrap(keys, queries, cells["p2"]))]


def program_tokens(program: rasp.SOp) -> list[str]:
    """The program as tokens (no <sep> / <eos>); ValueError outside the token language."""
    writer = _Writer()
    if writer.sop(program) in PRIMITIVES:
        raise ValueError("a bare tokens / indices / length program has no lines to write")
    return writer.tokens


class _Reader:
    def __init__(self, tokens):
        self.toks, self.pos, self.defs = list(tokens), 0, []

    def next(self, choices=None) -> str:
        if self.pos >= len(self.toks):
            raise ParseError("program ends in the middle of a line")
        tok = self.toks[self.pos]
        self.pos += 1
        if choices is not None and tok not in choices:
            raise ParseError(f"token {self.pos - 1}: {tok!r} is not one of {sorted(choices)[:12]}")
        return tok

    def sop(self) -> rasp.SOp:
        tok = self.next()
        if tok in PRIMITIVES:
            return PRIMITIVES[tok]
        m = re.fullmatch(r"v(\d+)", tok)
        if not m or not 1 <= int(m[1]) <= len(self.defs):
            raise ParseError(f"token {self.pos - 1}: {tok!r} is not a defined SOp")
        return self.defs[int(m[1]) - 1]

    def const(self):
        return CONSTANTS[[f"#{c}" for c in CONSTANTS].index(self.next([f"#{c}" for c in CONSTANTS]))]

    def selector(self) -> rasp.Selector:
        op = self.next(("Select", "And", "Or"))
        if op == "Select":
            keys, queries = self.sop(), self.sop()
            return rasp.Select(keys, queries, Comparison[self.next(Comparison.__members__)])
        fst, snd = self.selector(), self.selector()
        # The same simplifying combinators the fountain used, so merges replay exactly.
        return rasp.selector_and(fst, snd) if op == "And" else rasp.selector_or(fst, snd)

    def line(self) -> rasp.SOp:
        op = self.next(("Map", "SequenceMap", "LinearSequenceMap", "Full", "Aggregate",
                        "SelectorWidth"))
        if op == "Map":
            f = MAP_FUNCTIONS[self.next(MAP_FUNCTIONS)]
            sop = rasp.Map(f, self.sop(), simplify=False)
        elif op == "SequenceMap":
            f = PAIR_FUNCTIONS[self.next(PAIR_FUNCTIONS)]
            sop = rasp.SequenceMap(f, self.sop(), self.sop())
        elif op == "LinearSequenceMap":
            a, b = self.const(), self.const()
            sop = rasp.LinearSequenceMap(self.sop(), self.sop(), a, b)
        elif op == "Full":
            sop = rasp.Full(self.const())
        elif op == "Aggregate":
            sop = rasp.Aggregate(self.selector(), self.sop())
        else:
            sop = rasp.SelectorWidth(self.selector())
        if self.next(ENCODINGS) == "num":
            rasp.numerical(sop)
            if isinstance(sop, rasp.Aggregate):
                sop.default = 0
        if len(self.defs) == MAX_VARS:
            raise ParseError(f"more than MAX_VARS={MAX_VARS} lines")
        self.defs.append(sop.named(f"v{len(self.defs) + 1}"))
        return sop


def parse_program(tokens) -> rasp.SOp:
    """The program of ``program_tokens`` output (the last line is the output); a trailing
    <eos> and what follows it are ignored. Raises ParseError."""
    toks = list(tokens)
    if "<eos>" in toks:
        toks = toks[:toks.index("<eos>")]
    reader = _Reader(toks)
    while reader.pos < len(toks):
        reader.line()
    if not reader.defs:
        raise ParseError("empty program")
    return reader.defs[-1]


def format_program(tokens) -> str:
    """Human-readable lines ``v3 = Map(f:x+1, v1) cat`` (tokens must parse)."""
    toks, lines = list(tokens), []
    reader = _Reader(toks)
    while reader.pos < len(toks):
        start = reader.pos
        reader.line()
        body = toks[start:reader.pos]
        lines.append(f"v{len(lines) + 1} = {body[0]}({', '.join(body[1:-1])}) {body[-1]}")
    return "\n".join(lines)
