"""A seeded fountain of random, typed, valid RASP programs.

    from toymodels.compiler import accepts
    from toymodels.rasp import fountain
    prog = fountain.generate(seed=3, n_ops=8, accept=accepts)
    progs = list(fountain.programs(seed=0, count=100, n_ops=6, accept=accepts))

Every program is built from typed pieces (categorical str / int / bool SOps,
numerical SOps with small value sets), uses every operation it creates, and
is accepted only if (1) the interpreter runs it without error on random
inputs and (2) ``accept(program, vocab, max_seq_len)`` is true (the compiler's
front end, ``toymodels.compiler.accepts``, for programs that must compile; None
skips this check); otherwise the next sub-seed is tried. The accepted program
depends on ``accept``: pass the same check to get the same program from a seed.
``mix`` weights the primitives:

  map, numerical_map     Map (categorical) / numerical Map
  sequence_map           SequenceMap, LinearSequenceMap, numerical x*y
  aggregate              categorical Aggregate (single key: by index, or by key value)
  mean                   numerical Aggregate (any Select, also SelectorAnd)
  selector_width         SelectorWidth of a random Select
  full                   constants
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable, Iterator, Sequence

from toymodels.rasp import rasp
from toymodels.rasp.interpreter import evaluate
from toymodels.rasp.rasp import Comparison, RASPError, SOp

DEFAULT_MIX = {"map": 3, "numerical_map": 2, "sequence_map": 3, "aggregate": 2, "mean": 2,
               "selector_width": 2, "full": 0.5}


@dataclasses.dataclass(eq=False)  # SOp == builds an SOp: compare items by identity
class _Item:
    sop: SOp
    type: str      # "str" | "int" | "bool" categorical; "num" numerical


# Typed function tables: (input type, output type, name, function). Public: the decompiler
# names functions by these entries.
MAPS: list[tuple[str, str, str, Callable]] = [
    ("int", "int", "x+1", lambda x: x + 1), ("int", "int", "x-1", lambda x: x - 1),
    ("int", "int", "x%3", lambda x: x % 3), ("int", "int", "min(x,2)", lambda x: min(x, 2)),
    ("int", "int", "-x", lambda x: -x), ("int", "bool", "x>0", lambda x: x > 0),
    ("int", "bool", "x%2==0", lambda x: x % 2 == 0), ("int", "bool", "x==1", lambda x: x == 1),
    ("bool", "bool", "not x", lambda x: not x), ("bool", "int", "int(x)", lambda x: int(x)),
    ("bool", "int", "2 if x else -1", lambda x: 2 if x else -1),
]
NUM_MAPS = [  # numerical -> numerical / categorical
    ("num", "num", "x*x", lambda x: x * x), ("num", "num", "1-x", lambda x: 1 - x),
    ("num", "num", "max(x-0.5,0)", lambda x: max(x - 0.5, 0)), ("num", "num", "3*x", lambda x: 3 * x),
    ("num", "bool", "x>0.5", lambda x: x > 0.5), ("num", "bool", "x==0", lambda x: x == 0),
    ("num", "int", "round(2*x)", lambda x: round(2 * x)),
]
TO_NUM = [  # categorical -> numerical
    ("bool", "num", "int(x)", lambda x: int(x)), ("int", "num", "x/2", lambda x: x / 2),
    ("int", "num", "x", lambda x: x),
]
PAIRS = [  # (type x, type y, out type, name, function)
    ("int", "int", "int", "x+y", lambda x, y: x + y), ("int", "int", "int", "max", max),
    ("int", "int", "bool", "x<y", lambda x, y: x < y), ("bool", "bool", "bool", "and", lambda x, y: x and y),
    ("bool", "bool", "bool", "xor", lambda x, y: x != y), ("str", "str", "bool", "x==y", lambda x, y: x == y),
    ("str", "int", "str", "x if y>0 else '-'", lambda x, y: x if y > 0 else "-"),
    ("num", "int", "bool", "x*4>y", lambda x, y: x * 4 > y), ("num", "num", "num", "x*y", lambda x, y: x * y),
]
_ORDERED = [Comparison.EQ, Comparison.LT, Comparison.LEQ, Comparison.GT, Comparison.GEQ,
            Comparison.NEQ, Comparison.TRUE, Comparison.FALSE]


class _Skip(Exception):
    """No SOp of a needed type exists yet: try another primitive."""


class _Gen:
    def __init__(self, rng: random.Random, vocab, mix):
        self.rng, self.vocab, self.mix = rng, list(vocab), mix
        tok_type = "int" if all(isinstance(v, int) and not isinstance(v, bool) for v in vocab) else "str"
        self.pool = [_Item(rasp.tokens, tok_type), _Item(rasp.indices, "int")]
        self.unused: list[_Item] = []
        self.n_ops = 0

    def pick(self, types, prefer_unused=True) -> _Item:
        fresh = [it for it in self.unused if it.type in types]
        if prefer_unused and fresh:
            return self.rng.choice(fresh)
        cands = [it for it in self.pool if it.type in types]
        if not cands:
            raise _Skip
        return self.rng.choice(cands)

    def add(self, sop: SOp, typ: str, *used: _Item) -> None:
        for it in used:
            if it in self.unused:
                self.unused.remove(it)
        item = _Item(sop.named(f"{sop._kind}_{self.n_ops}"), typ)
        self.pool.append(item)
        self.unused.append(item)
        self.n_ops += 1

    def select(self, prefer=None) -> rasp.Select:
        k = prefer or self.pick(("str", "int", "bool"), prefer_unused=False)
        same = [it for it in self.pool if it.type == k.type]
        q = self.rng.choice(same)
        comps = _ORDERED if k.type != "bool" else [Comparison.EQ, Comparison.NEQ, Comparison.TRUE]
        return rasp.Select(k.sop, q.sop, self.rng.choice(comps))

    def step(self) -> bool:
        kind = self.rng.choices(list(self.mix), weights=list(self.mix.values()))[0]
        try:
            self._step(kind)
        except _Skip:
            return False
        return True

    def _step(self, kind: str) -> None:
        rng = self.rng
        if kind == "map":
            x = self.pick(("int", "bool", "str"))
            if x.type == "str":
                v = rng.choice(self.vocab)
                self.add(rasp.Map(lambda t, v=v: t == v, x.sop, simplify=False), "bool", x)
                return
            _, out, _, f = rng.choice([m for m in MAPS if m[0] == x.type])
            self.add(rasp.Map(f, x.sop, simplify=False), out, x)
        elif kind == "numerical_map":
            x = self.pick(("num", "bool", "int"))
            table = NUM_MAPS if x.type == "num" else [m for m in TO_NUM if m[0] == x.type]
            _, out, _, f = rng.choice(table)
            sop = rasp.Map(f, x.sop, simplify=False)
            self.add(rasp.numerical(sop) if out == "num" else sop, out, x)
        elif kind == "sequence_map":
            x = self.pick(("int", "bool", "str", "num"))
            opts = [p for p in PAIRS if p[0] == x.type]
            if x.type == "num" and rng.random() < 0.5:
                y = self.pick(("num",), prefer_unused=False)
                a, b = rng.choice([(1, -1), (0.5, 0.5), (2, 1)])
                self.add(rasp.numerical(rasp.LinearSequenceMap(x.sop, y.sop, a, b)), "num", x, y)
                return
            _, ty, out, _, f = rng.choice(opts)
            y = self.pick((ty,), prefer_unused=False)
            sop = rasp.SequenceMap(f, x.sop, y.sop)
            self.add(rasp.numerical(sop) if out == "num" else sop, out, x, y)
        elif kind == "aggregate":
            v = self.pick(("int", "bool", "str"))
            if rng.random() < 0.5:
                q = self.pick(("int",), prefer_unused=False)
                sel = rasp.Select(rasp.indices, q.sop, Comparison.EQ)
                self.add(rasp.Aggregate(sel, v.sop), v.type, v, q)
            else:  # look up by key value: every selected key holds the same value of v
                q = self.rng.choice([it for it in self.pool if it.type == v.type])
                self.add(rasp.Aggregate(rasp.Select(v.sop, q.sop, Comparison.EQ), v.sop), v.type, v, q)
        elif kind == "mean":
            v = self.pick(("num", "bool"))
            sop = v.sop if v.type == "num" else rasp.numerical(rasp.Map(int, v.sop, simplify=False))
            sel = self.select()
            if rng.random() < 0.25:
                sel = sel & self.select()
            self.add(rasp.numerical(rasp.Aggregate(sel, sop, default=0)), "num", v)
        elif kind == "selector_width":
            k = self.pick(("int", "bool", "str"))
            sop = rasp.SelectorWidth(self.select(prefer=k))
            numerical = rng.random() < 0.3
            self.add(rasp.numerical(sop) if numerical else sop, "num" if numerical else "int", k)
        elif kind == "full":
            self.add(rasp.Full(rng.choice([0, 1, 2])), "int")

    def finish(self) -> SOp:
        """Joins the unused SOps into one output: (code(x) + code(y)) % 3 (numerical ones
        are first compared with 0.5, to keep value sets small)."""
        if len(self.unused) > 1:
            for it in [it for it in self.unused if it.type == "num"]:
                self.add(rasp.Map(lambda x: x > 0.5, it.sop, simplify=False), "bool", it)
        out = self.unused[-1] if self.unused else self.pool[-1]
        for it in self.unused[:-1][::-1]:
            joined = rasp.SequenceMap(lambda x, y: (_code(x) + _code(y)) % 3, it.sop, out.sop)
            self.add(joined, "int", it, out)
            out = self.pool[-1]
        return out.sop


def _code(v) -> int:
    """An integer for any value that depends only on its numeric value for numbers
    (0, 0.0 and False agree: the compiler cannot tell them apart either)."""
    return round(v * 4) if isinstance(v, (bool, int, float)) else sum(map(ord, str(v)))


def _random_inputs(rng: random.Random, vocab, max_seq_len: int, count: int):
    return [[rng.choice(vocab) for _ in range(rng.randint(1, max_seq_len))] for _ in range(count)]


Accept = Callable[[SOp, Sequence, int], bool]


def _accept(program: SOp, vocab, max_seq_len: int, rng: random.Random,
            accept: Accept | None) -> bool:
    try:
        for xs in _random_inputs(rng, list(vocab), max_seq_len, 16):
            evaluate(program, xs)
    except (RASPError, ArithmeticError, TypeError, ValueError):
        return False
    return accept is None or accept(program, vocab, max_seq_len)


def generate(seed: int, n_ops: int = 6, vocab=("a", "b", "c"), max_seq_len: int = 5,
             mix: dict | None = None, max_tries: int = 100, *, accept: Accept | None) -> SOp:
    """A random valid program with ``n_ops`` operations (plus joins of unused results), passing
    ``accept(program, vocab, max_seq_len)`` (e.g. ``toymodels.compiler.accepts``; None: any
    program the interpreter runs)."""
    mix = {**DEFAULT_MIX, **(mix or {})}
    for attempt in range(max_tries):
        rng = random.Random(f"{seed}/{attempt}")
        gen = _Gen(rng, vocab, mix)
        for _ in range(20 * n_ops):
            if gen.n_ops >= n_ops:
                break
            gen.step()
        program = gen.finish()
        if _accept(program, vocab, max_seq_len, rng, accept):
            return program
    raise RuntimeError(f"no valid program in {max_tries} tries (seed {seed})")


def programs(seed: int, count: int, **kwargs) -> Iterator[SOp]:
    """``count`` programs from seeds seed, seed+1, ..."""
    for i in range(count):
        yield generate(seed + i, **kwargs)
