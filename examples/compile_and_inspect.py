"""Compile a RASP program into transformer weights and look inside the compiled network.

    python examples/compile_and_inspect.py [OUT_DIR]

Compiles Tracr's ``make_reverse``, checks the weights against the interpreter on every
input up to length 4, reads each RASP variable back out of the residual stream, ablates
one attention layer, and draws that layer's attention pattern to OUT_DIR (default
results/examples). Under a minute on a laptop CPU.
"""

import itertools
import sys
from pathlib import Path

import numpy as np

from toymodels import plotting
from toymodels.compiler import compile_program
from toymodels.hooks import ablate, run_with_cache, run_with_interventions
from toymodels.rasp import evaluate, library, rasp

out = Path(sys.argv[1] if len(sys.argv) > 1 else "results/examples")
out.mkdir(parents=True, exist_ok=True)
plotting.use_file_backend()

# 1. A program, its interpreter, and its compiled network.
vocab = ["a", "b", "c"]
prog = library.make_reverse(rasp.tokens)               # length - index - 1, then an Aggregate
compiled = compile_program(prog, set(vocab), max_seq_len=5)
print(compiled.summary())
print("residual directions:", compiled.residual_labels[:8], "...")

# 2. The weights compute the program: every input of length 1..4 against the interpreter.
n_checked = 0
for n in range(1, 5):
    for seq in itertools.product(vocab, repeat=n):
        assert compiled.run(["BOS", *seq]) == evaluate(prog, list(seq)), seq
        n_checked += 1
print(f"compiled == interpreter on all {n_checked} inputs of length 1-4")

# 3. The compiled network is an ordinary toymodels Transformer: cache and read a variable.
seq = ["BOS", "a", "b", "c", "c"]
ids = compiled.encode([seq])
names = [f"blocks.{i}.resid_post" for i in range(compiled.n_layers)]
logits, cache = run_with_cache(compiled.model, ids, names + ["blocks.*.attn.pattern"])
print("output after the last block:", compiled.read(prog, cache[names[-1]])[0][1:])

# 4. Ablate the last attention layer: the reversal breaks.
last = compiled.n_layers - 1
ablated = run_with_interventions(compiled.model, ids, {f"blocks.{last}.attn.out": ablate()})
print("with the last attention layer ablated:", compiled.decode(np.asarray(ablated))[0])

# 5. The attention pattern that does the reversal (query x key), from the cache.
pattern_HTS = np.asarray(cache[f"blocks.{last}.attn.pattern"])[0]
fig, axes = plotting.figure(ncols=pattern_HTS.shape[0])
for h, ax in enumerate(axes[0]):
    ax.imshow(pattern_HTS[h], cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(seq)), seq)
    ax.set_yticks(range(len(seq)), seq)
    ax.set_title(f"block {last}, head {h}")
    ax.set_xlabel("key")
    ax.set_ylabel("query")
print("wrote", plotting.save(fig, out / "reverse_attention"))
