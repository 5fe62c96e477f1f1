"""``decompile``: read a compiled fountain program's weights, write its RASP program.

    task = make_task("decompile", n_programs=2000, max_ops=6)
    batch = task.sample(key, 32)        # inputs (B, T, task.d_input) vectors
    task.stats()                        # how many programs were kept, and why others not

Sequence layout (T = max_weight_tokens + max_program_tokens + 1):
  positions [0, W)   the program's weight tokens (weights.py), zero vectors after the last
  position  W        <sep>
  positions (W, T)   teacher forcing: program token t-W-1 (one-hot, ``program`` kind)
targets[:, t] for t >= W is the program stream's next token: the program tokens, <eos>,
then <pad> up to the end. The mask is 1 on all of [W, T), pads included, because a
task's mask must be the same for every row; token accuracy over real tokens only is
``toymodels.decompile.evaluate.decoder_report``. Targets are class ids over ``VOCAB``
(``vocab``), so a model for this task has input_kind="vectors", d_input=task.d_input,
output_kind="logits", vocab_size=task.vocab.size, and should be causal.

Data, built on the host on first use and cached per config: fountain programs with seeds
``data_seed * 1_000_000 + i`` (i < n_programs) and n_ops drawn by data_seed in
[min_ops, max_ops], over ("a", "b", "c") with max_seq_len 5 (the catalogue's fountain
setup, so ``fountain:<seed>:<n_ops>`` names the same program), accepted only if they compile.
``extra_train`` more programs (seeds from ``n_programs`` on) join the training split
only, so a larger training set keeps the same held-out programs.
Skipped: programs the fountain gives up on, whose tokens exceed max_program_tokens,
whose compiled net exceeds the layout or max_weight_tokens, and repeats of an earlier
program's exact token sequence. The remaining distinct programs are split by program
(``n_eval`` of them, drawn by data_seed, held out), so no held-out program's tokens
occur in training. Distinct tokens are not distinct functions (the 119 programs kept of
the first 120 tried compute 83 distinct functions), so
``split_by="function"`` holds out whole input/output tables instead: no function is on
both sides, and each entry carries ``function`` and ``degenerate`` (output set by the
input's length alone: most fountain programs read only indices and length; 69 % of the
418 training programs from 600 tried with data_seed 0). A score over all programs mixes
the two kinds; report them separately. With ``scrambled`` every net is ``toymodels.scramble.scramble``-d
once, keyed by its seed (function kept, basis hidden; ~7 ms a program, most of it
tracing the model skeleton of a new config).
Weight tokens are stored flat (median ~30 a program vs a cap of 128) and gathered.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from toymodels.compiler import CompileError, accepts, compile_program
from toymodels.config import ConfigError, check_choice, check_int
from toymodels.decompile.evaluate import io_table, is_degenerate
from toymodels.decompile.tokens import EOS, PAD, SEP, TOKEN_ID, VOCAB, program_tokens
from toymodels.decompile.weights import Layout, fits, program_vectors, weight_tokens
from toymodels.rasp import fountain
from toymodels.rasp.catalogue import FOUNTAIN_MAX_SEQ_LEN, FOUNTAIN_VOCAB
from toymodels.scramble import scramble
from toymodels.tasks.base import SPLITS, Batch, Task, Vocab, register

SEED_STRIDE = 1_000_000
SPLIT_BY = ("tokens", "function")


@dataclasses.dataclass
class Split:
    """One split's programs, host side, plus the flat arrays ``sample`` gathers from."""
    entries: list[dict]          # id, seed, n_ops, program, tokens, n_layers, d_model, n_weights
    x_MI: np.ndarray             # every program's weight tokens, concatenated
    start_P: np.ndarray          # program p's tokens are x_MI[start_P[p]:start_P[p] + count_P[p]]
    count_P: np.ndarray
    stream_PS: np.ndarray        # <sep> program tokens <eos> <pad>... as ids


