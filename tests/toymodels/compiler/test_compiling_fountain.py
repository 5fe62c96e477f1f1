"""Property test: 200+ random fountain programs compile to models equal to the interpreter."""

import random

from rasp_cases import run_many, same_output

from toymodels.compiler import accepts, compile_program
from toymodels.rasp import evaluate, fountain

VOCAB, N = ("a", "b", "c"), 5


def test_fountain_programs_compile_exactly():
    rng = random.Random(0)
    programs = [fountain.generate(seed, n_ops=rng.randint(3, 8), vocab=VOCAB, max_seq_len=N,
                                  accept=accepts)
                for seed in range(210)]
    items = []
    for prog in programs:
        seqs = [[rng.choice(VOCAB) for _ in range(t)] for t in (1, 3, 5) for _ in range(4)]
        items.append((compile_program(prog, VOCAB, N), seqs))
    failures = []
    for i, (prog, (model, seqs), outs) in enumerate(zip(programs, items, run_many(items))):
        for xs, got in zip(seqs, outs):
            expected = evaluate(prog, xs)
            if not same_output(got, expected):
                failures.append((i, xs, got, expected))
    assert not failures, failures[:5]
    depths = [m.n_layers for m, _ in items]
    assert max(depths) >= 3 and len({m.d_model for m, _ in items}) > 20   # varied programs


def test_fountain_mix_controls_the_primitives():
    only_widths = {k: 0 for k in fountain.DEFAULT_MIX} | {"selector_width": 1}
    prog = fountain.generate(3, n_ops=3, mix=only_widths, accept=accepts)
    m = compile_program(prog, VOCAB, N)
    assert all(len(layer.heads) >= 1 for layer in m.layers)
    xs = list("abcab")
    assert same_output(m.run(["BOS", *xs]), evaluate(prog, xs))