@register
@dataclasses.dataclass(frozen=True)
class DecompileTask(Task):
    """Weights of a compiled RASP program in, its program tokens out (module docstring)."""

    name = "decompile"
    input_kind: ClassVar[str] = "vectors"
    loss: ClassVar[str] = "xent"
    next_token: ClassVar[bool] = False   # targets are class ids, inputs vectors

    n_programs: int = 2000        # fountain programs tried (before caps and de-duplication)
    extra_train: int = 0          # more programs tried, for training only (eval split unchanged)
    min_ops: int = 2
    max_ops: int = 6
    scrambled: bool = False
    n_eval: int = 200             # held-out distinct programs
    data_seed: int = 0
    max_layers: int = 6
    d_max: int = 40
    max_heads: int = 4
    max_weight_tokens: int = 128
    max_program_tokens: int = 64
    split_by: str = "tokens"      # "tokens": by distinct token sequence; "function": by input/output table

    def __post_init__(self):
        for f in ("n_programs", "min_ops", "max_layers", "d_max", "max_heads",
                  "max_weight_tokens", "max_program_tokens", "n_eval"):
            check_int(f, getattr(self, f), 1)
        check_int("extra_train", self.extra_train, 0)
        check_int("max_ops", self.max_ops, self.min_ops)
        check_int("data_seed", self.data_seed, 0)
        check_choice("scrambled", self.scrambled, (False, True))
        check_choice("split_by", self.split_by, SPLIT_BY)
        if self.n_eval >= self.n_programs:
            raise ConfigError(f"n_eval={self.n_eval} leaves no training programs out of "
                              f"n_programs={self.n_programs}")

    @property
    def layout(self) -> Layout:
        return Layout(self.max_layers, self.d_max, self.max_heads)

    @property
    def d_input(self) -> int:
        return self.layout.width

    @property
    def seq_len(self) -> int:
        return self.max_weight_tokens + self.max_program_tokens + 1

    @property
    def vocab(self) -> Vocab:
        return Vocab(VOCAB)

    # ------------------------------------------------------------ data

    def split(self, split: str = "train") -> Split:
        check_choice("split", split, SPLITS)
        return _build(self)[0][split]

    def stats(self) -> dict:
        """Counts of programs tried / skipped (by reason) / kept per split."""
        return dict(_build(self)[1])

    def programs(self, split: str = "train") -> list[dict]:
        return self.split(split).entries

    def weights(self, split: str = "eval") -> np.ndarray:
        """(P, max_weight_tokens, d_input) zero-padded weight tokens of every program."""
        s = self.split(split)
        out = np.zeros((len(s.entries), self.max_weight_tokens, self.d_input), np.float32)
        for p, (a, n) in enumerate(zip(s.start_P, s.count_P)):
            out[p, :n] = s.x_MI[a:a + n]
        return out

    def sample(self, key: jax.Array, batch_size: int, split: str = "train") -> Batch:
        check_choice("split", split, SPLITS)
        rows_B = jax.random.randint(key, (batch_size,), 0, len(self.split(split).entries))
        return self._batch(split, rows_B)

    def full_batch(self, split: str = "eval") -> Batch:
        """Every program of ``split`` once, in split order."""
        return self._batch(split, jnp.arange(len(self.split(split).entries)))

    def _batch(self, split: str, rows_B) -> Batch:
        s = self.split(split)
        W, S = self.max_weight_tokens, self.max_program_tokens + 1
        pos_N = jnp.arange(W)
        count_B1 = jnp.asarray(s.count_P)[rows_B][:, None]
        idx_BN = jnp.asarray(s.start_P)[rows_B][:, None] + jnp.minimum(pos_N[None], count_B1 - 1)
        x_BNI = jnp.asarray(s.x_MI)[idx_BN] * (pos_N[None] < count_B1)[..., None]
        stream_BS = jnp.asarray(s.stream_PS)[rows_B]
        inputs = jnp.concatenate([x_BNI, program_vectors(stream_BS[:, :S], self.layout)], axis=1)
        B = stream_BS.shape[0]
        targets = jnp.concatenate([jnp.full((B, W), PAD, jnp.int32), stream_BS[:, 1:]], axis=1)
        mask_T = jnp.concatenate([jnp.zeros((W,), jnp.float32), jnp.ones((S,), jnp.float32)])
        return Batch(inputs, targets, jnp.broadcast_to(mask_T[None], (B, W + S)))


def _stream(tokens, length: int) -> np.ndarray:
    ids = [SEP] + [TOKEN_ID[t] for t in tokens] + [EOS]
    return np.array(ids + [PAD] * (length - len(ids)), np.int32)


@functools.lru_cache(maxsize=4)
def _build(task: DecompileTask) -> tuple[dict[str, Split], collections.Counter]:
    layout, counts, seen, kept = task.layout, collections.Counter(), set(), []
    n_ops_P = np.random.default_rng(task.data_seed).integers(
        task.min_ops, task.max_ops + 1, task.n_programs)
    # extra_train: seeds after the first n_programs, n_ops from their own stream, so the
    # first n_programs (and the eval split drawn from them) are the same for any extra_train
    n_ops_P = np.concatenate([n_ops_P, np.random.default_rng([task.data_seed, 2]).integers(
        task.min_ops, task.max_ops + 1, task.extra_train)])
    for i, n_ops in enumerate(n_ops_P.tolist()):
        counts["tried"] += 1
        seed = task.data_seed * SEED_STRIDE + i
        try:
            program = fountain.generate(seed, n_ops=n_ops, vocab=FOUNTAIN_VOCAB,
                                        max_seq_len=FOUNTAIN_MAX_SEQ_LEN, accept=accepts)
            toks = tuple(program_tokens(program))
            compiled = compile_program(program, FOUNTAIN_VOCAB, FOUNTAIN_MAX_SEQ_LEN)
        except (RuntimeError, ValueError, CompileError) as e:
            counts[f"skipped: {type(e).__name__}"] += 1
            continue
        if toks in seen:
            counts["skipped: duplicate"] += 1
            continue
        if len(toks) > task.max_program_tokens:
            counts["skipped: program tokens > max_program_tokens"] += 1
            continue
        if not fits(compiled.cfg, layout):
            counts["skipped: layers / d_model / heads > layout"] += 1
            continue
        net = scramble(compiled.model, seed) if task.scrambled else compiled
        x_NI = weight_tokens(net, layout)
        if len(x_NI) > task.max_weight_tokens:
            counts["skipped: weight tokens > max_weight_tokens"] += 1
            continue
        seen.add(toks)
        kept.append({"id": i, "seed": seed, "n_ops": n_ops, "program": program,
                     "tokens": list(toks), "n_layers": compiled.cfg.n_layers,
                     "d_model": compiled.cfg.d_model, "n_weights": len(x_NI), "x_NI": x_NI})
    counts["kept"] = len(kept)
    n_base = sum(e["id"] < task.n_programs for e in kept)   # kept in order: the first n_base
    if task.n_eval >= n_base:
        raise ConfigError(f"n_eval={task.n_eval} leaves no training programs: only {n_base} of "
                          f"n_programs={task.n_programs} fountain programs fit the caps ({dict(counts)})")
    if task.split_by == "function":
        kept, held = _split_by_function(task, kept, n_base, counts)
    else:
        held = set(np.random.default_rng([task.data_seed, 1]).permutation(n_base)[:task.n_eval].tolist())
    splits = {}
    for name in SPLITS:
        entries = [e for j, e in enumerate(kept) if (j in held) == (name == "eval")]
        counts[name] = len(entries)
        xs = [e.pop("x_NI") for e in entries]
        count_P = np.array([len(x) for x in xs], np.int32)
        start_P = np.concatenate([[0], np.cumsum(count_P)[:-1]]).astype(np.int32)
        stream_PS = np.stack([_stream(e["tokens"], task.max_program_tokens + 2) for e in entries])
        splits[name] = Split(entries, np.concatenate(xs), start_P, count_P, stream_PS)
    return splits, counts


def _canonical(value):
    """``value`` with every number as a float (+0.0 for -0.0): equal tables, equal reprs
    (1 == 1.0 == True and 0.0 == -0.0, but their reprs differ)."""
    if isinstance(value, (tuple, list)):
        return tuple(_canonical(v) for v in value)
    if isinstance(value, (bool, int, float)):
        return float(value) + 0.0
    return value


_FUNCTIONS: dict[tuple, tuple[str, int]] = {}   # program tokens -> (table digest, degenerate)


def _function_of(tokens: tuple, program) -> tuple[str, int]:
    """A digest of ``program``'s input/output table (``io_table``) and whether it is degenerate,
    kept per process by token sequence: the interpreter runs 363 inputs per program (~30 ms),
    and the clean and scrambled tasks, their training and their analysis share programs."""
    if tokens not in _FUNCTIONS:
        table = io_table(program, FOUNTAIN_MAX_SEQ_LEN, FOUNTAIN_VOCAB)
        _FUNCTIONS[tokens] = (hashlib.sha256(repr(_canonical(table)).encode()).hexdigest(),
                              int(is_degenerate(table, FOUNTAIN_MAX_SEQ_LEN, FOUNTAIN_VOCAB)))
    return _FUNCTIONS[tokens]


def _split_by_function(task: DecompileTask, kept: list[dict], n_base: int, counts) -> tuple[list[dict], set]:
    """Held-out positions in ``kept`` such that programs with the same input/output table
    (``io_table``, inputs of length 1..5) are never on both sides: whole functions of the
    first ``n_base`` programs are held out, in a data_seed order, each only if it fits in
    what is left of ``n_eval`` (so at most n_eval programs are held out, and a function
    many programs share, typically a degenerate one, stays in training rather than filling
    the held-out split); an extra-training program computing a held-out function is dropped
    ("skipped: function held out"). Every entry gets ``function`` (its table's index in
    order of first appearance) and ``degenerate`` (``is_degenerate``: output set by length)."""
    ids: dict[str, int] = {}
    for e in kept:
        digest, degenerate = _function_of(tuple(e["tokens"]), e["program"])
        e["function"] = ids.setdefault(digest, len(ids))
        e["degenerate"] = degenerate
    size = collections.Counter(e["function"] for e in kept[:n_base])   # in order of first appearance
    base_functions = list(size)
    held_functions, n_held = set(), 0
    for j in np.random.default_rng([task.data_seed, 1]).permutation(len(base_functions)).tolist():
        f = base_functions[j]
        if n_held + size[f] <= task.n_eval:
            held_functions.add(f)
            n_held += size[f]
    if n_held == 0 or n_held >= n_base:
        raise ConfigError(f"n_eval={task.n_eval} with split_by='function' holds out {n_held} of the {n_base} "
                          f"programs ({len(base_functions)} functions); choose n_eval between the smallest "
                          "function's program count and the number of programs")
    out = kept[:n_base] + [e for e in kept[n_base:] if e["function"] not in held_functions]
    counts["skipped: function held out"] = len(kept) - len(out)
    counts["kept"] = len(out)
    counts["functions"] = len({e["function"] for e in out})
    return out, {j for j, e in enumerate(out) if e["function"] in held_functions}

